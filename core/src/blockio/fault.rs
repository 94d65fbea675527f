//! `FaultIo`: wraps a `BlockIo` and breaks it on purpose, for crash and error tests.

use std::io;

use bytes::Bytes;

use crate::blockio::BlockIo;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every operation succeeds.
    None,
    /// Writes fail with EIO once `n` more bytes have been written.
    EioAfter(u64),
    /// The write that crosses `n` more bytes is torn: only its part up to `n` lands, then EIO.
    TornAfter(u64),
    /// Writes fail with ENOSPC once `n` more bytes have been written.
    FullAfter(u64),
    /// Reads fail with EIO.
    ReadEio,
}

pub struct FaultIo<T: BlockIo> {
    inner: T,
    fault: Fault,
    written: u64,
}

impl<T: BlockIo> FaultIo<T> {
    pub fn new(inner: T, fault: Fault) -> FaultIo<T> {
        FaultIo {
            inner,
            fault,
            written: 0,
        }
    }
    pub fn set_fault(&mut self, fault: Fault) {
        self.fault = fault;
        self.written = 0;
    }
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// How many bytes of a `len`-byte write may land, and the error after them.
    fn budget(&self, len: u64) -> Option<(u64, io::Error)> {
        let (limit, kind, torn) = match self.fault {
            Fault::EioAfter(n) => (n, libc::EIO, false),
            Fault::TornAfter(n) => (n, libc::EIO, true),
            Fault::FullAfter(n) => (n, libc::ENOSPC, false),
            Fault::None | Fault::ReadEio => return None,
        };
        if self.written + len <= limit {
            return None;
        }
        let land = if torn {
            limit.saturating_sub(self.written)
        } else {
            0
        };
        Some((land, io::Error::from_raw_os_error(kind)))
    }
}

impl<T: BlockIo> BlockIo for FaultIo<T> {
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if self.fault == Fault::ReadEio {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.read_at(buf, off)
    }
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        if let Some((land, err)) = self.budget(buf.len() as u64) {
            if land > 0 {
                self.inner.write_at(&buf[..land as usize], off)?;
                self.written += land;
            }
            return Err(err);
        }
        self.inner.write_at(buf, off)?;
        self.written += buf.len() as u64;
        Ok(())
    }
    fn write_queued(&mut self, buf: Bytes, off: u64) -> io::Result<()> {
        self.write_at(&buf, off)
    }
    fn drain(&mut self) -> io::Result<()> {
        self.inner.drain()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn size(&mut self) -> io::Result<u64> {
        self.inner.size()
    }
    fn discard(&mut self, off: u64, len: u64) -> io::Result<()> {
        self.inner.discard(off, len)
    }
    /// The clone shares the file, not the fault.
    fn try_clone(&self) -> io::Result<Box<dyn BlockIo>> {
        self.inner.try_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockio::FileIo;

    #[test]
    fn torn_write_lands_partially() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(8192).unwrap();
        let mut io = FaultIo::new(FileIo::from_file(f).unwrap(), Fault::TornAfter(1000));
        io.write_at(&[1u8; 512], 0).unwrap();
        let e = io.write_at(&[2u8; 1024], 512).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        let mut b = vec![0u8; 2048];
        io.read_at(&mut b, 0).unwrap();
        assert!(b[..512].iter().all(|&x| x == 1));
        assert!(b[512..1000].iter().all(|&x| x == 2));
        assert!(b[1000..].iter().all(|&x| x == 0));
    }
}
