//! `UringIo`: a file or block device with up to `depth` writes in flight through io_uring.
//! Falls back to `FileIo` behaviour when the kernel refuses io_uring.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{CancelBuilder, SubmitArgs, Timespec};
use io_uring::{opcode, types, IoUring};

use crate::blockio::file::{discard_range, file_size};
use crate::blockio::{BlockIo, FileIo};

/// Largest single submission; bigger buffers are cut.
const MAX_SQE_BYTES: usize = 8 << 20;

/// A wait that sees no completion for this long cancels the writes the kernel has not started,
/// and they are written here instead. Buffered file writes go to io-wq workers, and a write
/// has been seen queued there for good with no worker left to run it: without this, the
/// writer would wait forever.
const STALL: Duration = Duration::from_secs(5);

pub struct UringIo {
    file: File,
    ring: Option<IoUring>,
    depth: usize,
    /// Buffers owned while the kernel writes them, by user_data slot.
    slots: Vec<Option<(Bytes, u64)>>,
    free: Vec<usize>,
    in_flight: usize,
    /// The first failed write since the last report.
    failed: Option<io::Error>,
}

impl UringIo {
    pub fn new(file: File, depth: u32) -> UringIo {
        let depth = depth.max(1);
        let ring = IoUring::new(depth).ok();
        UringIo {
            file,
            ring,
            depth: depth as usize,
            slots: (0..depth).map(|_| None).collect(),
            free: (0..depth as usize).rev().collect(),
            in_flight: 0,
            failed: None,
        }
    }

