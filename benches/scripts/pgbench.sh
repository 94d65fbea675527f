#!/usr/bin/env bash
# PostgreSQL pgbench TPS on ext4 on a plain loop device vs. on the wdev loop device with the
# pipeline shipping every write (`walbc quickstart`: wdevd + storage + proxy + archive on
# localhost), both backed by files on the same disk. Runs alternate (plain, wdev, plain, …);
# prints every run, the medians and their ratio. Needs root, /dev/fuse and PostgreSQL 15
# (scripts/setup.sh installs it). Each PostgreSQL runs as the postgres user on its own socket
# and port in the bench's directory; no system-wide instance is used.
# Usage: pgbench.sh [RUNS] [SECS] [SCALE] [CLIENTS]
# WALB_BIN_DIR=DIR takes the walb binaries from DIR instead of a release build (a smoke run).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
runs="${1:-5}" secs="${2:-30}" scale="${3:-20}" clients="${4:-4}"
"$root/scripts/setup.sh" >/dev/null
if [ -z "${WALB_BIN_DIR:-}" ]; then
    cargo build --release -q --manifest-path "$root/Cargo.toml" \
        -p walb-wdev -p walb-storage -p walb-proxy -p walb-archive -p walb-controller --bins
fi
bin="${WALB_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}"
pg=/usr/lib/postgresql/15/bin
dir="$(mktemp -d /var/tmp/walb-pgbench.XXXXXX)"
chmod 755 "$dir"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
cleanup() {
    for k in plain wdev; do
        [ -f "$dir/m_$k/pg/postmaster.pid" ] && as_pg "$pg/pg_ctl" -D "$dir/m_$k/pg" stop -m immediate >/dev/null 2>&1
        umount "$dir/m_$k" 2>/dev/null || true
    done
    [ -n "${plain_loop:-}" ] && losetup -d "$plain_loop" 2>/dev/null || true
    "$bin/walbc" quickstart --dir "$dir/qs" --stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
"$bin/walbc" quickstart --dir "$dir/qs" --size 1G --log-size 512M >qs.out
wdev_loop=$(grep -o '/dev/loop[0-9]*' qs.out | head -1)
truncate -s 1G plain
plain_loop=$(losetup --find --show --direct-io=on plain)
declare -A port
for k in plain wdev; do
    dev="${k}_loop"
    mkfs.ext4 -q -F "${!dev}"
    mkdir -p "m_$k" "s_$k"
    mount "${!dev}" "m_$k"
    mkdir "m_$k/pg"
    chown postgres:postgres "m_$k/pg" "s_$k"
    as_pg "$pg/initdb" -U postgres --auth=trust -D "m_$k/pg" >/dev/null
    port[$k]=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_pg "$pg/pg_ctl" -D "m_$k/pg" -l "s_$k/log" -w start \
        -o "-p ${port[$k]} -k $dir/s_$k -c listen_addresses= -c shared_buffers=128MB" >/dev/null
    "$pg/pgbench" -h "$dir/s_$k" -p "${port[$k]}" -U postgres -i -s "$scale" -q postgres 2>/dev/null
done
tps() { # kind -> TPS of one run
    "$pg/pgbench" -h "$dir/s_$1" -p "${port[$1]}" -U postgres -n -c "$clients" -j 2 -T "$secs" \
        postgres 2>/dev/null | awk '/^tps/ { printf "%.1f", $3 }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-4s %12s %12s\n' run "plain TPS" "wdev TPS"
: >plain.tps
: >wdev.tps
for i in $(seq "$runs"); do
    a=$(tps plain) b=$(tps wdev)
    echo "$a" >>plain.tps
    echo "$b" >>wdev.tps
    printf '%-4s %12s %12s\n' "$i" "$a" "$b"
done
mp=$(median <plain.tps) mw=$(median <wdev.tps)
printf '%-4s %12.1f %12.1f   wdev/plain %.0f%%\n' median "$mp" "$mw" "$(echo "100*$mw/$mp" | bc -l)"
"$bin/walbc" --layout qs/walb-layout.toml status vol0 --json | grep -E '"lag_gids"|"newest_restorable_age_s"' | sed 's/^ */  /'
