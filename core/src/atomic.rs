//! Crash-safe file replacement: write a temporary file in the same directory, fsync it, rename
//! it over the target, fsync the directory. A crash leaves the old file or the new one.
//!
//! `Output` is where a user-given output path leads: a regular file (or a path that does not
//! exist yet) is replaced atomically, while an existing device, FIFO or socket is opened and
//! written in place, since renaming a file over `/dev/null` or `/dev/sdb` would replace the
//! node itself.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// A file under a temporary name, removed on drop unless it was given its final name
/// (`persist`). The one temporary-file type of the project: `AtomicFile` writes through one.
pub struct TempFile {
    pub path: PathBuf,
    pub file: File,
    kept: bool,
}

impl TempFile {
    /// Creates (or truncates) `path`, open for reading and writing.
    pub fn create(path: PathBuf) -> Result<TempFile> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .ctx(|| format!("create {}", path.display()))?;
        Ok(TempFile {
            path,
            file,
            kept: false,
        })
    }

    /// fsync, rename to `to`, fsync the directory of `to`.
    pub fn persist(self, to: &Path) -> Result<()> {
        self.sync()?;
        self.rename(to)
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .ctx(|| format!("fsync {}", self.path.display()))
    }

    /// Renames the (already synced) file to `to` and fsyncs the directory.
    fn rename(mut self, to: &Path) -> Result<()> {
        fs::rename(&self.path, to).ctx(|| format!("rename to {}", to.display()))?;
        self.kept = true;
        sync_dir(&parent_dir(to))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A file written whole under a temporary name next to `target`, then made durable and given
/// the target's name (`commit`); dropped before that, it leaves nothing behind.
pub struct AtomicFile {
    target: PathBuf,
    tmp: TempFile,
    w: BufWriter<File>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = TempFile::create(dir.join(format!(".{name}.tmp.{}", std::process::id())))?;
        let f = tmp
            .file
            .try_clone()
            .ctx(|| format!("open {}", tmp.path.display()))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            tmp,
            w: BufWriter::with_capacity(1 << 20, f),
        })
    }

    /// Gives the file another final name in the same directory (for a writer that learns the
    /// name only at the end).
    pub fn rename_target(&mut self, name: &str) {
        self.target = parent_dir(&self.target).join(name);
    }

    /// Makes the file durable under its final name.
    pub fn commit(self) -> Result<()> {
        self.commit_with(|_| Ok(()))
    }

    /// Like `commit`, running `before_rename` on the temporary file once it is durable and
    /// before it takes its name (e.g. to hard-link it elsewhere first). If `before_rename`
    /// fails, the temporary file is removed and its error returned.
    pub fn commit_with<E: From<crate::Error>>(
        mut self,
        before_rename: impl FnOnce(&Path) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.w
            .flush()
            .ctx(|| format!("write {}", self.tmp.path.display()))?;
        self.tmp.sync()?;
        before_rename(&self.tmp.path)?;
        Ok(self.tmp.rename(&self.target)?)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
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

/// A user-given output: a file replaced atomically, a special file written in place, or stdout.
/// Nothing counts as written before `commit`.
pub enum Output {
    /// A regular file or a new path: temp file, fsync, rename, directory fsync.
    Replace(AtomicFile),
    /// An existing block device, character device, FIFO or socket, written from its start;
    /// `commit` flushes and, for a block device, fsyncs.
    InPlace {
        path: PathBuf,
        block: bool,
        w: BufWriter<File>,
    },
    Stdout(BufWriter<io::Stdout>),
}

impl Output {
    /// Picks by what `path` is now (a link is followed): replaced when it is a regular file or
    /// does not exist, written in place otherwise.
    pub fn create(path: &Path) -> Result<Output> {
        let ty = match fs::metadata(path) {
            Ok(m) => m.file_type(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Output::Replace(AtomicFile::create(path)?))
            }
            Err(e) => return Err(crate::Error::io(format!("stat {}", path.display()), e)),
        };
        if ty.is_file() {
            return Ok(Output::Replace(AtomicFile::create(path)?));
        }
        if ty.is_dir() {
            return Err(crate::Error::Invalid(format!(
                "{}: is a directory, not an output file",
                path.display()
            )));
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .ctx(|| format!("open {}", path.display()))?;
        Ok(Output::InPlace {
            path: path.to_path_buf(),
            block: ty.is_block_device(),
            w: BufWriter::with_capacity(1 << 20, f),
        })
    }

    pub fn stdout() -> Output {
        Output::Stdout(BufWriter::with_capacity(1 << 20, io::stdout()))
    }

    /// Makes the output durable where that means anything (files, block devices).
    pub fn commit(self) -> Result<()> {
        match self {
            Output::Replace(f) => f.commit(),
            Output::InPlace { path, block, w } => {
                let f = w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .ctx(|| format!("write {}", path.display()))?;
                if block {
                    f.sync_all().ctx(|| format!("fsync {}", path.display()))?;
                }
                Ok(())
            }
            Output::Stdout(mut w) => w.flush().ctx(|| "write stdout".into()),
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Replace(f) => f,
            Output::InPlace { w, .. } => w,
            Output::Stdout(w) => w,
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }
}

/// Writes `data` to `target` atomically.
pub fn write_atomic(target: &Path, data: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(data)
        .ctx(|| format!("write {}", target.display()))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;

    fn write_out(path: &Path, data: &[u8]) {
        let mut o = Output::create(path).unwrap();
        o.write_all(data).unwrap();
        o.commit().unwrap();
    }

    #[test]
    fn a_regular_file_is_replaced_and_a_new_path_created() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        write_out(&p, b"first, longer");
        assert!(matches!(Output::create(&p).unwrap(), Output::Replace(_)));
        write_out(&p, b"second");
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn special_files_are_written_in_place_and_stay_what_they_are() {
        let null = Path::new("/dev/null");
        write_out(null, b"discarded");
        assert!(fs::metadata(null).unwrap().file_type().is_char_device());

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                File::open(fifo).unwrap().read_to_end(&mut v).unwrap();
                v
            })
        };
        let data = vec![7u8; 3 << 20];
        write_out(&fifo, &data);
        assert_eq!(reader.join().unwrap(), data);
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );

        assert!(
            Output::create(dir.path()).is_err(),
            "a directory is no output"
        );
    }
}
