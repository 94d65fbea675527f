//! One volume's persistent files under `D/vols/<vol>/` (docs/formats.md §6.5): `state`, `uuid`,
//! `archive_uuid`, `base` (MetaState), `base.img` and the wdiffs named by their MetaDiff; its
//! restored images under `D/restored/<vol>/`. Every small file is replaced atomically; a missing
//! directory is the Clear state. Their failures are `StoreError`s; the checks a command makes
//! of them (exists, state, restorable gid) answer `CmdError`s.

use std::path::{Path, PathBuf};

use walb_core::meta::{self, MetaDiff, MetaSnap, MetaState, Restorable};
use walb_core::{Gid, Uuid, LBS};
use walb_daemon::error::{bad_state, invalid};
use walb_daemon::{volfile, CmdError, CmdResult};

use crate::store_error::{StoreError, StoreResult};

/// The persisted (static) states; transients live in memory only (`archive::Transient`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    SyncReady,
    Archived,
    Stopped,
}

impl State {
    /// The state as the control plane carries it.
    pub fn typed(self) -> walb_proto::ArchiveState {
        use walb_proto::ArchiveState as A;
        match self {
            State::SyncReady => A::ArchiveSyncReady,
            State::Archived => A::ArchiveArchived,
            State::Stopped => A::ArchiveStopped,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            State::SyncReady => "SyncReady",
            State::Archived => "Archived",
            State::Stopped => "Stopped",
        }
    }

    fn parse(s: &str) -> Option<State> {
        [State::SyncReady, State::Archived, State::Stopped]
            .into_iter()
            .find(|st| st.word() == s)
    }
}

const IMAGE: &str = "base.img";

pub struct Vol {
    pub name: String,
    pub dir: PathBuf,
    pub restored_dir: PathBuf,
    /// How many wdiff files a merge of the chain reads at once (`image::chain_records`).
    pub max_open_diffs: usize,
    /// The volume's long action (restore, apply, merge, verify, …), shown by `get progress`.
    pub running: std::sync::Arc<walb_daemon::progress::Running>,
    /// The wdiffs as last listed, shared by every `Vol` of the volume in one archive.
    pub listed: std::sync::Arc<DiffList>,
}

/// The volume's wdiffs as last read from its directory, handed out again while nothing
/// changed: a volume shipped continuously holds thousands of files (every wlog is a
/// restorable point until thinned), and every registration asks for the list several times.
/// The list is read again when the directory's mtime moved (any change by anyone) or after
/// `Vol::diffs_changed` (every change made here calls it once the change is done, so a list
/// read before it is never kept).
#[derive(Default)]
pub struct DiffList(std::sync::Mutex<Listed>);

#[derive(Default)]
struct Listed {
    /// Bumped by every change made here.
    generation: u64,
    /// The list and the directory's mtime read before it.
    list: Option<(std::time::SystemTime, std::sync::Arc<Vec<MetaDiff>>)>,
}

impl DiffList {
    fn lock(&self) -> std::sync::MutexGuard<'_, Listed> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The default of `--max-open-diffs`.
pub const DEFAULT_MAX_OPEN_DIFFS: usize = 32;

impl Vol {
    pub fn new(data_dir: &Path, name: &str) -> Vol {
        Vol {
            name: name.to_string(),
            dir: data_dir.join("vols").join(name),
            restored_dir: data_dir.join("restored").join(name),
            max_open_diffs: DEFAULT_MAX_OPEN_DIFFS,
            running: Default::default(),
            listed: Default::default(),
        }
    }

    /// Whether the volume exists: its state file is written last by `create`, so a directory
    /// without one is a volume not created yet (or whose creation a crash cut).
    pub fn exists(&self) -> bool {
        self.dir.join("state").is_file()
    }

    /// The volume, or NotFound when it does not exist.
    pub fn require(self) -> CmdResult<Vol> {
        if self.exists() {
            Ok(self)
        } else {
            Err(CmdError::NotFound(format!(
                "volume {} not found",
                self.name
            )))
        }
    }

    /// Creates the directory and the files of a fresh SyncReady volume.
    pub fn create(&self) -> StoreResult<()> {
        std::fs::create_dir_all(&self.dir).map_err(StoreError::io(&self.dir))?;
        self.reset_files()?;
        sync_parent(&self.dir)
    }

