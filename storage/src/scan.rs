//! Reading a device bulk by bulk on a thread of its own, so reads overlap with what the
//! caller does with each bulk (compress, hash, send); paced by the storage's scan rate limit,
//! with progress anyone can read and a cancel flag. The reads go through io_uring, several
//! in flight, bypassing the page cache where the device allows (`walb_core::blockio::
//! SeqReader`): a backup's scan neither copies through the cache nor evicts the host's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use walb_core::blockio::SeqReader;
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

/// Bytes per read (whole bulks, at least one).
const READ_BYTES: usize = 1 << 20;

/// Reads in flight: enough to keep a device's queue busy.
const READ_DEPTH: usize = 4;

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

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
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
    // Whole bulks and whole 4 KiB pages (the reader's unit), about READ_BYTES.
    let bulk = bulk_lb as usize * LBS;
    let unit = bulk / gcd(bulk, 4096) * 4096;
    let per_read = READ_BYTES.div_ceil(unit).max(1) * unit;
    let reader = SeqReader::open(path, 0, size_lb * LBS as u64, per_read, READ_DEPTH)
        .map_err(|e| CmdError::Internal(format!("open {}: {e}", path.display())))?;
    for chunk in reader {
        if scan.cancelled.load(Ordering::Relaxed) {
            return Err(CmdError::State(format!("{} cancelled", scan.progress.kind)));
        }
        let (off, data) =
            chunk.map_err(|e| CmdError::Internal(format!("read {}: {e}", path.display())))?;
        let (lba, blocks) = (off / LBS as u64, (data.len() / LBS) as u64);
        for at in (0..blocks).step_by(bulk_lb as usize) {
            let n = (blocks - at).min(bulk_lb as u64);
            let bulk = Bulk {
                lba: lba + at,
                blocks: n as u32,
                data: data.slice((at as usize * LBS)..((at + n) as usize * LBS)),
            };
            if tx.send(Ok(bulk)).is_err() {
                return Ok(());
            }
        }
        let done = (lba + blocks) * LBS as u64;
        scan.progress.set(done);
        scan.pace(done);
    }
    Ok(())
}
