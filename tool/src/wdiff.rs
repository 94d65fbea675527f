//! wdiff subcommands: wlog-to-wdiff, wdiff-show, wdiff-merge, wdiff-redo, virt-full-cat.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::FileIo;
use walb_core::convert::wlog_records;
use walb_core::source::open_source;
use walb_core::virt::{BulkSource, VirtualFull};
use walb_core::wdiff::{
    Body, Cmpr, DiffMemory, IndexedWriter, Kind, Merger, RecStream, SortedWriter, WdiffReader,
};
use walb_core::wlog::WlogReader;

use super::wlog::{open_image_rw, output};

#[derive(Args, Debug)]
pub struct ToWdiffArgs {
    /// Write an indexed wdiff (as the proxy does) instead of a sorted one.
    #[arg(long)]
    pub indexed: bool,
    /// Compression TYPE[:LEVEL]: none, zlib, snappy, xz, lz4, zstd.
    #[arg(long, default_value = "snappy")]
    pub cmpr: Cmpr,
    /// wlog files, contiguous, of one WAL generation.
    #[arg(required = true)]
    pub wlogs: Vec<PathBuf>,
    #[arg(short = 'o')]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Print a summary per file instead of every record.
    #[arg(long)]
    pub stat: bool,
    /// Only check every checksum and rule; print a line per valid file.
    #[arg(long)]
    pub verify: bool,
    #[arg(required = true)]
    pub wdiffs: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    #[arg(long, default_value = "snappy")]
    pub cmpr: Cmpr,
    /// wdiffs, oldest first.
    #[arg(required = true)]
    pub wdiffs: Vec<PathBuf>,
    #[arg(short = 'o')]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RedoArgs {
    #[arg(long, default_value = "ignore")]
    pub discard: DiscardMode,
    pub wdiff: PathBuf,
    /// Image file or block device to write.
    pub image: PathBuf,
}

#[derive(Args, Debug)]
pub struct VirtArgs {
    /// Base image file or device.
    pub base: PathBuf,
    /// wdiffs to lay over it, oldest first.
    pub wdiffs: Vec<PathBuf>,
    /// Output (`-` for stdout).
    #[arg(short = 'o')]
    pub out: PathBuf,
}

fn open_wdiff(p: &Path) -> Result<WdiffReader> {
    WdiffReader::open(p).with_context(|| format!("{}", p.display()))
}

/// A record stream whose errors name the file.
fn stream(p: &Path) -> Result<RecStream> {
    let name = p.display().to_string();
    Ok(Box::new(open_wdiff(p)?.map(move |r| {
        r.map_err(|e| walb_core::Error::Invalid(format!("{name}: {e}")))
    })))
}

pub fn to_wdiff(a: ToWdiffArgs) -> Result<()> {
    let readers = a
        .wlogs
        .iter()
        .map(|p| WlogReader::new(open_source(p)?).with_context(|| format!("{}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let uuid = readers[0].header().uuid;
    let out = output(&a.out)?;
    let ctx = || format!("converting {:?}", a.wlogs);
    if a.indexed {
        let mut w = IndexedWriter::new(out, uuid, a.cmpr)?;
        wlog_records(readers, |r| w.add(r)).with_context(ctx)?;
        Ok(w.finish()?.commit()?)
    } else {
        let mut mem = DiffMemory::new();
        wlog_records(readers, |r| {
            mem.insert(r);
            Ok(())
        })
        .with_context(ctx)?;
        let mut w = SortedWriter::new(out, uuid, a.cmpr)?;
        for r in mem.into_sorted() {
            w.push(r)?;
        }
        Ok(w.finish()?.commit()?)
    }
}

pub fn show(a: ShowArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for p in &a.wdiffs {
        let r = open_wdiff(p)?;
        let kind = match r.kind() {
            Kind::Sorted => "sorted",
            Kind::Indexed => "indexed",
        };
        let uuid = r.uuid();
        if !a.stat && !a.verify {
            writeln!(out, "{}: {kind} wdiff uuid {uuid}", p.display())?;
        }
        let (mut n, mut data_lb, mut zero_lb, mut discard_lb) = (0u64, 0u64, 0u64, 0u64);
        for rec in r {
            let rec = rec.with_context(|| format!("{}", p.display()))?;
            n += 1;
            let (what, sum) = match rec.body {
                Body::Data(_) => ("normal", &mut data_lb),
                Body::AllZero => ("allzero", &mut zero_lb),
                Body::Discard => ("discard", &mut discard_lb),
            };
            *sum += rec.blocks as u64;
            if !a.stat && !a.verify {
                writeln!(out, "  {} {} {what}", rec.addr, rec.blocks)?;
            }
        }
        if a.stat || a.verify {
            writeln!(
                out,
                "{}: {kind} uuid {uuid} records {n} normal {data_lb} LB allzero {zero_lb} LB discard {discard_lb} LB{}",
                p.display(),
                if a.verify { " valid" } else { "" }
            )?;
        }
    }
    Ok(())
}

pub fn merge(a: MergeArgs) -> Result<()> {
    let newest = open_wdiff(a.wdiffs.last().expect("clap requires one"))?.uuid();
    let inputs = a
        .wdiffs
        .iter()
        .map(|p| stream(p))
        .collect::<Result<Vec<_>>>()?;
    let mut w = SortedWriter::new(output(&a.out)?, newest, a.cmpr)?;
    for r in Merger::new(inputs) {
        w.push(r?)?;
    }
    Ok(w.finish()?.commit()?)
}

pub fn redo(a: RedoArgs) -> Result<()> {
    let recs = stream(&a.wdiff)?;
    let mut io = open_image_rw(&a.image)?;
    let mut ap = Applier::new(&mut io, a.discard)?;
    for r in recs {
        ap.apply(&r?)
            .with_context(|| format!("{}", a.image.display()))?;
    }
    ap.finish()?;
    Ok(())
}

pub fn virt_full_cat(a: VirtArgs) -> Result<()> {
    let base =
        FileIo::open(&a.base, false).with_context(|| format!("open {}", a.base.display()))?;
    let inputs = a
        .wdiffs
        .iter()
        .map(|p| stream(p))
        .collect::<Result<Vec<_>>>()?;
    let mut v = VirtualFull::new(Box::new(base), Box::new(Merger::new(inputs)))?;
    let mut out = output(&a.out)?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = v.read_next(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).context("write virtual image")?;
    }
    Ok(out.commit()?)
}
