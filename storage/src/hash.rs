//! Hash backup (FORMATS §6.1), the storage side: the archive names its latest snapshot S and
//! streams a BLAKE3 hash per bulk of its image at S; the WAL is reset (done = S.gidE + 1), each
//! bulk of the live device is read and hashed, and the bulks that differ go back as sorted-wdiff
//! packs; an explicit snapshot ends it. The archive then holds the dirty diff S → |gidB,gidE|,
//! clean once the logs up to gidE arrive. The volume goes to Target.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use walb_core::meta::{MetaLsidGid, MetaSnap};
use walb_core::wdiff::hashdiff::{diff_against_hashes, ImageBulk};
use walb_core::wdiff::sorted::Packer;
use walb_core::wdiff::{Cmpr, Codec};
use walb_core::{Gid, Lsid};
use walb_daemon::{CmdError, CmdResult};
use walb_proto::archive_client::ArchiveClient;
use walb_proto::{frame, hash_event, wire, Commit, Frame, HashEvent, Open};

use crate::commands::Storage;
use crate::record::now;
use crate::scan::Scan;
use crate::vol::{save, State, Vol};

/// Runs a hash backup of `vol` with bulks of `bulk_lb`; returns the snapshot's gid.
pub async fn hash_backup(st: &Storage, vol: &Vol, bulk_lb: u32) -> CmdResult<u64> {
    vol.backup(State::HashSync, "hash-bkp", |wdev| async move {
        run(st, vol, &wdev, bulk_lb).await
    })
    .await
}

fn transport(e: impl std::fmt::Display) -> CmdError {
    CmdError::Internal(format!("hash backup with the archive: {e}"))
}

async fn next(events: &mut tonic::Streaming<HashEvent>) -> CmdResult<hash_event::Kind> {
    events
        .message()
        .await
        .map_err(|s| transport(s.message()))?
        .and_then(|e| e.kind)
        .ok_or_else(|| transport("the archive closed the stream"))
}

