//! wlog files: the 4096-byte header, reader, writer and a generator of valid logs.

pub mod gen;
pub mod header;
pub mod reader;
pub mod writer;

pub use gen::{GenConfig, Generator};
pub use header::WlogHeader;
pub use reader::WlogReader;
pub use writer::WlogWriter;
