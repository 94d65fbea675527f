//! The indexed wdiff (docs/formats.md §5.4), written by the proxy: compressed images appended in
//! arrival order, then an 8-aligned index of aligned power-of-two records and a 24-byte super at
//! EOF. Newer records cut older ones in the index only; images are never rewritten.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use bytes::Bytes;

use crate::bytes_le::{put_u32, put_u64, u32_at, u64_at};
use crate::checksum::{checksum, is_sealed, seal};
use crate::error::{Error, IoContext, Result};
use crate::source::map_file;
use crate::types::{Uuid, LBS};
use crate::wdiff::cmpr::{decompress, Cmpr, Codec};
use crate::wdiff::header::{FileHeader, Kind, FILE_HEADER_SIZE};
use crate::wdiff::memory::overlapping_keys;
use crate::wdiff::rec::{Body, DiffRec};
use crate::wdiff::sorted::{DEFAULT_MAX_IO_BLOCKS, FLAG_ALLZERO, FLAG_DISCARD};

const REC_SIZE: usize = 48;
const SUPER_SIZE: usize = 24;
/// Decompressed images kept for reuse while reading.
const CACHE_BYTES: usize = 32 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IKind {
    Normal,
    AllZero,
    Discard,
}

/// One index entry: `blocks` LB at `addr`, taken from `io_offset` LB into an image.
#[derive(Clone, Copy, Debug)]
struct IRec {
    addr: u64,
    blocks: u32,
    kind: IKind,
    codec: Codec,
    data_offset: u64,
    data_size: u32,
    io_offset: u32,
    orig_blocks: u32,
    io_checksum: u32,
}

impl IRec {
    fn end(&self) -> u64 {
        self.addr + self.blocks as u64
    }

    fn encode(&self) -> [u8; REC_SIZE] {
        let mut b = [0u8; REC_SIZE];
        put_u64(&mut b, 0, self.addr);
        put_u32(&mut b, 8, self.blocks);
        b[12] = match self.kind {
            IKind::Normal => 0,
            IKind::AllZero => FLAG_ALLZERO,
            IKind::Discard => FLAG_DISCARD,
        };
        b[13] = self.codec.code();
        put_u64(&mut b, 16, self.data_offset);
        put_u32(&mut b, 24, self.data_size);
        put_u32(&mut b, 28, self.io_offset);
        put_u32(&mut b, 32, self.orig_blocks);
        put_u32(&mut b, 40, self.io_checksum);
        seal(&mut b, 44, 0);
        b
    }

    /// `[from, to)` of this record, re-split into aligned pieces.
    fn part(&self, from: u64, to: u64, max: u32, out: &mut Vec<IRec>) {
        let shift = (from - self.addr) as u32;
        let base = IRec {
            addr: from,
            blocks: (to - from) as u32,
            io_offset: if self.kind == IKind::Normal {
                self.io_offset + shift
            } else {
                0
            },
            ..*self
        };
        aligned_split(base, max, out);
    }
}

/// Splits a record into aligned power-of-two pieces no larger than `max` (a power of two).
fn aligned_split(r: IRec, max: u32, out: &mut Vec<IRec>) {
    let (mut addr, mut left, mut io_off) = (r.addr, r.blocks as u64, r.io_offset);
    while left > 0 {
        let align = if addr == 0 {
            u64::MAX
        } else {
            1u64 << addr.trailing_zeros()
        };
        let fit = 1u64 << (63 - left.leading_zeros());
        let size = align.min(fit).min(max as u64);
        out.push(IRec {
            addr,
            blocks: size as u32,
            io_offset: io_off,
            ..r
        });
        addr += size;
        left -= size;
        if r.kind == IKind::Normal {
            io_off += size as u32;
        }
    }
}

pub struct IndexedWriter<W: Write> {
    w: W,
    pos: u64,
    cmpr: Cmpr,
    max_io_blocks: u32,
    index: BTreeMap<u64, IRec>,
    n_data: u32,
}

impl<W: Write> IndexedWriter<W> {
    pub fn new(mut w: W, uuid: Uuid, cmpr: Cmpr) -> Result<IndexedWriter<W>> {
        let h = FileHeader {
            kind: Kind::Indexed,
            uuid,
        };
        w.write_all(&h.encode())
            .ctx(|| "write wdiff header".into())?;
        Ok(IndexedWriter {
            w,
            pos: FILE_HEADER_SIZE as u64,
            cmpr,
            max_io_blocks: DEFAULT_MAX_IO_BLOCKS,
            index: BTreeMap::new(),
            n_data: 0,
        })
    }

