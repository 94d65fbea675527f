#!/usr/bin/env bash
# Writes through a wdev loop device vs. the same loop setup on a plain file (BENCHMARKS.md,
# "wdev"). Needs root, /dev/fuse, fio and jq (installed if missing).
# Usage: wdev_loop.sh [SIZE_MB] [RUNS]
# Every byte written through wdev is written twice (log, then data), on the same disk here.
# RUNS rounds, wdev and plain alternating (which one goes first alternates too); prints every
# run, then the medians: MB/s and wdev/plain for sequential 1 MiB and random 4 KiB writes,
# O_DSYNC 4 KiB write latency p50/p99 (fio's completion latency), and the CPU time the
# serving wdevd process spent per GiB written (user + system, all its threads).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
size_mb="${1:-512}"
runs="${2:-5}"
for t in fio jq; do
    command -v $t >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $t >/dev/null
done
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
status=$("$bin/wdevc" --run-dir "$dir/run" status)
worker=$(jq -r .pid <<<"$status")
echo "transport: $(jq -r '.transport // "/dev/fuse"' <<<"$status"), wdevd worker pid $worker"

# CPU seconds (user + system) the worker has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$worker/stat"; }
# fio on a device with a job's args; prints "MB/s p50_us p99_us GiB_written".
run() {
    fio --name=b --filename="$1" --direct=1 --ioengine=libaio --output-format=json "${@:2}" |
        jq -r '.jobs[0].write | "\(.bw_bytes / 1e6) \(.clat_ns.percentile["50.000000"] / 1000)
            \(.clat_ns.percentile["99.000000"] / 1000) \(.io_bytes / 1073741824)"' | tr '\n' ' '
}
seq="--rw=write --bs=1M --iodepth=8 --size=${size_mb}M"
rnd="--rw=randwrite --bs=4k --iodepth=16 --size=${size_mb}M --time_based --runtime=15"
dsync="--rw=randwrite --bs=4k --iodepth=1 --sync=dsync --size=${size_mb}M --time_based --runtime=10"
declare -A res
printf '%-4s %-6s %10s %10s %7s %10s %10s %10s %10s %12s\n' run work "wdev MB/s" "plain MB/s" ratio \
    "wdev p50" "plain p50" "wdev p99" "plain p99" "wdev CPU s/GiB"
for i in $(seq 1 "$runs"); do
    for w in seq rnd dsync; do
        order="wdev plain"
        [ $((i % 2)) -eq 0 ] && order="plain wdev"
        for d in $order; do
            if [ $d = wdev ]; then
                c0=$(cpu)
                read -r mb p50 p99 gib <<<"$(run "$wdev_loop" ${!w})"
                res[$w,wdev,cpu,$i]=$(echo "($(cpu) - $c0) / $gib" | bc -l)
            else
                read -r mb p50 p99 gib <<<"$(run "$plain_loop" ${!w})"
            fi
            res[$w,$d,mb,$i]=$mb res[$w,$d,p50,$i]=$p50 res[$w,$d,p99,$i]=$p99
        done
        res[$w,ratio,$i]=$(echo "100 * ${res[$w,wdev,mb,$i]} / ${res[$w,plain,mb,$i]}" | bc -l)
        printf '%-4s %-6s %10.1f %10.1f %6.0f%% %10.0f %10.0f %10.0f %10.0f %12.2f\n' "$i" "$w" \
            "${res[$w,wdev,mb,$i]}" "${res[$w,plain,mb,$i]}" "${res[$w,ratio,$i]}" \
            "${res[$w,wdev,p50,$i]}" "${res[$w,plain,p50,$i]}" "${res[$w,wdev,p99,$i]}" \
            "${res[$w,plain,p99,$i]}" "${res[$w,wdev,cpu,$i]}"
    done
done
# Median of the values res[KEY,1..runs].
median() {
    for i in $(seq 1 "$runs"); do echo "${res[$1,$i]}"; done | sort -g |
        awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
echo "medians of $runs runs:"
for w in seq rnd dsync; do
    printf '%-6s wdev %.1f MB/s, plain %.1f MB/s, ratio %.0f%%; latency p50 %.0f vs %.0f us (%.2fx), p99 %.0f vs %.0f us (%.2fx); wdevd CPU %.2f s/GiB\n' \
        "$w" "$(median $w,wdev,mb)" "$(median $w,plain,mb)" "$(median $w,ratio)" \
        "$(median $w,wdev,p50)" "$(median $w,plain,p50)" \
        "$(echo "$(median $w,wdev,p50) / $(median $w,plain,p50)" | bc -l)" \
        "$(median $w,wdev,p99)" "$(median $w,plain,p99)" \
        "$(echo "$(median $w,wdev,p99) / $(median $w,plain,p99)" | bc -l)" \
        "$(median $w,wdev,cpu)"
done
