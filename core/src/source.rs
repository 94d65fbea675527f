//! A byte source for stream parsers: a whole file in memory (mmap, zero-copy slices) or any
//! `Read` (sockets, pipes). Tracks the absolute position for error messages.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use bytes::{Bytes, BytesMut};

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

/// Input arriving in pieces (e.g. chunks off a network stream); a read inside one piece is a
/// slice of it, a read across pieces is gathered.
pub struct ChunkSource<I: Iterator<Item = Bytes> + Send> {
    chunks: I,
    cur: Bytes,
    pos: u64,
}

impl<I: Iterator<Item = Bytes> + Send> ChunkSource<I> {
    pub fn new(chunks: I) -> ChunkSource<I> {
        ChunkSource {
            chunks,
            cur: Bytes::new(),
            pos: 0,
        }
    }

    /// The current piece, refilled from the next non-empty one; empty at the end.
    fn fill(&mut self) -> &mut Bytes {
        while self.cur.is_empty() {
            match self.chunks.next() {
                Some(b) => self.cur = b,
                None => break,
            }
        }
        &mut self.cur
    }
}

impl<I: Iterator<Item = Bytes> + Send> Source for ChunkSource<I> {
    fn read_up_to(&mut self, n: usize) -> io::Result<Bytes> {
        let cur = self.fill();
        let out = if cur.len() >= n {
            cur.split_to(n)
        } else {
            let mut v = BytesMut::with_capacity(n);
            loop {
                let cur = self.fill();
                if cur.is_empty() {
                    break;
                }
                let k = cur.len().min(n - v.len());
                v.extend_from_slice(&cur.split_to(k));
                if v.len() == n {
                    break;
                }
            }
            v.freeze()
        };
        self.pos += out.len() as u64;
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// However the input is cut into pieces and however it is read, the bytes and the
        /// positions are those of the whole input.
        #[test]
        fn chunk_source_reads_like_the_whole(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            cuts in proptest::collection::vec(0usize..4096, 0..12),
            reads in proptest::collection::vec(1usize..700, 1..40),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let whole = Bytes::from(data.clone());
            let pieces: Vec<Bytes> = cuts.windows(2).map(|w| whole.slice(w[0]..w[1])).collect();
            let mut src = ChunkSource::new(pieces.into_iter());
            let mut got = Vec::new();
            for n in reads.iter().cycle().take(data.len() + 2) {
                let at = src.pos();
                prop_assert_eq!(at, got.len() as u64);
                let b = src.read_up_to(*n).unwrap();
                prop_assert!(b.len() == *n || got.len() + b.len() == data.len());
                got.extend_from_slice(&b);
                if b.is_empty() {
                    break;
                }
            }
            prop_assert_eq!(got, data);
        }
    }
}
