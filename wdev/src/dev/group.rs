//! Group commit: IOs that arrive while the device is busy are logged together, in one batch of
//! logpacks, by whichever writer takes the device next (walb's driver packs the IOs queued
//! while a pack is written the same way). Each writer returns once its own IO is logged.

use std::sync::{Arc, Mutex, OnceLock};

use super::wdev::{Io, Wdev, WdevError};

/// A batch's outcome, shared by every writer in it.
pub type Outcome = Result<(), Arc<WdevError>>;

struct Queued {
    io: Io,
    fua: bool,
    done: Arc<OnceLock<Outcome>>,
}

/// The queue of IOs waiting for the device.
#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Vec<Queued>>,
}

/// Writes of one batch beyond this many bytes wait for the next one, so a batch's packs stay
/// a bounded burst of log writes.
const MAX_BATCH_BYTES: usize = 8 << 20;

impl GroupCommit {
    pub fn new() -> GroupCommit {
        GroupCommit::default()
    }

    /// Queues `io`, then logs it together with whatever else is queued once the device is
    /// free; returns when `io` is logged (durable too with `fua`). A bad IO is refused before
    /// it is queued, so it never fails the batch of others.
    pub fn submit(&self, dev: &Mutex<Wdev>, io: Io, fua: bool) -> Outcome {
        dev.lock().expect("device lock").check_io(&io)?;
        let done = Arc::new(OnceLock::new());
        self.queue.lock().expect("queue lock").push(Queued {
            io,
            fua,
            done: done.clone(),
        });
        loop {
            let mut d = dev.lock().expect("device lock");
            if let Some(r) = done.get() {
                return r.clone();
            }
            let batch = self.take_batch();
            let ios: Vec<Io> = batch.iter().map(|q| q.io.clone()).collect();
            let fua = batch.iter().any(|q| q.fua);
            let r = d.submit(&ios, fua).map_err(Arc::new);
            for q in &batch {
                let _ = q.done.set(r.clone());
            }
        }
    }

    /// The oldest queued IOs up to `MAX_BATCH_BYTES` (at least one).
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
