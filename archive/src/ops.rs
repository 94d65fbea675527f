//! The blocking volume operations: apply (and its crash recovery), merge, restore, gc, cat and
//! bhash. Callers hold the volume's lock and run these off the async runtime.

use std::io::Write;
use std::path::{Path, PathBuf};

use walb_core::apply::DiscardMode;
use walb_core::atomic::{AtomicFile, Output, TempFile};
use walb_core::bhash::hash_bulks;
use walb_core::meta::{self, MetaDiff, MetaSnap, Relation};
use walb_core::virt::BulkSource;
use walb_core::wdiff::{Cmpr, Codec, SortedWriter, WdiffReader};
use walb_core::{Gid, LBS};
use walb_daemon::error::invalid;
use walb_daemon::progress::Progress;
use walb_daemon::{CmdError, CmdResult};

use crate::image;
use crate::store_error::{StoreError, StoreResult};
use crate::volume::{sync_dir, Vol};

fn open_image_rw(vol: &Vol) -> StoreResult<std::fs::File> {
    std::fs::File::options()
        .read(true)
        .write(true)
        .open(vol.image())
        .map_err(StoreError::io(vol.image()))
}

/// Writes the diffs up to clean snapshot `gid` into the base image, crash-safely (docs/formats.md
/// §6.2): save `<B-->E>`, write, fsync, save `<E>`, delete the diffs made obsolete. An apply
/// that failed part-way (a full disk, a crash) is finished first. Every record of the chain
/// is read before the image changes, so a damaged diff stops the apply while every point it
/// would have removed is still restorable.
pub fn apply(vol: &Vol, gid: u64, mode: DiscardMode) -> CmdResult<()> {
    recover_apply(vol, mode)?;
    let (base, chain) = vol.chain_to_clean(gid)?;
    if chain.is_empty() {
        return Ok(());
    }
    for r in image::chain_records(vol, &chain)? {
        r?;
    }
    let applying = base.begin_apply(&chain)?;
    vol.set_base(&applying)?;
    write_and_finish(vol, &chain, mode)
}

/// Finishes an apply a crash interrupted: re-running it from B is safe because diffs carry
/// absolute block contents.
pub fn recover_apply(vol: &Vol, mode: DiscardMode) -> CmdResult<bool> {
    let base = vol.base()?;
    if !base.is_applying {
        return Ok(false);
    }
    let chain = vol.chain(&base, Some(base.snap_e.gid_b))?;
    let end = meta::apply_all(&base.snap_b, &chain)?;
    if end != base.snap_e {
        return Err(CmdError::Internal(format!(
            "volume {}: interrupted apply {base} cannot be finished, the diffs reach only {end}",
            vol.name
        )));
    }
    tracing::info!(vol = %vol.name, "finishing the interrupted apply {base}");
    write_and_finish(vol, &chain, mode)?;
    Ok(true)
}

fn write_and_finish(vol: &Vol, chain: &[MetaDiff], mode: DiscardMode) -> CmdResult<()> {
    let applying = vol.base()?;
    let (p, _shown) = vol.running.begin(image_progress(vol, "apply")?);
    let recs = image::tracked(image::chain_records(vol, chain)?, p);
    image::apply_records(open_image_rw(vol)?, recs, mode)?;
    let done = applying.end_apply()?;
    vol.set_base(&done)?;
    let obsolete: Vec<MetaDiff> = vol
        .diffs()?
        .into_iter()
        .filter(|d| meta::relation(&done.snap_b, d) == Relation::TooOld)
        .collect();
    Ok(vol.remove_diffs(&obsolete)?)
}

/// Merges the consecutive chain diffs from the one starting at `gid_b` to the one ending at
/// `gid_e` into one wdiff (newest wins), then deletes the inputs.
pub fn merge(vol: &Vol, gid_b: u64, gid_e: u64) -> CmdResult<MetaDiff> {
    let base = vol.base()?;
    if base.is_applying {
        return Err(invalid(format!("volume {} is applying {base}", vol.name)));
    }
    let chain = vol.chain(&base, None)?;
    let i = chain
        .iter()
        .position(|d| d.snap_b.gid_b == Gid(gid_b))
        .ok_or_else(|| invalid(format!("no diff of the chain starts at gid {gid_b}")))?;
    let j = chain
        .iter()
        .position(|d| d.snap_e.gid_b == Gid(gid_e))
        .filter(|&j| j > i)
        .ok_or_else(|| {
            invalid(format!(
                "no diff after the one starting at gid {gid_b} ends at gid {gid_e}"
            ))
        })?;
    let run = &chain[i..=j];
    let merged = meta::merge_all(run).ok_or_else(|| {
        invalid(format!(
            "diffs from gid {gid_b} to {gid_e} cannot be merged (an explicit snapshot or a compared diff lies between)"
        ))
    })?;
    let newest = vol.diff_path(run.last().expect("run has two diffs"));
    let uuid = WdiffReader::open(&newest)
        .map_err(|source| StoreError::Decode {
            path: newest.clone(),
            source,
        })?
        .uuid();
    let target = vol.diff_path(&merged);
    let mut out = AtomicFile::create(&target)?;
    let mut w = SortedWriter::new(&mut out, uuid, Cmpr::new(Codec::Snappy, 0))?;
    let (p, _shown) = vol.running.begin(image_progress(vol, "merge")?);
    for r in image::tracked(image::chain_records(vol, run)?, p) {
        w.push(r?)?;
    }
    w.finish()?;
    let committed = out.commit();
    vol.diffs_changed();
    committed?;
    vol.remove_diffs(run)?;
    Ok(merged)
}