    /// True when writes really go through io_uring.
    pub fn is_uring(&self) -> bool {
        self.ring.is_some()
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    fn submit(&mut self, buf: Bytes, off: u64) -> io::Result<()> {
        while self.free.is_empty() {
            self.reap(1)?;
        }
        self.take_failure()?;
        let slot = self.free.pop().expect("a slot is free");
        let sqe = opcode::Write::new(
            types::Fd(self.file.as_raw_fd()),
            buf.as_ptr(),
            buf.len() as u32,
        )
        .offset(off)
        .build()
        .user_data(slot as u64);
        self.slots[slot] = Some((buf, off));
        let ring = self.ring.as_mut().expect("submit needs a ring");
        // SAFETY: the buffer lives in `self.slots[slot]` until its completion is reaped, and the
        // fd stays open as long as `self.file`; drop drains (or leaks the buffers) first.
        unsafe {
            if ring.submission().push(&sqe).is_err() {
                ring.submit()?;
                ring.submission()
                    .push(&sqe)
                    .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            }
        }
        self.in_flight += 1;
        if self.in_flight == self.depth {
            ring.submit()?;
        }
        Ok(())
    }

    fn take_failure(&mut self) -> io::Result<()> {
        self.failed.take().map_or(Ok(()), Err)
    }

    /// Waits for at least `want` completions, or for `STALL`, and handles what completed. A
    /// failed write is kept for `take_failure`; an error here is the ring's own.
    fn reap(&mut self, want: usize) -> io::Result<()> {
        let ring = self.ring.as_mut().expect("reap needs a ring");
        let ts = Timespec::from(STALL);
        let args = SubmitArgs::new().timespec(&ts);
        let start = Instant::now();
        // A timed-out wait reports ETIME, or the number submitted if it submitted any.
        match ring
            .submitter()
            .submit_with_args(want.min(self.in_flight), &args)
        {
            Err(e)
                if e.raw_os_error() != Some(libc::ETIME)
                    && e.kind() != io::ErrorKind::Interrupted =>
            {
                return Err(e)
            }
            _ => {}
        }
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        if done.is_empty() && start.elapsed() >= STALL {
            self.cancel_unstarted();
        }
        for (slot, res) in done {
            let (buf, off) = self.slots[slot as usize]
                .take()
                .expect("completion for an owned slot");
            self.free.push(slot as usize);
            self.in_flight -= 1;
            let r = if res == -libc::ECANCELED {
                self.file.write_all_at(&buf, off)
            } else if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else if (res as usize) < buf.len() {
                // Short write: finish the rest synchronously.
                self.file
                    .write_all_at(&buf[res as usize..], off + res as u64)
            } else {
                Ok(())
            };
            if let Err(e) = r {
                self.failed.get_or_insert(e);
            }
        }
        Ok(())
    }

    /// Cancels every write the kernel has not started; each completes as cancelled and `reap`
    /// writes it directly. io_uring gives queued writes no order (`Applier` never queues two
    /// that overlap), so this changes nothing a caller relies on. A running write is left be.
    fn cancel_unstarted(&mut self) {
        let ring = self.ring.as_ref().expect("cancel needs a ring");
        let r = ring.submitter().register_sync_cancel(
            Some(Timespec::from(Duration::from_secs(1))),
            CancelBuilder::any(),
        );
        tracing::warn!(
            in_flight = self.in_flight,
            "io_uring writes made no progress for {STALL:?}; writing the unstarted ones directly \
             (cancel: {r:?})"
        );
    }
}

impl BlockIo for UringIo {
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }
    fn write_queued(&mut self, buf: Bytes, off: u64) -> io::Result<()> {
        if self.ring.is_none() {
            return self.file.write_all_at(&buf, off);
        }
        let mut at = 0;
        while at < buf.len() {
            let n = (buf.len() - at).min(MAX_SQE_BYTES);
            self.submit(buf.slice(at..at + n), off + at as u64)?;
            at += n;
        }
        Ok(())
    }
    fn drain(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.reap(self.in_flight)?;
        }
        self.take_failure()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.drain()?;
        self.file.sync_data()
    }
    fn size(&mut self) -> io::Result<u64> {
        file_size(&self.file)
    }
    fn discard(&mut self, off: u64, len: u64) -> io::Result<()> {
        // A discard must not race queued writes to the same range.
        self.drain()?;
        discard_range(&self.file, off, len)
    }
    fn try_clone(&self) -> io::Result<Box<dyn BlockIo>> {
        Ok(Box::new(FileIo::from_file(self.file.try_clone()?)?))
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        // The kernel may still write from owned buffers: wait for them, and if the ring itself
        // fails, leak them rather than free memory the kernel may still read.
        if self.drain().is_err() && self.in_flight > 0 {
            std::mem::forget(std::mem::take(&mut self.slots));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_queued_writes_land() {
        let f = tempfile::tempfile().unwrap();
        let mut io = UringIo::new(f.try_clone().unwrap(), 8);
        for i in 0..100u64 {
            io.write_queued(Bytes::from(vec![i as u8; 4096]), i * 4096)
                .unwrap();
        }
        io.sync().unwrap();
        let mut b = vec![0u8; 4096];
        for i in 0..100u64 {
            f.read_exact_at(&mut b, i * 4096).unwrap();
            assert!(b.iter().all(|&x| x == i as u8));
        }
    }

    /// A write the kernel cannot start (a full pipe) must not hang `drain`: after `STALL` it is
    /// cancelled and written directly, which on a pipe fails with ESPIPE, proving the path ran.
    #[test]
    fn a_stalled_write_is_cancelled_and_written_directly() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (rd, wr) = (fds[0], fds[1]);
        // SAFETY: fcntl on a descriptor this test owns.
        unsafe { libc::fcntl(wr, libc::F_SETFL, libc::O_NONBLOCK) };
        let chunk = [0u8; 4096];
        // SAFETY: writes from a live buffer to a descriptor this test owns.
        while unsafe { libc::write(wr, chunk.as_ptr().cast(), chunk.len()) } > 0 {}
        // SAFETY: as above; blocking again, so io_uring waits on the pipe instead of failing.
        unsafe { libc::fcntl(wr, libc::F_SETFL, 0) };
        // SAFETY: `wr` is open and owned by nothing else from here on.
        let file = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(wr) };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut io = UringIo::new(file, 4);
            assert!(io.is_uring(), "io_uring refused by the kernel");
            io.write_queued(Bytes::from_static(&[1u8; 4096]), 0)
                .unwrap();
            tx.send(io.drain()).unwrap();
        });
        let r = rx
            .recv_timeout(STALL * 4)
            .expect("drain still waits on a write the kernel never starts");
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ESPIPE));
        // SAFETY: closes the read end this test owns.
        unsafe { libc::close(rd) };
    }
}
