"""Fixtures shared by the factlog binding tests."""

import os
import pathlib
import shutil

import pytest

import factlog

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def path(tmp_path):
    """Where a test's store lives (not created yet)."""
    return tmp_path / "store"


@pytest.fixture
def store(path):
    """A new store, closed after the test."""
    s = factlog.Store(path)
    yield s
    s.close()


def _find_cli():
    if os.environ.get("FACTLOG_CLI"):
        return os.environ["FACTLOG_CLI"]
    for target in (os.environ.get("CARGO_TARGET_DIR"), REPO / "target"):
        if target:
            candidate = pathlib.Path(target) / "release" / "factlog"
            if candidate.is_file():
                return str(candidate)
    return shutil.which("factlog")


@pytest.fixture
def cli():
    """The `factlog` command-line tool built from this repository (Rust), for the interop tests.
    ci.sh builds it and sets FACTLOG_CLI; elsewhere the test is skipped when it is not built."""
    found = _find_cli()
    if found is None:
        if os.environ.get("FACTLOG_REQUIRE_CLI"):
            pytest.fail("FACTLOG_REQUIRE_CLI is set but no factlog binary was found (set FACTLOG_CLI)")
        pytest.skip("the factlog CLI is not built (cargo build --release -p factlog-cli)")
    return found