/// Materialises clean snapshot `gid` as `restored/<vol>/<gid>.img`; returns its absolute path.
/// An existing restored image of that gid (perhaps mounted and changed) is replaced only with
/// `force`.
pub fn restore(vol: &Vol, gid: u64, mode: DiscardMode, force: bool) -> CmdResult<PathBuf> {
    let (_, chain) = vol.chain_to_clean(gid)?;
    let target = vol.restored_path(gid);
    if !force && target.exists() {
        return Err(walb_daemon::error::bad_state(format!(
            "{} exists: gid {gid} of {} is restored already (del-restored first, or force)",
            target.display(),
            vol.name
        )));
    }
    std::fs::create_dir_all(&vol.restored_dir).map_err(StoreError::io(&vol.restored_dir))?;
    let (p, _shown) = vol.running.begin(image_progress(vol, "restore")?);
    let tmp = TempFile::create(vol.restored_dir.join(format!(".tmp-{gid}.img")))?;
    let reflinked = image::clone_image(&vol.image(), &tmp.file)?;
    let file = tmp.file.try_clone().map_err(StoreError::io(&tmp.path))?;
    image::apply_records(
        file,
        image::tracked(image::chain_records(vol, &chain)?, p),
        mode,
    )?;
    tmp.persist(&target)?;
    tracing::info!(vol = %vol.name, gid, reflinked, "restored {}", target.display());
    Ok(std::path::absolute(&target).map_err(StoreError::io(&target))?)
}

pub fn del_restored(vol: &Vol, gid: u64) -> CmdResult<()> {
    let p = vol.restored_path(gid);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(sync_dir(&vol.restored_dir)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CmdError::NotFound(format!(
            "volume {} has no restored image of gid {gid}",
            vol.name
        ))),
        Err(e) => Err(StoreError::io(p)(e).into()),
    }
}

/// Removes the diffs that are not on the chain from the base, and stray temporary files unless
/// a flow is writing one (`sweep` false).
pub fn gc(vol: &Vol, sweep: bool) -> CmdResult<usize> {
    let base = vol.base()?;
    let chain = vol.chain(&base, None)?;
    let stray: Vec<MetaDiff> = vol
        .diffs()?
        .into_iter()
        .filter(|d| !chain.iter().any(|c| c == d))
        .collect();
    vol.remove_diffs(&stray)?;
    let temps = if sweep { vol.sweep_temps()? } else { 0 };
    Ok(stray.len() + temps)
}

/// The chain from the base to snapshot gid `gid` (clean or dirty: any point of the chain at
/// or after the end of an apply in flight).
fn chain_to_point(vol: &Vol, gid: u64) -> CmdResult<Vec<MetaDiff>> {
    let base = vol.base()?;
    if base.is_applying && Gid(gid) < base.snap_e.gid_b {
        return Err(invalid(format!(
            "gid {gid} of volume {} is gone: the base is being applied ({base})",
            vol.name
        )));
    }
    let chain = vol.chain(&base, Some(Gid(gid)))?;
    let end: MetaSnap = meta::apply_all(&base.snap_b, &chain)?;
    if end.gid_b != Gid(gid) {
        return Err(invalid(format!(
            "gid {gid} is not a snapshot of volume {} (base {base}, the chain reaches {end})",
            vol.name
        )));
    }
    Ok(chain)
}

/// Writes the virtual full image at `gid` to `path`: a file atomically, a block device (or
/// other special file) in place from its start.
pub fn cat(vol: &Vol, gid: u64, path: &Path) -> CmdResult<u64> {
    let chain = chain_to_point(vol, gid)?;
    let (p, _shown) = vol.running.begin(image_progress(vol, "cat")?);
    let mut src = image::Tracked {
        src: image::virtual_full(vol, &chain)?,
        p,
    };
    let mut out = Output::create(path)?;
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = src.read_next(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(StoreError::io(path))?;
        total += n as u64;
    }
    out.commit()?;
    Ok(total)
}

/// The BLAKE3 image digest (core::bhash) of the virtual full image at `gid`.
pub fn bhash(vol: &Vol, gid: u64, bulk: usize) -> CmdResult<String> {
    let chain = chain_to_point(vol, gid)?;
    let (p, _shown) = vol.running.begin(image_progress(vol, "bhash")?);
    let src = image::Tracked {
        src: image::virtual_full(vol, &chain)?,
        p,
    };
    Ok(hash_bulks(Box::new(src), bulk)?
        .digest()
        .to_hex()
        .to_string())
}

/// A progress over the volume's image, by bytes of address space.
fn image_progress(vol: &Vol, kind: &'static str) -> CmdResult<Progress> {
    Ok(Progress::new(kind, vol.size_lb()? * LBS as u64))
}

/// Grows the base image to `size_lb` (never shrinks); the new area reads as zeros.
pub fn resize(vol: &Vol, size_lb: u64) -> CmdResult<()> {
    let cur = vol.size_lb()?;
    if size_lb < cur {
        return Err(invalid(format!(
            "resize of {} to {size_lb} LB: the image has {cur} LB and never shrinks",
            vol.name
        )));
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(vol.image())
        .map_err(StoreError::io(vol.image()))?;
    f.set_len(size_lb * walb_core::LBS as u64)
        .and_then(|_| f.sync_all())
        .map_err(StoreError::io(vol.image()))?;
    Ok(())
}
