//! walb-repo: the deduplicated repository of a walb archive on object storage (S3-compatible
//! or a local path), in the layout of docs/repository.md.
//!
//! It owns the repository's objects: content-addressed image chunks, one index per stored
//! image, the volumes' wdiffs, the per-volume lease and the upload markers; their upload
//! (deduplicated, parallel, rate-limited), restore without any daemon, verify and gc.
//!
//! It must not touch an archive's data directory (the archive hands it files to read) nor
//! talk to a daemon: it speaks to the object store alone.

pub mod error;
pub mod frame;
pub mod gc;
pub mod index;
pub mod layout;
pub mod lease;
pub mod list;
pub mod prune;
pub mod rate;
pub mod restore;
pub mod store;
pub mod upload;
pub mod verify;
pub mod volinfo;

pub use error::{Error, Result};
pub use store::Repo;
