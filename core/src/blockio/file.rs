//! `FileIo`: pread/pwrite on a regular file or a block device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::blockio::BlockIo;

pub struct FileIo {
    file: File,
    is_blkdev: bool,
}

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKPBSZGET: libc::c_ulong = 0x127b;
/// Most buffers one pwritev takes (Linux's UIO_MAXIOV).
const IOV_MAX: usize = 1024;

impl FileIo {
    pub fn open(path: &Path, writable: bool) -> io::Result<FileIo> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        FileIo::from_file(file)
    }

    pub fn from_file(file: File) -> io::Result<FileIo> {
        let is_blkdev = file.metadata()?.file_type().is_block_device();
        Ok(FileIo { file, is_blkdev })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn is_blkdev(&self) -> bool {
        self.is_blkdev
    }

    /// The device's physical block size (None for a regular file).
    pub fn physical_block_size(&self) -> io::Result<Option<u32>> {
        if !self.is_blkdev {
            return Ok(None);
        }
        let mut v: libc::c_uint = 0;
        // SAFETY: BLKPBSZGET writes one unsigned int into `v`, which outlives the call.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKPBSZGET, &mut v) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(v))
    }
}

/// Size in bytes of an open file or block device.
pub fn file_size(file: &File) -> io::Result<u64> {
    let md = file.metadata()?;
    if !md.file_type().is_block_device() {
        return Ok(md.len());
    }
    let mut sz: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 into `sz`, which outlives the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut sz) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sz)
}

/// Discards `[off, off+len)` of an open file (punch hole) or block device (BLKDISCARD).
pub fn discard_range(file: &File, off: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let fd = file.as_raw_fd();
    if file.metadata()?.file_type().is_block_device() {
        let range = [off, len];
        // SAFETY: BLKDISCARD reads two u64 (start, length) from `range`, alive for the call.
        let r = unsafe { libc::ioctl(fd, BLKDISCARD, range.as_ptr()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    }
    // SAFETY: plain syscall on an owned fd; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off as libc::off_t,
            len as libc::off_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl BlockIo for FileIo {
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }
    fn write_vectored_at(&mut self, bufs: &[io::IoSlice], mut off: u64) -> io::Result<()> {
        let mut bufs: Vec<io::IoSlice> = bufs.iter().filter(|b| !b.is_empty()).copied().collect();
        let mut left = &mut bufs[..];
        while !left.is_empty() {
            let n = left.len().min(IOV_MAX);
            // SAFETY: the first `n` IoSlices have the layout of iovecs (std guarantees it on
            // Unix) and point at buffers borrowed for the call; the fd is owned by `self`.
            let r = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    left.as_ptr().cast::<libc::iovec>(),
                    n as libc::c_int,
                    off as libc::off_t,
                )
            };
            match r {
                r if r > 0 => {
                    off += r as u64;
                    io::IoSlice::advance_slices(&mut left, r as usize);
                }
                0 => return Err(io::ErrorKind::WriteZero.into()),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn size(&mut self) -> io::Result<u64> {
        file_size(&self.file)
    }
    fn discard(&mut self, off: u64, len: u64) -> io::Result<()> {
        discard_range(&self.file, off, len)
    }
    fn try_clone(&self) -> io::Result<Box<dyn BlockIo>> {
        Ok(Box::new(FileIo::from_file(self.file.try_clone()?)?))
    }
}
