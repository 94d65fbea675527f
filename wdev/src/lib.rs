//! walb-wdev: the user-space walb device. `Wdev` is the write path as walb's driver runs it
//! (docs/formats.md §8): every write is logged to the ring before it is acknowledged, data reaches
//! the data device only once its log is permanent, reads see pending data, redo after a crash. The
//! FUSE front end, `wdevd` and `wdevc` build on it. It must not know about backups, servers or
//! gids.

pub mod dev;

pub use dev::{Io, Lsids, Wdev, WdevError};
pub mod daemon;
