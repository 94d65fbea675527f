//! The FUSE file system: a root directory with one file per device. Reads, writes, fsync
//! (logs durable; data follows in the background) and fallocate (punch hole and zero range become discards) go
//! through the device's write path.

use std::sync::Arc;

use bytes::Bytes;
use walb_core::LBS;

use super::fuse::{Answer, Request};
use super::fuse_abi::{self as abi, Attr, AttrOut, EntryOut, OpenOut, StatfsOut, WriteOut};
use crate::daemon::registry::{Registry, Served};
use crate::dev::{Io, Outcome, WdevError};

/// Seconds the kernel may cache names and attributes.
const TTL_SECS: u64 = 1;
const FALLOC_FL_PUNCH_HOLE: u32 = 0x02;
const FALLOC_FL_ZERO_RANGE: u32 = 0x10;
const DT_DIR: u32 = 4;
const DT_REG: u32 = 8;

pub struct WdevFs {
    pub reg: Arc<Registry>,
}

fn attr(ino: u64, size: u64, dir: bool) -> Attr {
    Attr {
        ino,
        size,
        blocks: size / 512,
        mode: if dir {
            libc::S_IFDIR | 0o755
        } else {
            libc::S_IFREG | 0o600
        },
        nlink: if dir { 2 } else { 1 },
        blksize: 4096,
        ..Default::default()
    }
}

fn errno(e: &WdevError) -> i32 {
    match e {
        WdevError::Invalid(_) => libc::EINVAL,
        WdevError::ReadOnly => libc::EROFS,
        WdevError::Core(_) | WdevError::Writeback(_) => libc::EIO,
    }
}

/// LB address and count of an aligned byte range.
fn lb_range(offset: u64, len: u64) -> Option<(u64, u64)> {
    (offset.is_multiple_of(LBS as u64) && len.is_multiple_of(LBS as u64))
        .then(|| (offset / LBS as u64, len / LBS as u64))
}

fn ok<T: abi::Pod>(v: &T) -> Answer {
    Answer::Ok(abi::bytes(v).to_vec())
}

fn done(r: Result<(), WdevError>) -> Answer {
    match r {
        Ok(()) => Answer::Ok(Vec::new()),
        Err(e) => Answer::Err(errno(&e)),
    }
}

/// The request's fixed-size argument, or EINVAL.
fn arg<T: abi::Pod>(r: &Request) -> Result<T, Answer> {
    abi::read(r.body).ok_or(Answer::Err(libc::EINVAL))
}

impl WdevFs {
    fn file_attr(&self, ino: u64) -> Option<Attr> {
        if ino == 1 {
            return Some(attr(1, 0, true));
        }
        let (_, s) = self.reg.by_ino(ino)?;
        let size = s.dev.lock().expect("device lock").size_lb() * LBS as u64;
        Some(attr(ino, size, false))
    }

    fn served(&self, r: &Request) -> Result<Arc<Served>, Answer> {
        self.reg
            .by_ino(r.h.nodeid)
            .map(|(_, s)| s)
            .ok_or(Answer::Err(libc::ENOENT))
    }

    /// Answers one kernel request (docs/wdev.md lists what the file system does).
    pub fn handle(&self, r: &Request) -> Answer {
        self.dispatch(r).unwrap_or_else(|a| a)
    }

    fn dispatch(&self, r: &Request) -> Result<Answer, Answer> {
        let attr_out = |a: Attr| AttrOut {
            attr_valid: TTL_SECS,
            attr: a,
            ..Default::default()
        };
        Ok(match r.h.opcode {
            abi::FORGET | abi::BATCH_FORGET | abi::INTERRUPT => Answer::None,
            abi::LOOKUP => {
                let name = r.body.split(|&b| b == 0).next().unwrap_or_default();
                let found = (r.h.nodeid == 1)
                    .then(|| std::str::from_utf8(name).ok())
                    .flatten()
                    .and_then(|n| self.reg.get(n).ok())
                    .and_then(|s| self.file_attr(s.ino));
                let a = found.ok_or(Answer::Err(libc::ENOENT))?;
                ok(&EntryOut {
                    nodeid: a.ino,
                    entry_valid: TTL_SECS,
                    attr_valid: TTL_SECS,
                    attr: a,
                    ..Default::default()
                })
            }
            abi::GETATTR => {
                let a = self
                    .file_attr(r.h.nodeid)
                    .ok_or(Answer::Err(libc::ENOENT))?;
                ok(&attr_out(a))
            }
            abi::SETATTR => {
                // Nothing about a device file changes through setattr; its size only
                // through `wdevc resize`.
                let a = self
                    .file_attr(r.h.nodeid)
                    .ok_or(Answer::Err(libc::ENOENT))?;
                let set: abi::SetattrIn = arg(r)?;
                if set.valid & abi::FATTR_SIZE != 0 && set.size != a.size {
                    return Err(Answer::Err(libc::EINVAL));
                }
                ok(&attr_out(a))
            }
            abi::OPEN => {
                self.served(r)?;
                // No page cache in between: the loop device above does its own caching.
                // Parallel direct writes let the group commit see several writes at once.
                ok(&OpenOut {
                    open_flags: abi::FOPEN_DIRECT_IO | abi::FOPEN_PARALLEL_DIRECT_WRITES,
                    ..Default::default()
                })
            }
            abi::OPENDIR => ok(&OpenOut::default()),
            abi::READ => self.read(r)?,
            abi::WRITE => self.write(r)?,
            abi::FSYNC => {
                let s = self.served(r)?;
                done(s.flush())
            }
            abi::FALLOCATE => self.fallocate(r)?,
            abi::READDIR => self.readdir(r)?,
            abi::STATFS => ok(&StatfsOut {
                bsize: 4096,
                frsize: 4096,
                namelen: 31,
                ..Default::default()
            }),
            abi::FLUSH | abi::RELEASE | abi::RELEASEDIR | abi::FSYNCDIR | abi::DESTROY => {
                Answer::Ok(Vec::new())
            }
            _ => Answer::Err(libc::ENOSYS),
        })
    }

