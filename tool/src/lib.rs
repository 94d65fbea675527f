//! walb-tool: offline tools for wlogs, wdiffs and images. Each subcommand is a thin layer over
//! `walb-core`; errors name the file and what was wrong. It must not talk to a server or hold
//! any state of its own.

pub mod image;
pub mod wdiff;
pub mod wlog;

use clap::{Parser, Subcommand};

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
    /// Convert wlogs into one wdiff (sorted by default).
    WlogToWdiff(wdiff::ToWdiffArgs),
    /// Print (or verify) the records of wdiffs.
    WdiffShow(wdiff::ShowArgs),
    /// Merge wdiffs (oldest first) into one sorted wdiff; the newest wins per block.
    WdiffMerge(wdiff::MergeArgs),
    /// Apply a wdiff onto an image file or block device.
    WdiffRedo(wdiff::RedoArgs),
    /// Write the virtual full image (base + wdiffs, oldest first).
    VirtFullCat(wdiff::VirtArgs),
    /// BLAKE3 hashes of an image per bulk, and the image digest.
    Bhash(image::BhashArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::WlogGen(a) => wlog::gen(a),
        Cmd::WlogShow(a) => wlog::show(a),
        Cmd::WlogRedo(a) => wlog::redo(a),
        Cmd::WlogCat(a) => wlog::cat(a),
        Cmd::WlogToWdiff(a) => wdiff::to_wdiff(a),
        Cmd::WdiffShow(a) => wdiff::show(a),
        Cmd::WdiffMerge(a) => wdiff::merge(a),
        Cmd::WdiffRedo(a) => wdiff::redo(a),
        Cmd::VirtFullCat(a) => wdiff::virt_full_cat(a),
        Cmd::Bhash(a) => image::bhash(a),
    }
}

/// An output path argument: `-` is stdout.
pub fn is_stdout(p: &std::path::Path) -> bool {
    p == std::path::Path::new("-")
}
