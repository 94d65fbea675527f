//! `Wdev`: the write path of a walb device without FUSE (docs/formats.md §8).
//!
//! Each `submit` groups its IOs into logpacks, writes them to the ring and returns once the log
//! write is done (the driver's ack point); a FUA or `flush` makes the log durable first.
//! Acknowledged data stays pending in memory (reads see it); once enough is pending, the batch
//! goes to a writeback thread (`dev::writeback`), which makes its log permanent and then writes it to the data
//! device while new writes are logged. `written` advances when a batch is on the data device;
//! the superblock is synced at checkpoints (data device synced first), so redo after a crash
//! starts from a written lsid whose data is on the data device.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use walb_core::blockio::BlockIo;
use walb_core::ldev::superblock::ring_size_for;
use walb_core::ldev::Ldev;
use walb_core::logpack::PackBuilder;
use walb_core::wdiff::{Body, DiffMemory, DiffRec};
use walb_core::{Pbs, Uuid, LBS};

use super::logsync::LogSync;
use super::lsids::Lsids;
use super::redo::redo;
use super::writeback::{SharedIo, Writeback};

#[derive(Debug, thiserror::Error)]
pub enum WdevError {
    #[error(transparent)]
    Core(#[from] walb_core::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("device is read-only after a superblock or data device write failure")]
    ReadOnly,
    #[error("data device writeback failed: {0}; the device is read-only")]
    Writeback(String),
}

pub type Result<T> = std::result::Result<T, WdevError>;

/// One IO of a batch.
#[derive(Clone, Debug)]
pub enum Io {
    Write { lba: u64, data: Bytes },
    Discard { lba: u64, blocks: u32 },
}

/// Pending data beyond this goes to the writeback thread when the thread is idle. Small
/// enough that a batch's log sync is short, large enough that overwrites of hot blocks are
/// written once. Writers wait for the thread's batch only beyond twice this, so memory stays
/// bounded: pending plus in flight at most four times this.
const HANDOFF_BYTES: usize = 16 << 20;

pub struct Wdev {
    ldev: Ldev,
    ddev: SharedIo,
    /// Syncs the log device, also without the device lock (`flush_target`).
    log_sync: Arc<LogSync>,
    /// A handle of its own on the data device for its syncs, so reads and the writeback
    /// thread go on meanwhile (`super_due`).
    ddev_sync: Arc<Mutex<Box<dyn BlockIo>>>,
    lsids: Lsids,
    overflow: bool,
    read_only: bool,
    /// Acknowledged data of the packs since the last handoff; newest wins.
    pending: DiffMemory,
    /// Writes the handed-off batch to the data device; reads lay it under `pending`.
    wb: Writeback,
    handoff_bytes: usize,
}

fn invalid(msg: String) -> WdevError {
    WdevError::Invalid(msg)
}

impl Wdev {
    /// Opens a formatted log device and its data device, redoes the log from the written
    /// lsid and syncs the superblock.
    pub fn open(
        ldev: Box<dyn BlockIo>,
        mut ddev: Box<dyn BlockIo>,
        pbs: Option<Pbs>,
    ) -> Result<Wdev> {
        let mut ldev = Ldev::open(ldev, pbs)?;
        let ddev_lb = ddev
            .size()
            .map_err(|e| walb_core::Error::io("data device size", e))?
            / LBS as u64;
        if ldev.sb.device_size > ddev_lb {
            return Err(invalid(format!(
                "superblock device size {} LB exceeds the data device's {ddev_lb} LB",
                ldev.sb.device_size
            )));
        }
        let r = redo(&mut ldev, ddev.as_mut())?;
        tracing::info!(
            device = %ldev.sb.name,
            "redo: lsid {}..{} replayed ({} packs, {} bytes)",
            r.begin,
            r.end,
            r.packs,
            r.bytes
        );
        let end = r.end;
        let oldest = ldev.sb.oldest_lsid;
        let ring = ldev.sb.ring_buffer_size;
        let overflow = end - oldest > ring || (end > oldest && ldev.read_header(oldest)?.is_err());
        let sync_ldev = ldev
            .io()
            .try_clone()
            .map_err(|e| walb_core::Error::io("second handle on the log device", e))?;
        let log_sync = Arc::new(LogSync::new(sync_ldev, end));
        let ddev_sync = ddev
            .try_clone()
            .map_err(|e| walb_core::Error::io("second handle on the data device", e))?;
        let ddev: SharedIo = Arc::new(Mutex::new(ddev));
        let wb = Writeback::new(log_sync.clone(), ddev.clone())
            .map_err(|e| walb_core::Error::io("start the writeback threads", e))?;
        let mut dev = Wdev {
            ldev,
            ddev,
            log_sync,
            ddev_sync: Arc::new(Mutex::new(ddev_sync)),
            lsids: Lsids::at(oldest, end),
            overflow,
            read_only: false,
            pending: DiffMemory::new(),
            wb,
            handoff_bytes: HANDOFF_BYTES,
        };
        dev.sync_super()?;
        Ok(dev)
    }

