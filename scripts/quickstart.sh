#!/usr/bin/env bash
# The main job on an embedded default: installs what is missing (scripts/setup.sh), builds
# release binaries, then `walbc quickstart`: wdevd with one wdev on a loop device, a storage, a
# proxy and an archive on localhost in DIR (default /var/tmp/walb-quickstart); writes, full
# backup, snapshot, restore, hash check; leaves it running and prints what to try next.
# Arguments go to `walbc quickstart` (--dir DIR, --size 256M, --log-size 64M, --stop).
# Needs root (loop device, FUSE). `scripts/quickstart.sh --stop` ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q -p walb-wdev -p walb-storage -p walb-proxy -p walb-archive -p walb-controller --bins
exec target/release/walbc quickstart "$@"
