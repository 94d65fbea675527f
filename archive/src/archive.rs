//! The daemon's shared state: the data directory, per-volume locks and transient states, the
//! discard mode, metrics, and startup recovery.
//!
//! Locking: every operation that reads or changes more than one volume file holds the volume's
//! async lock. A transient (FullSync, WdiffRecv) is set and cleared under that lock but does not
//! hold it while data streams in; it takes the lock again to commit. Commands that change the
//! static state refuse while a transient runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use walb_core::apply::DiscardMode;
use walb_daemon::error::bad_state;
use walb_daemon::metrics::Metrics;
use walb_daemon::{volfile, CmdError, CmdResult};

use crate::metrics::ArchiveMetrics;
use crate::ops;
use crate::volume::Vol;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transient {
    FullSync,
    HashSync,
    WdiffRecv,
}

impl Transient {
    /// The state as the control plane carries it.
    pub fn typed(self) -> walb_proto::ArchiveState {
        use walb_proto::ArchiveState as A;
        match self {
            Transient::FullSync => A::ArchiveFullSync,
            Transient::HashSync => A::ArchiveHashSync,
            Transient::WdiffRecv => A::ArchiveWdiffRecv,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Transient::FullSync => "FullSync",
            Transient::HashSync => "HashSync",
            Transient::WdiffRecv => "WdiffRecv",
        }
    }

    /// The rejection a data flow gets while this transient runs.
    pub fn reject_word(self) -> &'static str {
        match self {
            Transient::FullSync | Transient::HashSync => "syncing",
            Transient::WdiffRecv => "wdiff-recv",
        }
    }
}

#[derive(Default)]
pub struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    transient: Mutex<Option<Transient>>,
    /// `stop force` wakes the running flow so it gives up.
    abort: tokio::sync::Notify,
    /// The long action running on the volume, with its progress.
    pub running: Arc<walb_daemon::progress::Running>,
    /// Its wdiffs as last listed (`volume::DiffList`).
    pub listed: Arc<crate::volume::DiffList>,
}

impl Entry {
    pub fn transient(&self) -> Option<Transient> {
        *self.transient.lock().expect("transient lock")
    }

    /// Resolves when `stop force` asks the running flow to end.
    pub async fn aborted(&self) {
        self.abort.notified().await
    }
}

/// Clears the transient when the flow ends, however it ends.
pub struct TransientGuard {
    entry: Arc<Entry>,
}

impl Drop for TransientGuard {
    fn drop(&mut self) {
        *self.entry.transient.lock().expect("transient lock") = None;
    }
}

pub struct Archive {
    /// This server's id, named in the errors it sends.
    pub id: String,
    pub data_dir: PathBuf,
    pub discard: DiscardMode,
    pub metrics: ArchiveMetrics,
    /// Grow a volume's image when a diff or hash sync brings a larger device, instead of
    /// refusing it as smaller-lv-size.
    pub autoresize: bool,
    /// How many wdiff files a merge of a chain reads at once (restore, apply, merge, cat).
    pub max_open_diffs: usize,
    /// Data flows that would leave less free than this (bytes) are refused (`archive-full`).
    pub min_free: u64,
    /// The keep rules retention enforces on every volume (off when none is set).
    pub retention: crate::retention::Rules,
    /// Full replication's bulk encoding; the threads also bound a full sync's writes in flight.
    pub bulk: walb_daemon::args::BulkArgs,
    /// What the repository uploader last saw (`repo`), for `get repo`.
    pub repo: std::sync::Mutex<RepoView>,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    /// Volumes whose startup recovery failed, with why. Their files are left as they are for
    /// inspection; nothing of them is restorable until an apply finishes the recovery or the
    /// volume is reset or cleared (docs/recovery.md).
    broken: Mutex<HashMap<String, String>>,
    /// While startup recovery runs: the volume it works on (empty before the first).
    recovering: Mutex<Option<String>>,
}

/// The volume's lock, held while a blocking operation runs.
pub type VolGuard = OwnedMutexGuard<()>;

/// The repository uploader's view (`repo`): its URL (None: no repository), bytes uploaded,
/// dedup, and per volume the lag in seconds and the last failure.
#[derive(Default)]
pub struct RepoView {
    pub url: Option<String>,
    pub bytes_up: u64,
    pub dedup_permille: u64,
    pub lag_s: HashMap<String, u64>,
    pub error: HashMap<String, String>,
}