    pub fn lsids(&self) -> Lsids {
        self.lsids
    }
    pub fn pbs(&self) -> Pbs {
        self.ldev.pbs()
    }
    pub fn uuid(&self) -> Uuid {
        self.ldev.sb.uuid
    }
    pub fn salt(&self) -> u32 {
        self.ldev.sb.log_checksum_salt
    }
    /// Device size in LB.
    pub fn size_lb(&self) -> u64 {
        self.ldev.sb.device_size
    }
    pub fn name(&self) -> &str {
        &self.ldev.sb.name
    }
    pub fn is_overflow(&self) -> bool {
        self.overflow
    }
    /// `latest − oldest` in PBs; may exceed the capacity after an overflow.
    pub fn log_usage(&self) -> u64 {
        self.lsids.latest - self.lsids.oldest
    }
    pub fn log_capacity(&self) -> u64 {
        self.ldev.sb.ring_buffer_size
    }
    /// Sets how much pending data starts a writeback batch (tests use small devices).
    pub fn set_handoff_bytes(&mut self, bytes: usize) {
        self.handoff_bytes = bytes;
    }
    /// True while a batch is being written to the data device in the background.
    pub fn is_writing_back(&self) -> bool {
        self.wb.is_busy()
    }

    fn check_range(&self, lba: u64, blocks: u64) -> Result<()> {
        if blocks == 0 || lba.checked_add(blocks).is_none_or(|e| e > self.size_lb()) {
            return Err(invalid(format!(
                "IO at LB {lba} (+{blocks}) is outside the device's {} LB",
                self.size_lb()
            )));
        }
        Ok(())
    }

    /// Refuses an IO the device cannot take: a write that is not a positive multiple of 512
    /// bytes up to 65535 blocks, or a range outside the device.
    pub fn check_io(&self, io: &Io) -> Result<()> {
        match io {
            Io::Write { lba, data } => {
                if data.is_empty() || !data.len().is_multiple_of(LBS) || data.len() / LBS > 65535 {
                    return Err(invalid(format!(
                        "write of {} bytes: must be a positive multiple of 512 up to 65535 blocks",
                        data.len()
                    )));
                }
                self.check_range(*lba, (data.len() / LBS) as u64)
            }
            Io::Discard { lba, blocks } => self.check_range(*lba, *blocks as u64),
        }
    }

    /// Logs a batch of IOs (grouped into packs) and returns once the log writes are done;
    /// with `fua` the logs are durable too.
    pub fn submit(&mut self, ios: &[Io], fua: bool) -> Result<()> {
        self.reap(false)?;
        if self.read_only {
            return Err(WdevError::ReadOnly);
        }
        for io in ios {
            self.check_io(io)?;
        }
        let ring = self.log_capacity();
        let salt = self.salt();
        // Each IO's data is written from its own buffer (no gathering copy).
        let mut b = PackBuilder::new(self.pbs(), self.lsids.latest, Some(ring)).headers_only();
        // The IOs in `b`, not yet logged.
        let mut packed = Vec::new();
        for io in ios {
            loop {
                let added = match io {
                    Io::Write { lba, data } => b.add_write(*lba, data, salt),
                    Io::Discard { lba, blocks } => b.add_discard(*lba, *blocks),
                };
                if added.is_ok() {
                    break;
                }
                self.write_pack(&mut b, &mut packed)?;
            }
            packed.push(io);
        }
        if !b.is_empty() {
            self.write_pack(&mut b, &mut packed)?;
        }
        // FUA makes the log durable before the ack.
        if fua {
            self.make_permanent()?;
        }
        self.write_back_if_due()
    }

