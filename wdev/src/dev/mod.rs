//! The device: lsid bookkeeping, the write path, redo and the admin operations.

mod group;
mod logsync;
mod lsids;
mod redo;
mod wdev;
mod writeback;

pub use group::{Done, GroupCommit, Outcome};
pub use logsync::LogSync;
pub use lsids::Lsids;
pub use wdev::{sync_data_device, Io, SuperDue, Wdev, WdevError};