impl Archive {
    /// Opens the data directory; `recover` must run before commands and flows are served.
    pub fn open(
        id: String,
        data_dir: PathBuf,
        discard: DiscardMode,
        metrics: Arc<Metrics>,
    ) -> CmdResult<Archive> {
        for d in ["vols", "restored"] {
            std::fs::create_dir_all(data_dir.join(d))
                .map_err(|e| CmdError::Internal(format!("{}: {e}", data_dir.join(d).display())))?;
        }
        Ok(Archive {
            id,
            data_dir,
            discard,
            metrics: ArchiveMetrics::register(metrics),
            autoresize: false,
            max_open_diffs: crate::volume::DEFAULT_MAX_OPEN_DIFFS,
            min_free: 0,
            retention: crate::retention::Rules::default(),
            bulk: Default::default(),
            repo: Default::default(),
            entries: Mutex::new(HashMap::new()),
            broken: Mutex::new(HashMap::new()),
            recovering: Mutex::new(Some(String::new())),
        })
    }

    /// Startup recovery of every volume: temporary files swept, an interrupted apply finished,
    /// diffs a crash left behind an apply or a merge removed. A volume whose recovery fails is
    /// marked broken and the others are served.
    pub fn recover(&self) -> CmdResult<()> {
        for name in self.volumes()? {
            *self.recovering.lock().expect("recovering lock") = Some(name.clone());
            let vol = self.vol(&name);
            if let Err(e) = recover_volume(&vol, self.discard) {
                tracing::error!(vol = %name, "recovery failed, the volume is broken: {e}");
                self.set_broken(&name, Some(e.to_string()));
            }
            self.refresh_metrics(&vol);
        }
        *self.recovering.lock().expect("recovering lock") = None;
        Ok(())
    }

    /// Refuses while startup recovery runs (`UNAVAILABLE`, which walbc waits out).
    pub fn ready(&self) -> CmdResult<()> {
        match &*self.recovering.lock().expect("recovering lock") {
            None => Ok(()),
            Some(v) if v.is_empty() => Err(CmdError::Starting(format!("{} starting", self.id))),
            Some(v) => Err(CmdError::Starting(format!(
                "{} starting (recovering {v})",
                self.id
            ))),
        }
    }

    /// Free bytes of the data dir's file system.
    pub fn free_bytes(&self) -> CmdResult<u64> {
        crate::capacity::free_bytes(&self.data_dir)
            .map_err(|e| CmdError::Internal(format!("statvfs {}: {e}", self.data_dir.display())))
    }

    /// Whether a flow that may write `bytes` more leaves the floor free.
    pub fn has_room(&self, bytes: u64) -> CmdResult<bool> {
        let free = self.free_bytes()?;
        self.metrics.free_bytes.set(&[], free);
        Ok(free >= self.min_free.saturating_add(bytes))
    }

    /// Exports a verification's outcome as metrics.
    pub fn note_verify(&self, name: &str, r: &crate::verify::Report) {
        let l = [("vol", name)];
        self.metrics
            .verify_failures
            .set(&l, r.failures.len() as u64);
        self.metrics.verify_time.set(&l, r.time);
    }

    /// Why volume `name` is broken, if it is.
    pub fn broken(&self, name: &str) -> Option<String> {
        self.broken.lock().expect("broken lock").get(name).cloned()
    }

    /// Marks volume `name` broken with `why`, or healthy again with `None`.
    pub fn set_broken(&self, name: &str, why: Option<String>) {
        let mut b = self.broken.lock().expect("broken lock");
        match why {
            Some(w) => b.insert(name.to_string(), w),
            None => b.remove(name),
        };
        let l = [("vol", name)];
        self.metrics.broken.set(&l, u64::from(b.contains_key(name)));
    }

    pub fn volumes(&self) -> CmdResult<Vec<String>> {
        Ok(volfile::volumes(&self.data_dir.join("vols"))?)
    }

    /// The volume's paths (the name is checked; the volume may not exist).
    pub fn vol(&self, name: &str) -> Vol {
        let e = self.entry(name);
        Vol {
            max_open_diffs: self.max_open_diffs,
            running: e.running.clone(),
            listed: e.listed.clone(),
            ..Vol::new(&self.data_dir, name)
        }
    }

