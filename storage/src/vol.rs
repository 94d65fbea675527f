//! A storage volume: its persisted state, device, done record and snapshot queue. Failures of
//! its files are `VolError`s; a command's check of its state answers a `CmdError`.

use std::path::{Path, PathBuf};

use tokio::sync::{Mutex, Notify};
use walb_core::meta::MetaLsidGid;
use walb_core::{Gid, Lsid};
use walb_daemon::error::bad_state;
use walb_daemon::volfile::{self, FileError};
use walb_daemon::{CmdError, CmdResult};

use crate::record::{self, BadRecord};

/// A failure of a volume's files.
#[derive(Debug, thiserror::Error)]
pub enum VolError {
    /// Creating the volume's directory.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
    /// A file every volume has is missing.
    #[error("{}: missing {file}", dir.display())]
    Missing { dir: PathBuf, file: &'static str },
    /// The state file names no static state.
    #[error("bad state file: {0:?}")]
    BadState(String),
    /// The done record or the snapshot queue does not parse.
    #[error(transparent)]
    Record(#[from] BadRecord),
}

/// Every failure of the volume's files is this server's.
impl From<VolError> for CmdError {
    fn from(e: VolError) -> CmdError {
        CmdError::Internal(e.to_string())
    }
}

/// Static states are persisted; transient ones (a foreground task running) are not, and a
/// restart finds the static state the task started from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    SyncReady,
    Stopped,
    Target,
    Standby,
    FullSync,
    HashSync,
    /// A failback writes the promoted image's differing bulks onto the device.
    Failback,
}

impl State {
    /// The state as the control plane carries it.
    pub fn typed(self) -> walb_proto::StorageState {
        use walb_proto::StorageState as S;
        match self {
            State::SyncReady => S::StorageSyncReady,
            State::Stopped => S::StorageStopped,
            State::Target => S::StorageTarget,
            State::Standby => S::StorageStandby,
            State::FullSync => S::StorageFullSync,
            State::HashSync => S::StorageHashSync,
            State::Failback => S::StorageFailback,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::SyncReady => "SyncReady",
            State::Stopped => "Stopped",
            State::Target => "Target",
            State::Standby => "Standby",
            State::FullSync => "FullSync",
            State::HashSync => "HashSync",
            State::Failback => "Failback",
        }
    }

    fn parse(s: &str) -> Result<State, VolError> {
        Ok(match s {
            "SyncReady" => State::SyncReady,
            "Stopped" => State::Stopped,
            "Target" => State::Target,
            "Standby" => State::Standby,
            other => return Err(VolError::BadState(other.to_string())),
        })
    }
}

/// What is persisted per volume.
#[derive(Clone, Debug)]
pub struct Meta {
    pub state: State,
    /// wdevd's name of the device.
    pub wdev: String,
    /// How far logs were transferred.
    pub done: MetaLsidGid,
    /// Snapshots not yet transferred, oldest first.
    pub queue: Vec<MetaLsidGid>,
}

pub struct Vol {
    pub name: String,
    pub dir: PathBuf,
    pub meta: Mutex<Meta>,
    /// Wakes the shipping task (snapshot, kick, state change).
    pub kick: Notify,
    /// Wakes the shipping task when the poller (`ship::watch`) saw the device move or logs
    /// waiting; unlike `kick` it does not cut a back-off short.
    pub polled: Notify,
    /// The device scan running (full or hash backup, device hash, failback), if any.
    pub scan: walb_daemon::progress::Running<crate::scan::Scan>,
    /// The device's write rate, sampled by the poller.
    pub writes: crate::rate::WriteRate,
    /// The log usage and capacity last set in the metrics, so that an idle volume's poll
    /// sets nothing.
    pub log_shown: std::sync::Mutex<Option<(u64, u64)>>,
}

pub fn zero_done() -> MetaLsidGid {
    MetaLsidGid {
        is_mergeable: false,
        timestamp: record::now(),
        lsid: Lsid(0),
        gid: Gid(0),
    }
}

impl Vol {
    /// Creates a volume directory in SyncReady.
    pub fn create(dir: &Path, name: &str, wdev: &str) -> Result<Vol, VolError> {
        std::fs::create_dir_all(dir).map_err(|source| VolError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let meta = Meta {
            state: State::SyncReady,
            wdev: wdev.to_string(),
            done: zero_done(),
            queue: Vec::new(),
        };
        volfile::write(&dir.join("wdev"), wdev)?;
        save(dir, &meta)?;
        Ok(Vol::new(dir, name, meta))
    }

    /// Loads a volume directory written by `create`/`save`.
    pub fn load(dir: &Path, name: &str) -> Result<Vol, VolError> {
        let need = |file: &'static str| -> Result<String, VolError> {
            volfile::read(&dir.join(file))?.ok_or_else(|| VolError::Missing {
                dir: dir.to_path_buf(),
                file,
            })
        };
        let meta = Meta {
            state: State::parse(&need("state")?)?,
            wdev: need("wdev")?,
            done: record::parse(&need("done")?)?,
            queue: record::parse_all(&volfile::read(&dir.join("queue"))?.unwrap_or_default())?,
        };
        Ok(Vol::new(dir, name, meta))
    }

