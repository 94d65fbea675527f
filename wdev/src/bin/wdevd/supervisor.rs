//! The supervisor: mounts the FUSE file system, answers INIT, binds the control socket, and
//! keeps one worker serving them. It holds both descriptors for as long as it lives, so a
//! worker's death is never seen by the kernel: the next worker takes over the same
//! connection, and the loop devices and file systems on it never notice (docs/wdev.md,
//! "Restarts"). It does nothing else.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use walb_wdev::daemon::fuse::{self, Init};
use walb_wdev::daemon::handover;

use crate::worker::EXIT_UNMOUNTED;
use crate::{wait_signal, Args};

/// A worker that dies sooner than this after its start is restarted only after this long
/// (a worker failing at start does not spin).
const QUICK_DEATH: Duration = Duration::from_secs(1);

struct Held {
    conn: OwnedFd,
    listener: UnixListener,
    init: Init,
}

pub fn run(a: &Args, signals: &libc::sigset_t) -> Result<()> {
    let mnt = a.run_dir.join(wdev_client::DEVICES);
    std::fs::create_dir_all(&mnt).with_context(|| format!("create {}", mnt.display()))?;
    let sock = a.run_dir.join(wdev_client::SOCKET);
    let _ = std::fs::remove_file(&sock);
    // A new connection serves nothing yet: an old list belongs to a dead mount.
    let list = a.run_dir.join("devices.list");
    let _ = std::fs::remove_file(&list);
    let conn = fuse::mount(&mnt, "wdev").with_context(|| {
        format!(
            "mount FUSE at {} (root and /dev/fuse needed)",
            mnt.display()
        )
    })?;
    let init = fuse::negotiate(conn.as_fd()).context("FUSE INIT")?;
    let listener = UnixListener::bind(&sock).with_context(|| format!("bind {}", sock.display()))?;
    let held = Held {
        conn,
        listener,
        init,
    };
    tracing::info!(
        "serving {} and {} (FUSE 7.{}, supervisor {})",
        mnt.display(),
        sock.display(),
        init.kernel_minor,
        std::process::id()
    );
    let r = supervise(a, &held, signals);
    let _ = fuse::unmount(&mnt);
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&list);
    r
}

fn supervise(a: &Args, held: &Held, signals: &libc::sigset_t) -> Result<()> {
    let mut binary = std::env::current_exe().context("own binary")?;
    let mut restarts = 0u32;
    loop {
        let started = Instant::now();
        let (mut child, ours) = start_worker(a, &binary, held, restarts)?;
        let Some(status) = wait_worker(&mut child, signals)? else {
            return Ok(());
        };
        restarts += 1;
        if let Some(next) = upgrade_request(&ours) {
            tracing::info!("worker {} handed over to {}", child.id(), next.display());
            binary = next;
            continue;
        }
        if status.code() == Some(EXIT_UNMOUNTED) {
            tracing::info!("FUSE connection gone: stopping");
            return Ok(());
        }
        tracing::warn!("worker {} died ({status}): starting another", child.id());
        if started.elapsed() < QUICK_DEATH {
            std::thread::sleep(QUICK_DEATH);
        }
    }
}

/// Starts `binary` as the worker and hands it the connection and the control socket.
fn start_worker(
    a: &Args,
    binary: &Path,
    held: &Held,
    restarts: u32,
) -> Result<(Child, UnixStream)> {
    let (ours, theirs) = UnixStream::pair().context("socketpair")?;
    // The worker's end crosses exec; ours does not.
    nix::fcntl::fcntl(
        &theirs,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )?;
    let child = Command::new(binary)
        .arg("--run-dir")
        .arg(&a.run_dir)
        .arg("--checkpoint-interval")
        .arg(a.checkpoint_interval.to_string())
        .arg("--worker")
        .arg(std::process::id().to_string())
        .arg("--handover-fd")
        .arg(theirs.as_raw_fd().to_string())
        .spawn()
        .with_context(|| format!("start worker {}", binary.display()))?;
    drop(theirs);
    let text = format!("restarts={restarts} {}", held.init.encode());
    let fds = [held.conn.as_raw_fd(), held.listener.as_raw_fd()];
    if let Err(e) = handover::send(&ours, &fds, &text) {
        // The worker died before taking it; the caller's wait sees the death.
        tracing::error!("hand over to worker {}: {e}", child.id());
    }
    tracing::info!("worker {} started (restart {restarts})", child.id());
    Ok((child, ours))
}

/// Waits until the worker exits (its status) or a stop signal arrives (None: the worker was
/// stopped cleanly).
fn wait_worker(child: &mut Child, signals: &libc::sigset_t) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        let sig = wait_signal(signals);
        if sig == libc::SIGCHLD {
            continue;
        }
        tracing::info!("signal {sig}: stopping worker {}", child.id());
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let st = child.wait()?;
        tracing::info!("worker {} stopped ({st})", child.id());
        return Ok(None);
    }
}

/// `upgrade PATH`, if the dead worker sent it before exiting.
fn upgrade_request(ours: &UnixStream) -> Option<PathBuf> {
    ours.set_nonblocking(true).ok()?;
    let mut text = String::new();
    let _ = (&mut &*ours).read_to_string(&mut text);
    text.trim()
        .strip_prefix("upgrade ")
        .map(|p| PathBuf::from(p.trim()))
}
