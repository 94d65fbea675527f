//! The sorted wdiff (docs/formats.md §5.3): 32-byte file header, packs of ≤127 records and ≤32 MiB
//! of data each (a 4096-byte pack header, then the records' stored bytes), and an END pack.
//! `Packer` builds packs (also for network streams), `parse_pack` checks one, `SortedWriter` and
//! `SortedReader` handle whole files.

use std::collections::VecDeque;
use std::io::Write;

use bytes::Bytes;

use crate::bytes_le::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};
use crate::checksum::{checksum, is_sealed, seal};
use crate::error::{Error, IoContext, Result};
use crate::source::Source;
use crate::types::{Uuid, LBS};
use crate::wdiff::cmpr::{decompress, Cmpr, Codec};
use crate::wdiff::header::{FileHeader, Kind, FILE_HEADER_SIZE};
use crate::wdiff::rec::{Body, DiffRec};

pub const PACK_HEADER_SIZE: usize = 4096;
pub const MAX_PACK_RECORDS: usize = (PACK_HEADER_SIZE - 16) / 32;
pub const MAX_PACK_DATA: u64 = 32 << 20;
/// walb's default cut for large IOs, in LB.
pub const DEFAULT_MAX_IO_BLOCKS: u32 = 2048;

pub const FLAG_ALLZERO: u8 = 0x02;
pub const FLAG_DISCARD: u8 = 0x04;
const PACK_FLAG_END: u8 = 0x01;

/// A record's on-disk form inside a pack, before its position is known.
struct Stored {
    rec: [u8; 32],
    data: Bytes,
}

/// Encodes one record: compressed (when strictly smaller) data and its 32-byte entry, without
/// `data_offset`.
fn encode_record(r: &DiffRec, cmpr: Cmpr) -> Result<Stored> {
    let mut b = [0u8; 32];
    put_u64(&mut b, 0, r.addr);
    put_u32(&mut b, 8, r.blocks);
    let data = match &r.body {
        Body::Data(d) => {
            let (codec, stored) = match cmpr.compress(d)? {
                Some(z) => (cmpr.codec, Bytes::from(z)),
                None => (Codec::None, d.clone()),
            };
            b[13] = codec.code();
            put_u32(&mut b, 20, stored.len() as u32);
            put_u32(&mut b, 24, checksum(&stored, 0));
            stored
        }
        Body::AllZero => {
            b[12] = FLAG_ALLZERO;
            Bytes::new()
        }
        Body::Discard => {
            b[12] = FLAG_DISCARD;
            Bytes::new()
        }
    };
    Ok(Stored { rec: b, data })
}

/// One encoded pack: the 4096-byte header and the data pieces that follow it.
pub struct EncodedPack {
    pub header: Box<[u8; PACK_HEADER_SIZE]>,
    pub data: Vec<Bytes>,
}

impl EncodedPack {
    /// Bytes on the wire or on disk: 4096 + total_size.
    pub fn len(&self) -> usize {
        PACK_HEADER_SIZE + self.data.iter().map(|d| d.len()).sum::<usize>()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        w.write_all(&self.header[..])?;
        for d in &self.data {
            w.write_all(d)?;
        }
        Ok(())
    }
    /// The pack as one buffer (for messages).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.write_to(&mut v).expect("writing to a Vec");
        v
    }
}

/// The END pack.
pub fn end_pack() -> Box<[u8; PACK_HEADER_SIZE]> {
    let mut b = Box::new([0u8; PACK_HEADER_SIZE]);
    b[6] = PACK_FLAG_END;
    seal(&mut b[..], 0, 0);
    b
}

/// Groups sorted, non-overlapping records into packs.
pub struct Packer {
    cmpr: Cmpr,
    max_io_blocks: u32,
    max_data: u64,
    recs: Vec<Stored>,
    total: u64,
    last_end: u64,
}