    /// Empty metadata: null uuids, the default base state, SyncReady (written last).
    pub fn reset_files(&self) -> StoreResult<()> {
        self.set_uuid(&Uuid::default())?;
        self.set_archive_uuid(&Uuid::default())?;
        self.set_base(&MetaState::new(MetaSnap::default(), 0))?;
        self.set_state(State::SyncReady)
    }

    pub fn state(&self) -> StoreResult<State> {
        let path = self.dir.join("state");
        let Some(s) = volfile::read(&path)? else {
            return Err(StoreError::Missing { path });
        };
        State::parse(&s).ok_or_else(|| StoreError::Bad {
            path,
            what: format!("bad state {s:?}"),
        })
    }

    pub fn set_state(&self, s: State) -> StoreResult<()> {
        Ok(volfile::write(&self.dir.join("state"), s.word())?)
    }

    /// The state, which must be one of `allowed` for `cmd`.
    pub fn expect_state(&self, cmd: &str, allowed: &[State]) -> CmdResult<State> {
        let s = self.state()?;
        if allowed.contains(&s) {
            Ok(s)
        } else {
            Err(bad_state(format!(
                "volume {} is {}: {cmd} needs {}",
                self.name,
                s.word(),
                allowed
                    .iter()
                    .map(|s| s.word())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    fn read_uuid(&self, file: &str) -> StoreResult<Uuid> {
        let path = self.dir.join(file);
        let s = volfile::read(&path)?.unwrap_or_default();
        s.parse().map_err(|what| StoreError::Bad { path, what })
    }

    pub fn uuid(&self) -> StoreResult<Uuid> {
        self.read_uuid("uuid")
    }

    pub fn set_uuid(&self, u: &Uuid) -> StoreResult<()> {
        Ok(volfile::write(&self.dir.join("uuid"), &u.to_string())?)
    }

    pub fn archive_uuid(&self) -> StoreResult<Uuid> {
        self.read_uuid("archive_uuid")
    }

    pub fn set_archive_uuid(&self, u: &Uuid) -> StoreResult<()> {
        Ok(volfile::write(
            &self.dir.join("archive_uuid"),
            &u.to_string(),
        )?)
    }

    pub fn base(&self) -> StoreResult<MetaState> {
        let path = self.dir.join("base");
        let Some(b) = volfile::read_bytes(&path)? else {
            return Err(StoreError::Missing { path });
        };
        MetaState::from_bytes(&b).map_err(|source| StoreError::Decode { path, source })
    }

    pub fn set_base(&self, s: &MetaState) -> StoreResult<()> {
        Ok(volfile::write_bytes(&self.dir.join("base"), &s.to_bytes())?)
    }

    pub fn image(&self) -> PathBuf {
        self.dir.join(IMAGE)
    }

    pub fn has_image(&self) -> bool {
        self.image().is_file()
    }

    /// Size of the base image in LB (0 without one).
    pub fn size_lb(&self) -> StoreResult<u64> {
        match std::fs::metadata(self.image()) {
            Ok(m) => Ok(m.len() / LBS as u64),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::io(self.image())(e)),
        }
    }

    pub fn diff_path(&self, d: &MetaDiff) -> PathBuf {
        self.dir.join(meta::format_name(d))
    }

    /// Registers a received or rebuilt wdiff: `tmp` made durable under `d`'s name.
    pub fn add_diff(&self, tmp: walb_core::atomic::TempFile, d: &MetaDiff) -> StoreResult<()> {
        let persisted = tmp.persist(&self.diff_path(d));
        self.diffs_changed();
        Ok(persisted?)
    }

    /// Every wdiff of the volume, in `MetaDiff::order_key` order (chain order for a plain
    /// chain).
    pub fn diffs(&self) -> StoreResult<Vec<MetaDiff>> {
        let mtime = std::fs::metadata(&self.dir)
            .and_then(|m| m.modified())
            .map_err(StoreError::io(&self.dir))?;
        let generation = {
            let l = self.listed.lock();
            if let Some((m, list)) = &l.list {
                if *m == mtime {
                    return Ok(list.to_vec());
                }
            }
            l.generation
        };
        let v = self.read_diffs()?;
        let mut l = self.listed.lock();
        if l.generation == generation {
            l.list = Some((mtime, std::sync::Arc::new(v.clone())));
        }
        Ok(v)
    }

    /// Says that this process added, removed or renamed wdiffs: the next `diffs` reads the
    /// directory.
    pub fn diffs_changed(&self) {
        let mut l = self.listed.lock();
        l.generation += 1;
        l.list = None;
    }

    fn read_diffs(&self) -> StoreResult<Vec<MetaDiff>> {
        let mut v = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(StoreError::io(&self.dir))?;
        for e in rd {
            let e = e.map_err(StoreError::io(&self.dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".wdiff") {
                continue;
            }
            let size = e.metadata().map_err(StoreError::io(&name))?.len();
            match meta::parse_name(&name, size) {
                Ok(d) => v.push(d),
                Err(err) => tracing::warn!(vol = %self.name, "ignoring {name}: {err}"),
            }
        }
        v.sort_by_key(MetaDiff::order_key);
        Ok(v)
    }

    /// The chain applicable to the base snapshot (up to `up_to`).
    pub fn chain(&self, base: &MetaState, up_to: Option<Gid>) -> StoreResult<Vec<MetaDiff>> {
        Ok(meta::applicable_chain(&base.snap_b, &self.diffs()?, up_to))
    }

    /// The archive's latest snapshot: the base with every applicable diff applied.
    pub fn latest(&self) -> StoreResult<MetaSnap> {
        let base = self.base()?;
        let chain = self.chain(&base, None)?;
        Ok(meta::apply_all(&base.snap_b, &chain)?)
    }

    pub fn restorable(&self) -> StoreResult<Vec<Restorable>> {
        // Before a full backup there is no base image and nothing to restore.
        if !self.has_image() {
            return Ok(Vec::new());
        }
        let base = self.base()?;
        Ok(meta::restorable(&base, &self.diffs()?))
    }

    /// The chain from the base to clean snapshot `gid`, which must be restorable.
    pub fn chain_to_clean(&self, gid: u64) -> CmdResult<(MetaState, Vec<MetaDiff>)> {
        if !self.restorable()?.iter().any(|r| r.gid == Gid(gid)) {
            return Err(invalid(format!(
                "gid {gid} is not a restorable snapshot of volume {}",
                self.name
            )));
        }
        let base = self.base()?;
        let chain = self.chain(&base, Some(Gid(gid)))?;
        let end = meta::apply_all(&base.snap_b, &chain)?;
        if end != MetaSnap::clean(Gid(gid)) {
            return Err(CmdError::Internal(format!(
                "the chain to gid {gid} of volume {} ends at {end}",
                self.name
            )));
        }
        Ok((base, chain))
    }

    /// Sets the mergeable flag of every diff that starts at clean snapshot `gid` of each of
    /// `gids`: `true` makes those snapshots implicit (merge may eat them), `false` explicit.
    /// Every gid is checked before any file changes. The flag is part of the file name, so each
    /// flip is one rename; the directory is synced once at the end. A crash in between leaves
    /// some flipped, which the same command finishes.
    pub fn set_mergeable(&self, gids: &[Gid], mergeable: bool) -> CmdResult<usize> {
        let diffs = self.diffs()?;
        let mut flips = Vec::new();
        for &gid in gids {
            for d in diffs_from_clean(&self.name, &diffs, gid)? {
                if d.is_mergeable != mergeable && !flips.contains(&d) {
                    flips.push(d);
                }
            }
        }
        for d in &flips {
            self.rename_flag(d, mergeable)?;
        }
        if !flips.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(flips.len())
    }

    /// Renames diff `d`'s file to the name with the other mergeable flag.
    fn rename_flag(&self, d: &MetaDiff, mergeable: bool) -> StoreResult<()> {
        let from = self.diff_path(d);
        let to = self.diff_path(&MetaDiff {
            is_mergeable: mergeable,
            ..*d
        });
        // Never replace a file: a diff is registered under one name only.
        if to.exists() {
            return Err(StoreError::Exists { to, from });
        }
        let renamed = std::fs::rename(&from, &to);
        self.diffs_changed();
        renamed.map_err(StoreError::io(&to))?;
        tracing::info!(vol = %self.name, mergeable, "diff {d}: mergeable flag set");
        Ok(())
    }

    /// A temporary file name in the volume directory (swept at startup).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        self.dir
            .join(format!(".tmp-{what}-{:016x}", rand::random::<u64>()))
    }

    /// Removes temporary files (ours `.tmp*`, AtomicFile's `.NAME.tmp.PID`) left by a crash.
    pub fn sweep_temps(&self) -> StoreResult<usize> {
        let mut n = 0;
        for dir in [&self.dir, &self.restored_dir] {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(dir)(e)),
            };
            for e in rd {
                let e = e.map_err(StoreError::io(dir))?;
                if e.file_name().to_string_lossy().starts_with('.') {
                    std::fs::remove_file(e.path()).map_err(StoreError::io(e.path()))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Deletes diff files; the directory is synced once.
    pub fn remove_diffs(&self, ds: &[MetaDiff]) -> StoreResult<()> {
        let removed = ds.iter().try_for_each(|d| {
            let p = self.diff_path(d);
            match std::fs::remove_file(&p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io(p)(e)),
            }
        });
        if !ds.is_empty() {
            self.diffs_changed();
        }
        removed?;
        if !ds.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    pub fn restored_path(&self, gid: u64) -> PathBuf {
        self.restored_dir.join(format!("{gid}.img"))
    }

    /// Gids of the restored images, ascending.
    pub fn restored(&self) -> StoreResult<Vec<u64>> {
        let mut v: Vec<u64> = match std::fs::read_dir(&self.restored_dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".img")?.parse().ok()
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io(&self.restored_dir)(e)),
        };
        v.sort_unstable();
        Ok(v)
    }

    /// Removes everything of the volume (clear-vol).
    pub fn remove_all(&self) -> StoreResult<()> {
        for d in [&self.restored_dir, &self.dir] {
            match std::fs::remove_dir_all(d) {
                Ok(()) => sync_parent(d)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(d)(e)),
            }
        }
        Ok(())
    }

    /// Removes the image, the diffs and the restored images (reset-vol keeps the directory).
    pub fn remove_data(&self) -> StoreResult<()> {
        self.remove_diffs(&self.diffs()?)?;
        match std::fs::remove_file(self.image()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(self.image())(e)),
        }
        match std::fs::remove_dir_all(&self.restored_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&self.restored_dir)(e)),
        }
        sync_dir(&self.dir)
    }
}

/// The diffs that start at snapshot `gid`; an error names the gid when there is none or the
/// snapshot there is not clean.
fn diffs_from_clean(vol: &str, diffs: &[MetaDiff], gid: Gid) -> CmdResult<Vec<MetaDiff>> {
    let from: Vec<MetaDiff> = diffs
        .iter()
        .filter(|d| d.snap_b.gid_b == gid)
        .copied()
        .collect();
    if from.is_empty() {
        return Err(invalid(format!(
            "gid {gid}: no diff of volume {vol} starts there"
        )));
    }
    if let Some(d) = from.iter().find(|d| !d.snap_b.is_clean()) {
        return Err(invalid(format!(
            "gid {gid}: snapshot {} of volume {vol} is not clean",
            d.snap_b
        )));
    }
    Ok(from)
}

pub fn sync_dir(dir: &Path) -> StoreResult<()> {
    Ok(walb_core::atomic::sync_dir(dir)?)
}

fn sync_parent(p: &Path) -> StoreResult<()> {
    match p.parent() {
        Some(d) => sync_dir(d),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    /// A volume with an (empty) image at `<|0|>` and clean diffs 0→1 explicit, 1→2, 2→3
    /// explicit, 3→4 explicit: restorable 0, 1, 3, 4; 2 implicit. Only names matter here.
    fn volume(dir: &Path) -> Vol {
        let vol = Vol::new(dir, "v");
        vol.create().unwrap();
        vol.set_base(&MetaState::new(MetaSnap::clean(Gid(0)), 1_700_000_000))
            .unwrap();
        File::create(vol.image()).unwrap();
        for (b, e, m) in [(0, 1, false), (1, 2, false), (2, 3, true), (3, 4, false)] {
            let mut d = MetaDiff::clean(b, e).unwrap();
            d.is_mergeable = m;
            d.timestamp = 1_700_000_000 + e;
            File::create(vol.diff_path(&d)).unwrap();
        }
        vol
    }

    /// The file names of the volume's diffs, as listed.
    fn names(v: &Vol) -> Vec<String> {
        v.diffs().unwrap().iter().map(meta::format_name).collect()
    }

    fn explicit(vol: &Vol) -> Vec<u64> {
        vol.restorable()
            .unwrap()
            .iter()
            .filter(|r| r.is_explicit)
            .map(|r| r.gid.0)
            .collect()
    }

    #[test]
    fn disable_and_enable_flip_the_flag_in_the_name_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let vol = volume(dir.path());
        assert_eq!(explicit(&vol), [0, 1, 3, 4]);
        assert_eq!(vol.set_mergeable(&[Gid(1), Gid(3)], true).unwrap(), 2);
        // A fresh handle reads only the files: what a restarted daemon sees.
        let vol = Vol::new(dir.path(), "v");
        assert_eq!(explicit(&vol), [0, 4]);
        assert_eq!(vol.restorable().unwrap().len(), 5);
        assert!(meta::format_name(&vol.diffs().unwrap()[1]).ends_with("-M--1-2.wdiff"));
        // Already in that state: nothing to rename.
        assert_eq!(vol.set_mergeable(&[Gid(1)], true).unwrap(), 0);
        assert_eq!(vol.set_mergeable(&[Gid(1), Gid(3)], false).unwrap(), 2);
        let vol = Vol::new(dir.path(), "v");
        assert_eq!(explicit(&vol), [0, 1, 3, 4]);
        // gid 2 was implicit from the start; enabling it makes it explicit.
        assert_eq!(vol.set_mergeable(&[Gid(2)], false).unwrap(), 1);
        assert_eq!(explicit(&Vol::new(dir.path(), "v")), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_gid_without_a_diff_or_with_a_dirty_start_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let vol = volume(dir.path());
        let dirty = MetaDiff::new(
            MetaSnap::new(Gid(4), Gid(6)).unwrap(),
            MetaSnap::clean(Gid(7)),
        )
        .unwrap();
        File::create(vol.diff_path(&dirty)).unwrap();
        vol.diffs_changed();
        let before = vol.diffs().unwrap();
        let want = names(&vol);
        for (gids, word) in [(vec![Gid(1), Gid(9)], "gid 9"), (vec![Gid(4)], "gid 4")] {
            let e = vol.set_mergeable(&gids, true).unwrap_err();
            assert!(matches!(e, CmdError::Invalid(_)), "{e:?}");
            assert!(e.to_string().contains(word), "{e}");
        }
        assert!(vol
            .set_mergeable(&[Gid(4)], true)
            .unwrap_err()
            .to_string()
            .contains("not clean"));
        assert_eq!(vol.diffs().unwrap().len(), before.len());
        assert_eq!(names(&vol), want);
    }

    #[test]
    fn the_listed_diffs_follow_every_change_here_and_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let vol = volume(dir.path());
        let before = names(&vol);
        assert_eq!(names(&vol), before, "listed twice, the same");
        // Registered here: listed at once.
        let mut d = MetaDiff::clean(5, 6).unwrap();
        d.timestamp = 1_700_000_006;
        let tmp = walb_core::atomic::TempFile::create(vol.temp_path("t")).unwrap();
        vol.add_diff(tmp, &d).unwrap();
        assert!(names(&vol).contains(&meta::format_name(&d)));
        // Removed here.
        vol.remove_diffs(&[d]).unwrap();
        assert_eq!(names(&vol), before);
        // Changed by another process: the directory's mtime moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        File::create(vol.diff_path(&d)).unwrap();
        assert!(names(&vol).contains(&meta::format_name(&d)));
        // Another Vol of the same archive entry shares the list; a fresh one reads its own.
        assert_eq!(names(&Vol::new(dir.path(), "v")), names(&vol));
    }
}
