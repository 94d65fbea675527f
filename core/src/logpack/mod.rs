//! Logpacks: the header block, its records, a pack with its data, and pack building.

pub mod builder;
pub mod header;
pub mod pack;
pub mod record;

pub use builder::PackBuilder;
pub use header::LogPackHeader;
pub use pack::LogPack;
pub use record::{LogRecord, RecKind};