    /// Hands pending data to the writeback thread once there is enough; waits for the
    /// thread's batch only when pending data reached its bound.
    fn write_back_if_due(&mut self) -> Result<()> {
        let bytes = self.pending.data_bytes();
        if bytes > 2 * self.handoff_bytes || (bytes > self.handoff_bytes && !self.wb.is_busy()) {
            self.hand_off()?;
        }
        Ok(())
    }

    /// Writes the builder's pack at `latest` and starts the next one; the pack's IOs
    /// (`packed`) become pending, so pending data always covers every pack since the last
    /// handoff (a checkpoint between two packs of a batch must not skip the first's data).
    fn write_pack(&mut self, b: &mut PackBuilder, packed: &mut Vec<&Io>) -> Result<()> {
        let (h, _) = b.take();
        let next = h.next_lsid();
        let ring = self.log_capacity();
        // Redo safety: never overwrite logs at or above prev_written.
        if next - self.lsids.prev_written > ring {
            self.checkpoint()?;
        }
        if next - self.lsids.oldest > ring && !self.overflow {
            tracing::warn!(
                device = self.name(),
                "log overflow: logs not yet extracted are being overwritten"
            );
            self.overflow = true;
        }
        let data: Vec<&[u8]> = packed
            .iter()
            .filter_map(|io| match io {
                Io::Write { data, .. } => Some(&data[..]),
                Io::Discard { .. } => None,
            })
            .collect();
        self.ldev.write_pack_parts(&h, &data)?;
        self.lsids.latest = next;
        self.lsids.completed = next;
        self.log_sync.written(next);
        for io in packed.drain(..) {
            self.pending.insert(pending_rec(io));
        }
        Ok(())
    }

    /// `submit` of one write.
    pub fn write(&mut self, lba: u64, data: Bytes, fua: bool) -> Result<()> {
        self.submit(&[Io::Write { lba, data }], fua)
    }

    /// `submit` of one discard; the range reads back as zeros.
    pub fn discard(&mut self, lba: u64, blocks: u32) -> Result<()> {
        self.submit(&[Io::Discard { lba, blocks }], false)
    }

    /// Makes every completed log durable (permanent). Acknowledged data is then safe (redo
    /// writes it after a crash); it reaches the data device in the background, once enough is
    /// pending or at the next checkpoint, not at every flush: an fsync per write would
    /// otherwise wake the writeback thread for every small write.
    pub fn flush(&mut self) -> Result<()> {
        let (sync, lsid) = self.flush_target()?;
        sync.sync_to(lsid)
            .map_err(|e| walb_core::Error::io("sync log device", e))?;
        self.flushed();
        Ok(())
    }

    /// `flush` in two steps, so that the log device syncs without the device lock: this
    /// returns what to sync and up to which lsid (`LogSync::sync_to`); `flushed`, once that
    /// returned, records it.
    pub fn flush_target(&mut self) -> Result<(Arc<LogSync>, u64)> {
        self.reap(false)?;
        Ok((self.log_sync.clone(), self.lsids.completed))
    }

    /// After `flush_target`'s sync (or any sync made without the device lock): `permanent`
    /// advances to what is durable.
    pub fn flushed(&mut self) {
        let durable = self.log_sync.durable().min(self.lsids.completed);
        self.lsids.permanent = self.lsids.permanent.max(durable);
    }

    /// An idle writeback thread takes the pending data (the periodic checkpoint).
    pub fn hand_off_if_idle(&mut self) -> Result<()> {
        if self.wb.is_busy() {
            return Ok(());
        }
        self.hand_off()
    }

    /// Writes every acknowledged write to the data device (waiting for the writeback thread),
    /// then syncs the superblock so redo would start at `written` = `latest`.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.hand_off()?;
        self.reap(true)?;
        self.sync_super()
    }

    /// The periodic checkpoint: `flush` (logs durable), pending data handed to an idle
    /// writeback thread, then the superblock synced if `written` moved; it never waits for a
    /// batch in flight, so writers are not held up every interval. What is still in flight
    /// is recorded by a later one (or by `checkpoint`, which waits).
    pub fn checkpoint_nowait(&mut self) -> Result<()> {
        self.flush()?;
        self.hand_off_if_idle()?;
        if let Some(due) = self.super_due() {
            sync_data_device(&due.ddev)?;
            self.record_written(&due)?;
        }
        Ok(())
    }

