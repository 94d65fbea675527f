#!/usr/bin/env bash
# Repository throughput against a real S3 server on loopback (moto's server, which
# scripts/setup.sh installs), release build:
#  1. image upload MB/s: `walbc repo put-image` of SIZE_MB of random data (every chunk new:
#     hashed, zstd tried, HEAD, PUT), next to a plain copy of the same bytes to the same server
#     (boto3's upload_file: multipart, 10 threads) and on the local disk (cp + sync); then the
#     same image again (every chunk deduplicated);
#  2. repository restore MB/s: `walbc repo restore` into a file (chunks fetched in parallel,
#     checked, written in order), next to a plain download of the same bytes (download_file).
# Usage: repo.sh [SIZE_MB]   (WALB_BIN_DIR=DIR: use the walbc there instead of a release build)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
size_mb="${1:-256}"
# WALB_BIN_DIR: binaries built elsewhere (no build here).
if [ -n "${WALB_BIN_DIR:-}" ]; then
    bin="$WALB_BIN_DIR"
else
    cargo build --release -q --manifest-path "$root/Cargo.toml" -p walb-controller --bins
    bin="${CARGO_TARGET_DIR:-$root/target}/release"
fi
dir="$(mktemp -d /var/tmp/walb-repo-bench.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
moto_server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
moto=$!
cleanup() {
    kill "$moto" 2>/dev/null || true
    wait "$moto" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break
    sleep 0.2
done
head -c "${size_mb}M" /dev/urandom >"$dir/image"
python3 - "$dir/image" <<'PY'
import sys, time, boto3
from boto3.s3.transfer import TransferConfig
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench")
cfg = TransferConfig(max_concurrency=10)
t = time.time()
s3.upload_file(sys.argv[1], "bench", "plain/image", Config=cfg)
up = time.time() - t
t = time.time()
s3.download_file("bench", "plain/image", sys.argv[1] + ".plain", Config=cfg)
down = time.time() - t
import os
mb = os.path.getsize(sys.argv[1]) / 1e6
print(f"plain copy (boto3, 10 threads): upload {mb / up:.1f} MB/s, download {mb / down:.1f} MB/s")
PY
t0=$(date +%s.%N)
cp "$dir/image" "$dir/image.cp" && sync "$dir/image.cp"
t1=$(date +%s.%N)
echo "plain file copy (cp + sync): $(echo "$size_mb * 1.048576 / ($t1 - $t0)" | bc -l | xargs printf '%.1f') MB/s"
rm -f "$dir/image.cp"
"$bin/walbc" repo put-image s3://bench/walb vol0 "$dir/image" --gid 1 2>&1 | tail -1
echo "again as another snapshot (every chunk present: hash + HEAD only):"
"$bin/walbc" repo put-image s3://bench/walb vol0 "$dir/image" --gid 2 2>&1 | tail -1
"$bin/walbc" repo restore s3://bench/walb vol0 1 -o "$dir/restored" 2>&1 | tail -1
cmp "$dir/image" "$dir/restored"
echo "restored image equals the uploaded one"
