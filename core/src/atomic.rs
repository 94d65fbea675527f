//! Crash-safe file replacement: write a temporary file in the same directory, fsync it, rename
//! it over the target, fsync the directory. A crash leaves the old file or the new one.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    w: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            tmp,
            w: Some(BufWriter::with_capacity(1 << 20, f)),
        })
    }

    /// Makes the file durable under its final name.
    pub fn commit(mut self) -> Result<()> {
        let w = self.w.take().expect("not committed twice");
        let f = w
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx(|| format!("write {}", self.tmp.display()))?;
        f.sync_all()
            .ctx(|| format!("fsync {}", self.tmp.display()))?;
        fs::rename(&self.tmp, &self.target)
            .ctx(|| format!("rename to {}", self.target.display()))?;
        sync_dir(&parent_dir(&self.target))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.as_mut().expect("open").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.as_mut().expect("open").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed: nothing partial may survive.
        if self.w.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so a rename or create in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("fsync directory {}", dir.display()))
}

/// Writes `data` to `target` atomically.
pub fn write_atomic(target: &Path, data: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(data)
        .ctx(|| format!("write {}", target.display()))?;
    f.commit()
}
