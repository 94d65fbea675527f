#!/usr/bin/env bash
# Runs every test: builds the binaries the multi-process tests start, then the whole workspace's
# tests. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace "$@"
