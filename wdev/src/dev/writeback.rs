//! Background data writeback: one thread per device makes a batch's logs permanent (through
//! `LogSync`, so writers go on logging during the sync), then writes the
//! batch's data to the data device (walb's driver does the same with its data IO queue). The
//! device hands over one batch at a time and keeps it for reads until the thread reports it
//! written.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::BlockIo;
use walb_core::wdiff::{DiffMemory, DiffRec};
use walb_core::LBS;

use super::logsync::LogSync;

/// The data device, shared by the device (reads, syncs) and its writeback thread.
pub type SharedIo = Arc<Mutex<Box<dyn BlockIo>>>;

/// The thread takes the data device for at most this many bytes at a time, so a read waits
/// for one chunk, not for a whole batch.
const CHUNK_BYTES: u64 = 4 << 20;

/// The thread's stack. wdevd locks its memory (`mlockall`), so a thread's whole stack is
/// resident: the default 2 MiB would cost every device 2 MiB; the thread needs far less.
const STACK_BYTES: usize = 256 << 10;

/// A batch handed to the thread: records sorted by address, and the lsid they cover (every
/// pack below it has its data in this batch or on the data device already).
struct Batch {
    recs: Arc<DiffMemory>,
    end: u64,
}

/// What the thread is asked to do with a batch.
struct Job {
    recs: Arc<DiffMemory>,
    /// Make the logs below this lsid durable first (they are not yet known to be permanent).
    sync_log: Option<u64>,
}

pub struct Writeback {
    jobs: Option<Sender<Job>>,
    done: Receiver<Result<(), String>>,
    inflight: Option<Batch>,
    /// The error of a failed batch; sticky, since the thread reports each batch once.
    failed: Option<String>,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    /// Starts the thread; it syncs the log device through `log`.
    pub fn spawn(log: Arc<LogSync>, ddev: SharedIo, name: &str) -> std::io::Result<Writeback> {
        let (jobs, job_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("wdev-wb-{name}"))
            .stack_size(STACK_BYTES)
            .spawn(move || run(&log, ddev, job_rx, done_tx))?;
        Ok(Writeback {
            jobs: Some(jobs),
            done,
            inflight: None,
            failed: None,
            thread: Some(thread),
        })
    }

    pub fn is_busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// The records being written, for reads (the data device may hold them partly).
    pub fn inflight(&self) -> Option<&DiffMemory> {
        self.inflight.as_ref().map(|b| &*b.recs)
    }

    /// Starts writing `recs`, which cover the log up to `end` (logs below `end` are made
    /// permanent first when `sync_log`). The thread must be idle.
    pub fn start(&mut self, recs: DiffMemory, end: u64, sync_log: bool) {
        assert!(self.inflight.is_none(), "one writeback batch at a time");
        let recs = Arc::new(recs);
        let job = Job {
            recs: recs.clone(),
            sync_log: sync_log.then_some(end),
        };
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        assert!(sent, "the writeback thread lives as long as the device");
        self.inflight = Some(Batch { recs, end });
    }

    /// The end lsid of the batch in flight once its logs are permanent and its data written
    /// (`wait`: blocks until then);
    /// `None` when nothing is in flight or, without `wait`, not done yet. A failed batch
    /// stays in flight (reads still need it; redo will write it) and its error is returned.
    pub fn finish(&mut self, wait: bool) -> Option<Result<u64, String>> {
        let end = self.inflight.as_ref()?.end;
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        let r = if wait {
            self.done
                .recv()
                .unwrap_or_else(|_| Err("the writeback thread died".into()))
        } else {
            match self.done.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => Err("the writeback thread died".into()),
            }
        };
        match &r {
            Ok(()) => self.inflight = None,
            Err(e) => self.failed = Some(e.clone()),
        }
        Some(r.map(|()| end))
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        // Closing the queue stops the thread after the batch in flight (if any).
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(log: &LogSync, ddev: SharedIo, jobs: Receiver<Job>, done: Sender<Result<(), String>>) {
    for job in jobs {
        let r = do_job(log, &ddev, &job).map_err(|e| e.to_string());
        if let Err(e) = &r {
            tracing::error!("data device writeback failed: {e}");
        }
        if done.send(r).is_err() {
            break;
        }
    }
}

/// Data reaches the data device only after its log is permanent.
fn do_job(log: &LogSync, ddev: &SharedIo, job: &Job) -> walb_core::Result<()> {
    if let Some(lsid) = job.sync_log {
        log.sync_to(lsid)
            .map_err(|e| walb_core::Error::io("sync log device", e))?;
    }
    write_batch(ddev, &job.recs)
}

/// Writes every record (in address order) without syncing: the superblock sync that follows
/// a batch syncs the data device first.
fn write_batch(ddev: &SharedIo, recs: &DiffMemory) -> walb_core::Result<()> {
    let mut it = recs.iter().peekable();
    while it.peek().is_some() {
        let mut io = ddev.lock().expect("data device lock");
        let mut ap = Applier::new(io.as_mut(), DiscardMode::Zero)?;
        let mut bytes = 0;
        for rec in it.by_ref() {
            ap.apply(rec)?;
            bytes += rec_bytes(rec);
            if bytes >= CHUNK_BYTES {
                break;
            }
        }
        ap.finish_unsynced()?;
    }
    Ok(())
}

fn rec_bytes(rec: &DiffRec) -> u64 {
    rec.blocks as u64 * LBS as u64
}
