#!/usr/bin/env bash
# The offline pipeline on an embedded default: generate a walb log for a 64 MiB volume, look at
# it, convert it to wdiffs (sorted and indexed, compressed), merge them, and rebuild the image
# four ways (wlog redo, wdiff redo, merged wdiff redo, virtual full image). All four must hash
# the same. Usage: scripts/demo.sh [DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release -q -p walb-tool --bin walb-tool --manifest-path "$root/Cargo.toml"
tool="$root/target/release/walb-tool"
dir="${1:-$(mktemp -d /tmp/walb-demo.XXXXXX)}"
mkdir -p "$dir"
cd "$dir"
say() { printf '\n$ %s\n' "$*"; "$@"; }

say "$tool" wlog-gen --size 64M --total 16M --pbs 4096 --seed 1 --max-io 256K -o a.wlog
say "$tool" wlog-gen --size 64M --total 16M --pbs 4096 --seed 2 --max-io 256K \
    --lsid "$("$tool" wlog-show --stat a.wlog | sed -n 's/.*lsid [0-9]*\.\.\([0-9]*\) .*/\1/p')" -o b.wlog
say "$tool" wlog-show --stat a.wlog
say "$tool" wlog-to-wdiff --cmpr zstd a.wlog -o a.wdiff
say "$tool" wlog-to-wdiff --indexed --cmpr snappy b.wlog -o b.wdiff
say "$tool" wdiff-show --stat --verify a.wdiff b.wdiff
say "$tool" wdiff-merge --cmpr lz4 a.wdiff b.wdiff -o ab.wdiff

for f in base redo-wlog redo-wdiff redo-merged; do truncate -s 64M "$f.img"; done
say "$tool" wlog-redo --discard zero a.wlog redo-wlog.img
say "$tool" wlog-redo --discard zero b.wlog redo-wlog.img
say "$tool" wdiff-redo --discard zero a.wdiff redo-wdiff.img
say "$tool" wdiff-redo --discard zero b.wdiff redo-wdiff.img
say "$tool" wdiff-redo --discard zero ab.wdiff redo-merged.img
say "$tool" virt-full-cat base.img a.wdiff b.wdiff -o virt.img

echo
declare -A digest
for f in redo-wlog redo-wdiff redo-merged virt; do
    digest[$f]=$("$tool" bhash "$f.img" | cut -d' ' -f1)
    printf '%-12s %s\n' "$f" "${digest[$f]}"
done
for f in redo-wdiff redo-merged virt; do
    if [ "${digest[$f]}" != "${digest[redo-wlog]}" ]; then
        echo "MISMATCH: $f differs from redo-wlog" >&2
        exit 1
    fi
done
echo
echo "all four images are identical; files are in $dir"