    /// The superblock sync a periodic checkpoint owes, in steps so that the data device
    /// syncs without the device lock: `None` when `written` has not moved; else what to
    /// sync and, once it synced, to record (`record_written`).
    pub fn super_due(&self) -> Option<SuperDue> {
        (self.lsids.written > self.lsids.prev_written).then(|| SuperDue {
            ddev: self.ddev_sync.clone(),
            written: self.lsids.written,
            uuid: self.uuid(),
        })
    }

    /// Writes the superblock with `due.written` (its data device synced since), unless the
    /// log started over meanwhile (reset-wal: new uuid) or a later one was recorded.
    pub fn record_written(&mut self, due: &SuperDue) -> Result<()> {
        if due.uuid != self.uuid() || due.written <= self.lsids.prev_written {
            return Ok(());
        }
        self.write_super(due.written)
    }

    /// Syncs the log if needed: `permanent` = `completed`.
    fn make_permanent(&mut self) -> Result<()> {
        if self.lsids.permanent < self.lsids.completed {
            self.log_sync
                .sync_to(self.lsids.completed)
                .map_err(|e| walb_core::Error::io("sync log device", e))?;
            self.lsids.permanent = self.lsids.completed;
        }
        Ok(())
    }

    /// Hands every pending record to the writeback thread, after its previous batch is
    /// written; the thread makes their logs permanent before it writes their data.
    fn hand_off(&mut self) -> Result<()> {
        self.reap(true)?;
        if self.pending.is_empty() {
            // Every pack below `completed` has its data on the data device already.
            self.make_permanent()?;
            self.lsids.written = self.lsids.permanent;
            return Ok(());
        }
        let recs = std::mem::take(&mut self.pending);
        let end = self.lsids.completed;
        self.wb.start(recs, end, self.lsids.permanent < end);
        Ok(())
    }

    /// Takes the writeback thread's outcome (`wait`: waits for it): `permanent` and
    /// `written` advance to the end of its batch. A failed batch makes the device read-only;
    /// its data stays in memory for reads and in the log for redo.
    fn reap(&mut self, wait: bool) -> Result<()> {
        match self.wb.finish(wait) {
            None => Ok(()),
            Some(Ok(end)) => {
                self.lsids.permanent = self.lsids.permanent.max(end);
                self.lsids.written = end;
                Ok(())
            }
            Some(Err(e)) => {
                self.read_only = true;
                Err(WdevError::Writeback(e))
            }
        }
    }

    /// Writes the superblock: the data device is made durable first (docs/formats.md §2.2), since
    /// the superblock's `written` tells redo that everything below it is there. A batch still being
    /// written is not below `written`.
    fn sync_super(&mut self) -> Result<()> {
        sync_data_device(&self.ddev_sync)?;
        self.write_super(self.lsids.written)
    }

    /// Writes and syncs the superblock with `written` (its data on the data device, synced).
    fn write_super(&mut self, written: u64) -> Result<()> {
        self.ldev.sb.oldest_lsid = self.lsids.oldest;
        self.ldev.sb.written_lsid = written;
        let r = self.ldev.write_super().and_then(|_| self.ldev.sync());
        if let Err(e) = r {
            self.read_only = true;
            return Err(e.into());
        }
        self.lsids.prev_written = written;
        Ok(())
    }

    /// Reads `buf.len()` bytes at `lba`: the data device, with the batch being written back
    /// and then pending data laid over it (newest wins).
    pub fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<()> {
        if !buf.len().is_multiple_of(LBS) {
            return Err(invalid(format!(
                "read of {} bytes is not a multiple of 512",
                buf.len()
            )));
        }
        let blocks = (buf.len() / LBS) as u64;
        self.check_range(lba, blocks)?;
        // The data device may hold an in-flight batch partly; the overlay below covers it.
        self.ddev
            .lock()
            .expect("data device lock")
            .read_at(buf, lba * LBS as u64)
            .map_err(|e| walb_core::Error::io(format!("read data device at LB {lba}"), e))?;
        if let Some(inflight) = self.wb.inflight() {
            overlay(inflight, lba, buf);
        }
        overlay(&self.pending, lba, buf);
        Ok(())
    }

