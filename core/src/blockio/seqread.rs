//! `SeqReader`: a file or block device read from start to end through io_uring, several
//! reads in flight, handed out in order. Device scans (full and hash backup, failback) read
//! this way: with O_DIRECT where the file takes it, the data does not go through the page
//! cache (no copy there, and a backup's scan of a large volume does not evict the host's
//! cache); buffered otherwise (a tmpfs file), and a read the kernel refuses direct (an
//! unaligned tail) is read buffered. Without io_uring it reads one chunk at a time with pread.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};

/// Alignment of direct reads' buffers (and of the chunk size): any logical block size.
const ALIGN: usize = 4096;

/// A buffer aligned for O_DIRECT (zeroed when first allocated), handed out as `Bytes` without
/// a copy once read, and given back to its reader's pool when the last `Bytes` goes: a scan
/// reuses a few buffers instead of faulting in and zeroing a fresh one per read.
struct Aligned {
    ptr: std::ptr::NonNull<u8>,
    /// Bytes allocated.
    cap: usize,
    /// Bytes shown (`filled`).
    len: usize,
    /// Where the buffer goes back to when dropped.
    pool: Arc<Pool>,
}

// SAFETY: `Aligned` owns its allocation exclusively; moving it between threads moves a Box.
unsafe impl Send for Aligned {}
// SAFETY: shared access is read-only (`AsRef`); nothing mutates through `&Aligned`.
unsafe impl Sync for Aligned {}

/// Buffers of one size (a reader's chunk) waiting for reuse; at most `MAX_POOLED` kept.
struct Pool {
    cap: usize,
    free: Mutex<Vec<std::ptr::NonNull<u8>>>,
}

// SAFETY: the pooled pointers are allocations nothing else refers to (given back by `Aligned`'s
// drop); the Mutex serialises access to the list.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

/// Buffers a pool keeps: the reads in flight plus those the consumer still holds, about.
const MAX_POOLED: usize = 16;

impl Pool {
    fn layout(cap: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(cap.max(ALIGN), ALIGN).expect("a valid layout")
    }

    fn take(self: &Arc<Pool>) -> Aligned {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let ptr = reused.unwrap_or_else(|| {
            let layout = Pool::layout(self.cap);
            // SAFETY: the layout has a non-zero size (at least ALIGN).
            let p = unsafe { std::alloc::alloc_zeroed(layout) };
            std::ptr::NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
        });
        Aligned {
            ptr,
            cap: self.cap,
            len: self.cap,
            pool: self.clone(),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for p in self
            .free
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            // SAFETY: allocated by `Pool::take` with `layout(cap)`; pooled pointers are owned
            // by the pool alone and freed once.
            unsafe { std::alloc::dealloc(p.as_ptr(), Pool::layout(self.cap)) }
        }
    }
}

