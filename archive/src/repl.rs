//! Replication to another archive, as its client (docs/formats.md §7.6): a destination
//! without the volume's data gets a full copy of the newest restorable snapshot (the
//! `FullSync` flow from host type "archive", adopting this archive's lineage uuid), then every
//! diff after the destination's latest snapshot goes over `WdiffTransfer`; a destination whose
//! snapshot was applied away here gets a compared diff by hashes (`HashSync`). Archives of another
//! lineage are refused unless a resync is asked for (the destination is reset first).

use std::sync::Arc;

use bytes::Bytes;
use walb_core::meta::{self, MetaDiff, MetaSnap};
use walb_core::virt::BulkSource;
use walb_core::wdiff::hashdiff::{bulks_of, diff_against_hashes};
use walb_core::wdiff::sorted::EncodedPack;
use walb_core::wdiff::{Cmpr, Codec};
use walb_core::{Gid, LBS};
use walb_daemon::args::BulkArgs;
use walb_daemon::progress::Progress;
use walb_daemon::{CmdError, CmdResult};
use walb_proto::archive_client::ArchiveClient;
use walb_proto::archive_request as ar;
use walb_proto::bulk::encode_ordered;
use walb_proto::control::call;
use walb_proto::flow::{Flow, FlowError};
use walb_proto::hashflow::{hash_batches, send_chunks_blocking, HashFlow};
use walb_proto::{frame, wire, ArchiveState, Commit, Open};

use crate::archive::Archive;
use crate::image;
use crate::volume::{State, Vol};

const BULK_LB: u32 = 512;

fn remote(dst: &str, e: impl std::fmt::Display) -> CmdError {
    CmdError::Internal(format!("replication to {dst}: {e}"))
}

async fn client(dst: &str) -> CmdResult<ArchiveClient<tonic::transport::Channel>> {
    let ch = wire::connect(dst).await.map_err(|e| remote(dst, e))?;
    Ok(walb_proto::sized!(ArchiveClient::new(ch)))
}

fn flow_err(dst: &str, e: FlowError) -> CmdError {
    match e {
        FlowError::Rejected(w) => CmdError::State(format!("{dst} refused: {w}")),
        FlowError::Transport(t) => remote(dst, t),
    }
}

/// Brings `dst`'s copy of `name` up to this archive's latest snapshot; returns the
/// destination's latest snapshot afterwards.
pub async fn replicate(
    a: &Arc<Archive>,
    name: &str,
    dst: &str,
    resync: bool,
) -> CmdResult<walb_proto::Snap> {
    let _lock = a.lock(name).await;
    let vol = a.vol(name).require()?;
    vol.expect_state("replicate", &[State::Archived])?;
    let vol_name = || name.to_string();
    let mut state = call(dst, ar::GetState { vol: vol_name() })
        .await
        .map_err(|e| remote(dst, e))?
        .state();
    if state == ArchiveState::ArchiveClear {
        call(dst, ar::InitVol { vol: vol_name() })
            .await
            .map_err(|e| remote(dst, e))?;
        state = ArchiveState::ArchiveSyncReady;
    }
    let lineage = vol.archive_uuid()?.to_string();
    if state == ArchiveState::ArchiveArchived {
        let theirs = call(dst, ar::Uuids { vol: vol_name() })
            .await
            .map_err(|e| remote(dst, e))?;
        if theirs.archive_uuid != lineage {
            if !resync {
                return Err(CmdError::State(format!(
                    "{dst} holds {name} of another lineage (a full backup since); replicate with resync"
                )));
            }
            let stop = ar::Stop {
                vol: vol_name(),
                mode: walb_proto::StopMode::StopForce as i32,
            };
            call(dst, stop).await.map_err(|e| remote(dst, e))?;
            call(dst, ar::ResetVol { vol: vol_name() })
                .await
                .map_err(|e| remote(dst, e))?;
            state = ArchiveState::ArchiveSyncReady;
        }
    }
    match state {
        ArchiveState::ArchiveSyncReady => full_copy(&vol, dst, a.bulk).await?,
        ArchiveState::ArchiveArchived => {}
        other => {
            return Err(CmdError::State(format!(
                "{dst}: volume {name} is {}; replication needs SyncReady or Archived",
                other.as_str_name()
            )))
        }
    }
    let latest = || async {
        call(dst, ar::LatestSnap { vol: vol_name() })
            .await
            .map_err(|e| remote(dst, e))
    };
    if !send_diffs(&vol, dst, &latest().await?).await? {
        // The destination's snapshot is no longer on this archive's chain.
        hash_copy(&vol, dst).await?;
        send_diffs(&vol, dst, &latest().await?).await?;
    }
    latest().await
}

