#!/usr/bin/env bash
# Installs the system packages walb-rs needs on Debian (FUSE, ext4 tools for the device tests;
# PostgreSQL 15, MariaDB and fio for the database tests and benches, tests/tests/db.rs; moto's
# S3 server for the repository tests, tests/tests/repo.rs).
# Safe to run again: it installs only what is missing.
set -euo pipefail
need=()
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v losetup >/dev/null 2>&1 || need+=(mount)
command -v fsfreeze >/dev/null 2>&1 || need+=(util-linux)
command -v fio >/dev/null 2>&1 || need+=(fio)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql postgresql-contrib)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    # The tests start database instances of their own: the packages' system-wide services
    # are left as the package installs them (policy-rc.d may keep them stopped).
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# The repository tests (tests/tests/repo.rs) run a real S3 server process of their own: moto's
# server, pinned.
MOTO_VERSION=5.2.1
if ! command -v moto_server >/dev/null 2>&1 || \
   [ "$(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ]; then
    command -v pip3 >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq python3-pip; }
    pip3 install --quiet "moto[server]==$MOTO_VERSION" || \
        pip3 install --quiet --break-system-packages "moto[server]==$MOTO_VERSION"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# .ci/run keeps unused dependencies out with it.
command -v cargo-machete >/dev/null 2>&1 || cargo install cargo-machete --locked --quiet
