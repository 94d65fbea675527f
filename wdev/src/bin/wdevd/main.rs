//! `wdevd --run-dir DIR`: the device daemon. Mounts a FUSE file system at DIR/devices (one file
//! per device) and serves `wdevc` on DIR/wdevd.sock. Runs in the foreground.
//!
//! The process started is the supervisor: it holds the FUSE connection and the control socket
//! and runs the serving worker (`wdevd --worker`, the same binary or an upgrade), starting a
//! new one whenever it dies (docs/wdev.md, "Restarts").

mod supervisor;
mod worker;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(name = "wdevd", version, about = "walb-rs user-space device daemon")]
pub struct Args {
    #[arg(long, default_value = "/run/walb")]
    run_dir: PathBuf,
    /// Milliseconds between superblock checkpoints (0: none); `wdevc set-checkpoint-interval`
    /// changes it at run time.
    #[arg(long, default_value_t = 10_000)]
    checkpoint_interval: u64,
    /// Internal: serve as the worker of the supervisor with this pid, receiving the
    /// connection on descriptor `--handover-fd`.
    #[arg(long, hide = true, requires = "handover_fd")]
    worker: Option<u32>,
    #[arg(long, hide = true)]
    handover_fd: Option<i32>,
}

/// Blocks `sigs` in every thread (call before spawning any), so `wait_signal` can take them.
fn block_signals(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it before use, and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` was initialised by block_signals; sigwait writes one int.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn main() -> Result<()> {
    let a = Args::parse();
    match (a.worker, a.handover_fd) {
        (Some(sup), Some(fd)) => {
            let stop = block_signals(&[libc::SIGINT, libc::SIGTERM]);
            walb_core::logging::init();
            walb_core::malloc::tune();
            worker::run(&a, sup, fd, &stop)
        }
        _ => {
            let set = block_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGCHLD]);
            walb_core::logging::init();
            supervisor::run(&a, &set)
        }
    }
}
