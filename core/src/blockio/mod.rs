//! Positional block I/O behind one small trait, so crash tests can break it: `FileIo` (pread/
//! pwrite), `UringIo` (io_uring with many writes in flight) and `FaultIo` (injects EIO, torn
//! writes and a full disk); and `SeqReader`, a whole device read in order through io_uring
//! (device scans).

pub mod fault;
pub mod file;
pub mod seqread;
pub mod uring;

use std::io;

use bytes::Bytes;

pub use fault::{Fault, FaultIo};
pub use file::FileIo;
pub use seqread::SeqReader;
pub use uring::UringIo;

pub trait BlockIo: Send {
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()>;
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Writes `bufs` one after another from `off` (one system call where the handle can).
    fn write_vectored_at(&mut self, bufs: &[io::IoSlice], mut off: u64) -> io::Result<()> {
        for b in bufs {
            self.write_at(b, off)?;
            off += b.len() as u64;
        }
        Ok(())
    }
    /// Queues a write; it is done at the latest when `drain` returns. Callers must not read
    /// back a range with a queued write before draining.
    fn write_queued(&mut self, buf: Bytes, off: u64) -> io::Result<()> {
        self.write_at(&buf, off)
    }
    /// Waits for every queued write.
    fn drain(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Makes every completed write durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Size in bytes.
    fn size(&mut self) -> io::Result<u64>;
    /// Discards a byte range (punch hole or BLKDISCARD); reads back as zeros where supported.
    fn discard(&mut self, off: u64, len: u64) -> io::Result<()>;
    /// Another handle on the same file (plain pread/pwrite), for another thread: a sync on
    /// either makes the writes of both durable.
    fn try_clone(&self) -> io::Result<Box<dyn BlockIo>>;
}

/// A shared zero buffer for all-zero writes.
pub fn zeros(len: usize) -> Bytes {
    static ZEROS: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    const CAP: usize = 1 << 20;
    let z = ZEROS.get_or_init(|| Bytes::from(vec![0u8; CAP]));
    if len <= CAP {
        z.slice(..len)
    } else {
        Bytes::from(vec![0u8; len])
    }
}

/// Writes zeros over `[off, off+len)` in chunks through the queue.
pub fn write_zeros(io: &mut dyn BlockIo, mut off: u64, mut len: u64) -> io::Result<()> {
    while len > 0 {
        let n = len.min(1 << 20);
        io.write_queued(zeros(n as usize), off)?;
        off += n;
        len -= n;
    }
    Ok(())
}