    /// Adds a record in arrival order: it wins over everything added before it.
    pub fn add(&mut self, rec: DiffRec) -> Result<()> {
        if rec.blocks == 0 {
            return Err(Error::Invalid(format!(
                "record at LB {} has 0 blocks",
                rec.addr
            )));
        }
        self.n_data += 1;
        for piece in rec.split(self.max_io_blocks) {
            let r = self.store(&piece)?;
            self.cut(r.addr, r.end());
            let mut parts = Vec::new();
            aligned_split(r, self.max_io_blocks, &mut parts);
            for p in parts {
                self.index.insert(p.addr, p);
            }
        }
        Ok(())
    }

    /// Writes a piece's image (if it has data) and returns its index entry.
    fn store(&mut self, r: &DiffRec) -> Result<IRec> {
        let mut e = IRec {
            addr: r.addr,
            blocks: r.blocks,
            kind: IKind::Normal,
            codec: Codec::None,
            data_offset: 0,
            data_size: 0,
            io_offset: 0,
            orig_blocks: 0,
            io_checksum: 0,
        };
        match &r.body {
            Body::AllZero => e.kind = IKind::AllZero,
            Body::Discard => e.kind = IKind::Discard,
            Body::Data(d) => {
                let z = self.cmpr.compress(d)?;
                let (codec, img): (Codec, &[u8]) = match &z {
                    Some(z) => (self.cmpr.codec, z),
                    None => (Codec::None, d),
                };
                self.w.write_all(img).ctx(|| "write wdiff image".into())?;
                e.codec = codec;
                e.data_offset = self.pos;
                e.data_size = img.len() as u32;
                e.orig_blocks = r.blocks;
                e.io_checksum = checksum(img, 0);
                self.pos += img.len() as u64;
            }
        }
        Ok(e)
    }

    /// Removes `[addr, end)` from the index, keeping the uncovered parts of older entries.
    fn cut(&mut self, addr: u64, end: u64) {
        let mut parts = Vec::new();
        for k in overlapping_keys(&self.index, addr, end, IRec::end) {
            let old = self.index.remove(&k).expect("key just listed");
            if old.addr < addr {
                old.part(old.addr, addr, self.max_io_blocks, &mut parts);
            }
            if old.end() > end {
                old.part(end, old.end(), self.max_io_blocks, &mut parts);
            }
        }
        for p in parts {
            self.index.insert(p.addr, p);
        }
    }

    /// Writes the index and its super; returns the writer.
    pub fn finish(mut self) -> Result<W> {
        let pad = (8 - self.pos % 8) % 8;
        self.w
            .write_all(&[0u8; 8][..pad as usize])
            .ctx(|| "write wdiff index".into())?;
        let index_offset = self.pos + pad;
        for r in self.index.values() {
            self.w
                .write_all(&r.encode())
                .ctx(|| "write wdiff index".into())?;
        }
        let mut s = [0u8; SUPER_SIZE];
        put_u64(&mut s, 0, index_offset);
        put_u32(&mut s, 8, self.index.len() as u32);
        put_u32(&mut s, 12, self.n_data);
        seal(&mut s, 20, 0);
        self.w
            .write_all(&s)
            .ctx(|| "write wdiff index super".into())?;
        self.w.flush().ctx(|| "flush wdiff".into())?;
        Ok(self.w)
    }
}

/// Reads an indexed wdiff held in memory (an mmap), in address order.
pub struct IndexedReader {
    file: Bytes,
    header: FileHeader,
    index_offset: usize,
    n: usize,
    next: usize,
    last_end: u64,
    cache: HashMap<u64, Bytes>,
    cached: usize,
    failed: bool,
}

impl IndexedReader {
    pub fn open(path: &Path) -> Result<IndexedReader> {
        IndexedReader::new(map_file(path)?)
    }

