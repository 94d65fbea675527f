//! A volume's running long action (a backup scan, restore, apply, merge, verify, replication)
//! and how far it got, for `get progress` and `walbc status` (`walb_proto::ProgressReply`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use walb_proto::ProgressReply;

/// One running action.
pub struct Progress {
    pub kind: &'static str,
    /// Bytes the action covers.
    pub total: u64,
    done: AtomicU64,
    pub started: Instant,
}

impl Progress {
    pub fn new(kind: &'static str, total: u64) -> Progress {
        Progress {
            kind,
            total,
            done: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// `n` more bytes done.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes done in all.
    pub fn set(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// How far it got: bytes done and in all, bytes per second, seconds left.
    pub fn reply(&self) -> ProgressReply {
        let done = self.done();
        let total = self.total.max(done);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let eta_s = if rate > 0.0 {
            ((total - done) as f64 / rate).ceil() as u64
        } else {
            0
        };
        ProgressReply {
            idle: false,
            kind: self.kind.into(),
            done,
            total,
            rate: rate as u64,
            eta_s,
        }
    }
}

/// What a `Running` slot can show: a progress, or something that carries one (a storage's
/// scan, which can also be cancelled).
pub trait Shows: Send + Sync {
    fn progress(&self) -> &Progress;
}

impl Shows for Progress {
    fn progress(&self) -> &Progress {
        self
    }
}

/// Where a volume's running action is kept: the innermost one shows (a verify's deep check
/// shows as `bhash` while it runs, then the verify again).
pub struct Running<T = Progress>(Mutex<Option<Arc<T>>>);

impl<T> Default for Running<T> {
    fn default() -> Self {
        Running(Mutex::new(None))
    }
}

impl<T: Shows> Running<T> {
    /// Shows `p` until the guard is dropped.
    pub fn begin(&self, p: T) -> (Arc<T>, RunningGuard<'_, T>) {
        let p = Arc::new(p);
        let outer = self.0.lock().expect("progress lock").replace(p.clone());
        (p, RunningGuard { slot: self, outer })
    }

    /// The action running now, if any.
    pub fn current(&self) -> Option<Arc<T>> {
        self.0.lock().expect("progress lock").clone()
    }

    /// The running action's line, or `idle`.
    pub fn reply(&self) -> ProgressReply {
        self.current().map_or_else(
            || ProgressReply {
                idle: true,
                ..Default::default()
            },
            |p| p.progress().reply(),
        )
    }
}

/// Shows the action that ran before (or none) when dropped.
pub struct RunningGuard<'a, T> {
    slot: &'a Running<T>,
    outer: Option<Arc<T>>,
}

impl<T> Drop for RunningGuard<'_, T> {
    fn drop(&mut self) {
        *self.slot.0.lock().expect("progress lock") = self.outer.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_running_and_done() {
        let r: Running = Running::default();
        let shown = |r: &Running| {
            let p = r.reply();
            (p.idle, p.kind, p.done, p.total)
        };
        assert!(r.reply().idle);
        {
            let (p, _g) = r.begin(Progress::new("restore", 100));
            p.add(40);
            assert_eq!(shown(&r), (false, "restore".into(), 40, 100));
            {
                let (_q, _h) = r.begin(Progress::new("bhash", 10));
                assert_eq!(shown(&r), (false, "bhash".into(), 0, 10));
            }
            assert_eq!(shown(&r), (false, "restore".into(), 40, 100));
        }
        assert!(r.reply().idle);
    }
}
