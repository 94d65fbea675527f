//! Group commit: IOs that arrive while the device is busy are logged together, in one batch of
//! logpacks, by whichever writer commits next (walb's driver packs the IOs queued while a pack
//! is written the same way). A writer queues its IO and, when no other writer is committing,
//! commits every queued IO, batch after batch, until the queue is empty. Each IO's completion
//! runs once its batch is logged, on the committing thread: a writer that finds another one
//! committing goes on at once (a FUSE thread back to reading requests) instead of waiting.

use std::sync::{mpsc, Arc, Mutex, TryLockError};

use super::wdev::{Io, Wdev, WdevError};

/// A batch's outcome, shared by every writer in it.
pub type Outcome = Result<(), Arc<WdevError>>;

/// What runs once an IO is logged (or refused).
pub type Done = Box<dyn FnOnce(Outcome) + Send>;

struct Queued {
    io: Io,
    fua: bool,
    done: Done,
}

/// The queue of IOs waiting for the device, and the committer's token.
#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Vec<Queued>>,
    /// Held by the writer committing the queue.
    committing: Mutex<()>,
}

/// Writes of one batch beyond this many bytes wait for the next one, so a batch's packs stay
/// a bounded burst of log writes. Batches of 4 and 8 MiB (a committer that finds every
/// request of a 1 MiB stream queued) cost twice the CPU per byte in the log's page-cache
/// writes and halved sequential throughput; 1 and 2 MiB did not (BENCHMARKS.md, "wdev").
const MAX_BATCH_BYTES: usize = 2 << 20;

impl GroupCommit {
    pub fn new() -> GroupCommit {
        GroupCommit::default()
    }

    /// Queues `io` and commits the queue unless another writer is committing it; `done` runs
    /// once `io` is logged (durable too with `fua`), on whichever thread logged it. A bad IO is
    /// refused on its own and never fails the batch of others.
    pub fn submit_then(&self, dev: &Mutex<Wdev>, io: Io, fua: bool, done: Done) {
        self.queue
            .lock()
            .expect("queue lock")
            .push(Queued { io, fua, done });
        self.commit(dev);
    }

    /// Queues `io` and returns once it is logged (durable too with `fua`).
    pub fn submit(&self, dev: &Mutex<Wdev>, io: Io, fua: bool) -> Outcome {
        let (tx, rx) = mpsc::sync_channel(1);
        let done = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.submit_then(dev, io, fua, done);
        rx.recv().unwrap_or_else(|_| {
            let e = std::io::Error::other("its batch was lost (a panic while logging it)");
            Err(Arc::new(walb_core::Error::io("log a write", e).into()))
        })
    }

    /// Commits queued IOs until the queue is empty, unless another writer is at it. A writer
    /// that finds the token taken leaves its IO to the holder, who looks at the queue again
    /// after giving the token back: an IO queued before that is never left behind.
    fn commit(&self, dev: &Mutex<Wdev>) {
        loop {
            let token = match self.committing.try_lock() {
                Ok(t) => t,
                // A committer panicked: its batch's writers were told (their completions
                // dropped); the queue is still good.
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            loop {
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                log_batch(dev, batch);
            }
            drop(token);
            if self.queue.lock().expect("queue lock").is_empty() {
                return;
            }
        }
    }

    /// The oldest queued IOs up to `MAX_BATCH_BYTES` (at least one, unless none is queued).
    fn take_batch(&self) -> Vec<Queued> {
        let mut q = self.queue.lock().expect("queue lock");
        let mut bytes = 0;
        let n = q
            .iter()
            .take_while(|e| {
                bytes += match &e.io {
                    Io::Write { data, .. } => data.len(),
                    Io::Discard { .. } => 0,
                };
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1)
            .min(q.len());
        q.drain(..n).collect()
    }
}

/// Logs the IOs of `batch` the device takes as one batch, then runs every completion (the
/// refused IOs' first) without the device lock.
fn log_batch(dev: &Mutex<Wdev>, batch: Vec<Queued>) {
    let mut d = dev.lock().expect("device lock");
    let (mut good, mut bad) = (Vec::with_capacity(batch.len()), Vec::new());
    for q in batch {
        match d.check_io(&q.io) {
            Ok(()) => good.push(q),
            Err(e) => bad.push((q, Arc::new(e))),
        }
    }
    let r = match good.is_empty() {
        true => Ok(()),
        false => {
            let ios: Vec<Io> = good.iter().map(|q| q.io.clone()).collect();
            let fua = good.iter().any(|q| q.fua);
            d.submit(&ios, fua).map_err(Arc::new)
        }
    };
    drop(d);
    for (q, e) in bad {
        (q.done)(Err(e));
    }
    for q in good {
        (q.done)(r.clone());
    }
}
