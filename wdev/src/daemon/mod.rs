//! `wdevd`: serves walb devices as files of a FUSE mount (a loop device on each makes a block
//! device) and answers `wdevc` on a unix socket. A supervisor holds the FUSE connection and
//! restarts the serving worker (docs/wdev.md, "Restarts").

pub mod ctl;
pub mod fs;
pub mod fuse;
pub mod fuse_abi;
pub mod handover;
pub mod registry;
