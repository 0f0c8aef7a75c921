#!/usr/bin/env bash
# Bounded fuzzing for CI (paste `bash fuzz/ci.sh` into .ci/run).
#
# Runs every fuzz target for FUZZ_SECONDS (default 30) seconds, starting from
# the committed corpus, with new inputs going to a scratch directory (the
# committed corpus is never modified). Needs cargo-fuzz; if it is missing, it
# tries `cargo install cargo-fuzz --locked` for at most FUZZ_INSTALL_SECONDS
# (default 300) and, if that fails, skips with exit 0.
#
# Exit status: 0 when every target ran clean or cargo-fuzz is unavailable,
# 1 when a target found a crash (the input is in fuzz/artifacts/<target>/ and
# is printed in hex), 2 when the fuzz crate does not build.
#
# Environment: FUZZ_SECONDS, FUZZ_TARGETS (space-separated, default all),
# FUZZ_INSTALL_SECONDS, FACTLOG_FUZZ_TMPDIR (scratch stores, default /dev/shm).
set -u
cd "$(dirname "$0")"

secs=${FUZZ_SECONDS:-30}
install_secs=${FUZZ_INSTALL_SECONDS:-300}
targets=${FUZZ_TARGETS:-"record_decode snapshot_decode segment_open ops"}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/ci.sh: cargo-fuzz not found; installing (at most ${install_secs}s)"
    if ! timeout "$install_secs" cargo install cargo-fuzz --locked >/dev/null 2>&1 \
        || ! cargo fuzz --version >/dev/null 2>&1; then
        echo "fuzz/ci.sh: cargo-fuzz unavailable; skipping fuzzing"
        exit 0
    fi
fi
echo "fuzz/ci.sh: $(cargo fuzz --version)"

if ! cargo fuzz build --sanitizer none; then
    echo "fuzz/ci.sh: the fuzz targets do not build"
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in $targets; do
    mkdir -p "$work/$t"
    log="$work/$t.log"
    if cargo fuzz run --sanitizer none "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=60 -print_final_stats=1 >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        echo "fuzz/ci.sh: $t clean: ${execs:-?} executions, ${rate:-?}/s in ${secs}s"
    else
        status=1
        echo "fuzz/ci.sh: FINDING in $t"
        grep -E -A12 "panicked at|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY" "$log" | head -60
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        if [ -n "$artifact" ] && [ -f "$artifact" ]; then
            echo "fuzz/ci.sh: input saved as $artifact:"
            od -A x -t x1z -v "$artifact" | head -40
            echo "reproduce: (cd fuzz && cargo fuzz run --sanitizer none $t $artifact)"
        else
            tail -40 "$log"
        fi
    fi
done
exit "$status"