impl Packer {
    pub fn new(cmpr: Cmpr) -> Packer {
        Packer {
            cmpr,
            max_io_blocks: DEFAULT_MAX_IO_BLOCKS,
            max_data: MAX_PACK_DATA,
            recs: Vec::new(),
            total: 0,
            last_end: 0,
        }
    }

    /// Cuts records longer than this (LB).
    pub fn with_max_io_blocks(mut self, max: u32) -> Packer {
        self.max_io_blocks = max.max(1);
        self
    }

    /// Ends a pack once its data would pass `max` bytes (at most `MAX_PACK_DATA`): a
    /// streaming sender hands packs on sooner.
    pub fn with_max_data(mut self, max: u64) -> Packer {
        self.max_data = max.min(MAX_PACK_DATA);
        self
    }

    /// Adds a record (cut at `max_io_blocks`); full packs are handed to `emit`.
    pub fn push(
        &mut self,
        rec: DiffRec,
        emit: &mut dyn FnMut(EncodedPack) -> Result<()>,
    ) -> Result<()> {
        if rec.blocks == 0 {
            return Err(Error::Invalid(format!(
                "record at LB {} has 0 blocks",
                rec.addr
            )));
        }
        if rec.addr < self.last_end {
            return Err(Error::Invalid(format!(
                "records must be sorted and non-overlapping: LB {} comes after LB {}",
                rec.addr, self.last_end
            )));
        }
        self.last_end = rec.end();
        for piece in rec.split(self.max_io_blocks) {
            let s = encode_record(&piece, self.cmpr)?;
            let len = s.data.len() as u64;
            if self.recs.len() == MAX_PACK_RECORDS
                || (!self.recs.is_empty() && self.total + len > self.max_data)
            {
                emit(self.take().expect("pack has records"))?;
            }
            self.total += len;
            self.recs.push(s);
        }
        Ok(())
    }

    /// The pack under construction, if it has records.
    pub fn take(&mut self) -> Option<EncodedPack> {
        if self.recs.is_empty() {
            return None;
        }
        let mut h = Box::new([0u8; PACK_HEADER_SIZE]);
        put_u16(&mut h[..], 4, self.recs.len() as u16);
        put_u32(&mut h[..], 8, self.total as u32);
        let mut off = 0u32;
        let mut data = Vec::with_capacity(self.recs.len());
        for (i, s) in self.recs.drain(..).enumerate() {
            let o = 16 + i * 32;
            h[o..o + 32].copy_from_slice(&s.rec);
            put_u32(&mut h[..], o + 16, off);
            off += s.data.len() as u32;
            if !s.data.is_empty() {
                data.push(s.data);
            }
        }
        seal(&mut h[..], 0, 0);
        self.total = 0;
        Some(EncodedPack { header: h, data })
    }
}

/// Parses a pack header block; returns (n_records, total_size), or None for the END pack.
fn parse_pack_header(h: &[u8], at: u64) -> Result<Option<(usize, u64)>> {
    let bad = |rule: String| Error::corrupt("wdiff pack header", at, rule);
    if !is_sealed(h, 0) {
        return Err(bad("checksum mismatch".into()));
    }
    if h[6] & PACK_FLAG_END != 0 {
        return Ok(None);
    }
    let n = u16_at(h, 4) as usize;
    let total = u32_at(h, 8) as u64;
    if n > MAX_PACK_RECORDS {
        return Err(bad(format!("n_records {n} exceeds {MAX_PACK_RECORDS}")));
    }
    if total > MAX_PACK_DATA {
        return Err(bad(format!("total_size {total} exceeds 32 MiB")));
    }
    Ok(Some((n, total)))
}

