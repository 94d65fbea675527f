#!/usr/bin/env bash
# End-to-end throughput of the pipeline on localhost (root, /dev/fuse): wdevd + storage + proxy
# + archive from a release build, one wdev device.
#  1. full backup MB/s of a SIZE_MB device filled with random data, and of a second one of
#     half-compressible data (fio, buffer_compress_percentage=50), each next to the disk's read
#     speed of the same bytes (fio: the data device file read as the scan reads it, O_DIRECT,
#     1 MiB, 4 in flight, page cache dropped first), and the CPU both ends spent;
#  2. device writes → restorable snapshot: WRITE_MB of random 1 MiB writes through the loop
#     device, then a snapshot; MB/s from the first write to "restorable on the archive".
#  3. write → restorable latency per snapshot (p50, p99), idle and under a steady write load;
#  4. hash backup MB/s of the whole device, unchanged and with 10% rewritten (the limit is
#     min(disk read, BLAKE3 ≈ 2.9 GiB/s per core on this class, BENCHMARKS.md)).
# Usage: pipeline.sh [SIZE_MB] [WRITE_MB]
# BULK_CMPR=none|lz4|zstd:N is the storage's --bulk-cmpr for the full backup (default zstd:1).
# ARCHIVE_DIR=DIR puts the archive's data dir there (e.g. /dev/shm: the archive on a disk of its
# own, as on a separate host; otherwise both ends read the same disk at once).
set -euo pipefail
for t in fio jq; do
    command -v $t >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $t >/dev/null
done
root="$(cd "$(dirname "$0")/../.." && pwd)"
size_mb="${1:-1024}"
write_mb="${2:-512}"
cargo build --release -q --manifest-path "$root/Cargo.toml" \
    -p walb-wdev -p walb-storage -p walb-proxy -p walb-archive -p walb-controller --bins
bin="$root/target/release"
dir="$(mktemp -d /var/tmp/walb-bench.XXXXXX)"
adir="$(mktemp -d "${ARCHIVE_DIR:-$dir}/walb-archive.XXXXXX")"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for b in b0 b1; do "$bin/wdevc" --run-dir "$dir/run" delete-wdev $b 2>/dev/null || true; done
    [ -n "${wdevd:-}" ] && kill "$wdevd" 2>/dev/null && wait "$wdevd" 2>/dev/null || true
    rm -rf "$dir" "$adir"
}
trap cleanup EXIT
cd "$dir"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
truncate -s $((write_mb * 2 + 64))M ldev
truncate -s ${size_mb}M ddev
"$bin/wdevc" format-ldev ldev ddev --pbs 4096 --name b0 >/dev/null
truncate -s $((size_mb + 64))M ldev1
truncate -s ${size_mb}M ddev1
"$bin/wdevc" format-ldev ldev1 ddev1 --pbs 4096 --name b1 >/dev/null
mkdir -p run
"$bin/wdevd" --run-dir "$dir/run" 2>wdevd.log & wdevd=$!
while [ ! -S run/wdevd.sock ]; do sleep 0.1; done
dev=$("$bin/wdevc" --run-dir "$dir/run" create-wdev b0 ldev ddev)
dev1=$("$bin/wdevc" --run-dir "$dir/run" create-wdev b1 ldev1 ddev1)
sp=$(port); pp=$(port); ap=$(port)
"$bin/walb-archive" --id a0 --listen 127.0.0.1:$ap --data-dir "$adir/a0" 2>a0.log & pids+=($!)
"$bin/walb-proxy" --id p0 --listen 127.0.0.1:$pp --data-dir p0 2>p0.log & pids+=($!)
"$bin/walb-storage" --id s0 --listen 127.0.0.1:$sp --data-dir s0 --proxy 127.0.0.1:$pp \
    --archive 127.0.0.1:$ap --wdevd run/wdevd.sock ${BULK_CMPR:+--bulk-cmpr "$BULK_CMPR"} \
    2>s0.log & pids+=($!)