    fn new(dir: &Path, name: &str, meta: Meta) -> Vol {
        Vol {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            meta: Mutex::new(meta),
            kick: Notify::new(),
            polled: Notify::new(),
            scan: Default::default(),
            writes: Default::default(),
            log_shown: Default::default(),
        }
    }
}

impl Meta {
    /// Queues a snapshot at `lsid` and returns its gid, reserved in proportion to the log
    /// since the previous record (docs/formats.md §6.4).
    pub fn queue_snapshot(&mut self, lsid: u64, mergeable: bool, max_wlog_send_pb: u64) -> Gid {
        let pre = *self.queue.last().unwrap_or(&self.done);
        let gid = walb_core::meta::next_gid(&pre, Lsid(lsid), max_wlog_send_pb);
        self.queue.push(MetaLsidGid {
            is_mergeable: mergeable,
            timestamp: record::now(),
            lsid: Lsid(lsid),
            gid,
        });
        gid
    }
}

impl Vol {
    /// Runs a full or hash backup: `work` gets the wdev name and runs in state `during`; the
    /// volume must be SyncReady and ends Target on success, SyncReady on failure.
    pub async fn backup<F, Fut>(&self, during: State, cmd: &str, work: F) -> CmdResult<u64>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = CmdResult<u64>>,
    {
        self.run_from_sync_ready(during, cmd, State::Target, work)
            .await
    }

    /// Runs `work` (given the wdev name) in the transient state `during`; the volume must be
    /// SyncReady and ends `after` on success, SyncReady on failure.
    pub async fn run_from_sync_ready<T, F, Fut>(
        &self,
        during: State,
        cmd: &str,
        after: State,
        work: F,
    ) -> CmdResult<T>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = CmdResult<T>>,
    {
        let wdev = {
            let mut m = self.meta.lock().await;
            require(&m, &[State::SyncReady], cmd)?;
            m.state = during;
            m.wdev.clone()
        };
        let r = work(wdev).await;
        let mut m = self.meta.lock().await;
        m.state = if r.is_ok() { after } else { State::SyncReady };
        save(&self.dir, &m)?;
        if r.is_ok() && after == State::Target {
            self.kick.notify_one();
        }
        r
    }
}

/// Persists `meta` (each file atomically; the queue before the done record, so a crash
/// between them leaves records the next transfer skips as already done).
pub fn save(dir: &Path, meta: &Meta) -> Result<(), VolError> {
    let state = match meta.state {
        // A restart during a full or hash backup or a failback finds the volume waiting for
        // one.
        State::FullSync | State::HashSync | State::Failback => State::SyncReady,
        s => s,
    };
    volfile::write(&dir.join("queue"), &record::format_all(&meta.queue))?;
    volfile::write(&dir.join("done"), &record::format(&meta.done))?;
    Ok(volfile::write(&dir.join("state"), state.name())?)
}

/// Refuses `cmd` unless the state is one of `ok`.
pub fn require(meta: &Meta, ok: &[State], cmd: &str) -> CmdResult<()> {
    if ok.contains(&meta.state) {
        return Ok(());
    }
    let want: Vec<&str> = ok.iter().map(|s| s.name()).collect();
    Err(bad_state(format!(
        "{cmd}: volume is {}, needs {}",
        meta.state.name(),
        want.join(" or ")
    )))
}
