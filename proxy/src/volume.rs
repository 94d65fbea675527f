//! A volume in memory: its state (docs/scenarios.md §7.3), its archives with their send control,
//! and what the sender tasks need to know about received wlogs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::archive_info::ArchiveInfo;
use crate::layout::VolDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Clear,
    Stopped,
    Started,
    /// Started and receiving a wlog.
    WlogRecv,
    /// `stop empty`: sending until every queue is empty, then Stopped.
    WaitForEmpty,
}

impl State {
    /// The state as the control plane carries it.
    pub fn typed(self) -> walb_proto::ProxyState {
        use walb_proto::ProxyState as P;
        match self {
            State::Clear => P::ProxyClear,
            State::Stopped => P::ProxyStopped,
            State::Started => P::ProxyStarted,
            State::WlogRecv => P::ProxyWlogRecv,
            State::WaitForEmpty => P::ProxyWaitForEmpty,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Clear => "Clear",
            State::Stopped => "Stopped",
            State::Started => "Started",
            State::WlogRecv => "WlogRecv",
            State::WaitForEmpty => "WaitForEmpty",
        })
    }
}

/// What one archive's sender task is told, and what it reports.
#[derive(Default)]
pub struct SendCtl {
    pub notify: Notify,
    st: Mutex<SendSt>,
}

#[derive(Default, Debug)]
pub struct SendSt {
    /// Run a send at this time; None: wait for a trigger.
    pub due: Option<Instant>,
    /// Gave up: no sends until kick, start or a new wlog.
    pub error: bool,
    /// The task must exit (after its current send).
    pub stop: bool,
    /// A send is in flight.
    pub busy: bool,
    /// Current back-off after failures (zero after a success).
    pub backoff: walb_daemon::backoff::Backoff,
    /// Why the last send failed, for status.
    pub last_failure: Option<String>,
    /// When retrying was last (re)armed by a new wlog, kick or start: the give-up clock.
    pub armed: Option<Instant>,
}

impl SendCtl {
    pub fn lock(&self) -> MutexGuard<'_, SendSt> {
        self.st.lock().expect("send control lock")
    }

    /// Wakes the task to send at `at` at the latest; `clear_error` re-arms a task that gave up.
    pub fn trigger(&self, at: Instant, clear_error: bool) {
        {
            let mut st = self.lock();
            if clear_error {
                // Re-armed: retry from the first back-off step, give up only after a new timeout.
                st.error = false;
                st.backoff.reset();
                st.armed = Some(Instant::now());
            }
            st.due = Some(st.due.map_or(at, |d| d.min(at)));
        }
        self.notify.notify_one();
    }
}

pub struct Archive {
    pub info: ArchiveInfo,
    pub ctl: Arc<SendCtl>,
    /// The sender task while the volume is Started or WaitForEmpty.
    pub task: Option<JoinHandle<()>>,
}

pub struct VolSt {
    pub state: State,
    pub archives: BTreeMap<String, Archive>,
    /// Set to abort a running wlog receive (`stop force`).
    pub abort_recv: Option<Arc<Notify>>,
}

pub struct Vol {
    pub name: String,
    pub dir: VolDir,
    st: Mutex<VolSt>,
}

impl Vol {
    pub fn new(name: &str, dir: VolDir, state: State) -> Vol {
        Vol {
            name: name.to_string(),
            dir,
            st: Mutex::new(VolSt {
                state,
                archives: BTreeMap::new(),
                abort_recv: None,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, VolSt> {
        self.st.lock().expect("volume lock")
    }

    pub fn state(&self) -> State {
        self.lock().state
    }
}

impl VolSt {
    /// Triggers every archive's sender at once (`clear_error`: also re-arm the ones that gave up).
    pub fn kick_all(&self, clear_error: bool) {
        let now = Instant::now();
        for a in self.archives.values() {
            a.ctl.trigger(now, clear_error);
        }
    }
}
