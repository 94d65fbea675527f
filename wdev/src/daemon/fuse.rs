//! A FUSE connection without a library: mount (open /dev/fuse, mount(2)), the INIT handshake,
//! the request loop, answers, and the resend notification a new serving process sends after
//! taking over a connection (docs/wdev.md, "Restarts").
//!
//! The connection is a file descriptor; whoever holds it keeps the mount alive. The supervisor
//! mounts and answers INIT once; workers get the descriptor and the negotiated [`Init`] and
//! only run [`serve`].
//!
//! A handler answers a request at once, or takes a [`Reply`] and answers later from any thread
//! (a WRITE is answered by whichever thread logs its batch), so that the thread goes back to
//! reading requests instead of waiting.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;

use super::fuse_abi::{self as abi, InHeader, OutHeader};

/// What INIT settled; the kernel never sends INIT again on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Init {
    /// The kernel's minor protocol version.
    pub kernel_minor: u32,
    /// Largest WRITE payload the kernel sends.
    pub max_write: u32,
    /// Flags both sides agreed on.
    pub flags: u32,
}

impl Init {
    /// `kernel_minor=M max_write=W flags=F`, as handed to workers.
    pub fn encode(&self) -> String {
        format!(
            "kernel_minor={} max_write={} flags={}",
            self.kernel_minor, self.max_write, self.flags
        )
    }

    pub fn decode(s: &str) -> Option<Init> {
        let field = |k: &str| -> Option<u32> {
            s.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        Some(Init {
            kernel_minor: field("kernel_minor")?,
            max_write: field("max_write")?,
            flags: field("flags")?,
        })
    }
}

/// One kernel request: its header and the bytes after it.
pub struct Request<'a> {
    pub h: InHeader,
    pub body: &'a [u8],
    conn: &'a Arc<Conn>,
}

impl Request<'_> {
    /// The answer owed for this request, to be given later (the handler then returns
    /// [`Answer::None`]).
    pub fn reply(&self) -> Reply {
        Reply {
            conn: self.conn.clone(),
            unique: self.h.unique,
            opcode: self.h.opcode,
            sent: false,
        }
    }
}

/// What a handler answers: nothing (FORGET, INTERRUPT, or a request whose [`Reply`] it took),
/// an errno, or the answer's bytes.
pub enum Answer {
    None,
    Err(i32),
    Ok(Vec<u8>),
}

/// The connection as answers need it: the descriptor, and what to note on each answer.
struct Conn {
    fd: OwnedFd,
    answered: Box<dyn Fn() + Send + Sync>,
}

impl Conn {
    /// Sends `a` for request `unique`; false when the connection is gone.
    fn answer(&self, unique: u64, opcode: u32, a: Answer) -> bool {
        let sent = match a {
            Answer::None => return true,
            Answer::Err(e) => send(self.fd.as_fd(), unique, -e, &[]),
            Answer::Ok(v) => send(self.fd.as_fd(), unique, 0, &[&v]),
        };
        match sent {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return false,
            // One bad answer fails one request, not the connection.
            Err(e) => tracing::error!("FUSE answer to opcode {opcode}: {e}"),
            Ok(()) => (self.answered)(),
        }
        true
    }
}

/// An answer owed to the kernel for one request. Dropped unanswered, it answers EIO, so that
/// no request waits for good.
pub struct Reply {
    conn: Arc<Conn>,
    unique: u64,
    opcode: u32,
    sent: bool,
}

impl Reply {
    pub fn send(mut self, a: Answer) {
        self.sent = true;
        self.conn.answer(self.unique, self.opcode, a);
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            self.conn
                .answer(self.unique, self.opcode, Answer::Err(libc::EIO));
        }
    }
}

/// Largest WRITE we accept: 1 MiB (256 pages).
const MAX_WRITE: u32 = 1 << 20;

/// Opens /dev/fuse and mounts it at `mnt` (root only). The connection is open until the
/// returned descriptor and every copy of it are closed.
pub fn mount(mnt: &Path, fsname: &str) -> io::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    use nix::mount::MsFlags;
    use nix::sys::stat::Mode;
    let fd = open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())?;
    let opts = format!("fd={},rootmode=40000,user_id=0,group_id=0", fd.as_raw_fd());
    nix::mount::mount(
        Some(fsname),
        mnt,
        Some(format!("fuse.{fsname}").as_str()),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )?;
    Ok(fd)
}

/// Detaches the mount (lazily: loop devices may still hold its files).
pub fn unmount(mnt: &Path) -> io::Result<()> {
    nix::mount::umount2(mnt, nix::mount::MntFlags::MNT_DETACH)?;
    Ok(())
}

