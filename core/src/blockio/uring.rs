//! `UringIo`: a file or block device with up to `depth` writes in flight through io_uring.
//! Falls back to `FileIo` behaviour when the kernel refuses io_uring.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};

use crate::blockio::file::{discard_range, file_size};
use crate::blockio::{BlockIo, FileIo};

/// Largest single submission; bigger buffers are cut.
const MAX_SQE_BYTES: usize = 8 << 20;

pub struct UringIo {
    file: File,
    ring: Option<IoUring>,
    depth: usize,
    /// Buffers owned while the kernel writes them, by user_data slot.
    slots: Vec<Option<(Bytes, u64)>>,
    free: Vec<usize>,
    in_flight: usize,
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
        if self.free.is_empty() {
            self.reap(1)?;
        }
        let slot = self.free.pop().expect("a slot was reaped");
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
        // fd stays open as long as `self.file`; drop drains before either goes away.
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

    /// Waits for at least `want` completions and handles them.
    fn reap(&mut self, want: usize) -> io::Result<()> {
        let ring = self.ring.as_mut().expect("reap needs a ring");
        ring.submit_and_wait(want.min(self.in_flight))?;
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        let mut first_err = None;
        for (slot, res) in done {
            let (buf, off) = self.slots[slot as usize]
                .take()
                .expect("completion for an owned slot");
            self.free.push(slot as usize);
            self.in_flight -= 1;
            let r = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else if (res as usize) < buf.len() {
                // Short write: finish the rest synchronously.
                self.file
                    .write_all_at(&buf[res as usize..], off + res as u64)
            } else {
                Ok(())
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
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
        let mut first_err = None;
        while self.in_flight > 0 {
            if let Err(e) = self.reap(self.in_flight) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
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
        // The kernel may still write from owned buffers; wait for them.
        let _ = self.drain();
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
}