    fn read(&self, r: &Request) -> Result<Answer, Answer> {
        let s = self.served(r)?;
        let a: abi::ReadIn = arg(r)?;
        let mut dev = s.dev.lock().expect("device lock");
        let end = (dev.size_lb() * LBS as u64).min(a.offset + a.size as u64);
        if a.offset >= end {
            return Ok(Answer::Ok(Vec::new()));
        }
        let (lba, _) = lb_range(a.offset, end - a.offset).ok_or(Answer::Err(libc::EINVAL))?;
        let mut buf = vec![0u8; (end - a.offset) as usize];
        dev.read(lba, &mut buf)
            .map_err(|e| Answer::Err(errno(&e)))?;
        Ok(Answer::Ok(buf))
    }

    fn write(&self, r: &Request) -> Result<Answer, Answer> {
        let s = self.served(r)?;
        let a: abi::WriteIn = arg(r)?;
        let data = r
            .body
            .get(size_of::<abi::WriteIn>()..)
            .and_then(|d| d.get(..a.size as usize))
            .ok_or(Answer::Err(libc::EINVAL))?;
        let (lba, _) = lb_range(a.offset, data.len() as u64).ok_or(Answer::Err(libc::EINVAL))?;
        let fua = a.flags as i32 & (libc::O_DSYNC | libc::O_SYNC) != 0;
        let io = Io::Write {
            lba,
            data: Bytes::copy_from_slice(data),
        };
        // Answered by whichever thread logs the write's batch; this one goes on reading.
        let reply = r.reply();
        let size = a.size;
        let done = move |out: Outcome| {
            reply.send(match out {
                Ok(()) => ok(&WriteOut { size, padding: 0 }),
                Err(e) => Answer::Err(errno(&e)),
            })
        };
        s.submit_then(io, fua, Box::new(done));
        Ok(Answer::None)
    }

    fn fallocate(&self, r: &Request) -> Result<Answer, Answer> {
        let s = self.served(r)?;
        let a: abi::FallocateIn = arg(r)?;
        if a.mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) == 0 {
            // Plain allocation: every block of the device exists already.
            return Ok(Answer::Ok(Vec::new()));
        }
        let (lba, blocks) = lb_range(a.offset, a.length).ok_or(Answer::Err(libc::EINVAL))?;
        // A discard record holds at most 2^32−1 LB.
        let (mut at, end) = (lba, lba + blocks);
        while at < end {
            let n = (end - at).min(u32::MAX as u64);
            let io = Io::Discard {
                lba: at,
                blocks: n as u32,
            };
            s.submit(io, false).map_err(|e| Answer::Err(errno(&e)))?;
            at += n;
        }
        Ok(Answer::Ok(Vec::new()))
    }

    fn readdir(&self, r: &Request) -> Result<Answer, Answer> {
        if r.h.nodeid != 1 {
            return Err(Answer::Err(libc::ENOTDIR));
        }
        let a: abi::ReadIn = arg(r)?;
        let mut entries = vec![(1, DT_DIR, ".".to_string()), (1, DT_DIR, "..".to_string())];
        for (name, s) in self.reg.names() {
            entries.push((s.ino, DT_REG, name));
        }
        let mut out = Vec::new();
        for (i, (ino, typ, name)) in entries.into_iter().enumerate().skip(a.offset as usize) {
            let d = abi::Dirent {
                ino,
                off: (i + 1) as u64,
                namelen: name.len() as u32,
                typ,
            };
            let len = (size_of::<abi::Dirent>() + name.len()).next_multiple_of(8);
            if out.len() + len > a.size as usize {
                break;
            }
            out.extend_from_slice(abi::bytes(&d));
            out.extend_from_slice(name.as_bytes());
            out.resize(out.len().next_multiple_of(8), 0);
        }
        Ok(Answer::Ok(out))
    }
}
