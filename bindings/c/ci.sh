#!/usr/bin/env bash
# Installs the tools the C ABI's tests need (cc, g++, valgrind) when they are
# missing, so that `cargo test --workspace --release` (README's test command)
# runs bindings/c/tests/c_abi.rs in full: the C test program under valgrind,
# the header as C++, the README example. Called by .ci/run before the tests.
#
# Under CI=true a tool that cannot be installed is a failure (exit 1: the
# tests would fail on it anyway, with a less direct message); elsewhere this
# prints why and exits 0, and the tests skip what needs the tool.
set -u

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
if [ ${#missing[@]} -eq 0 ]; then
    echo "bindings/c/ci.sh: cc, g++ and valgrind present ($(valgrind --version))"
    exit 0
fi

echo "bindings/c/ci.sh: installing ${missing[*]}"
reason=""
if ! command -v apt-get >/dev/null 2>&1; then
    reason="apt-get is not available on this machine"
elif [ "$(id -u)" -ne 0 ]; then
    reason="installing packages needs root"
elif ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1; then
    reason="apt-get install ${missing[*]} failed"
fi
if [ -n "$reason" ]; then
    echo "bindings/c/ci.sh: cannot install ${missing[*]}: $reason"
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    echo "bindings/c/ci.sh: the C tests will skip what needs them"
    exit 0
fi
echo "bindings/c/ci.sh: installed ($(valgrind --version))"
