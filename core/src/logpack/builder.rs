//! Groups IOs into logpacks as walb's driver does (docs/formats.md §3.4–§3.5): record and size
//! limits, a padding record when a record's data would straddle the ring end.

use crate::logpack::header::{max_records, LogPackHeader};
use crate::logpack::record::{LogRecord, RecKind, MAX_NORMAL_IO_LB};
use crate::types::{Pbs, LBS};

/// Largest `total_io_size` of one pack.
pub const MAX_PACK_PB: u64 = 65535;

pub struct PackBuilder {
    pbs: Pbs,
    ring_size: Option<u64>,
    max_pack_pb: u64,
    header: LogPackHeader,
    data: Vec<u8>,
    /// False: records only, `take` returns no data (the caller writes each IO's data itself,
    /// `Ldev::write_pack_parts`).
    keep_data: bool,
}

/// Why an IO did not go into the current pack.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// Close this pack and add the IO to the next one.
    Yes,
}

impl PackBuilder {
    /// A builder for a pack at `lsid`. `ring_size` enables ring-end padding.
    pub fn new(pbs: Pbs, lsid: u64, ring_size: Option<u64>) -> PackBuilder {
        PackBuilder {
            pbs,
            ring_size,
            max_pack_pb: MAX_PACK_PB,
            header: LogPackHeader::new(lsid),
            data: Vec::new(),
            keep_data: true,
        }
    }

    /// A builder that keeps no copy of the data: `take` returns the header and no data.
    pub fn headers_only(mut self) -> PackBuilder {
        self.keep_data = false;
        self
    }

    /// Caps a pack's data PBs (walb's `max_logpack_kb`).
    pub fn with_max_pack_pb(mut self, max_pb: u64) -> PackBuilder {
        self.max_pack_pb = max_pb.clamp(1, MAX_PACK_PB);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.header.records.is_empty()
    }

    pub fn header(&self) -> &LogPackHeader {
        &self.header
    }

    fn cursor(&self) -> u64 {
        self.header.lsid + 1 + self.header.total_io_size as u64
    }

    fn room_for(&self, pb: u64) -> bool {
        self.header.records.len() < max_records(self.pbs)
            && self.header.total_io_size as u64 + pb <= self.max_pack_pb
    }

    fn push(&mut self, kind: RecKind, offset: u64, io_size: u32, checksum: u32, pb: u64) {
        let lsid = self.cursor();
        self.header.records.push(LogRecord {
            kind,
            checksum,
            offset,
            io_size,
            lsid_local: (lsid - self.header.lsid) as u16,
            lsid,
        });
        self.header.total_io_size += pb as u16;
    }

    /// Adds a normal write of `data` (a multiple of 512 bytes, ≤ 65535 LB) at `offset` LB.
    pub fn add_write(&mut self, offset: u64, data: &[u8], salt: u32) -> Result<(), Full> {
        assert!(data.len().is_multiple_of(LBS) && !data.is_empty());
        let io_size = (data.len() / LBS) as u32;
        assert!(io_size <= MAX_NORMAL_IO_LB);
        let pb = self.pbs.pbs_for_lb(io_size as u64);
        if !self.room_for(pb) {
            return Err(Full::Yes);
        }
        if let Some(ring) = self.ring_size {
            let left = ring - self.cursor() % ring;
            if left < pb {
                if !self.room_for(left) || self.header.n_padding() > 0 {
                    return Err(Full::Yes);
                }
                self.add_padding(left);
                if !self.room_for(pb) {
                    return Err(Full::Yes);
                }
            }
        }
        self.push(
            RecKind::Normal,
            offset,
            io_size,
            crate::checksum::checksum(data, salt),
            pb,
        );
        if self.keep_data {
            self.data.extend_from_slice(data);
            self.data
                .resize(self.header.total_io_size as usize * self.pbs.bytes(), 0);
        }
        Ok(())
    }

    /// Adds `pb` PBs of padding (ring end, or a generator's random padding).
    pub fn add_padding(&mut self, pb: u64) {
        let io_size = (pb * self.pbs.lbs_per_pb() as u64) as u32;
        self.push(RecKind::Padding, 0, io_size, 0, pb);
        if self.keep_data {
            self.data
                .resize(self.header.total_io_size as usize * self.pbs.bytes(), 0);
        }
    }

    /// True when a padding record of `pb` PBs fits (generators use this).
    pub fn can_pad(&self, pb: u64) -> bool {
        self.header.n_padding() == 0 && self.room_for(pb)
    }

    /// Adds a discard of `io_size` LB at `offset`: no data, no lsid.
    pub fn add_discard(&mut self, offset: u64, io_size: u32) -> Result<(), Full> {
        if self.header.records.len() >= max_records(self.pbs) {
            return Err(Full::Yes);
        }
        self.push(RecKind::Discard, offset, io_size, 0, 0);
        Ok(())
    }

    /// Finishes the pack; the builder starts over at the next lsid.
    pub fn take(&mut self) -> (LogPackHeader, Vec<u8>) {
        let mut next = PackBuilder::new(self.pbs, self.header.next_lsid(), self.ring_size)
            .with_max_pack_pb(self.max_pack_pb);
        next.keep_data = self.keep_data;
        let old = std::mem::replace(self, next);
        (old.header, old.data)
    }
}