cat > layout.toml <<L
[[storage]]
id = "s0"
addr = "127.0.0.1:$sp"
[[proxy]]
id = "p0"
addr = "127.0.0.1:$pp"
[[archive]]
id = "a0"
addr = "127.0.0.1:$ap"
L
w() { "$bin/walbc" --layout layout.toml --timeout 600 "$@"; }
for s in s0 p0 a0; do until w call $s get pid >/dev/null 2>&1; do sleep 0.1; done; done
w init-storage s0 vol0 b0
dd if=/dev/urandom of="$dev" bs=1M count="$size_mb" oflag=direct status=none
w init-storage s0 vol1 b1
fio --name=half --filename="$dev1" --direct=1 --rw=write --bs=1M --size="${size_mb}M" \
    --buffer_compress_percentage=50 --buffer_compress_chunk=4096 --refill_buffers --output=/dev/null
# The disk is noisy: its read rate is measured right before each scan it limits.
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
disk_read() { # [file] -> MB/s of a cold read of the data device file
    # The scan's own pattern: O_DIRECT, 1 MiB reads, 4 in flight, through io_uring. (A buffered
    # `dd` reads this virtio disk at a half to a third of that, which would flatter the ratio.)
    cold
    fio --name=r --filename="${1:-ddev}" --direct=1 --rw=read --bs=1M --iodepth=4 \
        --ioengine=io_uring --output-format=json | jq -r '.jobs[0].read.bw_bytes / 1e6'
    cold
}
timed() { # command... -> MB/s of size_mb over its run
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
    echo "$size_mb / ($t1 - $t0)" | bc -l
}
cpu() { # pid -> CPU seconds (user + system) so far
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
spid=${pids[2]} apid=${pids[0]}
step() { # walbc-command vol -> "MB/s storage-CPU-s archive-CPU-s" of one backup of vol
    local s0 a0 r
    s0=$(cpu "$spid"); a0=$(cpu "$apid")
    r=$(timed w "$1" s0 "$2")
    echo "$r $(echo "$(cpu "$spid") - $s0" | bc -l) $(echo "$(cpu "$apid") - $a0" | bc -l)"
}
disk=$(disk_read)
read -r full f_scpu f_acpu <<<"$(step full-backup vol0)"
disk_half=$(disk_read ddev1)
read -r full_half fh_scpu fh_acpu <<<"$(step full-backup vol1)"
# Bytes each process had the disk write and read (/proc/PID/io; reads served by the page cache
# do not count), per byte the application wrote, over the writes → restorable step.
worker=$(pgrep -P "$wdevd" | head -1)
io_pids="$worker ${pids[2]} ${pids[1]} ${pids[0]}" # wdevd's worker, storage, proxy, archive
io_now() { for p in $io_pids; do awk '/^(read|write)_bytes/ { printf "%s ", $2 }' "/proc/$p/io"; done; }
io0=$(io_now)
t0=$(date +%s.%N)
fio --name=w --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=1M --iodepth=8 \
    --size="${write_mb}M" --output=/dev/null
gid=$(w snapshot s0 vol0); t1=$(date +%s.%N)
ship=$(echo "$write_mb / ($t1 - $t0)" | bc -l)
io1=$(io_now)
amp=$(paste <(tr ' ' '\n' <<<"$io0") <(tr ' ' '\n' <<<"$io1") | awk -v b=$((write_mb << 20)) '
    NF == 2 { d[n++] = ($2 - $1) / b }
    END { split("wdevd storage proxy archive", who, " ")
          for (i = 0; i < 4; i++) { printf "%s w %.2f r %.2f, ", who[i+1], d[2*i+1], d[2*i]; w += d[2*i+1]; r += d[2*i] }
          printf "total: written %.2f, read %.2f times", w, r }')
# Write → restorable latency, per snapshot: a 4 KiB write, then `walbc snapshot` (which returns
# once the snapshot is restorable on the archive); LAT_N samples idle, then LAT_N under a
# steady LOAD_MBPS of random 1 MiB writes (fio, rate-limited) shipping at the same time.
lat_n="${LAT_N:-30}"
latencies() { # -> the LAT_N latencies in seconds, one per line, sorted
    for _ in $(seq "$lat_n"); do
        local t0 t1
        t0=$(date +%s.%N)
        dd if=/dev/urandom of="$dev" bs=4k count=1 seek=$((RANDOM % (size_mb * 256))) \
            oflag=direct,dsync status=none
        w snapshot s0 vol0 >/dev/null; t1=$(date +%s.%N)
        echo "$t1 - $t0" | bc -l
        sleep 0.2
    done | sort -n
}
pct() { # percentile (0-100) of sorted numbers on stdin
    awk -v p="$1" '{ v[NR] = $1 } END { i = int((NR - 1) * p / 100 + 0.5) + 1; print v[i] }'
}
lat_idle=$(latencies)
fio --name=load --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=1M \
    --iodepth=4 --rate="${LOAD_MBPS:-50}m" --time_based --runtime=600 --output=/dev/null &
fio=$!
sleep 3
lat_load=$(latencies)
kill "$fio"; wait "$fio" 2>/dev/null || true
w snapshot s0 vol0 >/dev/null
# Hash backup of the unchanged volume, then with 10% of it rewritten (random 1 MiB writes).
disk0=$(disk_read)
read -r hash0 s_cpu0 a_cpu0 <<<"$(step hash-backup vol0)"
# The 10% are written while s0 stands by (not shipped), so the hash backup must send them.
w go-standby s0 vol0
fio --name=h --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=1M --iodepth=8 \
    --size="$((size_mb / 10))M" --output=/dev/null
disk10=$(disk_read)
read -r hash10 s_cpu10 a_cpu10 <<<"$(step hash-backup vol0)"
row() { # what MB/s limit-MB/s
    printf '%-36s %9.1f %9.1f %6.0f%%\n' "$1" "$2" "$3" "$(echo "100*$2/$3" | bc -l)"
}
printf '%-36s %9s %9s %7s\n' what MB/s "disk rd" ratio
row "full backup, ${size_mb} MiB random" "$full" "$disk"
row "full backup, ${size_mb} MiB half-compr." "$full_half" "$disk_half"
printf '%-36s %9.1f\n' "writes → restorable, ${write_mb} MiB" "$ship"
printf '  disk bytes per byte written: %s\n' "$amp"
lat_row() { # what sorted-latencies
    printf '%-36s p50 %5.2f s, p99 %5.2f s, max %5.2f s (%s snapshots)\n' "$1" \
        "$(pct 50 <<<"$2")" "$(pct 99 <<<"$2")" "$(tail -1 <<<"$2")" "$lat_n"
}
lat_row "write → restorable, idle" "$lat_idle"
lat_row "write → restorable, ${LOAD_MBPS:-50} MB/s load" "$lat_load"
row "hash backup, unchanged" "$hash0" "$disk0"
row "hash backup, 10% changed" "$hash10" "$disk10"
cpu_row() { # what storage-CPU-s archive-CPU-s
    printf '  CPU, %s: storage %.2f s (%.0f MB/s per core), archive %.2f s (%.0f MB/s per core)\n' \
        "$1" "$2" "$(echo "$size_mb / $2" | bc -l)" "$3" "$(echo "$size_mb / $3" | bc -l)"
}
cpu_row "full backup, random" "$f_scpu" "$f_acpu"
cpu_row "full backup, half-compr." "$fh_scpu" "$fh_acpu"
cpu_row "hash backup, unchanged" "$s_cpu0" "$a_cpu0"
cpu_row "hash backup, 10% changed" "$s_cpu10" "$a_cpu10"
# The storage's own timing of each hash scan (without walbc's preparation and waiting).
grep -o 'hash backup done.*' s0.log | sed 's/^/  s0: /'
