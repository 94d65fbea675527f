//! `wdevc`: control of walb devices: `format-ldev` works on the devices directly; every other
//! command talks to `wdevd` over `RUN_DIR/wdevd.sock`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use walb_core::blockio::{BlockIo, FileIo};
use walb_core::ldev::Ldev;
use walb_core::Pbs;
use wdev_client::loopdev::{loop_of, resize};
use wdev_client::{Answer, Client, DaemonStatus, DevName, Request};

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
fn upgrade(wdevd: &Client, binary: Option<PathBuf>) -> Result<()> {
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("wdevd"),
    };
    let bin = std::fs::canonicalize(&binary).with_context(|| format!("{}", binary.display()))?;
    let (old, asked) = match wdevd.call(&Request::DaemonStatus) {
        // A wdevd from before the typed socket is asked in its own words; the new worker
        // speaks JSON.
        Err(wdev_client::Error::OldDaemon(_)) => {
            let sock = wdevd.socket();
            let st = wdev_client::legacy_request(&sock, "daemon-status")?;
            let old: DaemonStatus = serde_json::from_str(&st)
                .with_context(|| format!("daemon-status of the running wdevd: {st}"))?;
            let line = format!("upgrade {}", bin.display());
            (old.pid, wdev_client::legacy_request(&sock, &line).map(drop))
        }
        r => {
            let old = r?.daemon()?.pid;
            (old, wdevd.call(&Request::Upgrade { binary: bin }).map(drop))
        }
    };
    // The worker may exit before its answer is out; a closed connection is fine.
    match asked {
        Ok(_)
        | Err(
            wdev_client::Error::Closed
            | wdev_client::Error::Receive(_)
            | wdev_client::Error::BadReply { .. },
        ) => {}
        Err(e) => return Err(e.into()),
    }
    let t = std::time::Instant::now();
    loop {
        if let Ok(st) = wdevd.call(&Request::DaemonStatus).and_then(Answer::daemon) {
            if st.pid != old {
                println!("{}", serde_json::to_string(&st)?);
                return Ok(());
            }
        }
        if t.elapsed() > std::time::Duration::from_secs(60) {
            bail!("no new worker after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn create_wdev(wdevd: &Client, name: &DevName, ldev: &Path, ddev: &Path) -> Result<()> {
    let abs = |p: &Path| std::fs::canonicalize(p).with_context(|| format!("{}", p.display()));
    wdevd
        .call(&Request::Create {
            name: name.clone(),
            ldev: abs(ldev)?,
            ddev: abs(ddev)?,
        })?
        .done()?;
    let file = wdevd.device_file(name);
    let out = Command::new("losetup")
        .args(["--find", "--show", "--direct-io=on"])
        .arg(&file)
        .output()
        .context("run losetup")?;
    if !out.status.success() {
        let _ = wdevd.call(&Request::Delete { name: name.clone() });
        bail!(
            "losetup {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

fn delete_wdev(wdevd: &Client, name: &DevName) -> Result<()> {
    let file = wdevd.device_file(name);
    // Loop first: nothing may write to the file once the device stops being served.
    if let Some(dev) = loop_of(&file)? {
        let st = Command::new("losetup")
            .arg("-d")
            .arg(&dev)
            .status()
            .context("run losetup")?;
        if !st.success() {
            bail!("losetup -d {dev} failed");
        }
    }
    wdevd
        .call(&Request::Delete { name: name.clone() })?
        .done()?;
    Ok(())
}

/// An answer as wdevc prints it: numbers in decimal, flags as 0 or 1, names on one line
/// separated by spaces, states as one line of JSON, nothing as an empty line.
fn text(a: Answer) -> Result<String> {
    Ok(match a {
        Answer::Done => String::new(),
        Answer::Names(n) => n.iter().map(DevName::as_str).collect::<Vec<_>>().join(" "),
        Answer::Number(n) => n.to_string(),
        Answer::Flag(f) => (f as u8).to_string(),
        Answer::Path(p) => p.display().to_string(),
        Answer::Device(d) => serde_json::to_string(&d)?,
        Answer::Devices(d) => serde_json::to_string(&d)?,
        Answer::Daemon(d) => serde_json::to_string(&d)?,
    })
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
    let wdevd = Client::new(&cli.run_dir);
    let r = run(&wdevd, cli.cmd);
    if let Err(e) = r {
        eprintln!("wdevc: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(wdevd: &Client, cmd: Cmd) -> Result<()> {
    let print = |req: Request| -> Result<()> {
        println!("{}", text(wdevd.call(&req)?)?);
        Ok(())
    };
    match cmd {
        Cmd::FormatLdev {
            ldev,
            ddev,
            pbs,
            name,
        } => format_ldev(ldev, ddev, pbs, name),
        Cmd::CreateWdev { name, ldev, ddev } => {
            create_wdev(wdevd, &DevName::new(name)?, &ldev, &ddev)
        }
        Cmd::DeleteWdev { name } => delete_wdev(wdevd, &DevName::new(name)?),
        Cmd::List => print(Request::List),
        Cmd::GetOldestLsid { name } => print(Request::GetOldestLsid {
            name: DevName::new(name)?,
        }),
        Cmd::GetWrittenLsid { name } => print(Request::GetWrittenLsid {
            name: DevName::new(name)?,
        }),
        Cmd::GetPermanentLsid { name } => print(Request::GetPermanentLsid {
            name: DevName::new(name)?,
        }),
        Cmd::GetCompletedLsid { name } => print(Request::GetCompletedLsid {
            name: DevName::new(name)?,
        }),
        Cmd::SetOldestLsid { name, lsid } => print(Request::SetOldestLsid {
            name: DevName::new(name)?,
            lsid,
        }),
        Cmd::GetLogUsage { name } => print(Request::GetLogUsage {
            name: DevName::new(name)?,
        }),
        Cmd::GetLogCapacity { name } => print(Request::GetLogCapacity {
            name: DevName::new(name)?,
        }),
        Cmd::GetLdevPath { name } => print(Request::GetLdevPath {
            name: DevName::new(name)?,
        }),
        Cmd::GetDdevPath { name } => print(Request::GetDdevPath {
            name: DevName::new(name)?,
        }),
        Cmd::IsLogOverflow { name } => print(Request::IsLogOverflow {
            name: DevName::new(name)?,
        }),
        Cmd::ResetWal { name } => print(Request::ResetWal {
            name: DevName::new(name)?,
        }),
        Cmd::Resize { name, size_lb } => Ok(resize(wdevd, &DevName::new(name)?, size_lb)?),
        Cmd::Freeze { name, timeout } => print(Request::Freeze {
            name: DevName::new(name)?,
            timeout_secs: timeout,
        }),
        Cmd::Melt { name } => print(Request::Melt {
            name: DevName::new(name)?,
        }),
        Cmd::GetCheckpointInterval => print(Request::GetCheckpointInterval),
        Cmd::SetCheckpointInterval { ms } => print(Request::SetCheckpointInterval { ms }),
        Cmd::IsFrozen { name } => print(Request::IsFrozen {
            name: DevName::new(name)?,
        }),
        Cmd::ForceCheckpoint { name } => print(Request::ForceCheckpoint {
            name: DevName::new(name)?,
        }),
        Cmd::Status {
            name: Some(name),
            json: _,
        } => print(Request::Status {
            name: DevName::new(name)?,
        }),
        Cmd::Status { name: None, .. } => print(Request::DaemonStatus),
        Cmd::Upgrade { binary } => upgrade(wdevd, binary),
    }
}