    pub fn new(file: Bytes) -> Result<IndexedReader> {
        let header = FileHeader::decode(&file)?;
        if header.kind != Kind::Indexed {
            return Err(Error::corrupt(
                "wdiff file header",
                0,
                "sorted wdiff where an indexed one is needed",
            ));
        }
        let len = file.len();
        if len < FILE_HEADER_SIZE + SUPER_SIZE {
            return Err(Error::Truncated {
                what: "indexed wdiff",
                offset: 0,
                need: (FILE_HEADER_SIZE + SUPER_SIZE) as u64,
                got: len as u64,
            });
        }
        let sat = len - SUPER_SIZE;
        let s = &file[sat..];
        let bad = |rule: String| Error::corrupt("wdiff index super", sat as u64, rule);
        if !is_sealed(s, 0) {
            return Err(bad("checksum mismatch (truncated file?)".into()));
        }
        let index_offset = u64_at(s, 0);
        let n = u32_at(s, 8) as u64;
        if index_offset < FILE_HEADER_SIZE as u64
            || !index_offset.is_multiple_of(8)
            || index_offset + n * REC_SIZE as u64 != sat as u64
        {
            return Err(bad(format!(
                "index_offset {index_offset} with {n} records does not end at the super"
            )));
        }
        Ok(IndexedReader {
            header,
            index_offset: index_offset as usize,
            n: n as usize,
            next: 0,
            last_end: 0,
            cache: HashMap::new(),
            cached: 0,
            failed: false,
            file,
        })
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Number of index records.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn image(&mut self, r: &IRec, at: u64) -> Result<Bytes> {
        if let Some(img) = self.cache.get(&r.data_offset) {
            return Ok(img.clone());
        }
        let bad = |rule: String| Error::corrupt("wdiff index record", at, rule);
        let (s, e) = (r.data_offset, r.data_offset + r.data_size as u64);
        if s < FILE_HEADER_SIZE as u64 || e > self.index_offset as u64 {
            return Err(bad(format!("image at {s}..{e} lies outside the data area")));
        }
        let stored = self.file.slice(s as usize..e as usize);
        if checksum(&stored, 0) != r.io_checksum {
            return Err(Error::corrupt(
                "wdiff image",
                s,
                format!("io_checksum mismatch (LB {})", r.addr),
            ));
        }
        let len = r.orig_blocks as usize * LBS;
        let img = if r.codec == Codec::None {
            if stored.len() != len {
                return Err(bad(format!(
                    "uncompressed image of {} bytes for orig_blocks {}",
                    stored.len(),
                    r.orig_blocks
                )));
            }
            stored
        } else {
            let d = decompress(r.codec, &stored, len).map_err(|e| bad(e.to_string()))?;
            if self.cached + len > CACHE_BYTES {
                self.cache.clear();
                self.cached = 0;
            }
            let d = Bytes::from(d);
            self.cache.insert(r.data_offset, d.clone());
            self.cached += len;
            d
        };
        Ok(img)
    }

    fn read_rec(&mut self, i: usize) -> Result<DiffRec> {
        let at = self.index_offset + i * REC_SIZE;
        let b = &self.file[at..at + REC_SIZE];
        let bad = |rule: String| Error::corrupt("wdiff index record", at as u64, rule);
        let kind = match (b[12] & FLAG_ALLZERO != 0, b[12] & FLAG_DISCARD != 0) {
            (false, false) => IKind::Normal,
            (true, false) => IKind::AllZero,
            (false, true) => IKind::Discard,
            (true, true) => return Err(bad("ALLZERO and DISCARD both set".into())),
        };
        // walb checks only normal records; ours are all sealed, so a flipped bit in a
        // discard or all-zero entry cannot move it silently.
        if !is_sealed(b, 0) {
            return Err(bad("rec_checksum mismatch".into()));
        }
        let r = IRec {
            addr: u64_at(b, 0),
            blocks: u32_at(b, 8),
            kind,
            codec: Codec::from_code(b[13])
                .ok_or_else(|| bad(format!("compression type {} (must be < 6)", b[13])))?,
            data_offset: u64_at(b, 16),
            data_size: u32_at(b, 24),
            io_offset: u32_at(b, 28),
            orig_blocks: u32_at(b, 32),
            io_checksum: u32_at(b, 40),
        };
        if r.blocks == 0 || r.addr.checked_add(r.blocks as u64).is_none() {
            return Err(bad(format!("io_blocks {} at LB {}", r.blocks, r.addr)));
        }
        if r.addr < self.last_end {
            return Err(bad(format!(
                "records unsorted or overlapping: LB {} after LB {}",
                r.addr, self.last_end
            )));
        }
        self.last_end = r.end();
        let body = match kind {
            IKind::AllZero => Body::AllZero,
            IKind::Discard => Body::Discard,
            IKind::Normal => {
                if r.io_offset as u64 + r.blocks as u64 > r.orig_blocks as u64 {
                    return Err(bad(format!(
                        "io_offset {} + io_blocks {} exceeds orig_blocks {}",
                        r.io_offset, r.blocks, r.orig_blocks
                    )));
                }
                let img = self.image(&r, at as u64)?;
                let s = r.io_offset as usize * LBS;
                Body::Data(img.slice(s..s + r.blocks as usize * LBS))
            }
        };
        Ok(DiffRec {
            addr: r.addr,
            blocks: r.blocks,
            body,
        })
    }
}

impl Iterator for IndexedReader {
    type Item = Result<DiffRec>;
    fn next(&mut self) -> Option<Result<DiffRec>> {
        if self.failed || self.next >= self.n {
            return None;
        }
        let r = self.read_rec(self.next);
        self.next += 1;
        self.failed = r.is_err();
        Some(r)
    }
}
