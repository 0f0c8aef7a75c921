#!/usr/bin/env bash
# Installs nats-server (Debian's package) when it is missing, so that
# `cargo test --workspace --release` (README's test command) runs the relay's
# tests in bindings/jetstream/tests/ against a real broker. The tests start
# and stop their own servers (free loopback ports, temp directories, killed
# by PID); this script only installs. Called by .ci/run before the tests.
#
# Under CI=true a server that cannot be installed is a failure (exit 1: the
# tests would fail on it anyway, with a less direct message); elsewhere this
# prints why and exits 0, and the tests skip with that reason.
set -u

if command -v nats-server >/dev/null 2>&1; then
    echo "bindings/jetstream/ci.sh: $(nats-server --version) present"
    exit 0
fi

echo "bindings/jetstream/ci.sh: installing nats-server"
reason=""
if ! command -v apt-get >/dev/null 2>&1; then
    reason="apt-get is not available on this machine"
elif [ "$(id -u)" -ne 0 ]; then
    reason="installing packages needs root"
elif ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; } >/dev/null 2>&1; then
    reason="apt-get install nats-server failed"
elif ! command -v nats-server >/dev/null 2>&1; then
    reason="the nats-server package installed no nats-server command"
fi
if [ -n "$reason" ]; then
    echo "bindings/jetstream/ci.sh: cannot install nats-server: $reason"
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    echo "bindings/jetstream/ci.sh: the relay tests will skip"
    exit 0
fi
echo "bindings/jetstream/ci.sh: installed $(nats-server --version)"