    pub fn entry(&self, name: &str) -> Arc<Entry> {
        self.entries
            .lock()
            .expect("entries lock")
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub async fn lock(&self, name: &str) -> VolGuard {
        self.entry(name).lock.clone().lock_owned().await
    }

    /// Starts transient `t`; the caller holds the volume lock and has checked the state.
    pub fn begin_transient(&self, name: &str, t: Transient) -> Result<TransientGuard, Transient> {
        let entry = self.entry(name);
        let mut cur = entry.transient.lock().expect("transient lock");
        if let Some(running) = *cur {
            return Err(running);
        }
        *cur = Some(t);
        drop(cur);
        Ok(TransientGuard { entry })
    }

    /// Waits until WdiffRecv ends (`force`: asks it to give up); other transients and a flow
    /// still running after `limit` are refused by the caller's own state check.
    pub async fn wait_wdiff_recv(&self, name: &str, force: bool, limit: std::time::Duration) {
        let entry = self.entry(name);
        let t0 = std::time::Instant::now();
        while entry.transient() == Some(Transient::WdiffRecv) && t0.elapsed() < limit {
            if force {
                entry.abort.notify_waiters();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Refuses `cmd` while a transient runs on the volume.
    pub fn no_transient(&self, name: &str, cmd: &str) -> CmdResult<()> {
        match self.entry(name).transient() {
            Some(t) => Err(bad_state(format!(
                "volume {name} is in {}: {cmd} must wait",
                t.word()
            ))),
            None => Ok(()),
        }
    }

    /// Runs a blocking operation on the volume while holding its lock; the lock is released
    /// only when the operation is done, even if the caller goes away.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        f: impl FnOnce(&Archive, &Vol) -> CmdResult<T> + Send + 'static,
    ) -> CmdResult<T> {
        let guard = self.lock(name).await;
        let me = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let vol = me.vol(&name);
            f(&me, &vol)
        })
        .await
        .map_err(|e| CmdError::Internal(format!("operation panicked: {e}")))?
    }

    /// Runs `job` on every volume every `every`, under its lock, until the daemon stops;
    /// volumes that are broken or have a transfer running are passed over that round. What
    /// `job` reports is logged at INFO, its errors at WARN, both named by `what`.
    pub async fn every_volume<F>(self: Arc<Self>, what: &'static str, every: Duration, job: F)
    where
        F: Fn(&Archive, &Vol) -> CmdResult<Option<String>> + Clone + Send + 'static,
    {
        loop {
            tokio::time::sleep(every).await;
            if self.ready().is_err() {
                continue;
            }
            let Ok(names) = self.volumes() else { continue };
            for name in names {
                if self.broken(&name).is_some() || self.entry(&name).transient().is_some() {
                    continue;
                }
                match self.run(&name, job.clone()).await {
                    Ok(Some(s)) => tracing::info!(vol = %name, "{what}: {s}"),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(vol = %name, "{what}: {e}"),
                }
            }
        }
    }

    /// Updates the per-volume gauges from the files.
    pub fn refresh_metrics(&self, vol: &Vol) {
        let l = [("vol", vol.name.as_str())];
        let Ok(diffs) = vol.diffs() else { return };
        self.metrics.diffs.set(&l, diffs.len() as u64);
        let bytes: u64 = diffs.iter().map(|d| d.data_size).sum();
        self.metrics.diff_bytes.set(&l, bytes);
        if let Ok(latest) = vol.latest() {
            if latest.gid_b.0 != u64::MAX {
                self.metrics.latest_gid.set(&l, latest.gid_b.0);
            }
        }
    }

    pub fn count_rejection(&self, vol: &str, reason: &str) {
        self.metrics
            .rejections
            .inc_by(&[("vol", vol), ("reason", reason)], 1);
    }

    pub fn count_received(&self, vol: &str, bytes: usize) {
        self.metrics
            .bytes_received
            .inc_by(&[("vol", vol)], bytes as u64);
    }

    /// A received diff was registered: it is restorable now, `now - diff.timestamp` after
    /// its snapshot was taken on the storage (a diff without a timestamp is not counted).
    pub fn note_restorable(&self, vol: &str, diff: &walb_core::meta::MetaDiff) {
        if diff.timestamp == 0 {
            return;
        }
        let delay = walb_core::meta::unix_now().saturating_sub(diff.timestamp);
        self.metrics
            .write_to_restorable
            .observe(&[("vol", vol)], delay as f64);
    }
}

/// One volume's startup recovery.
fn recover_volume(vol: &Vol, discard: DiscardMode) -> CmdResult<()> {
    let swept = vol.sweep_temps()?;
    if swept > 0 {
        tracing::info!(vol = %vol.name, "removed {swept} temporary files");
    }
    if !vol.has_image() {
        return Ok(());
    }
    ops::recover_apply(vol, discard)?;
    let stray = ops::gc(vol, false)?;
    if stray > 0 {
        tracing::info!(vol = %vol.name, "removed {stray} diffs left behind by an apply or a merge");
    }
    Ok(())
}
