//! wdiff: the in-memory record, codecs, the sorted and indexed file formats, overlap
//! elimination and merging.

pub mod cmpr;
pub mod rec;

pub use cmpr::{Cmpr, Codec};
pub use rec::{Body, DiffRec};
