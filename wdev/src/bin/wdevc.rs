//! `wdevc`: control of walb devices. This build has `format-ldev`; the daemon commands come
//! with `wdevd`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use walb_core::blockio::{BlockIo, FileIo};
use walb_core::ldev::Ldev;
use walb_core::Pbs;

#[derive(Parser)]
#[command(name = "wdevc", version, about = "walb-rs device control")]
struct Cli {
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
    let r = match Cli::parse().cmd {
        Cmd::FormatLdev {
            ldev,
            ddev,
            pbs,
            name,
        } => format_ldev(ldev, ddev, pbs, name),
    };
    if let Err(e) = r {
        eprintln!("wdevc: error: {e:#}");
        std::process::exit(1);
    }
}
