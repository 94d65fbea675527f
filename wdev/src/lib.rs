//! walb-wdev: the user-space walb device (`wdevd`, `wdevc`): FUSE front end, log-then-data write
//! path, lsids, overflow, freeze/melt, reset-wal, resize, and the unix control socket.
//! It must not know about backups, servers or gids.