impl Aligned {
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `cap` initialised bytes (zeroed at allocation, or an earlier
        // read's) owned by self, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    /// The first `n` bytes as `Bytes` owning the buffer.
    fn filled(mut self, n: usize) -> Bytes {
        self.len = n.min(self.cap);
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Aligned {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` holds `cap` ≥ `len` initialised bytes owned by self; once shared the
        // buffer is only read.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < MAX_POOLED {
            free.push(self.ptr);
            return;
        }
        drop(free);
        // SAFETY: allocated by `Pool::take` with `layout(cap)`, not pooled, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Pool::layout(self.cap)) }
    }
}

/// One read in flight.
struct Pending {
    buf: Aligned,
    off: u64,
    len: usize,
    /// The kernel's result once completed.
    result: Option<i32>,
}

pub struct SeqReader {
    /// Opened with O_DIRECT when the file takes it.
    file: File,
    /// The same file without O_DIRECT, for reads the kernel refuses direct.
    buffered: File,
    direct: bool,
    ring: Option<IoUring>,
    depth: usize,
    chunk: usize,
    next_off: u64,
    end: u64,
    /// Submitted (or, without a ring, due) reads, oldest first; user_data is the read's offset.
    pending: VecDeque<Pending>,
    failed: bool,
    /// The read buffers, reused once the consumer lets go of them.
    pool: Arc<Pool>,
}

impl SeqReader {
    /// Reads `path` from byte `start` to `end` in chunks of `chunk` bytes (rounded up to 4 KiB),
    /// `depth` at a time. `start` must be a multiple of 4096 for direct reads to be used.
    pub fn open(
        path: &Path,
        start: u64,
        end: u64,
        chunk: usize,
        depth: usize,
    ) -> io::Result<SeqReader> {
        let buffered = File::open(path)?;
        let direct_file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let (file, direct) = match direct_file {
            Ok(f) if start.is_multiple_of(ALIGN as u64) => (f, true),
            _ => (buffered.try_clone()?, false),
        };
        let depth = depth.max(1);
        Ok(SeqReader {
            file,
            buffered,
            direct,
            ring: IoUring::new(depth as u32).ok(),
            depth,
            chunk: chunk.max(1).div_ceil(ALIGN) * ALIGN,
            next_off: start,
            end,
            pending: VecDeque::new(),
            failed: false,
            pool: Arc::new(Pool {
                cap: chunk.max(1).div_ceil(ALIGN) * ALIGN,
                free: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Whether reads bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Whether reads go through io_uring.
    pub fn is_uring(&self) -> bool {
        self.ring.is_some()
    }

    /// Queues reads until `depth` are in flight or the end is reached.
    fn fill(&mut self) -> io::Result<()> {
        let mut queued = 0;
        while self.pending.len() < self.depth && self.next_off < self.end {
            let len = (self.end - self.next_off).min(self.chunk as u64) as usize;
            let mut p = Pending {
                buf: self.pool.take(),
                off: self.next_off,
                len,
                result: None,
            };
            if let Some(ring) = self.ring.as_mut() {
                let sqe = opcode::Read::new(
                    types::Fd(self.file.as_raw_fd()),
                    p.buf.as_mut_ptr(),
                    len as u32,
                )
                .offset(p.off)
                .build()
                .user_data(p.off);
                // SAFETY: the buffer is owned by `p`, kept in `self.pending` until its completion
                // is reaped (Drop waits for every read in flight), and the fd lives in `self.file`.
                let pushed = unsafe { ring.submission().push(&sqe) };
                if pushed.is_err() {
                    ring.submit()?;
                    // SAFETY: as above.
                    unsafe { ring.submission().push(&sqe) }
                        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
                }
                queued += 1;
            }
            self.next_off += len as u64;
            self.pending.push_back(p);
        }
        if queued > 0 {
            self.ring.as_mut().expect("queued on a ring").submit()?;
        }
        Ok(())
    }

    /// Waits until the oldest read completed (recording every completion seen).
    fn wait_oldest(&mut self) -> io::Result<()> {
        let ring = self.ring.as_mut().expect("waits need a ring");
        while self.pending.front().is_some_and(|p| p.result.is_none()) {
            wait_one(ring)?;
            for c in ring.completion() {
                if let Some(p) = self.pending.iter_mut().find(|p| p.off == c.user_data()) {
                    p.result = Some(c.result());
                }
            }
        }
        Ok(())
    }

    /// The oldest read's bytes: what io_uring read, the rest (a short or refused read) read
    /// here with pread, buffered when a direct read was refused.
    fn finish(&mut self, mut p: Pending) -> io::Result<Bytes> {
        let got = match p.result {
            Some(r) if r < 0 && r != -libc::EINVAL => return Err(io::Error::from_raw_os_error(-r)),
            Some(r) if r > 0 => r as usize,
            _ => 0,
        };
        if got < p.len {
            let (off, len) = (p.off + got as u64, p.len - got);
            let rest = &mut p.buf.as_mut_slice()[got..p.len];
            // An unaligned tail cannot be read direct: read it buffered.
            let f = if self.direct
                && (!off.is_multiple_of(ALIGN as u64)
                    || !len.is_multiple_of(512)
                    || p.result == Some(-libc::EINVAL))
            {
                &self.buffered
            } else {
                &self.file
            };
            match f.read_exact_at(rest, off) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.buffered.read_exact_at(rest, off)?
                }
                r => r?,
            }
        }
        let len = p.len;
        Ok(p.buf.filled(len))
    }
}

/// Waits for a completion; a signal does not end the wait.
fn wait_one(ring: &mut IoUring) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(1) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|_| ()),
        }
    }
}

impl Iterator for SeqReader {
    type Item = io::Result<(u64, Bytes)>;

    /// The next chunk (its byte offset and bytes), in order; after an error, nothing more.
    fn next(&mut self) -> Option<io::Result<(u64, Bytes)>> {
        if self.failed {
            return None;
        }
        let r = (|| {
            self.fill()?;
            if self.pending.is_empty() {
                return Ok(None);
            }
            if self.ring.is_some() {
                self.wait_oldest()?;
            }
            let p = self.pending.pop_front().expect("checked above");
            let off = p.off;
            self.finish(p).map(|b| Some((off, b)))
        })();
        match r {
            Ok(x) => x.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Drop for SeqReader {
    /// The kernel may still write into buffers of reads in flight: wait for them, and leak the
    /// buffers if the ring itself fails rather than free memory the kernel may still write.
    fn drop(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let mut waiting = self.pending.iter().filter(|p| p.result.is_none()).count();
        while waiting > 0 {
            if wait_one(ring).is_err() {
                std::mem::forget(std::mem::take(&mut self.pending));
                return;
            }
            for c in ring.completion() {
                if let Some(p) = self.pending.iter_mut().find(|p| p.off == c.user_data()) {
                    if p.result.replace(c.result()).is_none() {
                        waiting -= 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        let f = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        f.as_file().write_all_at(&data, 0).unwrap();
        (f, data)
    }

    #[test]
    fn reads_everything_in_order_direct_or_not_with_an_unaligned_tail() {
        // 3 MiB and 1536 bytes: the last read is not a multiple of 4096.
        let (f, data) = file_of((3 << 20) + 1536);
        for (chunk, depth) in [(1 << 20, 4), (64 << 10, 1), (5000, 3)] {
            let r = SeqReader::open(f.path(), 0, data.len() as u64, chunk, depth).unwrap();
            let mut got = Vec::new();
            let mut at = 0;
            for c in r {
                let (off, b) = c.unwrap();
                assert_eq!(off, at);
                at += b.len() as u64;
                got.extend_from_slice(&b);
            }
            assert_eq!(got, data, "chunk {chunk}, depth {depth}");
        }
        // From the middle, to short of the end.
        let r = SeqReader::open(f.path(), 1 << 20, (2 << 20) + 512, 256 << 10, 2).unwrap();
        let got: Vec<u8> = r.flat_map(|c| c.unwrap().1.to_vec()).collect();
        assert_eq!(got, data[1 << 20..(2 << 20) + 512]);
    }

    #[test]
    fn dropped_with_reads_in_flight_frees_nothing_early() {
        let (f, data) = file_of(8 << 20);
        let mut r = SeqReader::open(f.path(), 0, data.len() as u64, 1 << 20, 8).unwrap();
        let (_, first) = r.next().unwrap().unwrap();
        drop(r);
        assert_eq!(&first[..], &data[..1 << 20]);
    }

    #[test]
    fn a_read_past_the_end_is_an_error() {
        let (f, _) = file_of(4096);
        let mut r = SeqReader::open(f.path(), 0, 3 * 4096, 4096, 2).unwrap();
        assert!(r.next().unwrap().is_ok());
        assert!(r.next().unwrap().is_err());
        assert!(r.next().is_none());
    }
}
