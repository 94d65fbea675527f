//! wdiff: the in-memory record, codecs, the sorted and indexed file formats, overlap
//! elimination and merging.

pub mod cmpr;
pub mod hashdiff;
pub mod header;
pub mod indexed;
pub mod memory;
pub mod merge;
pub mod reader;
pub mod rec;
pub mod sorted;

pub use cmpr::{Cmpr, Codec};
pub use header::{FileHeader, Kind};
pub use indexed::{IndexedReader, IndexedWriter};
pub use memory::DiffMemory;
pub use merge::{Merger, RecStream};
pub use reader::WdiffReader;
pub use rec::{Body, DiffRec};
pub use sorted::{SortedReader, SortedWriter};