/// Streams the virtual image of the newest restorable snapshot as a full sync.
async fn full_copy(vol: &Vol, dst: &str, bulk: BulkArgs) -> CmdResult<()> {
    let gid =
        vol.restorable()?.last().map(|r| r.gid.0).ok_or_else(|| {
            CmdError::State(format!("{} has nothing restorable to copy", vol.name))
        })?;
    let (_, chain) = vol.chain_to_clean(gid)?;
    let src = image::virtual_full(vol, &chain)?;
    let (p, _shown) = vol.running.begin(Progress::new("replicate", src.size()));
    let src = image::Tracked { src, p };
    let size_lb = src.size() / LBS as u64;
    let open = Open {
        vol: vol.name.clone(),
        host_type: "archive".into(),
        uuid: Bytes::copy_from_slice(&vol.uuid()?.0),
        size_lb,
        bulk_lb: BULK_LB,
        cur_time: vol.base()?.timestamp,
        ..Default::default()
    };
    let mut c = client(dst).await?;
    let flow = Flow::open(wire::frame(frame::Kind::Open(open)), |s| c.full_sync(s))
        .await
        .map_err(|e| flow_err(dst, e))?;
    let tx = flow.tx.clone();
    let reader = tokio::task::spawn_blocking(move || -> CmdResult<()> {
        let input = bulks_of(src, BULK_LB).map(|b| b.map(|b| (b.lba, b.data)));
        let mut outcome = Ok(());
        encode_ordered(input, bulk.bulk_cmpr, bulk.workers(), |b| {
            let sent = match b {
                Ok(b) => tx
                    .blocking_send(wire::frame(frame::Kind::Bulk(b)))
                    .map_err(|_| CmdError::Internal("the full copy ended early".into())),
                Err(e) => Err(e.into()),
            };
            outcome = sent;
            outcome.is_ok()
        });
        outcome
    });
    reader
        .await
        .map_err(|e| CmdError::Internal(format!("reader task: {e}")))??;
    let commit = Commit {
        snap: MetaSnap::clean(Gid(gid)).to_bytes().into(),
        uuid: Bytes::copy_from_slice(&vol.archive_uuid()?.0),
        ..Default::default()
    };
    flow.commit(wire::frame(frame::Kind::Commit(commit)))
        .await
        .map_err(|e| flow_err(dst, e))?;
    tracing::info!(vol = %vol.name, "replicated snapshot {gid} to {dst} (full)");
    Ok(())
}

/// Sends every diff after the destination's latest snapshot; false when that snapshot is not
/// on this archive's chain (applied or merged away here).
async fn send_diffs(vol: &Vol, dst: &str, latest: &walb_proto::Snap) -> CmdResult<bool> {
    let from = MetaSnap::new(Gid(latest.gid_b), Gid(latest.gid_e))?;
    let chain = meta::applicable_chain(&from, &vol.diffs()?, None);
    if chain.is_empty() && from != vol.latest()? {
        return Ok(false);
    }
    let total = chain.iter().map(|d| d.data_size).sum();
    let (p, _shown) = vol.running.begin(Progress::new("replicate", total));
    let mut rest = &chain[..];
    while !rest.is_empty() {
        let (took, rejected) = send_chain(vol, dst, rest, &p).await?;
        rest = &rest[took..];
        match rejected {
            None => {}
            // The destination has it already.
            Some(w) if w == "too-old-diff" => rest = &rest[1..],
            Some(w) => return Err(flow_err(dst, FlowError::Rejected(w))),
        }
    }
    Ok(true)
}