async fn run(st: &Storage, vol: &Vol, wdev: &str, bulk_lb: u32) -> CmdResult<u64> {
    let dev = st.wdevd.status(wdev).await?;
    let ch = wire::connect(&st.archive).await.map_err(transport)?;
    let mut client = ArchiveClient::new(ch)
        .max_decoding_message_size(wire::MAX_MESSAGE)
        .max_encoding_message_size(wire::MAX_MESSAGE);
    let (tx, rx) = mpsc::channel::<Frame>(8);
    let open = Open {
        vol: vol.name.clone(),
        host_type: "storage".into(),
        pbs: dev.pbs,
        size_lb: dev.size_lb,
        bulk_lb,
        cur_time: now(),
        ..Default::default()
    };
    tx.send(wire::frame(frame::Kind::Open(open)))
        .await
        .map_err(transport)?;
    let mut events = client
        .hash_sync(ReceiverStream::new(rx))
        .await
        .map_err(|s| transport(s.message()))?
        .into_inner();
    match next(&mut events).await? {
        hash_event::Kind::Accept(_) => {}
        hash_event::Kind::Reject(w) => {
            return Err(CmdError::State(format!(
                "the archive refused the hash backup: {w}"
            )))
        }
        other => return Err(transport(format!("expected Accept, got {other:?}"))),
    }
    let snap_from = match next(&mut events).await? {
        hash_event::Kind::Snap(b) => MetaSnap::from_bytes(&b)?,
        other => return Err(transport(format!("expected Snap, got {other:?}"))),
    };
    // The logs from here on belong to the dirty diff's end.
    let gid_b = snap_from.gid_e.0 + 1;
    st.wdevd.reset_wal(wdev).await?;
    {
        let mut m = vol.meta.lock().await;
        m.done = MetaLsidGid {
            is_mergeable: false,
            timestamp: now(),
            lsid: Lsid(0),
            gid: Gid(gid_b),
        };
        m.queue.clear();
        save(&vol.dir, &m)?;
    }
    let uuid: walb_core::Uuid = st
        .wdevd
        .status(wdev)
        .await?
        .uuid
        .parse()
        .map_err(|e| CmdError::Internal(format!("wdevd uuid: {e}")))?;
    tracing::info!(
        vol = vol.name,
        "hash backup from {snap_from}: gid {gid_b} on"
    );

    let (htx, hrx) = std::sync::mpsc::sync_channel::<(u64, Bytes)>(8);
    let file = st.wdevd.ddev_path(wdev).await?;
    let ftx = tx.clone();
    let size_lb = dev.size_lb;
    let (scan, _guard) = vol.begin_scan(Scan::new(
        "hash-backup",
        size_lb * walb_core::LBS as u64,
        st.scan_bps.clone(),
    ));
    let progress = scan.clone();
    let worker =
        tokio::task::spawn_blocking(move || compare(file, size_lb, bulk_lb, scan, hrx, ftx));
    loop {
        match next(&mut events).await? {
            hash_event::Kind::Hashes(h) => {
                st.metrics.set(
                    "walb_storage_scan_bytes",
                    &[("vol", &vol.name)],
                    progress.done.load(std::sync::atomic::Ordering::Relaxed) as f64,
                );
                let last = h.last;
                if htx.send((h.first, h.blake3)).is_err() {
                    break;
                }
                if last {
                    break;
                }
            }
            other => return Err(transport(format!("expected Hashes, got {other:?}"))),
        }
    }
    drop(htx);
    let (changed, sent) = worker
        .await
        .map_err(|e| CmdError::Internal(format!("compare task: {e}")))??;
    let gid_e = st.explicit_snapshot(vol).await?.0;
    let commit = Commit {
        snap: MetaSnap::new(Gid(gid_b), Gid(gid_e))?.to_bytes().into(),
        uuid: Bytes::copy_from_slice(&uuid.0),
        ..Default::default()
    };
    tx.send(wire::frame(frame::Kind::Commit(commit)))
        .await
        .map_err(transport)?;
    match next(&mut events).await? {
        hash_event::Kind::Ack(_) => {}
        hash_event::Kind::Reject(w) => {
            return Err(CmdError::State(format!(
                "the archive refused the hash diff: {w}"
            )))
        }
        other => return Err(transport(format!("expected Ack, got {other:?}"))),
    }
    tracing::info!(
        vol = vol.name,
        "hash backup done: {changed} bulks differed, {sent} bytes sent, gid {gid_b}..{gid_e}"
    );
    Ok(gid_e)
}

/// Compares the device, read ahead bulk by bulk, with the archive's hashes as they arrive;
/// bulks that differ become records, packed and sent as chunks. Returns (bulks that differed,
/// bytes sent).
fn compare(
    file: PathBuf,
    size_lb: u64,
    bulk_lb: u32,
    scan: std::sync::Arc<Scan>,
    hashes: std::sync::mpsc::Receiver<(u64, Bytes)>,
    tx: mpsc::Sender<Frame>,
) -> CmdResult<(u64, u64)> {
    let mut packer = Packer::new(Cmpr::new(Codec::Zstd, 1));
    let mut sent = 0u64;
    let mut send = |p: walb_core::wdiff::sorted::EncodedPack| -> walb_core::Result<()> {
        let b = Bytes::from(p.to_bytes());
        sent += b.len() as u64;
        for c in b.chunks(wire::CHUNK) {
            tx.blocking_send(wire::chunk(b.slice_ref(c)))
                .map_err(|_| walb_core::Error::Invalid("the hash sync ended".into()))?;
        }
        Ok(())
    };
    let bulks = crate::scan::read_bulks(file, size_lb, bulk_lb, scan)
        .into_iter()
        .map(|b| {
            b.map(|b| ImageBulk {
                lba: b.lba,
                blocks: b.blocks,
                data: b.data,
            })
            .map_err(|e| walb_core::Error::Invalid(e.to_string()))
        });
    let changed = diff_against_hashes(bulks, hashes.into_iter(), &mut packer, &mut send)?;
    if let Some(p) = packer.take() {
        send(p)?;
    }
    Ok((changed, sent))
}
