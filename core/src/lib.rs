//! walb-core: walb's on-disk formats (ldev superblock, logpacks, wlog files, sorted and indexed
//! wdiffs, wdiff file names), the checksum, compression codecs, the MetaSnap/MetaDiff/MetaState
//! algebra, wlog→wdiff conversion, overlap-free merge, apply/redo, the virtual full image and
//! BLAKE3 bulk hashing. It owns algorithms and byte layouts; it must not talk to the network,
//! know about servers, or decide policy (retries, scheduling, where files live).

pub mod bytes_le;
pub mod checksum;
pub mod error;
pub mod types;
pub mod wdiff;

pub use error::{Error, Result};
pub use types::{Gid, Lb, Lsid, Pbs, Uuid, LBS};
pub mod apply;
pub mod atomic;
pub mod bhash;
pub mod blockio;
pub mod convert;
pub mod ldev;
pub mod logging;
pub mod logpack;
pub mod malloc;
pub mod meta;
pub mod size;
pub mod source;
pub mod virt;
pub mod wlog;
