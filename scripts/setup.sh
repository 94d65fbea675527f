#!/usr/bin/env bash
# Installs the system packages walb-rs needs on Debian (FUSE, ext4 tools for the device tests).
# Safe to run again: it installs only what is missing.
set -euo pipefail
need=()
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v losetup >/dev/null 2>&1 || need+=(mount)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# .ci/run keeps unused dependencies out with it.
command -v cargo-machete >/dev/null 2>&1 || cargo install cargo-machete --locked --quiet
