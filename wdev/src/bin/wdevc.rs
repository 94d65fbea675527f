//! `wdevc`: control of walb devices: `format-ldev` works on the devices directly; every other
//! command talks to `wdevd` over `RUN_DIR/wdevd.sock`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use walb_core::blockio::{BlockIo, FileIo};
use walb_core::ldev::Ldev;
use walb_core::Pbs;
use walb_wdev::daemon::ctl::request;
use walb_wdev::daemon::loopdev::{loop_of, resize};

#[derive(Parser)]
#[command(name = "wdevc", version, about = "walb-rs device control")]
struct Cli {
    /// wdevd's run directory.
    #[arg(long, global = true, default_value = "/run/walb")]
    run_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a fresh walb superblock (new uuid and salt) and zero the lsid-0 block.
    FormatLdev {
        /// Log device or file.
        ldev: PathBuf,
        /// Data device or file (its size becomes the device size).
        ddev: PathBuf,
        /// Physical block size; a block device must match its own.
        #[arg(long)]
        pbs: Option<u32>,
        /// Device name (up to 31 bytes).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Serve a device and attach a loop device to it; prints /dev/loopN.
    CreateWdev {
        name: String,
        ldev: PathBuf,
        ddev: PathBuf,
    },
    /// Detach the loop device, then stop serving (after a final checkpoint).
    DeleteWdev {
        name: String,
    },
    /// Names of the served devices.
    List,
    GetOldestLsid {
        name: String,
    },
    GetWrittenLsid {
        name: String,
    },
    GetPermanentLsid {
        name: String,
    },
    GetCompletedLsid {
        name: String,
    },
    /// Free logs below LSID.
    SetOldestLsid {
        name: String,
        lsid: u64,
    },
    GetLogUsage {
        name: String,
    },
    GetLogCapacity {
        name: String,
    },
    /// The log device's path, as wdevd opened it.
    GetLdevPath {
        name: String,
    },
    /// The data device's path, as wdevd opened it.
    GetDdevPath {
        name: String,
    },
    IsLogOverflow {
        name: String,
    },
    /// Drop every log (new uuid and salt); clears overflow.
    ResetWal {
        name: String,
    },
    /// Grow to SIZE_LB logical blocks (0: the whole data device).
    Resize {
        name: String,
        size_lb: u64,
    },
    ForceCheckpoint {
        name: String,
    },
    GetCheckpointInterval,
    /// Milliseconds between superblock checkpoints (0: none; at most 86400000).
    SetCheckpointInterval {
        ms: u64,
    },
    /// Hold writes (reads go on); melts by itself after --timeout seconds.
    Freeze {
        name: String,
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    Melt {
        name: String,
    },
    IsFrozen {
        name: String,
    },
    /// A device's state (JSON); without NAME, the serving process: pid, start time, restarts.
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Hands the devices to a new wdevd binary without stopping them (no I/O error, no
    /// remount); prints the new serving process's status.
    Upgrade {
        /// The new binary (default: the wdevd next to this wdevc).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

/// `wdevc upgrade`: asks the worker to hand over to `binary`, then waits until another
/// process serves.
fn upgrade(run_dir: &std::path::Path, binary: Option<PathBuf>) -> Result<()> {
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("wdevd"),
    };
    let bin = std::fs::canonicalize(&binary).with_context(|| format!("{}", binary.display()))?;
    let pid_of = |s: &str| -> Option<String> {
        let rest = s.split("\"pid\":").nth(1)?;
        Some(rest.split([',', '}']).next()?.to_string())
    };
    let old = pid_of(&ask(run_dir, "daemon-status".into())?);
    // The worker may exit before its answer is out; a closed connection is fine.
    if let Err(e) = ask(run_dir, format!("upgrade {}", bin.display())) {
        if !e.to_string().contains("bad answer") && !e.to_string().contains("receive") {
            return Err(e);
        }
    }
    let t = std::time::Instant::now();
    loop {
        if let Ok(st) = ask(run_dir, "daemon-status".into()) {
            if pid_of(&st) != old {
                println!("{st}");
                return Ok(());
            }
        }
        if t.elapsed() > std::time::Duration::from_secs(60) {
            bail!("no new worker after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn ask(run_dir: &std::path::Path, line: String) -> Result<String> {
    request(&run_dir.join("wdevd.sock"), &line).map_err(|e| anyhow::anyhow!(e))
}

fn create_wdev(
    run_dir: &std::path::Path,
    name: &str,
    ldev: &std::path::Path,
    ddev: &std::path::Path,
) -> Result<()> {
    let abs =
        |p: &std::path::Path| std::fs::canonicalize(p).with_context(|| format!("{}", p.display()));
    ask(
        run_dir,
        format!(
            "create {name} {} {}",
            abs(ldev)?.display(),
            abs(ddev)?.display()
        ),
    )?;
    let file = run_dir.join("devices").join(name);
    let out = Command::new("losetup")
        .args(["--find", "--show", "--direct-io=on"])
        .arg(&file)
        .output()
        .context("run losetup")?;
    if !out.status.success() {
        let _ = ask(run_dir, format!("delete {name}"));
        bail!(
            "losetup {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

fn delete_wdev(run_dir: &std::path::Path, name: &str) -> Result<()> {
    let file = run_dir.join("devices").join(name);
    // Loop first: nothing may write to the file once the device stops being served.
    if let Some(dev) = loop_of(&file).map_err(anyhow::Error::msg)? {
        let st = Command::new("losetup")
            .arg("-d")
            .arg(&dev)
            .status()
            .context("run losetup")?;
        if !st.success() {
            bail!("losetup -d {dev} failed");
        }
    }
    ask(run_dir, format!("delete {name}"))?;
    Ok(())
}

fn format_ldev(ldev: PathBuf, ddev: PathBuf, pbs: Option<u32>, name: String) -> Result<()> {
    let lio = FileIo::open(&ldev, true).with_context(|| format!("open {}", ldev.display()))?;
    let mut dio = FileIo::open(&ddev, false).with_context(|| format!("open {}", ddev.display()))?;
    let dev_pbs = lio.physical_block_size()?;
    let pbs = match (pbs, dev_pbs) {
        (Some(p), Some(d)) if p != d => {
            bail!("--pbs {p} differs from {}'s block size {d}", ldev.display())
        }
        (Some(p), _) | (None, Some(p)) => p,
        // Regular files: walb's tools assume 512.
        (None, None) => 512,
    };
    let pbs = Pbs::new(pbs).with_context(|| format!("pbs {pbs}: must be 512 or 4096"))?;
    let ddev_bytes = dio
        .size()
        .with_context(|| format!("size of {}", ddev.display()))?;
    if ddev_bytes < 512 {
        bail!("{} is empty", ddev.display());
    }
    let l = Ldev::format(Box::new(lio), ddev_bytes, pbs, &name)
        .with_context(|| format!("format {}", ldev.display()))?;
    println!(
        "formatted {}: pbs {} ring {} PB uuid {} device {} LB",
        ldev.display(),
        pbs,
        l.sb.ring_buffer_size,
        l.sb.uuid,
        l.sb.device_size
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    walb_core::logging::init();
    let rd = cli.run_dir.as_path();
    let print = |line: String| ask(rd, line).map(|v| println!("{v}"));
    let r = match cli.cmd {
        Cmd::FormatLdev {
            ldev,
            ddev,
            pbs,
            name,
        } => format_ldev(ldev, ddev, pbs, name),
        Cmd::CreateWdev { name, ldev, ddev } => create_wdev(rd, &name, &ldev, &ddev),
        Cmd::DeleteWdev { name } => delete_wdev(rd, &name),
        Cmd::List => print("list".into()),
        Cmd::GetOldestLsid { name } => print(format!("get-oldest-lsid {name}")),
        Cmd::GetWrittenLsid { name } => print(format!("get-written-lsid {name}")),
        Cmd::GetPermanentLsid { name } => print(format!("get-permanent-lsid {name}")),
        Cmd::GetCompletedLsid { name } => print(format!("get-completed-lsid {name}")),
        Cmd::SetOldestLsid { name, lsid } => print(format!("set-oldest-lsid {name} {lsid}")),
        Cmd::GetLogUsage { name } => print(format!("get-log-usage {name}")),
        Cmd::GetLogCapacity { name } => print(format!("get-log-capacity {name}")),
        Cmd::GetLdevPath { name } => print(format!("get-ldev-path {name}")),
        Cmd::GetDdevPath { name } => print(format!("get-ddev-path {name}")),
        Cmd::IsLogOverflow { name } => print(format!("is-log-overflow {name}")),
        Cmd::ResetWal { name } => print(format!("reset-wal {name}")),
        Cmd::Resize { name, size_lb } => resize(rd, &name, size_lb).map_err(anyhow::Error::msg),
        Cmd::Freeze { name, timeout } => print(format!("freeze {name} {timeout}")),
        Cmd::Melt { name } => print(format!("melt {name}")),
        Cmd::GetCheckpointInterval => print("get-checkpoint-interval".into()),
        Cmd::SetCheckpointInterval { ms } => print(format!("set-checkpoint-interval {ms}")),
        Cmd::IsFrozen { name } => print(format!("is-frozen {name}")),
        Cmd::ForceCheckpoint { name } => print(format!("force-checkpoint {name}")),
        Cmd::Status {
            name: Some(name),
            json: _,
        } => print(format!("status {name}")),
        Cmd::Status { name: None, .. } => print("daemon-status".into()),
        Cmd::Upgrade { binary } => upgrade(rd, binary),
    };
    if let Err(e) = r {
        eprintln!("wdevc: error: {e:#}");
        std::process::exit(1);
    }
}
