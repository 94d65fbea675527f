//! `Ldev`: a log device (or ldev file) through `BlockIo`: superblock, and logpacks at lsids in
//! the ring. Consecutive PBs wrap at the ring end; a record's data never straddles it.

use bytes::Bytes;

use crate::blockio::BlockIo;
use crate::error::{Error, IoContext, Result};
use crate::ldev::superblock::{super0_offset, SuperBlock, PAGE_SIZE};
use crate::logpack::record::RecKind;
use crate::logpack::{LogPack, LogPackHeader};
use crate::types::Pbs;

pub struct Ldev {
    io: Box<dyn BlockIo>,
    pub sb: SuperBlock,
}

impl Ldev {
    /// Writes a fresh superblock and zeroes the lsid-0 block so redo finds nothing.
    pub fn format(mut io: Box<dyn BlockIo>, ddev_bytes: u64, pbs: Pbs, name: &str) -> Result<Ldev> {
        let size = io.size().ctx(|| "log device size".into())?;
        let sb = SuperBlock::format(size, ddev_bytes, pbs, name)?;
        let mut ldev = Ldev { io, sb };
        ldev.write_super()?;
        ldev.zero_pb(0)?;
        ldev.io.sync().ctx(|| "sync log device".into())?;
        Ok(ldev)
    }

    /// Reads and validates super0. `pbs` is the device's block size when known (block
    /// devices); for files the superblock's own field decides.
    pub fn open(mut io: Box<dyn BlockIo>, pbs: Option<Pbs>) -> Result<Ldev> {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        io.read_at(&mut page, super0_offset())
            .ctx(|| format!("read superblock at {}", super0_offset()))?;
        let claimed = SuperBlock::peek_pbs(&page).ok_or_else(|| {
            Error::corrupt(
                "superblock",
                super0_offset(),
                "physical_bs is not 512 or 4096 (not a walb log device?)",
            )
        })?;
        let pbs = pbs.unwrap_or(claimed);
        let sb = SuperBlock::decode(&page[..pbs.bytes()], super0_offset())?;
        Ok(Ldev { io, sb })
    }

    pub fn pbs(&self) -> Pbs {
        self.sb.pbs
    }

    pub fn io(&mut self) -> &mut dyn BlockIo {
        self.io.as_mut()
    }

    pub fn write_super(&mut self) -> Result<()> {
        let b = self.sb.encode();
        self.io
            .write_at(&b, super0_offset())
            .ctx(|| "write superblock".into())
    }

    /// Reads `n` consecutive PBs from `lsid`, wrapping at the ring end.
    pub fn read_pbs(&mut self, lsid: u64, n: u64) -> Result<Vec<u8>> {
        let pbs = self.pbs().bytes() as u64;
        let mut out = vec![0u8; (n * pbs) as usize];
        self.for_each_run(lsid, n, |io, off, at, len| {
            io.read_at(&mut out[at..at + len], off)
                .ctx(|| format!("read log device at byte {off}"))
        })?;
        Ok(out)
    }

    /// Writes consecutive PBs from `lsid`, wrapping at the ring end.
    pub fn write_pbs(&mut self, lsid: u64, data: &[u8]) -> Result<()> {
        let pbs = self.pbs().bytes() as u64;
        debug_assert!((data.len() as u64).is_multiple_of(pbs));
        self.for_each_run(lsid, data.len() as u64 / pbs, |io, off, at, len| {
            io.write_at(&data[at..at + len], off)
                .ctx(|| format!("write log device at byte {off}"))
        })
    }

    /// Calls `f(io, device_offset, buffer_offset, len)` for each contiguous run of the ring.
    fn for_each_run(
        &mut self,
        lsid: u64,
        n: u64,
        mut f: impl FnMut(&mut dyn BlockIo, u64, usize, usize) -> Result<()>,
    ) -> Result<()> {
        let pbs = self.pbs().bytes() as u64;
        let ring = self.sb.ring_buffer_size;
        let (mut l, mut left, mut at) = (lsid, n, 0usize);
        while left > 0 {
            let run = left.min(ring - l % ring);
            let len = (run * pbs) as usize;
            f(self.io.as_mut(), self.sb.lsid_offset(l), at, len)?;
            l += run;
            left -= run;
            at += len;
        }
        Ok(())
    }

