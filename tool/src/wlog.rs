//! wlog subcommands: gen, show, redo, cat.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use walb_core::apply::{Applier, DiscardMode};
use walb_core::atomic::Output;
use walb_core::blockio::{FileIo, UringIo};
use walb_core::ldev::Ldev;
use walb_core::logpack::{LogPack, RecKind};
use walb_core::source::open_source;
use walb_core::wlog::{GenConfig, Generator, WlogHeader, WlogReader, WlogWriter};
use walb_core::{Pbs, Uuid, LBS};

use super::is_stdout;
use walb_core::size::parse_size;

#[derive(Args, Debug)]
pub struct GenArgs {
    /// Data device size (bytes, K/M/G suffixes).
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    /// Log size to generate (headers and data).
    #[arg(long, value_parser = parse_size)]
    pub total: u64,
    #[arg(long, default_value_t = 512)]
    pub pbs: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// First lsid.
    #[arg(long, default_value_t = 0)]
    pub lsid: u64,
    /// Smallest IO in bytes (multiple of 512).
    #[arg(long, value_parser = parse_size, default_value = "512")]
    pub min_io: u64,
    /// Largest IO in bytes (multiple of 512, ≤ 65535 LB).
    #[arg(long, value_parser = parse_size, default_value = "32K")]
    pub max_io: u64,
    #[arg(long)]
    pub no_discard: bool,
    #[arg(long)]
    pub no_allzero: bool,
    #[arg(long)]
    pub no_padding: bool,
    /// Incompressible data instead of a compressible pattern.
    #[arg(long)]
    pub random_data: bool,
    /// WAL uuid (32 hex digits; default: derived from the seed). Give the same uuid to
    /// generate wlogs that continue one another.
    #[arg(long)]
    pub uuid: Option<Uuid>,
    /// Output wlog (`-` for stdout).
    #[arg(short = 'o')]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Only check every header and checksum; print nothing but errors and a summary.
    #[arg(long)]
    pub validate: bool,
    /// Print a summary instead of every record.
    #[arg(long)]
    pub stat: bool,
    /// wlog file (`-` for stdin).
    pub wlog: PathBuf,
}

#[derive(Args, Debug)]
pub struct RedoArgs {
    #[arg(long, default_value = "ignore")]
    pub discard: DiscardMode,
    /// wlog file (`-` for stdin).
    pub wlog: PathBuf,
    /// Image file or block device to write.
    pub image: PathBuf,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// First lsid (default: the superblock's oldest lsid).
    #[arg(long)]
    pub begin: Option<u64>,
    /// Stop before this lsid (default: the first invalid header).
    #[arg(long)]
    pub end: Option<u64>,
    /// Log device or ldev file.
    pub ldev: PathBuf,
    /// Output wlog (`-` for stdout).
    #[arg(short = 'o')]
    pub out: PathBuf,
}

/// Where `-o PATH` leads: stdout for `-`, else `Output::create` (a file replaced atomically,
/// a device or FIFO written in place).
pub fn output(path: &Path) -> Result<Output> {
    Ok(if is_stdout(path) {
        Output::stdout()
    } else {
        Output::create(path)?
    })
}

fn parse_pbs(pbs: u32) -> Result<Pbs> {
    Pbs::new(pbs).with_context(|| format!("--pbs {pbs}: must be 512 or 4096"))
}

fn lb_of(bytes: u64, what: &str) -> Result<u32> {
    if bytes == 0 || !bytes.is_multiple_of(LBS as u64) || bytes / LBS as u64 > 65535 {
        bail!("{what} {bytes}: must be a positive multiple of 512 up to 65535 blocks");
    }
    Ok((bytes / LBS as u64) as u32)
}

pub fn gen(a: GenArgs) -> Result<()> {
    let pbs = parse_pbs(a.pbs)?;
    let dev_lb = a.size / LBS as u64;
    let mut cfg = GenConfig::new(dev_lb, a.total, pbs, a.seed);
    cfg.begin_lsid = a.lsid;
    cfg.min_io_lb = lb_of(a.min_io, "--min-io")?;
    cfg.max_io_lb = lb_of(a.max_io, "--max-io")?;
    if cfg.min_io_lb > cfg.max_io_lb || cfg.max_io_lb as u64 > dev_lb {
        bail!("need --min-io ≤ --max-io ≤ --size");
    }
    cfg.discard = !a.no_discard;
    cfg.allzero = !a.no_allzero;
    cfg.padding = !a.no_padding;
    cfg.random_data = a.random_data;
    // One WAL generation has one uuid and one salt: derive the salt from the uuid.
    let uuid = a
        .uuid
        .unwrap_or_else(|| Uuid(derive(&a.seed.to_le_bytes())));
    cfg.salt = u32::from_le_bytes(derive(&uuid.0)[..4].try_into().unwrap());
    let header = WlogHeader {
        salt: cfg.salt,
        pbs,
        uuid,
        begin_lsid: a.lsid,
        end_lsid: u64::MAX,
    };
    let mut w = WlogWriter::new(output(&a.out)?, header)?;
    for (h, d) in Generator::new(cfg) {
        w.write_pack(&h, &d)?;
    }
    Ok(w.finish()?.commit()?)
}

fn derive(from: &[u8]) -> [u8; 16] {
    *blake3::hash(from).as_bytes().first_chunk().unwrap()
}

