#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/setup.sh: FUSE/ext4 tools, PostgreSQL,
# MariaDB, fio, the S3 server), builds the binaries the multi-process tests start, then the whole
# workspace's tests. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
cargo test --workspace "$@"
