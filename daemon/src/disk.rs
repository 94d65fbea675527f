//! Disk facts a daemon checks before it writes: free space of a file system, and what a file
//! takes on disk.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes available to this process in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs reads the NUL-terminated path and writes only into `st`, a plain C
    // struct that all-zero bytes initialise validly.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid, writable statvfs for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Bytes a file takes on disk (allocated blocks: a sparse image counts what it holds).
pub fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_of_a_real_dir_and_an_error_for_a_missing_one() {
        let d = tempfile::tempdir().unwrap();
        assert!(free_bytes(d.path()).unwrap() > 0);
        assert!(free_bytes(&d.path().join("missing")).is_err());
        let f = d.path().join("f");
        std::fs::write(&f, vec![1u8; 8192]).unwrap();
        assert!(disk_bytes(&f) >= 8192);
    }
}
