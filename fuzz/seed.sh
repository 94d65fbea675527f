#!/usr/bin/env bash
# Writes valid seed inputs for every target into fuzz/corpus/ (gitignored) with walb-tool.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p walb-tool --bin walb-tool
tool=target/debug/walb-tool
c=fuzz/corpus
mkdir -p $c/wlog $c/wdiff_sorted $c/wdiff_indexed $c/superblock $c/logpack_header $c/meta
for pbs in 512 4096; do
    for seed in 1 2 3; do
        w=$c/wlog/seed-$pbs-$seed.wlog
        $tool wlog-gen --size 1M --total 32K --pbs $pbs --seed $seed --max-io 8K -o $w
        $tool wlog-to-wdiff --cmpr snappy $w -o $c/wdiff_sorted/seed-$pbs-$seed.wdiff
        $tool wlog-to-wdiff --cmpr none $w -o $c/wdiff_sorted/raw-$pbs-$seed.wdiff
        $tool wlog-to-wdiff --indexed --cmpr lz4 $w -o $c/wdiff_indexed/seed-$pbs-$seed.wdiff
        # A logpack header with the fuzz target's 13-byte prefix (salt, lsid, pbs flag).
        python3 - "$w" "$pbs" "$c/logpack_header/seed-$pbs-$seed" <<'PY'
import struct, sys
w, pbs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
b = open(w, 'rb').read()
salt = struct.unpack_from('<I', b, 12)[0]
hdr = b[4096:4096 + pbs]
lsid = struct.unpack_from('<Q', hdr, 8)[0]
open(out, 'wb').write(struct.pack('<IQB', salt, lsid, 0 if pbs == 512 else 1) + hdr)
PY
    done
done
printf '20181031123456-M--10-12.wdiff' > $c/meta/name-clean
printf '20181031123456----5-7-9-9.wdiff' > $c/meta/name-dirty
echo "seeds written under $c"
