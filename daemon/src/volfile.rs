//! Small per-volume files (state, uuids, metadata), each written atomically: temp file, fsync,
//! rename, directory fsync (walb_core::atomic).

use std::path::Path;

use crate::error::{CmdError, CmdResult};

/// Writes `text` to `path` atomically.
pub fn write(path: &Path, text: &str) -> CmdResult<()> {
    walb_core::atomic::write_atomic(path, text.as_bytes())
        .map_err(|e| CmdError::Internal(format!("write {}: {e}", path.display())))
}

/// Reads `path` as text, trimmed; `None` if it does not exist.
pub fn read(path: &Path) -> CmdResult<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CmdError::Internal(format!("read {}: {e}", path.display()))),
    }
}

/// Removes `path` durably (its directory synced); a missing file is not an error.
pub fn remove(path: &Path) -> CmdResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => walb_core::atomic::sync_dir(path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| CmdError::Internal(format!("sync {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CmdError::Internal(format!(
            "remove {}: {e}",
            path.display()
        ))),
    }
}

/// Writes binary `data` to `path` atomically.
pub fn write_bytes(path: &Path, data: &[u8]) -> CmdResult<()> {
    walb_core::atomic::write_atomic(path, data)
        .map_err(|e| CmdError::Internal(format!("write {}: {e}", path.display())))
}

/// Reads binary `path`; `None` if it does not exist.
pub fn read_bytes(path: &Path) -> CmdResult<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CmdError::Internal(format!("read {}: {e}", path.display()))),
    }
}

/// Names of the volume directories under `dir`, sorted.
pub fn volumes(dir: &Path) -> CmdResult<Vec<String>> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(CmdError::Internal(format!("list {}: {e}", dir.display()))),
    };
    for e in rd {
        let e = e?;
        if e.file_type()?.is_dir() {
            if let Some(n) = e.file_name().to_str() {
                v.push(n.to_string());
            }
        }
    }
    v.sort();
    Ok(v)
}

/// Checks a volume name: 1–64 bytes of `[A-Za-z0-9_.-]`, not starting with '.'.
pub fn check_vol_name(name: &str) -> CmdResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CmdError::Invalid(format!(
            "volume name {name:?}: 1 to 64 of A-Z a-z 0-9 _ . -, not starting with '.'"
        )))
    }
}
