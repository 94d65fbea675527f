//! What the archive's receiving flows share (full sync and wdiff transfer in `service`, hash
//! sync in `hashsync`, replication into this archive through all three): admission of a flow
//! under the volume's lock, the size check with autoresize, the chunks written into a
//! temporary file, the check of a received wdiff, and the conversions of their errors to
//! statuses.

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use walb_core::atomic::TempFile;
use walb_core::source::ChunkSource;
use walb_core::wdiff::{DiffRec, FileHeader, Kind, SortedReader, WdiffReader};
use walb_core::Uuid;
use walb_daemon::chunks::{ChunkThread, Stop};
use walb_proto::flow::next_frame;
use walb_proto::wire::check_chunk;
use walb_proto::{frame, Commit, Frame, Open};

use crate::archive::{Archive, Entry, Transient, TransientGuard};
use crate::volume::Vol;

pub(crate) fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// A command's error, or a typed error of the files, as the status its kind maps to.
pub(crate) fn cmd_status(e: impl Into<walb_daemon::CmdError>) -> Status {
    e.into().into()
}

pub(crate) fn uuid_of(b: &[u8]) -> Result<Uuid, Status> {
    let a: [u8; 16] = b
        .try_into()
        .map_err(|_| Status::invalid_argument(format!("uuid must be 16 bytes, got {}", b.len())))?;
    Ok(Uuid(a))
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

/// Writes a flow's chunks into `tmp` from byte `off` on as they arrive (each chunk's crc32
/// checked, its bytes counted as the volume's received) until Commit, or until the volume is
/// stopped by force; returns the Commit, the file and the offset after the last chunk. The
/// writes run on a thread of their own; so does `check`, when given, on the same chunks.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn receive_chunks(
    a: &Archive,
    entry: &Entry,
    vol: &str,
    input: &mut Streaming<Frame>,
    tmp: TempFile,
    off: u64,
    what: &str,
    mut check: Option<WdiffCheck>,
) -> Result<(Commit, TempFile, u64), Status> {
    let writer = ChunkThread::spawn("the chunk writer", move |rx| write_chunks(rx, tmp, off));
    let received = chunks_until_commit(a, entry, vol, input, off, what, &writer, &mut check).await;
    let (commit, (tmp, end)) = writer.join(received).await?;
    if let Some(ch) = check {
        ch.0.finish().await?;
    }
    Ok((commit, tmp, end))
}

/// The loop of `receive_chunks`: each chunk checked, counted and handed to the writer (and to
/// `check`) until Commit.
#[allow(clippy::too_many_arguments)]
async fn chunks_until_commit(
    a: &Archive,
    entry: &Entry,
    vol: &str,
    input: &mut Streaming<Frame>,
    mut at: u64,
    what: &str,
    writer: &ChunkThread<(TempFile, u64)>,
    check: &mut Option<WdiffCheck>,
) -> Result<Commit, Stop> {
    loop {
        let next = tokio::select! {
            f = next_frame(input, "Chunk or Commit") => f?,
            _ = entry.aborted() => return Err(Status::aborted("the volume was stopped by force").into()),
        };
        match next {
            frame::Kind::Chunk(c) => {
                let data = check_chunk(&c)
                    .map_err(|e| Status::data_loss(format!("{what} chunk at byte {at}: {e}")))?
                    .clone();
                a.count_received(vol, data.len());
                at += data.len() as u64;
                if let Some(ch) = check.as_ref() {
                    if ch.0.send(data.clone()).await.is_err() {
                        let ch = check.take().expect("checked above");
                        let e = ch.0.finish().await.err().unwrap_or_else(|| {
                            Status::data_loss(format!(
                                "received wdiff: bytes after the END pack (at byte {at})"
                            ))
                        });
                        return Err(e.into());
                    }
                }
                writer.send(data).await?;
            }
            frame::Kind::Commit(c) => return Ok(c),
            _ => {
                return Err(
                    Status::invalid_argument(format!("{what} takes Chunk or Commit")).into(),
                )
            }
        }
    }
}

/// The writing thread of `receive_chunks`: every chunk into `tmp` in turn from `off` on,
/// until the input ends.
fn write_chunks(
    mut rx: mpsc::Receiver<Bytes>,
    tmp: TempFile,
    mut off: u64,
) -> Result<(TempFile, u64), Status> {
    while let Some(b) = rx.blocking_recv() {
        tmp.file.write_all_at(&b, off).map_err(internal)?;
        off += b.len() as u64;
    }
    Ok((tmp, off))
}

