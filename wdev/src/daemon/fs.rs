//! The FUSE file system: a root directory with one file per device. Reads, writes, fsync
//! (logs durable; data follows in the background) and fallocate (punch hole and zero range become discards) go
//! through the device's write path.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};
use walb_core::LBS;

use crate::daemon::registry::Registry;
use crate::dev::{Io, WdevError};

const TTL: Duration = Duration::from_secs(1);
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

pub struct WdevFs {
    pub reg: Arc<Registry>,
}

fn attr(ino: u64, size: u64, dir: bool) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size / 512,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: if dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: if dir { 0o755 } else { 0o600 },
        nlink: if dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

fn errno(e: &WdevError) -> Errno {
    match e {
        WdevError::Invalid(_) => Errno::EINVAL,
        WdevError::ReadOnly => Errno::EROFS,
        WdevError::Core(_) | WdevError::Writeback(_) => Errno::EIO,
    }
}

/// LB address and count of an aligned byte range.
fn lb_range(offset: u64, len: u64) -> Option<(u64, u64)> {
    (offset.is_multiple_of(LBS as u64) && len.is_multiple_of(LBS as u64))
        .then(|| (offset / LBS as u64, len / LBS as u64))
}

impl WdevFs {
    fn file_attr(&self, ino: u64) -> Option<FileAttr> {
        if ino == 1 {
            return Some(attr(1, 0, true));
        }
        let (_, s) = self.reg.by_ino(ino)?;
        let size = s.dev.lock().expect("device lock").size_lb() * LBS as u64;
        Some(attr(ino, size, false))
    }
}

impl Filesystem for WdevFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Async direct IO lets the loop device's concurrent writes reach us concurrently;
        // a kernel without it still works, one write at a time.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO) {
            tracing::warn!("kernel lacks FUSE capabilities {missing:?}: writes are not grouped");
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = (u64::from(parent) == 1)
            .then(|| name.to_str().and_then(|n| self.reg.get(n).ok()))
            .flatten()
            .and_then(|s| self.file_attr(s.ino));
        match found {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.file_attr(ino.into()) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.reg.by_ino(ino.into()).is_none() {
            return reply.error(Errno::ENOENT);
        }
        // No page cache in between: the loop device above does its own caching.
        // Parallel direct writes let the group commit see several writes at once.
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some((_, s)) = self.reg.by_ino(ino.into()) else {
            return reply.error(Errno::ENOENT);
        };
        let mut dev = s.dev.lock().expect("device lock");
        let end = (dev.size_lb() * LBS as u64).min(offset + size as u64);
        if offset >= end {
            return reply.data(&[]);
        }
        let Some((lba, _)) = lb_range(offset, end - offset) else {
            return reply.error(Errno::EINVAL);
        };
        let mut buf = vec![0u8; (end - offset) as usize];
        match dev.read(lba, &mut buf) {
            Ok(()) => reply.data(&buf),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some((_, s)) = self.reg.by_ino(ino.into()) else {
            return reply.error(Errno::ENOENT);
        };
        let Some((lba, _)) = lb_range(offset, data.len() as u64) else {
            return reply.error(Errno::EINVAL);
        };
        let fua = flags.0 & (libc::O_DSYNC | libc::O_SYNC) != 0;
        let io = Io::Write {
            lba,
            data: Bytes::copy_from_slice(data),
        };
        match s.submit(io, fua) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some((_, s)) = self.reg.by_ino(ino.into()) else {
            return reply.error(Errno::ENOENT);
        };
        let r = s.dev.lock().expect("device lock").flush();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some((_, s)) = self.reg.by_ino(ino.into()) else {
            return reply.error(Errno::ENOENT);
        };
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) == 0 {
            // Plain allocation: every block of the device exists already.
            return reply.ok();
        }
        let Some((lba, blocks)) = lb_range(offset, length) else {
            return reply.error(Errno::EINVAL);
        };
        // A discard record holds at most 2^32−1 LB.
        let (mut at, end) = (lba, lba + blocks);
        while at < end {
            let n = (end - at).min(u32::MAX as u64);
            if let Err(e) = s.submit(
                Io::Discard {
                    lba: at,
                    blocks: n as u32,
                },
                false,
            ) {
                return reply.error(errno(&e));
            }
            at += n;
        }
        reply.ok()
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if u64::from(ino) != 1 {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (1, FileType::Directory, ".".to_string()),
            (1, FileType::Directory, "..".to_string()),
        ];
        for (name, s) in self.reg.names() {
            entries.push((s.ino, FileType::RegularFile, name));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