fn read_request(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(Some(n)),
            // ENOENT: the request was interrupted before we read it.
            Err(Errno::EINTR | Errno::EAGAIN | Errno::ENOENT) => continue,
            Err(Errno::ENODEV) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes one answer (header + parts) in a single write, as the kernel requires.
fn send(fd: BorrowedFd, unique: u64, error: i32, parts: &[&[u8]]) -> io::Result<()> {
    let len = size_of::<OutHeader>() + parts.iter().map(|p| p.len()).sum::<usize>();
    let h = OutHeader {
        len: len as u32,
        error,
        unique,
    };
    let mut iov = vec![io::IoSlice::new(abi::bytes(&h))];
    iov.extend(parts.iter().map(|p| io::IoSlice::new(p)));
    match nix::sys::uio::writev(fd, &iov) {
        Ok(_) => Ok(()),
        // The request was interrupted and is gone; nothing waits for the answer.
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads INIT and answers it: our protocol version, async direct IO (the loop device's
/// concurrent writes reach us concurrently and are grouped), 1 MiB writes.
pub fn negotiate(fd: BorrowedFd) -> io::Result<Init> {
    let mut buf = vec![0u8; 64 << 10];
    let n = read_request(fd, &mut buf)?.ok_or_else(|| io::Error::other("unmounted"))?;
    let h: InHeader = abi::read(&buf[..n]).ok_or_else(|| io::Error::other("short request"))?;
    let body = &buf[size_of::<InHeader>()..n];
    let init: abi::InitIn = match abi::read(body) {
        Some(i) if h.opcode == abi::INIT => i,
        _ => {
            send(fd, h.unique, -libc::EIO, &[])?;
            return Err(io::Error::other(format!(
                "first request is opcode {}, not INIT",
                h.opcode
            )));
        }
    };
    if init.major != abi::KERNEL_VERSION || init.minor < abi::KERNEL_MINOR {
        send(fd, h.unique, -libc::EPROTO, &[])?;
        return Err(io::Error::other(format!(
            "kernel FUSE {}.{}: 7.{} or newer needed",
            init.major,
            init.minor,
            abi::KERNEL_MINOR
        )));
    }
    let want = abi::ASYNC_READ | abi::BIG_WRITES | abi::ASYNC_DIO | abi::MAX_PAGES;
    let flags = init.flags & want;
    if flags & abi::ASYNC_DIO == 0 {
        tracing::warn!("kernel lacks FUSE async direct IO: writes are not grouped");
    }
    let out = abi::InitOut {
        major: abi::KERNEL_VERSION,
        minor: abi::KERNEL_MINOR,
        max_readahead: init.max_readahead,
        flags,
        max_background: 64,
        congestion_threshold: 48,
        max_write: MAX_WRITE,
        time_gran: 1,
        max_pages: (MAX_WRITE / 4096) as u16,
        ..Default::default()
    };
    send(fd, h.unique, 0, &[abi::bytes(&out)])?;
    Ok(Init {
        kernel_minor: init.minor,
        max_write: MAX_WRITE,
        flags,
    })
}

/// Asks the kernel to queue again every request read from this connection and not answered
/// (a dead worker's). Kernels before 6.9 refuse: those requests then never complete.
pub fn notify_resend(fd: BorrowedFd) -> io::Result<()> {
    let h = OutHeader {
        len: size_of::<OutHeader>() as u32,
        error: abi::NOTIFY_RESEND,
        unique: 0,
    };
    nix::unistd::write(fd, abi::bytes(&h))?;
    Ok(())
}

/// Serves requests on `fd` with `threads` threads until the connection goes away (Ok) or
/// fails. `handle` runs concurrently on every thread; `answered` runs after every answer sent.
pub fn serve<F>(
    fd: BorrowedFd,
    init: Init,
    threads: usize,
    answered: impl Fn() + Send + Sync + 'static,
    handle: F,
) -> io::Result<()>
where
    F: Fn(&Request) -> Answer + Sync,
{
    let conn = Arc::new(Conn {
        fd: fd.try_clone_to_owned()?,
        answered: Box::new(answered),
    });
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|i| {
                let (handle, conn) = (&handle, &conn);
                std::thread::Builder::new()
                    .name(format!("fuse-{i}"))
                    .spawn_scoped(s, move || serve_one(conn, init, handle))
            })
            .collect::<io::Result<_>>()?;
        let mut r = Ok(());
        for w in workers {
            let one = w.join().unwrap_or_else(|_| Err(io::Error::other("panic")));
            if r.is_ok() {
                r = one;
            }
        }
        r
    })
}

fn serve_one<F>(conn: &Arc<Conn>, init: Init, handle: &F) -> io::Result<()>
where
    F: Fn(&Request) -> Answer,
{
    // The kernel refuses reads into buffers smaller than its largest request.
    let mut buf = vec![0u8; init.max_write as usize + (64 << 10)];
    while let Some(n) = read_request(conn.fd.as_fd(), &mut buf)? {
        let Some(h) = abi::read::<InHeader>(&buf[..n]) else {
            continue;
        };
        let body = &buf[size_of::<InHeader>()..n];
        let a = handle(&Request { h, body, conn });
        if !conn.answer(h.unique, h.opcode, a) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_round_trips_as_text() {
        let i = Init {
            kernel_minor: 44,
            max_write: 1 << 20,
            flags: 0x8021,
        };
        assert_eq!(Init::decode(&i.encode()), Some(i));
        assert_eq!(Init::decode("kernel_minor=1 flags=2"), None);
    }
}