/// A received sorted wdiff checked as its chunks arrive, on a thread of its own beside the
/// writes, so that its Commit need not read the file back: the same checks as `verify_wdiff`,
/// and no byte after the END pack.
pub(crate) struct WdiffCheck(ChunkThread<()>);

impl WdiffCheck {
    pub(crate) fn start(uuid: Uuid, size_lb: u64) -> WdiffCheck {
        WdiffCheck(ChunkThread::spawn("the wdiff check", move |mut rx| {
            let src = ChunkSource::new(std::iter::from_fn(move || rx.blocking_recv()));
            let (h, mut recs) =
                SortedReader::open(Box::new(src)).map_err(|e| bad_wdiff(e.to_string()))?;
            check_wdiff(&h, recs.by_ref(), &uuid, size_lb)?;
            let after = recs.into_source().read_up_to(1).map_err(internal)?;
            match after.is_empty() {
                true => Ok(()),
                false => Err(bad_wdiff("bytes after the END pack".into())),
            }
        }))
    }
}

fn bad_wdiff(e: String) -> Status {
    Status::data_loss(format!("received wdiff: {e}"))
}

/// A wdiff's header names `uuid`, and every record parses and lies within `size_lb`.
fn check_wdiff(
    h: &FileHeader,
    recs: impl Iterator<Item = walb_core::Result<DiffRec>>,
    uuid: &Uuid,
    size_lb: u64,
) -> Result<(), Status> {
    if h.kind != Kind::Sorted {
        return Err(bad_wdiff(
            "indexed wdiff where a sorted one is needed".into(),
        ));
    }
    if h.uuid != *uuid {
        return Err(bad_wdiff(format!(
            "header uuid {} differs from Open.uuid {uuid}",
            h.uuid
        )));
    }
    for rec in recs {
        let rec = rec.map_err(|e| bad_wdiff(e.to_string()))?;
        if rec.end() > size_lb {
            return Err(bad_wdiff(format!(
                "record at LB {} (+{}) ends beyond the volume's {size_lb} LB",
                rec.addr, rec.blocks
            )));
        }
    }
    Ok(())
}

/// What a flow's checks decide: the transient to start, or the rejection word.
pub(crate) type Decision = Result<Transient, &'static str>;

/// Admits a data flow that may write `bytes` under the volume's lock: the volume must exist
/// with no transient running and the free-space floor must hold after `bytes`; `decide` then
/// checks the rest (state, uuid, size, …). Starts the transient it names, or returns the
/// rejection word.
pub(crate) async fn admit(
    a: &Archive,
    vol: &Vol,
    bytes: u64,
    decide: impl FnOnce() -> Result<Decision, Status>,
) -> Result<Result<TransientGuard, &'static str>, Status> {
    a.ready().map_err(cmd_status)?;
    let _lock = a.lock(&vol.name).await;
    if !vol.exists() {
        return Ok(Err("archive-not-found"));
    }
    if !a.has_room(bytes).map_err(cmd_status)? {
        return Ok(Err(crate::capacity::ARCHIVE_FULL));
    }
    if let Some(t) = a.entry(&vol.name).transient() {
        return Ok(Err(t.reject_word()));
    }
    Ok(decide()?.and_then(|t| a.begin_transient(&vol.name, t).map_err(|t| t.reject_word())))
}

/// Whether a sync flow comes from another archive (replication) rather than a storage (its
/// host type was checked against `walb_daemon::access::FLOWS` by `spawn_flow`).
pub(crate) fn from_archive(open: &Open) -> bool {
    open.host_type == "archive"
}

/// Whether the volume's image holds a device of `size_lb`; with `--autoresize` it is grown
/// to it first. Runs under the volume's lock (in `admit`).
pub(crate) fn fits(a: &Archive, vol: &Vol, size_lb: u64) -> Result<bool, Status> {
    if size_lb <= vol.size_lb().map_err(cmd_status)? {
        return Ok(true);
    }
    if !a.autoresize {
        return Ok(false);
    }
    tracing::info!(vol = vol.name, size_lb, "autoresize: growing the image");
    crate::ops::resize(vol, size_lb).map_err(cmd_status)?;
    a.refresh_metrics(vol);
    Ok(true)
}

/// Reads every record of the received file: a sorted wdiff with the announced uuid whose
/// records fit in the volume.
pub(crate) fn verify_wdiff(path: &Path, uuid: &Uuid, size_lb: u64) -> Result<(), Status> {
    let r = WdiffReader::open(path).map_err(|e| bad_wdiff(e.to_string()))?;
    let h = *r.header();
    check_wdiff(&h, r, uuid, size_lb)
}
