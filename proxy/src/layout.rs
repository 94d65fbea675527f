//! A volume's files under `D/vols/<vol>/`:
//! - `<diff name>`: each received diff once, an indexed wdiff named by its MetaDiff;
//! - `sendto/<archive>/<diff name>`: hard links to it, one per archive still to receive it;
//! - `<archive>.archive`: archive-info; `size`: volume size in LB; `started`: the volume was
//!   Started (so a restart resumes it); `storage`: with TLS, the id of the storage whose
//!   wlogs the volume takes since its last `start` (docs/security.md);
//! - `.incoming.tmp.*` (any name starting with a dot): a diff being received (removed on
//!   failure and at boot).
//!
//! A diff is linked into every `sendto/` before it gets its main name, so a main file means
//! "registered everywhere"; once the last link is gone the main file is removed.
//!
//! Failures are `LayoutError`s naming the file; the commands see them as `CmdError`s.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use walb_core::atomic::{sync_dir, AtomicFile};
use walb_core::meta::{parse_name, MetaDiff};
use walb_daemon::volfile::{self, FileError};
use walb_daemon::CmdError;

use crate::archive_info::ArchiveInfo;

const ARCHIVE_EXT: &str = ".archive";

/// A failure of a volume's files: what was done, on which path, and why.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// An operation on one of its files or directories.
    #[error(transparent)]
    File(#[from] FileError),
    /// A directory fsync, or the received diff's file (core's `atomic`).
    #[error(transparent)]
    Sync(#[from] walb_core::Error),
    /// A small file holds what it must not (`what`: which file).
    #[error("{what} {}: {detail}", path.display())]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
}

pub type LayoutResult<T> = Result<T, LayoutError>;

/// Every failure of the proxy's files is its own (Internal).
impl From<LayoutError> for CmdError {
    fn from(e: LayoutError) -> CmdError {
        match e {
            LayoutError::Sync(e) => e.into(),
            e => CmdError::Internal(e.to_string()),
        }
    }
}

/// A `FileError::Io` of `op` on `path`, for `map_err`.
fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError {
    let f = volfile::io(op, path);
    move |source| LayoutError::File(f(source))
}

/// A diff waiting in a directory: its file and metadata (data_size = file size).
#[derive(Clone, Debug)]
pub struct HeldDiff {
    pub path: PathBuf,
    pub name: String,
    pub meta: MetaDiff,
}

#[derive(Clone, Debug)]
pub struct VolDir {
    pub dir: PathBuf,
}

impl VolDir {
    pub fn new(vols: &Path, vol: &str) -> VolDir {
        VolDir {
            dir: vols.join(vol),
        }
    }

    fn info_path(&self, archive: &str) -> PathBuf {
        self.dir.join(format!("{archive}{ARCHIVE_EXT}"))
    }

    pub fn sendto(&self, archive: &str) -> PathBuf {
        self.dir.join("sendto").join(archive)
    }

    /// Creates the directory tree for a new archive (and the volume).
    pub fn add_archive(&self, name: &str, info: &ArchiveInfo) -> LayoutResult<()> {
        let sendto = self.sendto(name);
        fs::create_dir_all(&sendto).map_err(io("create", &sendto))?;
        for d in [self.dir.join("sendto"), self.dir.clone()] {
            sync_dir(&d)?;
        }
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        self.write_info(name, info)
    }

    pub fn write_info(&self, name: &str, info: &ArchiveInfo) -> LayoutResult<()> {
        Ok(volfile::write(
            &self.info_path(name),
            &format!("{}\n", info.line()),
        )?)
    }

    /// The archives and their info, by name.
    pub fn archives(&self) -> LayoutResult<Vec<(String, ArchiveInfo)>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("list", &self.dir)(e)),
        };
        for e in rd {
            let e = e.map_err(io("list", &self.dir))?;
            let fname = e.file_name();
            let Some(name) = fname.to_str().and_then(|n| n.strip_suffix(ARCHIVE_EXT)) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let text = volfile::read(&e.path())?.unwrap_or_default();
            let info = ArchiveInfo::parse_line(&text).map_err(|err| LayoutError::Corrupt {
                what: "corrupt archive-info",
                path: e.path(),
                detail: err.to_string(),
            })?;
            out.push((name.to_string(), info));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes an archive: its info and its queue (diffs no other archive needs go too).
    pub fn delete_archive(&self, name: &str) -> LayoutResult<()> {
        let p = self.info_path(name);
        fs::remove_file(&p).map_err(io("remove", &p))?;
        sync_dir(&self.dir)?;
        let sendto = self.sendto(name);
        match fs::remove_dir_all(&sendto) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &sendto)(e)),
        }
        sync_dir(&self.dir.join("sendto"))?;
        self.gc_unlinked()
    }

    /// Removes the whole volume.
    pub fn remove(&self) -> LayoutResult<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &self.dir)(e)),
        }
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    pub fn size_lb(&self) -> LayoutResult<u64> {
        let p = self.dir.join("size");
        match volfile::read(&p)? {
            None => Ok(0),
            Some(s) => s
                .parse()
                .map_err(|e: std::num::ParseIntError| LayoutError::Corrupt {
                    what: "corrupt",
                    path: p,
                    detail: e.to_string(),
                }),
        }
    }

    pub fn set_size_lb(&self, lb: u64) -> LayoutResult<()> {
        Ok(volfile::write(&self.dir.join("size"), &format!("{lb}\n"))?)
    }

    pub fn is_started(&self) -> bool {
        self.dir.join("started").exists()
    }

    pub fn set_started(&self, on: bool) -> LayoutResult<()> {
        self.set_file("started", on.then_some(""))
    }

    /// Where the storage (its certificate's id) the volume takes wlogs from is kept, once one
    /// shipped (`FlowGuard::other_owner`).
    pub fn storage_file(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// Binds the volume to storage `id`, or (None) to whichever ships next.
    pub fn set_storage(&self, id: Option<&str>) -> LayoutResult<()> {
        self.set_file("storage", id)
    }

    /// Writes the small file `name` with `text` durably, or removes it (None).
    fn set_file(&self, name: &str, text: Option<&str>) -> LayoutResult<()> {
        let p = self.dir.join(name);
        Ok(match text {
            Some(t) => volfile::write(&p, t),
            None => volfile::remove(&p),
        }?)
    }

    /// Diffs held in the volume directory (all archives), oldest first.
    pub fn held(&self) -> LayoutResult<Vec<HeldDiff>> {
        list_diffs(&self.dir)
    }

    /// Diffs waiting for `archive`, oldest first.
    pub fn waiting(&self, archive: &str) -> LayoutResult<Vec<HeldDiff>> {
        list_diffs(&self.sendto(archive))
    }

    /// A new diff being received, under a temporary name in the volume's directory until
    /// `register` gives it its own.
    pub fn incoming(&self) -> LayoutResult<AtomicFile> {
        Ok(AtomicFile::create(&self.dir.join("incoming"))?)
    }

    /// Registers a received diff durably: once its data is durable, links it into each
    /// archive's queue (a link that is already there is the same diff, queued once), then
    /// renames it to its main name. Returns false when the diff was already held (nothing
    /// changed, the temporary file removed).
    pub fn register(
        &self,
        mut file: AtomicFile,
        name: &str,
        archives: &[String],
    ) -> LayoutResult<bool> {
        if self.dir.join(name).exists() {
            return Ok(false);
        }
        file.rename_target(name);
        file.commit_with(|tmp| {
            for a in archives {
                let dir = self.sendto(a);
                let link = dir.join(name);
                match fs::hard_link(tmp, &link) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("link", &link)(e)),
                }
                sync_dir(&dir)?;
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// Drops `archive`'s links to `diffs` (sent or obsolete) and main files no archive needs.
    pub fn unlink_sent(&self, archive: &str, diffs: &[HeldDiff]) -> LayoutResult<()> {
        for d in diffs {
            match fs::remove_file(&d.path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &d.path)(e)),
            }
        }
        sync_dir(&self.sendto(archive))?;
        for d in diffs {
            self.gc_one(&self.dir.join(&d.name))?;
        }
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Removes a main file whose queue links are all gone (link count 1).
    fn gc_one(&self, main: &Path) -> LayoutResult<()> {
        match fs::metadata(main) {
            Ok(md) if md.nlink() <= 1 => match fs::remove_file(main) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("remove", main)(e)),
            },
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("stat", main)(e)),
        }
    }

    fn gc_unlinked(&self) -> LayoutResult<()> {
        for d in self.held()? {
            self.gc_one(&d.path)?;
        }
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Boot-time cleanup: temporary files of interrupted receives; main files no queue needs.
    pub fn sweep(&self) -> LayoutResult<()> {
        let rd = fs::read_dir(&self.dir).map_err(io("list", &self.dir))?;
        for e in rd {
            let e = e.map_err(io("list", &self.dir))?;
            if e.file_name().to_string_lossy().starts_with('.') {
                tracing::info!("removing leftover {}", e.path().display());
                fs::remove_file(e.path()).map_err(io("remove", &e.path()))?;
            }
        }
        self.gc_unlinked()
    }
}

/// The wdiff files (by name) in `dir`, oldest first (by gid range).
fn list_diffs(dir: &Path) -> LayoutResult<Vec<HeldDiff>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("list", dir)(e)),
    };
    for e in rd {
        let e = e.map_err(io("list", dir))?;
        let fname = e.file_name();
        let Some(name) = fname.to_str() else { continue };
        if !name.ends_with(".wdiff") || name.starts_with('.') {
            continue;
        }
        let md = match e.metadata() {
            Ok(md) => md,
            // Deleted by a sender meanwhile.
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(io("stat", &e.path())(err)),
        };
        let Ok(meta) = parse_name(name, md.len()) else {
            tracing::warn!("ignoring {}: not a wdiff name", e.path().display());
            continue;
        };
        out.push(HeldDiff {
            path: e.path(),
            name: name.to_string(),
            meta,
        });
    }
    out.sort_by_key(|d| (d.meta.snap_b.gid_b, d.meta.snap_e.gid_b, d.name.clone()));
    Ok(out)
}
