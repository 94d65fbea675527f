#!/usr/bin/env bash
# Write throughput through a wdev loop device vs. the same loop setup on a plain file, as a
# ratio. Needs root, /dev/fuse and fio (installed if missing). Usage: wdev_loop.sh [SIZE_MB]
# Every byte written through wdev is written twice (log, then data), on the same disk here.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
size_mb="${1:-512}"
command -v fio >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
cargo build --release -q -p walb-wdev --bins --manifest-path "$root/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
dir="$(mktemp -d /var/tmp/wdev-bench.XXXXXX)"
cleanup() {
    [ -n "${plain_loop:-}" ] && losetup -d "$plain_loop" 2>/dev/null || true
    "$bin/wdevc" --run-dir "$dir/run" delete-wdev b0 2>/dev/null || true
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
truncate -s $((size_mb * 2))M ldev
truncate -s ${size_mb}M ddev plain
"$bin/wdevc" format-ldev ldev ddev --pbs 4096 --name b0 >/dev/null
mkdir -p run
"$bin/wdevd" --run-dir "$dir/run" 2>wdevd.log &
pid=$!
while [ ! -S run/wdevd.sock ]; do sleep 0.1; done
wdev_loop=$("$bin/wdevc" --run-dir "$dir/run" create-wdev b0 ldev ddev)
plain_loop=$(losetup --find --show --direct-io=on plain)

run() { # device job-args... -> MB/s
    fio --name=b --filename="$1" --direct=1 --ioengine=libaio --output-format=terse \
        --terse-version=3 "${@:2}" | awk -F';' '{printf "%.1f", $48/1024}'
}
seq="--rw=write --bs=1M --iodepth=8 --size=${size_mb}M"
rnd="--rw=randwrite --bs=4k --iodepth=16 --size=${size_mb}M --time_based --runtime=15"
printf '%-22s %12s %12s %8s\n' workload "wdev MB/s" "plain MB/s" ratio
for w in seq rnd; do
    a=$(run "$wdev_loop" ${!w})
    b=$(run "$plain_loop" ${!w})
    printf '%-22s %12s %12s %7.0f%%\n' "$w" "$a" "$b" "$(echo "100*$a/$b" | bc -l)"
done
