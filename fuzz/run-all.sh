#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30); exits non-zero if any finds a crash.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Only a stable toolchain is assumed:
# RUSTC_BOOTSTRAP lets cargo-fuzz pass its flags, and no sanitizer is used (-s none).
set -euo pipefail
secs="${1:-30}"
cd "$(dirname "$0")"
./seed.sh
export RUSTC_BOOTSTRAP=1
status=0
for t in $(cargo fuzz list); do
    echo "== $t ($secs s)"
    if ! cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 2>&1 | tail -4; then
        status=1
    fi
done
exit $status
