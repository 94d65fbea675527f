//! A volume's running long action (a backup scan, restore, apply, merge, verify, replication)
//! and how far it got, for `get progress` and `walbc status`: one line,
//! `KIND DONE_BYTES TOTAL_BYTES BYTES_PER_S ETA_S`, or `idle`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

    /// `KIND DONE TOTAL RATE ETA` (bytes, bytes per second, seconds).
    pub fn line(&self) -> String {
        let done = self.done();
        let total = self.total.max(done);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            ((total - done) as f64 / rate).ceil() as u64
        } else {
            0
        };
        format!("{} {done} {total} {} {eta}", self.kind, rate as u64)
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
    pub fn line(&self) -> String {
        self.current()
            .map_or_else(|| "idle".to_string(), |p| p.progress().line())
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
        assert_eq!(r.line(), "idle");
        {
            let (p, _g) = r.begin(Progress::new("restore", 100));
            p.add(40);
            let f: Vec<String> = r.line().split(' ').map(String::from).collect();
            assert_eq!(&f[..3], ["restore", "40", "100"]);
            {
                let (_q, _h) = r.begin(Progress::new("bhash", 10));
                assert!(r.line().starts_with("bhash 0 10"));
            }
            assert!(r.line().starts_with("restore 40 100"));
        }
        assert_eq!(r.line(), "idle");
    }
}
