//! `wdevd --run-dir DIR`: the device daemon. Mounts a FUSE file system at DIR/devices (one file
//! per device) and serves `wdevc` on DIR/wdevd.sock. Runs in the foreground.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use walb_wdev::daemon::{ctl, fs::WdevFs, registry::Registry};

#[derive(Parser)]
#[command(name = "wdevd", version, about = "walb-rs user-space device daemon")]
struct Args {
    #[arg(long, default_value = "/run/walb")]
    run_dir: PathBuf,
    /// Milliseconds between superblock checkpoints (0: none); `wdevc set-checkpoint-interval`
    /// changes it at run time.
    #[arg(long, default_value_t = 10_000)]
    checkpoint_interval: u64,
}

/// Blocks SIGINT and SIGTERM in every thread (call before spawning any), so `wait_for_stop`
/// can take them and shut down cleanly.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it before use, and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_stop(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` was initialised by block_stop_signals; sigwait writes one int.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

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

fn main() -> Result<()> {
    let stop = block_stop_signals();
    let a = Args::parse();
    walb_core::logging::init();
    let mnt = a.run_dir.join("devices");
    std::fs::create_dir_all(&mnt).with_context(|| format!("create {}", mnt.display()))?;
    let sock = a.run_dir.join("wdevd.sock");
    let _ = std::fs::remove_file(&sock);
    let reg = Arc::new(Registry::new());
    let mut cfg = fuser::Config::default();
    cfg.mount_options
        .push(fuser::MountOption::FSName("wdev".into()));
    // A frozen device's writers wait while other devices and reads go on; writers waiting
    // together on one device are logged as one batch.
    cfg.n_threads = Some(4);
    let session =
        fuser::spawn_mount(WdevFs { reg: reg.clone() }, &mnt, &cfg).with_context(|| {
            format!(
                "mount FUSE at {} (root and /dev/fuse needed)",
                mnt.display()
            )
        })?;
    let listener = std::os::unix::net::UnixListener::bind(&sock)
        .with_context(|| format!("bind {}", sock.display()))?;
    reg.checkpoint_ms
        .store(a.checkpoint_interval.min(86_400_000), Ordering::Relaxed);
    {
        let reg = reg.clone();
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
    lock_memory();
    {
        let reg = reg.clone();
        std::thread::spawn(move || ctl::serve(listener, reg));
    }
    tracing::info!("serving {} and {}", mnt.display(), sock.display());
    let sig = wait_for_stop(&stop);
    tracing::info!("signal {sig}: checkpointing and unmounting");
    // Devices still attached to loop devices lose their backing file here, as a stopped
    // kernel driver would; their logs are durable and redo runs at the next create.
    reg.checkpoint_all(true);
    drop(session);
    let _ = std::fs::remove_file(&sock);
    Ok(())
}
