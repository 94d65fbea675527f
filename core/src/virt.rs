//! The virtual full image: a base image with a sorted, non-overlapping record stream laid over
//! it (typically the merge of a wdiff chain), read bulk by bulk without writing anything.
//! ALLZERO and DISCARD records read as zeros.

use crate::blockio::BlockIo;
use crate::error::{Error, IoContext, Result};
use crate::types::LBS;
use crate::wdiff::rec::{Body, DiffRec};

pub type RecIter = Box<dyn Iterator<Item = Result<DiffRec>> + Send>;

/// A sequential reader of an image in bulks.
pub trait BulkSource: Send {
    /// Image size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the next bytes (the last bulk may be shorter); 0 at the end.
    fn read_next(&mut self, buf: &mut [u8]) -> Result<usize>;
}

/// A plain image file or device read sequentially.
pub struct ImageSource {
    io: Box<dyn BlockIo>,
    size: u64,
    pos: u64,
}

impl ImageSource {
    pub fn new(mut io: Box<dyn BlockIo>) -> Result<ImageSource> {
        let size = io.size().ctx(|| "image size".into())?;
        Ok(ImageSource { io, size, pos: 0 })
    }
}

impl BulkSource for ImageSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_next(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = (self.size - self.pos).min(buf.len() as u64) as usize;
        let pos = self.pos;
        self.io
            .read_at(&mut buf[..n], pos)
            .ctx(|| format!("read image at {pos}"))?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Base image + records.
pub struct VirtualFull {
    base: Box<dyn BulkSource>,
    size: u64,
    pos: u64,
    recs: RecIter,
    cur: Option<DiffRec>,
    last_end: u64,
}

impl VirtualFull {
    pub fn new(base: Box<dyn BlockIo>, recs: RecIter) -> Result<VirtualFull> {
        Ok(VirtualFull::over(Box::new(ImageSource::new(base)?), recs))
    }

    /// The records laid over any sequential source of the base image (a file, or chunks
    /// fetched from somewhere else).
    pub fn over(base: Box<dyn BulkSource>, recs: RecIter) -> VirtualFull {
        VirtualFull {
            size: base.size(),
            base,
            pos: 0,
            recs,
            cur: None,
            last_end: 0,
        }
    }

    fn fetch(&mut self) -> Result<Option<&DiffRec>> {
        if self.cur.is_none() {
            if let Some(r) = self.recs.next().transpose()? {
                if r.addr < self.last_end {
                    return Err(Error::Invalid(format!(
                        "diff records out of order: LB {} after LB {}",
                        r.addr, self.last_end
                    )));
                }
                if r.end() * LBS as u64 > self.size {
                    return Err(Error::Invalid(format!(
                        "record at LB {} (+{} LB) ends beyond the base image's {} bytes",
                        r.addr, r.blocks, self.size
                    )));
                }
                self.last_end = r.end();
                self.cur = Some(r);
            }
        }
        Ok(self.cur.as_ref())
    }
}

impl BulkSource for VirtualFull {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_next(&mut self, buf: &mut [u8]) -> Result<usize> {
        let start = self.pos;
        let n = self.base.read_next(buf)?;
        self.pos += n as u64;
        let end = start + n as u64;
        while let Some(r) = self.fetch()? {
            let (rs, re) = (r.addr * LBS as u64, r.end() * LBS as u64);
            if rs >= end {
                break;
            }
            let (s, e) = (rs.max(start), re.min(end));
            let dst = &mut buf[(s - start) as usize..(e - start) as usize];
            match &r.body {
                Body::Data(d) => dst.copy_from_slice(&d[(s - rs) as usize..(e - rs) as usize]),
                Body::AllZero | Body::Discard => dst.fill(0),
            }
            if re > end {
                break;
            }
            self.cur = None;
        }
        Ok(n)
    }
}
