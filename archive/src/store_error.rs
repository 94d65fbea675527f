//! Errors of the archive's stored files: a volume's files (`volume`), the image work on them
//! (`image`) and their verification (`verify`). Each keeps the path and the underlying error;
//! the command layer turns it into a status once (`From<StoreError> for CmdError`).

use std::path::PathBuf;

use walb_daemon::volfile::FileError;
use walb_daemon::CmdError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O on a file or directory of the volume.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// fsync of a file before it takes its final name.
    #[error("fsync {}: {source}", path.display())]
    Fsync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Copying an image where no reflink could share its extents.
    #[error("copy {}: {source}", path.display())]
    Copy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A small file (state, uuids, base, verify, …) could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A small file that every volume has is missing.
    #[error("{} is missing", path.display())]
    Missing { path: PathBuf },
    /// A small file holds what it must not.
    #[error("{}: {what}", path.display())]
    Bad { path: PathBuf, what: String },
    /// A stored file read only for its metadata (the base state, a wdiff's header) does not
    /// decode: this server's failure, not damage to restorable data.
    #[error("{}: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: walb_core::Error,
    },
    /// A rename would replace a registered diff: a diff has one name only.
    #[error("{} already exists next to {}", to.display(), from.display())]
    Exists { to: PathBuf, from: PathBuf },
    /// Reading a wdiff (the error names the file), applying records, a rule of the metadata.
    #[error(transparent)]
    Core(#[from] walb_core::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// An `Io` on `path`, for `map_err`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// Damage in a stored wdiff is DataLoss, as `walb_core::Error` decides; every other failure of
/// the files is this server's (Internal).
impl From<StoreError> for CmdError {
    fn from(e: StoreError) -> CmdError {
        match e {
            StoreError::Core(e) => e.into(),
            StoreError::File(e) => e.into(),
            e => CmdError::Internal(e.to_string()),
        }
    }
}
