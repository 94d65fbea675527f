//! The device: lsid bookkeeping, the write path, redo and the admin operations.

mod lsids;
mod redo;
mod wdev;

pub use lsids::Lsids;
pub use wdev::{Io, Wdev, WdevError};