/// Decodes the records of one pack given its header and data; `at` is the header's offset.
fn parse_records(
    h: &[u8],
    n: usize,
    data: &Bytes,
    at: u64,
    out: &mut VecDeque<DiffRec>,
) -> Result<()> {
    let mut running = 0u64;
    for i in 0..n {
        let o = 16 + i * 32;
        let r = &h[o..o + 32];
        let rat = at + o as u64;
        let bad = |rule: String| Error::corrupt("wdiff record", rat, rule);
        let addr = u64_at(r, 0);
        let blocks = u32_at(r, 8);
        let flags = r[12];
        let codec = Codec::from_code(r[13])
            .ok_or_else(|| bad(format!("compression type {} (must be < 6)", r[13])))?;
        let data_offset = u32_at(r, 16) as u64;
        let data_size = u32_at(r, 20) as u64;
        let csum = u32_at(r, 24);
        if blocks == 0 {
            return Err(bad("io_blocks 0".into()));
        }
        if addr.checked_add(blocks as u64).is_none() {
            return Err(bad(format!("io_address {addr} + io_blocks overflows")));
        }
        if data_offset != running {
            return Err(bad(format!(
                "data_offset {data_offset}, expected {running}"
            )));
        }
        let body = match (flags & FLAG_ALLZERO != 0, flags & FLAG_DISCARD != 0) {
            (true, true) => return Err(bad("ALLZERO and DISCARD both set".into())),
            (a, d) if a || d => {
                if data_size != 0 {
                    return Err(bad(format!("dataless record with data_size {data_size}")));
                }
                if a {
                    Body::AllZero
                } else {
                    Body::Discard
                }
            }
            _ => {
                if running + data_size > data.len() as u64 {
                    return Err(bad(format!(
                        "data_size {data_size} runs past the pack's {} bytes",
                        data.len()
                    )));
                }
                let stored = data.slice(running as usize..(running + data_size) as usize);
                if checksum(&stored, 0) != csum {
                    return Err(Error::corrupt(
                        "wdiff record data",
                        at + PACK_HEADER_SIZE as u64 + running,
                        format!("record {i} (LB {addr}): data checksum mismatch"),
                    ));
                }
                let len = blocks as usize * LBS;
                let d = if codec == Codec::None {
                    if stored.len() != len {
                        return Err(bad(format!(
                            "uncompressed data_size {data_size} for {blocks} blocks"
                        )));
                    }
                    stored
                } else {
                    Bytes::from(
                        decompress(codec, &stored, len)
                            .map_err(|e| bad(format!("record {i} (LB {addr}): {e}")))?,
                    )
                };
                Body::Data(d)
            }
        };
        running += data_size;
        out.push_back(DiffRec { addr, blocks, body });
    }
    if running != data.len() as u64 {
        return Err(Error::corrupt(
            "wdiff pack header",
            at,
            format!("records hold {running} bytes, total_size is {}", data.len()),
        ));
    }
    Ok(())
}

/// Parses one whole pack (header + data) as received from a stream; checks everything and
/// that its records are sorted and non-overlapping. `None` for the END pack.
pub fn parse_pack(b: &Bytes) -> Result<Option<Vec<DiffRec>>> {
    if b.len() < PACK_HEADER_SIZE {
        return Err(Error::Truncated {
            what: "wdiff pack",
            offset: 0,
            need: PACK_HEADER_SIZE as u64,
            got: b.len() as u64,
        });
    }
    let Some((n, total)) = parse_pack_header(&b[..PACK_HEADER_SIZE], 0)? else {
        return Ok(None);
    };
    if b.len() as u64 != PACK_HEADER_SIZE as u64 + total {
        return Err(Error::corrupt(
            "wdiff pack",
            0,
            format!(
                "{} bytes, header says {}",
                b.len(),
                PACK_HEADER_SIZE as u64 + total
            ),
        ));
    }
    let mut out = VecDeque::with_capacity(n);
    parse_records(
        &b[..PACK_HEADER_SIZE],
        n,
        &b.slice(PACK_HEADER_SIZE..),
        0,
        &mut out,
    )?;
    let mut end = 0;
    for r in &out {
        if r.addr < end {
            return Err(Error::corrupt(
                "wdiff pack",
                0,
                format!("records overlap or are unsorted at LB {}", r.addr),
            ));
        }
        end = r.end();
    }
    Ok(Some(out.into()))
}

