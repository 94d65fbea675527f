//! Small per-volume files (state, uuids, metadata), each written atomically: temp file, fsync,
//! rename, directory fsync (walb_core::atomic). Failures are `FileError`s naming the file;
//! the command layer turns them into statuses (`crate::error`).

use std::path::{Path, PathBuf};

/// A failure to read, write, remove or list one of the small files: what was done, on which
/// path, and the underlying error.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An atomic write or a directory fsync (walb_core::atomic).
    #[error("{op} {}: {source}", path.display())]
    Atomic {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: walb_core::Error,
    },
}

pub type FileResult<T> = Result<T, FileError>;

/// A `FileError::Io` of `op` on `path`, for `map_err`.
pub fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Io { op, path, source }
}

fn atomic(op: &'static str, path: &Path) -> impl FnOnce(walb_core::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Atomic { op, path, source }
}

/// A name that cannot be a volume's (`check_vol_name`).
#[derive(Debug, thiserror::Error)]
#[error("volume name {0:?}: 1 to 64 of A-Z a-z 0-9 _ . -, not starting with '.'")]
pub struct BadName(pub String);

/// Writes `text` to `path` atomically.
pub fn write(path: &Path, text: &str) -> FileResult<()> {
    write_bytes(path, text.as_bytes())
}

/// Reads `path` as text, trimmed; `None` if it does not exist.
pub fn read(path: &Path) -> FileResult<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Removes `path` durably (its directory synced); a missing file is not an error.
pub fn remove(path: &Path) -> FileResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => walb_core::atomic::sync_dir(path.parent().unwrap_or(Path::new(".")))
            .map_err(atomic("sync", path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

/// Writes binary `data` to `path` atomically.
pub fn write_bytes(path: &Path, data: &[u8]) -> FileResult<()> {
    walb_core::atomic::write_atomic(path, data).map_err(atomic("write", path))
}

/// Reads binary `path`; `None` if it does not exist.
pub fn read_bytes(path: &Path) -> FileResult<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Names of the volume directories under `dir`, sorted.
pub fn volumes(dir: &Path) -> FileResult<Vec<String>> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(io("list", dir)(e)),
    };
    for e in rd {
        let e = e.map_err(io("list", dir))?;
        if e.file_type().map_err(io("list", dir))?.is_dir() {
            if let Some(n) = e.file_name().to_str() {
                v.push(n.to_string());
            }
        }
    }
    v.sort();
    Ok(v)
}

/// Checks a volume name: 1–64 bytes of `[A-Za-z0-9_.-]`, not starting with '.'.
pub fn check_vol_name(name: &str) -> Result<(), BadName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BadName(name.to_string()))
    }
}
