//! The serving worker: takes the FUSE connection and the control socket from the supervisor,
//! serves again the devices listed in the run dir (redo runs for each), asks the kernel to
//! resend what a dead predecessor had read but not answered, and serves (docs/wdev.md,
//! "Restarts").

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use walb_wdev::daemon::fuse::{self, Init};
use walb_wdev::daemon::registry::{now_ms, Registry, Serving};
use walb_wdev::daemon::{ctl, fs::WdevFs, handover};

use crate::{wait_signal, Args};

/// Exit status telling the supervisor the FUSE connection is gone (unmounted): no restart.
pub const EXIT_UNMOUNTED: i32 = 3;
/// FUSE request threads: a frozen device's writers wait while other devices and reads go on;
/// writers waiting together on one device are logged as one batch.
const FUSE_THREADS: usize = 4;

/// Keeps the daemon out of swap: a device whose daemon waits on a page-in under memory
/// pressure can deadlock the writeback that would free memory.
fn lock_memory() {
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        tracing::warn!(
            "mlockall failed ({}); running unlocked",
            std::io::Error::last_os_error()
        );
    }
}

/// The numbers after `key=` in the handover text.
fn field(text: &str, key: &str) -> Option<u32> {
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

pub fn run(a: &Args, supervisor: u32, handover_fd: i32, stop: &libc::sigset_t) -> Result<()> {
    let t0 = Instant::now();
    // Dies with the supervisor: with every process gone the connection ends, and the manual
    // recovery of docs/wdev.md applies.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if std::os::unix::process::parent_id() != supervisor {
        bail!("supervisor {supervisor} is gone");
    }
    // SAFETY: the supervisor opened this descriptor for us (--handover-fd); nothing else in
    // this process owns it.
    let sock = unsafe { UnixStream::from_raw_fd(handover_fd) };
    let (fds, text) = handover::recv(&sock).context("receive the FUSE connection")?;
    let [conn, listener]: [OwnedFd; 2] = fds
        .try_into()
        .map_err(|f: Vec<_>| anyhow::anyhow!("{} descriptors handed over, not 2", f.len()))?;
    let init = Init::decode(&text).with_context(|| format!("handover text {text:?}"))?;
    let restarts = field(&text, "restarts").unwrap_or(0);

    let reg = Arc::new(Registry::persisted(&a.run_dir.join("devices.list")));
    reg.checkpoint_ms
        .store(a.checkpoint_interval.min(86_400_000), Ordering::Relaxed);
    let _ = reg.serving.set(Serving {
        pid: std::process::id(),
        supervisor_pid: supervisor,
        started_ms: now_ms(),
        restarts,
        transport: wdev_client::TRANSPORT_DEV_FUSE,
        ..Default::default()
    });
    let names = reg.load().context("serve the listed devices again")?;
    if restarts > 0 {
        // Requests the previous worker read and never answered are queued again; a write
        // it had logged is logged once more (same data, later lsid).
        if let Err(e) = fuse::notify_resend(conn.as_fd()) {
            tracing::error!(
                "kernel refused FUSE_NOTIFY_RESEND ({e}; kernel 6.9 or newer needed): requests \
                 the previous worker held never complete"
            );
        }
    }
    tracing::info!(
        "worker {} (restart {restarts}) serving {names:?}, ready in {} ms",
        std::process::id(),
        t0.elapsed().as_millis()
    );
    set_upgrade_hook(&reg, sock);
    start_checkpoints(reg.clone());
    lock_memory();
    {
        let reg = reg.clone();
        let listener = UnixListener::from(listener);
        std::thread::spawn(move || ctl::serve(listener, reg));
    }
    {
        let reg = reg.clone();
        std::thread::spawn(move || {
            let fs = WdevFs { reg: reg.clone() };
            let serving = reg.clone();
            let answered = move || {
                let first = &serving.serving.get().expect("serving set").first_answer_ms;
                if first.load(Ordering::Relaxed) == 0 {
                    first.store(now_ms(), Ordering::Relaxed);
                }
            };
            let r = fuse::serve(conn.as_fd(), init, FUSE_THREADS, answered, |req| {
                fs.handle(req)
            });
            reg.checkpoint_all(true);
            match r {
                Ok(()) => {
                    tracing::info!("FUSE connection gone (unmounted)");
                    std::process::exit(EXIT_UNMOUNTED);
                }
                Err(e) => {
                    tracing::error!("FUSE connection failed: {e}");
                    std::process::exit(1);
                }
            }
        });
    }
    let sig = wait_signal(stop);
    tracing::info!("signal {sig}: checkpointing");
    reg.checkpoint_all(true);
    std::process::exit(0);
}

fn start_checkpoints(reg: Arc<Registry>) {
    std::thread::spawn(move || {
        let mut last = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let ms = reg.checkpoint_ms.load(Ordering::Relaxed);
            if ms > 0 && last.elapsed() >= Duration::from_millis(ms) {
                reg.checkpoint_all(false);
                last = Instant::now();
            }
        }
    });
}

/// `wdevc upgrade PATH`: checkpoint every device, hold them all (no write starts), tell the
/// supervisor to start PATH as the next worker, exit. Requests in flight are resent to it.
fn set_upgrade_hook(reg: &Arc<Registry>, sock: UnixStream) {
    let weak = Arc::downgrade(reg);
    let sock = std::sync::Mutex::new(sock);
    let _ = reg.upgrade.set(Box::new(move |path: &std::path::Path| {
        let bin = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reg = weak.upgrade().ok_or("shutting down")?;
        let sock = sock.lock().expect("handover lock").try_clone();
        let sock = sock.map_err(|e| format!("handover socket: {e}"))?;
        std::thread::spawn(move || {
            reg.checkpoint_all(true);
            let devs = reg.names();
            let _held: Vec<_> = devs
                .iter()
                .map(|(_, s)| s.dev.lock().expect("device lock"))
                .collect();
            if let Err(e) = writeln!(&sock, "upgrade {}", bin.display()) {
                tracing::error!("upgrade: tell the supervisor: {e}");
                return;
            }
            tracing::info!("upgrade: handing over to {}", bin.display());
            std::process::exit(0);
        });
        Ok(())
    }));
}
