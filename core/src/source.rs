//! A byte source for stream parsers: a whole file in memory (mmap, zero-copy slices) or any
//! `Read` (sockets, pipes). Tracks the absolute position for error messages.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, IoContext, Result};

pub trait Source: Send {
    /// Up to `n` bytes; fewer only at end of input.
    fn read_up_to(&mut self, n: usize) -> io::Result<Bytes>;
    /// Absolute offset of the next byte.
    fn pos(&self) -> u64;

    /// Exactly `n` bytes of `what`; `None` at a clean end of input (no byte left).
    fn take(&mut self, n: usize, what: &'static str) -> Result<Option<Bytes>> {
        let at = self.pos();
        let b = self
            .read_up_to(n)
            .ctx(|| format!("read {what} at offset {at}"))?;
        if b.is_empty() && n > 0 {
            return Ok(None);
        }
        if b.len() < n {
            return Err(Error::Truncated {
                what,
                offset: at,
                need: n as u64,
                got: b.len() as u64,
            });
        }
        Ok(Some(b))
    }

    /// Exactly `n` bytes of `what`; end of input is an error.
    fn take_exact(&mut self, n: usize, what: &'static str) -> Result<Bytes> {
        let at = self.pos();
        self.take(n, what)?.ok_or(Error::Truncated {
            what,
            offset: at,
            need: n as u64,
            got: 0,
        })
    }
}

/// A whole input held in memory (typically an mmap); reads are slices.
pub struct BytesSource {
    data: Bytes,
    pos: usize,
}

impl BytesSource {
    pub fn new(data: Bytes) -> BytesSource {
        BytesSource { data, pos: 0 }
    }
}

impl Source for BytesSource {
    fn read_up_to(&mut self, n: usize) -> io::Result<Bytes> {
        let end = self.data.len().min(self.pos + n);
        let b = self.data.slice(self.pos..end);
        self.pos = end;
        Ok(b)
    }
    fn pos(&self) -> u64 {
        self.pos as u64
    }
}

/// Any reader; each read allocates its buffer.
pub struct ReadSource<R: Read + Send> {
    r: R,
    pos: u64,
}

impl<R: Read + Send> ReadSource<R> {
    pub fn new(r: R) -> ReadSource<R> {
        ReadSource { r, pos: 0 }
    }
}

impl<R: Read + Send> Source for ReadSource<R> {
    fn read_up_to(&mut self, n: usize) -> io::Result<Bytes> {
        let mut v = Vec::with_capacity(n);
        (&mut self.r).take(n as u64).read_to_end(&mut v)?;
        self.pos += v.len() as u64;
        Ok(Bytes::from(v))
    }
    fn pos(&self) -> u64 {
        self.pos
    }
}

/// Maps a whole file read-only as `Bytes` (zero-copy slices for parsers).
pub fn map_file(path: &Path) -> Result<Bytes> {
    let f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let len = f
        .metadata()
        .ctx(|| format!("stat {}", path.display()))?
        .len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the mapping is read-only; files we parse are not modified while mapped (they
    // are written under temporary names and renamed into place).
    let m = unsafe { memmap2::Mmap::map(&f) }.ctx(|| format!("mmap {}", path.display()))?;
    Ok(Bytes::from_owner(m))
}

/// A source over a file path: mmap for regular files, a reader for `-` (stdin) or pipes.
pub fn open_source(path: &Path) -> Result<Box<dyn Source>> {
    if path == Path::new("-") {
        return Ok(Box::new(ReadSource::new(io::stdin())));
    }
    let md = std::fs::metadata(path).ctx(|| format!("stat {}", path.display()))?;
    if md.is_file() {
        Ok(Box::new(BytesSource::new(map_file(path)?)))
    } else {
        let f = File::open(path).ctx(|| format!("open {}", path.display()))?;
        Ok(Box::new(ReadSource::new(io::BufReader::with_capacity(
            1 << 20,
            f,
        ))))
    }
}