fn open_wlog(path: &Path) -> Result<WlogReader> {
    WlogReader::new(open_source(path)?).with_context(|| format!("{}", path.display()))
}

#[derive(Default)]
struct Stat {
    packs: u64,
    normal: u64,
    padding: u64,
    discard: u64,
    normal_lb: u64,
    discard_lb: u64,
}

impl Stat {
    fn add(&mut self, p: &LogPack) {
        self.packs += 1;
        for r in &p.header.records {
            match r.kind {
                RecKind::Normal => {
                    self.normal += 1;
                    self.normal_lb += r.io_size as u64
                }
                RecKind::Padding => self.padding += 1,
                RecKind::Discard => {
                    self.discard += 1;
                    self.discard_lb += r.io_size as u64
                }
            }
        }
    }
}

pub fn show(a: ShowArgs) -> Result<()> {
    let mut r = open_wlog(&a.wlog)?;
    let h = r.header().clone();
    let quiet = a.validate || a.stat;
    let mut out = std::io::stdout().lock();
    if !a.validate {
        writeln!(
            out,
            "wlog pbs {} salt {:#010x} uuid {} begin_lsid {} end_lsid {}",
            h.pbs, h.salt, h.uuid, h.begin_lsid, h.end_lsid
        )?;
    }
    let mut st = Stat::default();
    for p in &mut r {
        let p = p.with_context(|| format!("{}", a.wlog.display()))?;
        st.add(&p);
        if quiet {
            continue;
        }
        let ph = &p.header;
        writeln!(
            out,
            "pack lsid {} total_io_size {} n_records {} n_padding {}",
            ph.lsid,
            ph.total_io_size,
            ph.records.len(),
            ph.n_padding()
        )?;
        for (i, rec) in ph.records.iter().enumerate() {
            let kind = match rec.kind {
                RecKind::Normal => "normal",
                RecKind::Padding => "padding",
                RecKind::Discard => "discard",
            };
            writeln!(
                out,
                "  rec {i} {kind} lsid {} offset {} io_size {} csum {:#010x}",
                rec.lsid, rec.offset, rec.io_size, rec.checksum
            )?;
        }
    }
    writeln!(
        out,
        "{}: lsid {}..{} packs {} normal {} ({} LB) discard {} ({} LB) padding {}{}",
        a.wlog.display(),
        h.begin_lsid,
        r.end_lsid(),
        st.packs,
        st.normal,
        st.normal_lb,
        st.discard,
        st.discard_lb,
        st.padding,
        if a.validate { " valid" } else { "" }
    )?;
    Ok(())
}

/// Opens an image file or block device for queued writes.
pub fn open_image_rw(path: &Path) -> Result<UringIo> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    Ok(UringIo::new(f, 64))
}

pub fn redo(a: RedoArgs) -> Result<()> {
    let r = open_wlog(&a.wlog)?;
    let pbs = r.header().pbs;
    let mut io = open_image_rw(&a.image)?;
    let mut ap = Applier::new(&mut io, a.discard)?;
    for p in r {
        let p = p.with_context(|| format!("{}", a.wlog.display()))?;
        for rec in p.diff_recs(pbs) {
            ap.apply(&rec)
                .with_context(|| format!("{}", a.image.display()))?;
        }
    }
    ap.finish()?;
    Ok(())
}

/// Opens a log device or ldev file; block devices give their own pbs.
pub fn open_ldev(path: &Path, writable: bool) -> Result<Ldev> {
    let io = FileIo::open(path, writable).with_context(|| format!("open {}", path.display()))?;
    let pbs = io
        .physical_block_size()?
        .map(|b| Pbs::new(b).with_context(|| format!("{}: device pbs {b}", path.display())))
        .transpose()?;
    Ldev::open(Box::new(io), pbs).with_context(|| format!("{}", path.display()))
}

pub fn cat(a: CatArgs) -> Result<()> {
    let mut ldev = open_ldev(&a.ldev, false)?;
    let sb = ldev.sb.clone();
    let begin = a.begin.unwrap_or(sb.oldest_lsid);
    let end = a.end.unwrap_or(u64::MAX);
    if end <= begin {
        bail!("--end {end} must be above the first lsid {begin}");
    }
    let header = WlogHeader {
        salt: sb.log_checksum_salt,
        pbs: sb.pbs,
        uuid: sb.uuid,
        begin_lsid: begin,
        end_lsid: end,
    };
    let mut w = WlogWriter::new(output(&a.out)?, header)?;
    let mut lsid = begin;
    while lsid < end {
        let Some(mut p) = ldev.read_pack(lsid)? else {
            break;
        };
        if p.header.next_lsid() > end {
            break;
        }
        // A record with bad data ends the log: keep the records before it.
        let bad = p.first_bad_record(sb.pbs, sb.log_checksum_salt);
        if let Some(i) = bad {
            eprintln!(
                "walb-tool: {}: pack lsid {lsid} record {i}: data checksum mismatch; log ends here",
                a.ldev.display()
            );
            p.truncate(i, sb.pbs);
        }
        w.write_pack(&p.header, &p.data)?;
        lsid = p.header.next_lsid();
        if bad.is_some() {
            break;
        }
    }
    w.finish()?.commit()?;
    eprintln!("walb-tool: extracted lsid {begin}..{lsid}");
    Ok(())
}
