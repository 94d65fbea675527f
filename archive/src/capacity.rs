//! The archive's free-space floor and its bytes per volume (docs/archive.md, "Capacity"): a
//! data flow is refused with `archive-full` before anything is written when what it may bring
//! would leave less than the floor free, so a full disk never cuts a transfer half-way and
//! there is room left for apply, merge and restore.

pub use walb_daemon::disk::{disk_bytes, free_bytes};

/// The rejection word of a flow refused for space (ours; walb has none).
pub const ARCHIVE_FULL: &str = "archive-full";
