//! Background data writeback: a small pool of threads shared by every device makes a
//! batch's logs permanent (through `LogSync`, so writers go on logging during the sync), then
//! writes the batch's data to the data device (walb's driver does the same with its data IO
//! queue). A device hands over one batch at a time and keeps it for reads until a thread
//! reports it written. The pool is shared so that an idle device costs no thread: a wdevd
//! serving hundreds of devices runs `POOL_THREADS`, not one per device.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};

use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::BlockIo;
use walb_core::wdiff::{DiffMemory, DiffRec};
use walb_core::LBS;

use super::logsync::LogSync;

/// The data device, shared by the device (reads, syncs) and the writeback pool.
pub type SharedIo = Arc<Mutex<Box<dyn BlockIo>>>;

/// The thread takes the data device for at most this many bytes at a time, so a read waits
/// for one chunk, not for a whole batch.
const CHUNK_BYTES: u64 = 4 << 20;

/// A pool thread's stack. wdevd locks its memory (`mlockall`), so a thread's whole stack is
/// resident; the threads need far less than the default 2 MiB.
const STACK_BYTES: usize = 256 << 10;

/// Threads in the pool: devices whose batches wait for a slow disk do not hold up the others
/// beyond this many at once.
const POOL_THREADS: usize = 4;

/// A batch handed to the pool: records sorted by address, the lsid they cover (every pack
/// below it has its data in this batch or on the data device already), and where the pool
/// reports it.
struct Batch {
    recs: Arc<DiffMemory>,
    end: u64,
    done: Receiver<Result<(), String>>,
}

/// What a pool thread is asked to do with a batch, and where it reports.
struct Job {
    log: Arc<LogSync>,
    ddev: SharedIo,
    recs: Arc<DiffMemory>,
    /// Make the logs below this lsid durable first (they are not yet known to be permanent).
    sync_log: Option<u64>,
    done: Sender<Result<(), String>>,
}

/// One device's side of the writeback: its batch in flight.
pub struct Writeback {
    log: Arc<LogSync>,
    ddev: SharedIo,
    inflight: Option<Batch>,
    /// The error of a failed batch; sticky, since the pool reports each batch once.
    failed: Option<String>,
}

/// The pool's queue; its threads start on first use.
fn pool() -> std::io::Result<&'static Sender<Job>> {
    static POOL: OnceLock<Sender<Job>> = OnceLock::new();
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..POOL_THREADS {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("wdev-wb-{i}"))
            .stack_size(STACK_BYTES)
            .spawn(move || run(&rx))?;
    }
    // Threads started by a caller that lost the race see their queue closed and end.
    Ok(POOL.get_or_init(|| tx))
}

impl Writeback {
    /// A device's writeback through the shared pool; it syncs the log device through `log`.
    pub fn new(log: Arc<LogSync>, ddev: SharedIo) -> std::io::Result<Writeback> {
        pool()?;
        Ok(Writeback {
            log,
            ddev,
            inflight: None,
            failed: None,
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
    /// permanent first when `sync_log`). No batch of this device may be in flight.
    pub fn start(&mut self, recs: DiffMemory, end: u64, sync_log: bool) {
        assert!(self.inflight.is_none(), "one writeback batch at a time");
        let recs = Arc::new(recs);
        let (done_tx, done) = mpsc::channel();
        let job = Job {
            log: self.log.clone(),
            ddev: self.ddev.clone(),
            recs: recs.clone(),
            sync_log: sync_log.then_some(end),
            done: done_tx,
        };
        let sent = pool().is_ok_and(|p| p.send(job).is_ok());
        assert!(
            sent,
            "the writeback pool, started by new, lives as long as the process"
        );
        self.inflight = Some(Batch { recs, end, done });
    }

    /// The end lsid of the batch in flight once its logs are permanent and its data written
    /// (`wait`: blocks until then);
    /// `None` when nothing is in flight or, without `wait`, not done yet. A failed batch
    /// stays in flight (reads still need it; redo will write it) and its error is returned.
    pub fn finish(&mut self, wait: bool) -> Option<Result<u64, String>> {
        let b = self.inflight.as_ref()?;
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        let lost = || Err("the writeback job was lost".to_string());
        let r = if wait {
            b.done.recv().unwrap_or_else(|_| lost())
        } else {
            match b.done.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => lost(),
            }
        };
        let end = b.end;
        match &r {
            Ok(()) => self.inflight = None,
            Err(e) => self.failed = Some(e.clone()),
        }
        Some(r.map(|()| end))
    }
}

impl Drop for Writeback {
    /// Waits for the batch in flight (if any): the device's files are not released while a
    /// pool thread still writes to them.
    fn drop(&mut self) {
        if let Some(b) = self.inflight.as_ref().filter(|_| self.failed.is_none()) {
            let _ = b.done.recv();
        }
    }
}

/// A pool thread: batches in turn, from any device. A panic in a batch is reported as its
/// failure, and the thread goes on.
fn run(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock().expect("pool queue").recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| do_job(&job))) {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the writeback of a batch panicked".to_string()),
        };
        if let Err(e) = &r {
            tracing::error!("data device writeback failed: {e}");
        }
        let _ = job.done.send(r);
    }
}

/// Data reaches the data device only after its log is permanent.
fn do_job(job: &Job) -> walb_core::Result<()> {
    if let Some(lsid) = job.sync_log {
        job.log
            .sync_to(lsid)
            .map_err(|e| walb_core::Error::io("sync log device", e))?;
    }
    write_batch(&job.ddev, &job.recs)
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
