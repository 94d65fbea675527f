//! `wdevd`: serves walb devices as files of a FUSE mount (a loop device on each makes a block
//! device) and answers `wdevc` on a unix socket.

pub mod ctl;
pub mod fs;
pub mod loopdev;
pub mod registry;
