//! Image subcommands: bhash.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use walb_core::bhash::{hash_bulks, DEFAULT_BULK};
use walb_core::blockio::FileIo;
use walb_core::virt::{BulkSource, ImageSource};

use walb_core::size::parse_size;

#[derive(Args, Debug)]
pub struct BhashArgs {
    /// Bulk size (512 B to 4 MiB).
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_BULK as u64)]
    pub bulk: u64,
    /// Also print each bulk's hash (offset in LB, hash).
    #[arg(long)]
    pub each: bool,
    /// Image file or block device.
    pub image: PathBuf,
}

pub fn print_hashes(src: Box<dyn BulkSource>, bulk: u64, each: bool) -> Result<()> {
    let h = hash_bulks(src, bulk as usize)?;
    let mut out = std::io::stdout().lock();
    if each {
        for (i, b) in h.hashes.iter().enumerate() {
            writeln!(out, "{} {}", i as u64 * bulk / 512, b.to_hex())?;
        }
    }
    writeln!(out, "{} size {} bulk {}", h.digest().to_hex(), h.size, bulk)?;
    Ok(())
}

pub fn bhash(a: BhashArgs) -> Result<()> {
    let io =
        FileIo::open(&a.image, false).with_context(|| format!("open {}", a.image.display()))?;
    print_hashes(Box::new(ImageSource::new(Box::new(io))?), a.bulk, a.each)
}
