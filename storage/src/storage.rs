//! The storage daemon's server-wide state: its volumes, proxies and limits, with the volume
//! state changes the commands and the flows share (stop, reset, snapshots). The workers (ship,
//! full, hash, failback) use it; the commands that start them are in `commands`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::RwLock;
use walb_core::meta::MetaLsidGid;
use walb_daemon::serve::Shutdown;
use walb_daemon::{CmdError, CmdResult};
use walb_proto::Done;

use crate::metrics::StorageMetrics;
use crate::vol::{require, save, zero_done, State, Vol};
use crate::wdevd::Wdevd;

/// The storage daemon: shared by its commands and its per-volume tasks.
pub struct Storage {
    pub id: String,
    pub data_dir: PathBuf,
    pub wdevd: Wdevd,
    /// Proxy addresses in priority order.
    pub proxies: Vec<String>,
    /// The primary archive (full and hash backup).
    pub archive: String,
    pub max_wlog_send_mb: u64,
    pub snapshot_interval: Duration,
    pub poll: Duration,
    /// One per wlog transfer allowed at once (`--max-transfers`).
    pub transfers: tokio::sync::Semaphore,
    pub metrics: StorageMetrics,
    pub shutdown: Shutdown,
    pub vols: RwLock<BTreeMap<String, Arc<Vol>>>,
    /// Full and hash backup scan rate limit in bytes/s (0: none); `set-full-scan-bps`.
    pub scan_bps: Arc<std::sync::atomic::AtomicU64>,
    /// Proxies that failed lately, with when: tried after the others for a while.
    pub down: std::sync::Mutex<BTreeMap<String, std::time::Instant>>,
    /// Full backup bulks: compression and encoding threads.
    pub bulk: walb_daemon::args::BulkArgs,
}

/// How long a proxy that failed is tried only after the others.
const PROXY_DOWN_FOR: Duration = Duration::from_secs(10);

impl Storage {
    pub fn max_wlog_send_pb(&self, pbs: u32) -> u64 {
        (self.max_wlog_send_mb << 20) / pbs.max(512) as u64
    }

    /// Proxies in priority order, those that failed within `PROXY_DOWN_FOR` last.
    pub fn proxy_order(&self) -> Vec<String> {
        let down = self.down.lock().expect("proxy lock");
        let is_down = |p: &String| down.get(p).is_some_and(|t| t.elapsed() < PROXY_DOWN_FOR);
        let (mut up, dn): (Vec<String>, Vec<String>) =
            self.proxies.iter().cloned().partition(|p| !is_down(p));
        up.extend(dn);
        up
    }

    pub fn proxy_down(&self, p: &str) {
        tracing::warn!(
            proxy = p,
            "proxy failed; trying the others first for a while"
        );
        self.down
            .lock()
            .expect("proxy lock")
            .insert(p.to_string(), std::time::Instant::now());
    }

    pub fn proxy_up(&self, p: &str) {
        self.down.lock().expect("proxy lock").remove(p);
    }

    pub(crate) async fn vol(&self, name: &str) -> CmdResult<Arc<Vol>> {
        self.vols
            .read()
            .await
            .get(name)
            .cloned()
            .ok_or_else(|| CmdError::NotFound(format!("volume {name} not found")))
    }

    pub(crate) async fn reset_vol(&self, name: &str, gid: u64) -> CmdResult<Done> {
        let vol = self.vol(name).await?;
        let mut m = vol.meta.lock().await;
        require(&m, &[State::Stopped, State::SyncReady], "reset-vol")?;
        self.wdevd.reset_wal(&m.wdev).await?;
        m.done = MetaLsidGid {
            gid: walb_core::Gid(gid),
            ..zero_done()
        };
        m.queue.clear();
        m.state = State::SyncReady;
        save(&vol.dir, &m)?;
        Ok(Done {})
    }

    pub(crate) async fn stop(&self, name: &str) -> CmdResult<Done> {
        let vol = self.vol(name).await?;
        let mut m = vol.meta.lock().await;
        require(&m, &[State::Target, State::Standby], "stop")?;
        m.state = if m.state == State::Target {
            State::Stopped
        } else {
            State::SyncReady
        };
        save(&vol.dir, &m)?;
        Ok(Done {})
    }

    /// An explicit snapshot: the logs written so far are made permanent and the snapshot's
    /// gid returned.
    pub async fn snapshot(&self, vol: &Vol) -> CmdResult<MetaLsidGid> {
        let m = vol.meta.lock().await;
        require(&m, &[State::Target, State::Stopped], "snapshot")?;
        if self.wdevd.status(&m.wdev).await?.overflow {
            return Err(CmdError::State(
                "snapshot: the log overflowed; run a hash backup".into(),
            ));
        }
        drop(m);
        let mark = self.explicit_snapshot(vol).await?;
        vol.kick.notify_one();
        Ok(mark)
    }

    /// Makes every acknowledged write permanent (a checkpoint) and queues an explicit
    /// snapshot at the log's end; returns its lsid and gid.
    pub async fn explicit_snapshot(&self, vol: &Vol) -> CmdResult<MetaLsidGid> {
        let mut m = vol.meta.lock().await;
        self.wdevd.checkpoint(&m.wdev).await?;
        let dev = self.wdevd.status(&m.wdev).await?;
        m.queue_snapshot(dev.latest, false, self.max_wlog_send_pb(dev.pbs));
        save(&vol.dir, &m)?;
        Ok(*m.queue.last().expect("just queued"))
    }
}
