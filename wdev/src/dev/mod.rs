//! The device: lsid bookkeeping, the write path, redo and the admin operations.

mod group;
mod lsids;
mod redo;
mod wdev;
mod writeback;

pub use group::{GroupCommit, Outcome};
pub use lsids::Lsids;
pub use wdev::{Io, Wdev, WdevError};
