#!/usr/bin/env bash
# The Python package's CI step, called by .ci/run after `cargo test --workspace --release`:
# builds and installs the package into a fresh virtualenv exactly as a user would
# (`pip install ./bindings/python`, which runs maturin), then runs its pytest suite.
# pytest's exit code 5 (no tests collected) is a failure here, not a pass.
#
# The wheel is built in the workspace's target directory (CARGO_TARGET_DIR, else ./target),
# so it reuses the engine and its dependencies from the release build before it and compiles
# only pyo3 and this crate; the interop tests use the `factlog` CLI from that same build.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
python=${PYTHON:-python3}   # pyenv's python3 on our machines; never Debian's /usr/bin/python3 (PEP 668)
start=$SECONDS

venv=$(mktemp -d "${TMPDIR:-/tmp}/factlog-py-venv.XXXXXX")
trap 'rm -rf "$venv"' EXIT
"$python" -m venv "$venv"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet ./bindings/python pytest
echo "python bindings: venv and wheel built in $((SECONDS - start)) s"

cargo build --release --quiet -p factlog-cli
export FACTLOG_CLI="$CARGO_TARGET_DIR/release/factlog" FACTLOG_REQUIRE_CLI=1

status=0
"$venv/bin/python" -m pytest bindings/python/tests -q -ra -p no:cacheprovider || status=$?
if [ "$status" -eq 5 ]; then
    echo "python bindings: pytest collected no tests: that is a failure" >&2
    exit 1
fi
echo "python bindings: done in $((SECONDS - start)) s (pytest exit code $status)"
exit "$status"