/// Sends `chain` on one wdiff transfer stream (docs/formats.md §7.5): each diff's Open, chunks
/// and Commit go right after the previous one's, without waiting for its Ack, so a chain of
/// small diffs does not pay a round trip each. Returns how many diffs the destination
/// registered, in order, and the rejection of the next one that ended the stream, if any.
async fn send_chain(
    vol: &Vol,
    dst: &str,
    chain: &[MetaDiff],
    p: &Progress,
) -> CmdResult<(usize, Option<String>)> {
    let uuid = Bytes::copy_from_slice(&vol.uuid()?.0);
    let size_lb = vol.size_lb()?;
    let open = |d: &MetaDiff| {
        wire::frame(frame::Kind::Open(Open {
            vol: vol.name.clone(),
            host_type: "archive".into(),
            uuid: uuid.clone(),
            size_lb,
            diff: d.to_bytes().into(),
            ..Default::default()
        }))
    };
    let mut c = client(dst).await?;
    let mut flow = Flow::start(open(&chain[0]), move |s| async move {
        c.wdiff_transfer(s).await
    });
    let tx = flow.tx.clone();
    let files: Vec<_> = chain.iter().map(|d| vol.diff_path(d)).collect();
    let nexts: Vec<_> = chain[1..].iter().map(open).collect();
    let sender = tokio::spawn(async move {
        let mut nexts = nexts.into_iter();
        for f in files {
            let data = tokio::fs::read(&f)
                .await
                .map_err(|e| CmdError::Internal(format!("read {}: {e}", f.display())))?;
            let commit = wire::frame(frame::Kind::Commit(Commit::default()));
            for frame in wire::chunks(data.into())
                .chain([commit])
                .chain(nexts.next())
            {
                if tx.send(frame).await.is_err() {
                    // The destination ended the stream: its answers say why.
                    return Ok(());
                }
            }
        }
        CmdResult::Ok(())
    });
    // A failed read ends the stream early; that failure is the one to report.
    let failed = |e: FlowError, sender: tokio::task::JoinHandle<CmdResult<()>>| async move {
        match sender.await {
            Ok(Err(read)) => read,
            _ => flow_err(dst, e),
        }
    };
    for (i, d) in chain.iter().enumerate() {
        match flow.acked().await {
            Ok(()) => {}
            Err(FlowError::Rejected(w)) => {
                sender.abort();
                return Ok((i, Some(w)));
            }
            Err(e) => return Err(failed(e, sender).await),
        }
        p.add(d.data_size);
        tracing::info!(vol = %vol.name, "replicated diff {d} to {dst}");
    }
    sender
        .await
        .map_err(|e| CmdError::Internal(format!("chain sender: {e}")))??;
    Ok((chain.len(), None))
}

/// Hash replication: the destination sends the hashes of its image at its latest snapshot;
/// the bulks of this archive's newest restorable snapshot that differ go back as a compared
/// diff to that snapshot.
async fn hash_copy(vol: &Vol, dst: &str) -> CmdResult<()> {
    let newest =
        vol.restorable()?.last().copied().ok_or_else(|| {
            CmdError::State(format!("{} has nothing restorable to copy", vol.name))
        })?;
    let (_, chain) = vol.chain_to_clean(newest.gid.0)?;
    let src = image::virtual_full(vol, &chain)?;
    let (p, _shown) = vol.running.begin(Progress::new("replicate", src.size()));
    let src = image::Tracked { src, p };
    let open = Open {
        vol: vol.name.clone(),
        host_type: "archive".into(),
        size_lb: src.size() / LBS as u64,
        bulk_lb: BULK_LB,
        cur_time: newest.timestamp,
        ..Default::default()
    };
    let mut c = client(dst).await?;
    let (mut flow, snap) = HashFlow::open(wire::frame(frame::Kind::Open(open)), |s| c.hash_sync(s))
        .await
        .map_err(|e| flow_err(dst, e))?;
    let from = MetaSnap::from_bytes(&snap)?;
    let (htx, hrx) = hash_batches();
    let ftx = flow.tx.clone();
    let worker = tokio::task::spawn_blocking(move || -> walb_core::Result<u64> {
        let mut send = |p: EncodedPack| {
            send_chunks_blocking(&ftx, Bytes::from(p.to_bytes()))
                .map_err(|e| walb_core::Error::Invalid(e.to_string()))
        };
        let cmpr = Cmpr::new(Codec::Zstd, 1);
        diff_against_hashes(bulks_of(src, BULK_LB), hrx, cmpr, &mut send)
    });
    flow.forward_hashes(htx, || {})
        .await
        .map_err(|e| flow_err(dst, e))?;
    let changed = worker
        .await
        .map_err(|e| CmdError::Internal(format!("compare task: {e}")))??;
    let commit = Commit {
        snap: MetaSnap::clean(newest.gid).to_bytes().into(),
        uuid: Bytes::copy_from_slice(&vol.uuid()?.0),
        ..Default::default()
    };
    flow.commit(wire::frame(frame::Kind::Commit(commit)))
        .await
        .map_err(|e| flow_err(dst, e))?;
    tracing::info!(
        vol = %vol.name,
        "replicated {from} → {} to {dst} by hashes: {changed} bulks differed",
        newest.gid
    );
    Ok(())
}
