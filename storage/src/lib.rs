//! walb-storage: the storage daemon. Per volume: state, done record and snapshot queue; wlog
//! extraction from the log device and transfer to the first proxy that accepts; full backup to
//! the primary archive; failback (a promoted image's differing bulks written onto the device).
//! It reads the log device and the device file wdevd serves, and talks to wdevd only through
//! its control socket; it must not reach into another daemon's files.

#![forbid(unsafe_code)]

pub mod commands;
pub mod devhash;
pub mod failback;
pub mod full;
pub mod hash;
pub mod metrics;
pub mod rate;
pub mod record;
pub mod scan;
pub mod ship;
pub mod storage;
pub mod vol;
pub mod wdevd;
