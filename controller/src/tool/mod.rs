//! `walb-tool`: offline tools for wlogs, wdiffs and images. Each subcommand is a thin layer over
//! `walb-core`; errors name the file and what was wrong.

pub mod image;
pub mod size;
pub mod wlog;

use clap::{Parser, Subcommand};

use size::parse_size;

#[derive(Parser, Debug)]
#[command(
    name = "walb-tool",
    version,
    about = "walb-rs offline tools: wlogs, wdiffs, images"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Generate a valid wlog of random IOs.
    WlogGen(wlog::GenArgs),
    /// Print (or validate) the packs and records of a wlog.
    WlogShow(wlog::ShowArgs),
    /// Apply a wlog onto an image file or block device.
    WlogRedo(wlog::RedoArgs),
    /// Extract logs from a log device (or ldev file) into a wlog.
    WlogCat(wlog::CatArgs),
    /// BLAKE3 hashes of an image per bulk, and the image digest.
    Bhash(image::BhashArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::WlogGen(a) => wlog::gen(a),
        Cmd::WlogShow(a) => wlog::show(a),
        Cmd::WlogRedo(a) => wlog::redo(a),
        Cmd::WlogCat(a) => wlog::cat(a),
        Cmd::Bhash(a) => image::bhash(a),
    }
}

/// An output path argument: `-` is stdout.
pub fn is_stdout(p: &std::path::Path) -> bool {
    p == std::path::Path::new("-")
}

/// Parses `--bulk`-style sizes for clap.
pub fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}