    /// Frees logs below `lsid` (after they were extracted). Must be in
    /// `[oldest, prev_written]`, and a valid pack boundary below `permanent`.
    pub fn set_oldest_lsid(&mut self, lsid: u64) -> Result<()> {
        if lsid < self.lsids.oldest || lsid > self.lsids.prev_written {
            return Err(invalid(format!(
                "oldest lsid {lsid} must be within [{}, {}] (oldest, prev_written)",
                self.lsids.oldest, self.lsids.prev_written
            )));
        }
        if lsid < self.lsids.permanent && self.ldev.read_header(lsid)?.is_err() {
            return Err(invalid(format!(
                "lsid {lsid} is not the start of a logpack"
            )));
        }
        self.lsids.oldest = lsid;
        self.sync_super()
    }

    /// Drops every log: new uuid and salt, lsids 0, overflow cleared. Data stays.
    pub fn reset_wal(&mut self) -> Result<()> {
        self.checkpoint()?;
        let size = self
            .ldev
            .io()
            .size()
            .map_err(|e| walb_core::Error::io("log device size", e))?;
        let ring = ring_size_for(size, self.pbs())?;
        if ring < self.ldev.sb.ring_buffer_size {
            return Err(invalid(
                "the log device shrank; reset-wal cannot continue".into(),
            ));
        }
        self.ldev.sb.ring_buffer_size = ring;
        self.ldev.sb.uuid = Uuid::random();
        self.ldev.sb.log_checksum_salt = rand_salt();
        self.lsids = Lsids::at(0, 0);
        self.log_sync.restart(0);
        self.ldev.invalidate(0)?;
        self.sync_super()?;
        self.overflow = false;
        Ok(())
    }

    /// Grows the device to `new_lb` (0: the whole data device); never shrinks.
    pub fn resize(&mut self, new_lb: u64) -> Result<()> {
        let ddev_lb = self
            .ddev
            .lock()
            .expect("data device lock")
            .size()
            .map_err(|e| walb_core::Error::io("data device size", e))?
            / LBS as u64;
        let new_lb = if new_lb == 0 { ddev_lb } else { new_lb };
        if new_lb < self.size_lb() || new_lb > ddev_lb {
            return Err(invalid(format!(
                "resize to {new_lb} LB: must be within [{}, {ddev_lb}] (current, data device)",
                self.size_lb()
            )));
        }
        self.ldev.sb.device_size = new_lb;
        self.sync_super()
    }
}

/// A superblock sync owed by a periodic checkpoint (`Wdev::super_due`).
pub struct SuperDue {
    /// The data device's sync handle: sync it, then `record_written`.
    pub ddev: Arc<Mutex<Box<dyn BlockIo>>>,
    written: u64,
    uuid: Uuid,
}

/// Syncs the data device through its sync handle.
pub fn sync_data_device(ddev: &Mutex<Box<dyn BlockIo>>) -> Result<()> {
    ddev.lock()
        .expect("data device sync handle")
        .sync()
        .map_err(|e| walb_core::Error::io("sync data device", e).into())
}

/// The record an IO leaves pending.
fn pending_rec(io: &Io) -> DiffRec {
    match io {
        Io::Write { lba, data } => DiffRec {
            addr: *lba,
            blocks: (data.len() / LBS) as u32,
            body: Body::Data(data.clone()),
        },
        Io::Discard { lba, blocks } => DiffRec {
            addr: *lba,
            blocks: *blocks,
            body: Body::Discard,
        },
    }
}

/// Lays the records of `recs` that overlap `buf` (at `lba`) over it.
fn overlay(recs: &DiffMemory, lba: u64, buf: &mut [u8]) {
    let end = lba + (buf.len() / LBS) as u64;
    for r in recs.overlapping(lba, end) {
        let (s, e) = (r.addr.max(lba), r.end().min(end));
        let dst = &mut buf[((s - lba) as usize) * LBS..((e - lba) as usize) * LBS];
        match &r.body {
            Body::Data(d) => dst
                .copy_from_slice(&d[((s - r.addr) as usize) * LBS..((e - r.addr) as usize) * LBS]),
            Body::AllZero | Body::Discard => dst.fill(0),
        }
    }
}

fn rand_salt() -> u32 {
    u32::from_le_bytes(Uuid::random().0[..4].try_into().unwrap())
}
