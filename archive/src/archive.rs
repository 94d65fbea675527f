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

use tokio::sync::OwnedMutexGuard;
use walb_core::apply::DiscardMode;
use walb_daemon::error::bad_state;
use walb_daemon::metrics::Metrics;
use walb_daemon::{volfile, CmdError, CmdResult};

use crate::ops;
use crate::volume::Vol;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transient {
    FullSync,
    HashSync,
    WdiffRecv,
}

impl Transient {
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
    pub data_dir: PathBuf,
    pub discard: DiscardMode,
    pub metrics: Arc<Metrics>,
    /// Grow a volume's image when a diff or hash sync brings a larger device, instead of
    /// refusing it as smaller-lv-size.
    pub autoresize: bool,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

/// The volume's lock, held while a blocking operation runs.
pub type VolGuard = OwnedMutexGuard<()>;

impl Archive {
    /// Opens the data directory and runs startup recovery on every volume.
    pub fn open(
        data_dir: PathBuf,
        discard: DiscardMode,
        metrics: Arc<Metrics>,
    ) -> CmdResult<Archive> {
        for d in ["vols", "restored"] {
            std::fs::create_dir_all(data_dir.join(d))
                .map_err(|e| CmdError::Internal(format!("{}: {e}", data_dir.join(d).display())))?;
        }
        describe(&metrics);
        let a = Archive {
            data_dir,
            discard,
            metrics,
            autoresize: false,
            entries: Mutex::new(HashMap::new()),
        };
        for name in a.volumes()? {
            let vol = a.vol(&name);
            let swept = vol.sweep_temps()?;
            if swept > 0 {
                tracing::info!(vol = %name, "removed {swept} temporary files");
            }
            ops::recover_apply(&vol, discard)?;
            a.refresh_metrics(&vol);
        }
        Ok(a)
    }

    pub fn volumes(&self) -> CmdResult<Vec<String>> {
        volfile::volumes(&self.data_dir.join("vols"))
    }

    /// The volume's paths (the name is checked; the volume may not exist).
    pub fn vol(&self, name: &str) -> Vol {
        Vol::new(&self.data_dir, name)
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

    /// Updates the per-volume gauges from the files.
    pub fn refresh_metrics(&self, vol: &Vol) {
        let l = [("vol", vol.name.as_str())];
        let Ok(diffs) = vol.diffs() else { return };
        self.metrics
            .set("walb_archive_diffs", &l, diffs.len() as f64);
        let bytes: u64 = diffs.iter().map(|d| d.data_size).sum();
        self.metrics
            .set("walb_archive_diff_bytes", &l, bytes as f64);
        if let Ok(latest) = vol.latest() {
            if latest.gid_b.0 != u64::MAX {
                self.metrics
                    .set("walb_archive_latest_gid", &l, latest.gid_b.0 as f64);
            }
        }
    }

    pub fn count_rejection(&self, vol: &str, reason: &str) {
        self.metrics.add(
            "walb_archive_rejections_total",
            &[("vol", vol), ("reason", reason)],
            1.0,
        );
    }

    pub fn count_received(&self, vol: &str, bytes: usize) {
        self.metrics.add(
            "walb_archive_bytes_received_total",
            &[("vol", vol)],
            bytes as f64,
        );
    }
}

fn describe(m: &Metrics) {
    m.describe("walb_archive_diffs", "gauge", "wdiff files held per volume");
    m.describe(
        "walb_archive_diff_bytes",
        "gauge",
        "Bytes of wdiff files per volume",
    );
    m.describe(
        "walb_archive_latest_gid",
        "gauge",
        "gid of the archive's latest snapshot",
    );
    m.describe(
        "walb_archive_bytes_received_total",
        "counter",
        "Bytes received by full sync and wdiff transfer",
    );
    m.describe(
        "walb_archive_rejections_total",
        "counter",
        "Data flows rejected, by reason",
    );
}