    fn zero_pb(&mut self, lsid: u64) -> Result<()> {
        let z = vec![0u8; self.pbs().bytes()];
        self.write_pbs(lsid, &z)
    }

    /// Zeroes the header block at `lsid` (marks the end of the log).
    pub fn invalidate(&mut self, lsid: u64) -> Result<()> {
        self.zero_pb(lsid)
    }

    /// The header at `lsid`, or why it is not a valid logpack for `lsid` (end of log).
    pub fn read_header(&mut self, lsid: u64) -> Result<std::result::Result<LogPackHeader, Error>> {
        let b = self.read_pbs(lsid, 1)?;
        Ok(LogPackHeader::decode(
            &b,
            self.sb.log_checksum_salt,
            Some(lsid),
            self.sb.lsid_offset(lsid),
        ))
    }

    /// The logpack at `lsid` with its data; `None` at the end of the log. Data checksums
    /// are the caller's to verify.
    pub fn read_pack(&mut self, lsid: u64) -> Result<Option<LogPack>> {
        let header = match self.read_header(lsid)? {
            Ok(h) if !h.records.is_empty() => h,
            _ => return Ok(None),
        };
        let data = self.read_pbs(lsid + 1, header.total_io_size as u64)?;
        Ok(Some(LogPack {
            header,
            data: Bytes::from(data),
        }))
    }

    /// Writes a pack's header and the data of its normal records at its lsid without
    /// gathering them into one buffer: `data` holds each normal record's bytes in record
    /// order; each is followed by zeros up to whole PBs, and padding records are zeros
    /// (docs/formats.md §3). One vectored write per contiguous run of the ring.
    pub fn write_pack_parts(&mut self, header: &LogPackHeader, data: &[&[u8]]) -> Result<()> {
        let pbs = self.pbs();
        let h = header.encode(pbs, self.sb.log_checksum_salt);
        let ring = self.sb.ring_buffer_size;
        let zeros = crate::blockio::zeros(1 << 20);
        let mut data = data.iter();
        let mut run: Vec<std::io::IoSlice> = vec![std::io::IoSlice::new(&h)];
        let mut run_at = header.lsid;
        let mut cursor = header.lsid + 1;
        for rec in &header.records {
            let pb = match rec.kind {
                RecKind::Discard => continue,
                _ => pbs.pbs_for_lb(rec.io_size as u64),
            };
            debug_assert_eq!(rec.lsid, cursor, "records are consecutive");
            if cursor.is_multiple_of(ring) && !run.is_empty() {
                self.write_run(run_at, &run)?;
                run.clear();
                run_at = cursor;
            }
            let mut pad = pb as usize * pbs.bytes();
            if rec.kind == RecKind::Normal {
                let d = data
                    .next()
                    .filter(|d| d.len() == rec.io_size as usize * crate::types::LBS)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "pack at lsid {}: the data parts do not match its records",
                            header.lsid
                        ))
                    })?;
                run.push(std::io::IoSlice::new(d));
                pad -= d.len();
            }
            while pad > 0 {
                let n = pad.min(zeros.len());
                run.push(std::io::IoSlice::new(&zeros[..n]));
                pad -= n;
            }
            cursor += pb;
        }
        if !run.is_empty() {
            self.write_run(run_at, &run)?;
        }
        Ok(())
    }

    fn write_run(&mut self, lsid: u64, bufs: &[std::io::IoSlice]) -> Result<()> {
        let off = self.sb.lsid_offset(lsid);
        self.io
            .write_vectored_at(bufs, off)
            .ctx(|| format!("write log device at byte {off}"))
    }

    /// Writes a pack's header and data at its lsid.
    pub fn write_pack(&mut self, header: &LogPackHeader, data: &[u8]) -> Result<()> {
        let h = header.encode(self.pbs(), self.sb.log_checksum_salt);
        self.write_pbs(header.lsid, &h)?;
        self.write_pbs(header.lsid + 1, data)
    }

    pub fn sync(&mut self) -> Result<()> {
        self.io.sync().ctx(|| "sync log device".into())
    }
}