/// Writes a sorted wdiff.
pub struct SortedWriter<W: Write> {
    w: W,
    packer: Packer,
}

impl<W: Write> SortedWriter<W> {
    pub fn new(mut w: W, uuid: Uuid, cmpr: Cmpr) -> Result<SortedWriter<W>> {
        let h = FileHeader {
            kind: Kind::Sorted,
            uuid,
        };
        w.write_all(&h.encode())
            .ctx(|| "write wdiff header".into())?;
        Ok(SortedWriter {
            w,
            packer: Packer::new(cmpr),
        })
    }

    /// Records must come sorted by address and must not overlap.
    pub fn push(&mut self, rec: DiffRec) -> Result<()> {
        let w = &mut self.w;
        self.packer.push(rec, &mut |p| {
            p.write_to(w).ctx(|| "write wdiff pack".into())
        })
    }

    pub fn finish(mut self) -> Result<W> {
        if let Some(p) = self.packer.take() {
            p.write_to(&mut self.w).ctx(|| "write wdiff pack".into())?;
        }
        self.w
            .write_all(&end_pack()[..])
            .ctx(|| "write wdiff end pack".into())?;
        self.w.flush().ctx(|| "flush wdiff".into())?;
        Ok(self.w)
    }
}

/// Reads a sorted wdiff after its file header, verifying everything.
pub struct SortedReader {
    src: Box<dyn Source>,
    queue: VecDeque<DiffRec>,
    last_end: u64,
    done: bool,
}

impl SortedReader {
    /// `src` is positioned right after the file header.
    pub fn new(src: Box<dyn Source>) -> SortedReader {
        SortedReader {
            src,
            queue: VecDeque::new(),
            last_end: 0,
            done: false,
        }
    }

    /// Reads the file header from `src`, then the packs.
    pub fn open(mut src: Box<dyn Source>) -> Result<(FileHeader, SortedReader)> {
        let b = src.take_exact(FILE_HEADER_SIZE, "wdiff file header")?;
        let h = FileHeader::decode(&b)?;
        if h.kind != Kind::Sorted {
            return Err(Error::corrupt(
                "wdiff file header",
                0,
                "indexed wdiff where a sorted one is needed",
            ));
        }
        Ok((h, SortedReader::new(src)))
    }

    /// The input after the END pack (once every record was read).
    pub fn into_source(self) -> Box<dyn Source> {
        self.src
    }

    fn fill(&mut self) -> Result<()> {
        while self.queue.is_empty() && !self.done {
            let at = self.src.pos();
            // walb's readers accept EOF without the END pack; we do not, so a cut file is
            // never taken for a shorter diff.
            let h = self.src.take_exact(PACK_HEADER_SIZE, "wdiff END pack")?;
            let Some((n, total)) = parse_pack_header(&h, at)? else {
                self.done = true;
                return Ok(());
            };
            let data = self.src.take_exact(total as usize, "wdiff pack data")?;
            parse_records(&h, n, &data, at, &mut self.queue)?;
            for r in &self.queue {
                if r.addr < self.last_end {
                    return Err(Error::corrupt(
                        "wdiff pack",
                        at,
                        format!(
                            "records unsorted or overlapping: LB {} after LB {}",
                            r.addr, self.last_end
                        ),
                    ));
                }
                self.last_end = r.end();
            }
        }
        Ok(())
    }
}

impl Iterator for SortedReader {
    type Item = Result<DiffRec>;
    fn next(&mut self) -> Option<Result<DiffRec>> {
        if let Err(e) = self.fill() {
            self.done = true;
            self.queue.clear();
            return Some(Err(e));
        }
        self.queue.pop_front().map(Ok)
    }
}
