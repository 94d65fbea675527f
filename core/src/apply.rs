//! Apply (redo) diff records onto an image or block device through `BlockIo`: data, zeros,
//! and discards as `ignore`, `zero` or `passdown`. Writes are queued (io_uring); a write that
//! overlaps one still in flight waits for the queue first, so log order is kept.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::blockio::{write_zeros, BlockIo};
use crate::error::{Error, IoContext, Result};
use crate::types::LBS;
use crate::wdiff::rec::{Body, DiffRec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DiscardMode {
    /// Leave the blocks as they are (walb's default).
    #[default]
    Ignore,
    /// Write zeros.
    Zero,
    /// Discard the range on the target (punch hole / BLKDISCARD).
    Passdown,
}

impl FromStr for DiscardMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<DiscardMode> {
        match s {
            "ignore" => Ok(DiscardMode::Ignore),
            "zero" => Ok(DiscardMode::Zero),
            "passdown" => Ok(DiscardMode::Passdown),
            _ => Err(Error::Invalid(format!(
                "discard mode {s:?} (expected ignore, zero or passdown)"
            ))),
        }
    }
}

impl fmt::Display for DiscardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiscardMode::Ignore => "ignore",
            DiscardMode::Zero => "zero",
            DiscardMode::Passdown => "passdown",
        })
    }
}

/// Most ranges tracked between drains; past this the queue is drained.
const MAX_TRACKED: usize = 4096;

pub struct Applier<'a> {
    io: &'a mut dyn BlockIo,
    mode: DiscardMode,
    size: u64,
    /// Byte ranges (start → end) queued since the last drain; never overlapping.
    in_flight: BTreeMap<u64, u64>,
    pub bytes_written: u64,
}

impl<'a> Applier<'a> {
    pub fn new(io: &'a mut dyn BlockIo, mode: DiscardMode) -> Result<Applier<'a>> {
        let size = io.size().ctx(|| "size of apply target".into())?;
        Ok(Applier {
            io,
            mode,
            size,
            in_flight: BTreeMap::new(),
            bytes_written: 0,
        })
    }

    fn order_after_overlaps(&mut self, start: u64, end: u64) -> Result<()> {
        let overlaps = self
            .in_flight
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start);
        if overlaps || self.in_flight.len() >= MAX_TRACKED {
            self.io.drain().ctx(|| "write to apply target".into())?;
            self.in_flight.clear();
        }
        self.in_flight.insert(start, end);
        Ok(())
    }

    pub fn apply(&mut self, rec: &DiffRec) -> Result<()> {
        let off = rec.addr * LBS as u64;
        let len = rec.blocks as u64 * LBS as u64;
        if off + len > self.size {
            return Err(Error::Invalid(format!(
                "record at LB {} (+{} LB) ends beyond the target's {} bytes",
                rec.addr, rec.blocks, self.size
            )));
        }
        let ctx = || format!("write LB {} (+{}) to apply target", rec.addr, rec.blocks);
        match (&rec.body, self.mode) {
            (Body::Data(d), _) => {
                self.order_after_overlaps(off, off + len)?;
                self.io.write_queued(d.clone(), off).ctx(ctx)?;
            }
            (Body::AllZero, _) | (Body::Discard, DiscardMode::Zero) => {
                self.order_after_overlaps(off, off + len)?;
                write_zeros(self.io, off, len).ctx(ctx)?;
            }
            (Body::Discard, DiscardMode::Ignore) => return Ok(()),
            (Body::Discard, DiscardMode::Passdown) => {
                self.io.discard(off, len).ctx(ctx)?;
                self.in_flight.clear();
            }
        }
        self.bytes_written += len;
        Ok(())
    }

    /// Waits for every write and makes it durable.
    pub fn finish(self) -> Result<u64> {
        self.io.sync().ctx(|| "sync apply target".into())?;
        Ok(self.bytes_written)
    }

    /// Waits for every write without making it durable (the caller syncs later).
    pub fn finish_unsynced(self) -> Result<u64> {
        self.io.drain().ctx(|| "write to apply target".into())?;
        Ok(self.bytes_written)
    }
}
