//! Reading a device bulk by bulk on a thread of its own, so reads overlap with what the
//! caller does with each bulk (compress, hash, send); paced by the storage's scan rate limit,
//! with progress anyone can read and a cancel flag.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use walb_core::LBS;
use walb_daemon::progress::{Progress, Shows};
use walb_daemon::{CmdError, CmdResult};

/// One bulk: its address, length in LB and bytes.
pub struct Bulk {
    pub lba: u64,
    pub blocks: u32,
    pub data: Bytes,
}

/// A running scan: what it is and how far it got, and whether to stop.
pub struct Scan {
    pub progress: Progress,
    pub cancelled: AtomicBool,
    /// Bytes per second, 0 for no limit; shared with the storage so a change applies at once.
    pub bps: Arc<AtomicU64>,
}

impl Shows for Scan {
    fn progress(&self) -> &Progress {
        &self.progress
    }
}

impl Scan {
    pub fn new(kind: &'static str, total: u64, bps: Arc<AtomicU64>) -> Scan {
        Scan {
            progress: Progress::new(kind, total),
            cancelled: AtomicBool::new(false),
            bps,
        }
    }

    /// Sleeps as long as the rate limit asks after `done` bytes.
    fn pace(&self, done: u64) {
        let bps = self.bps.load(Ordering::Relaxed);
        if bps == 0 {
            return;
        }
        let due = Duration::from_secs_f64(done as f64 / bps as f64);
        if let Some(wait) = due.checked_sub(self.progress.started.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_secs(1)));
        }
    }
}

/// Bytes read ahead of the consumer (two bulks at least).
const READ_AHEAD_BYTES: usize = 8 << 20;

/// Bytes read per system call (whole bulks, at least one): fewer, larger reads keep the
/// device's queue full.
const READ_BYTES: usize = 1 << 20;

/// Starts reading `path` from LB 0 to `size_lb` in bulks of `bulk_lb`; the receiver yields
/// them in order (an error, or `cancel`, ends the stream). Dropping the receiver stops the
/// reader.
pub fn read_bulks(
    path: PathBuf,
    size_lb: u64,
    bulk_lb: u32,
    scan: Arc<Scan>,
) -> mpsc::Receiver<CmdResult<Bulk>> {
    let ahead = (READ_AHEAD_BYTES / (bulk_lb as usize * LBS)).max(2);
    let (tx, rx) = mpsc::sync_channel(ahead);
    std::thread::spawn(move || {
        if let Err(e) = read_into(&path, size_lb, bulk_lb, &scan, &tx) {
            let _ = tx.send(Err(e));
        }
    });
    rx
}

/// The reader thread's loop; returns when done, when the receiver went away, or with the
/// error that ends the stream.
fn read_into(
    path: &std::path::Path,
    size_lb: u64,
    bulk_lb: u32,
    scan: &Scan,
    tx: &mpsc::SyncSender<CmdResult<Bulk>>,
) -> CmdResult<()> {
    let f = std::fs::File::open(path)
        .map_err(|e| CmdError::Internal(format!("open {}: {e}", path.display())))?;
    let per_read = (READ_BYTES / (bulk_lb as usize * LBS)).max(1) as u64 * bulk_lb as u64;
    let mut lba = 0u64;
    while lba < size_lb {
        if scan.cancelled.load(Ordering::Relaxed) {
            return Err(CmdError::State(format!("{} cancelled", scan.progress.kind)));
        }
        let blocks = (size_lb - lba).min(per_read);
        let mut buf = vec![0u8; blocks as usize * LBS];
        f.read_exact_at(&mut buf, lba * LBS as u64)
            .map_err(|e| CmdError::Internal(format!("read {} at LB {lba}: {e}", path.display())))?;
        let data = Bytes::from(buf);
        for off in (0..blocks).step_by(bulk_lb as usize) {
            let n = (blocks - off).min(bulk_lb as u64);
            let bulk = Bulk {
                lba: lba + off,
                blocks: n as u32,
                data: data.slice((off as usize * LBS)..((off + n) as usize * LBS)),
            };
            if tx.send(Ok(bulk)).is_err() {
                return Ok(());
            }
        }
        lba += blocks;
        let done = lba * LBS as u64;
        scan.progress.set(done);
        scan.pace(done);
    }
    Ok(())
}
