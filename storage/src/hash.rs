//! Hash backup (docs/formats.md §7.3), the storage side: the archive names its latest snapshot S
//! and streams a BLAKE3 hash per bulk of its image at S; the WAL is reset (done = S.gidE + 1), each
//! bulk of the live device is read and hashed, and the bulks that differ go back as sorted-wdiff
//! packs; an explicit snapshot ends it. The archive then holds the dirty diff S → |gidB,gidE|,
//! clean once the logs up to gidE arrive. The volume goes to Target.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;
use walb_core::meta::{MetaLsidGid, MetaSnap};
use walb_core::wdiff::hashdiff::{diff_against_hashes, ImageBulk};
use walb_core::wdiff::{Cmpr, Codec};
use walb_core::{Gid, Lsid};
use walb_daemon::{CmdError, CmdResult};
use walb_proto::archive_client::ArchiveClient;
use walb_proto::flow::FlowError;
use walb_proto::hashflow::{hash_batches, send_chunks_blocking, HashBatches, HashFlow};
use walb_proto::{frame, wire, Commit, Frame, Open};

use crate::record::now;
use crate::scan::Scan;
use crate::storage::Storage;
use crate::vol::{save, State, Vol};

/// Runs a hash backup of `vol` with bulks of `bulk_lb`; returns the snapshot's gid.
pub async fn hash_backup(st: &Storage, vol: &Vol, bulk_lb: u32) -> CmdResult<u64> {
    vol.backup(State::HashSync, "hash-bkp", |wdev| async move {
        run(st, vol, &wdev, bulk_lb).await
    })
    .await
}

fn flow_err(e: FlowError) -> CmdError {
    match e {
        FlowError::Rejected(w) => {
            CmdError::State(format!("the archive refused the hash backup: {w}"))
        }
        FlowError::Transport(t) => CmdError::Internal(format!("hash backup with the archive: {t}")),
    }
}

async fn run(st: &Storage, vol: &Vol, wdev: &str, bulk_lb: u32) -> CmdResult<u64> {
    let dev = st.wdevd.status(wdev).await?;
    let ch = wire::connect(&st.archive)
        .await
        .map_err(|e| flow_err(FlowError::Transport(e.to_string())))?;
    let mut client = walb_proto::sized!(ArchiveClient::new(ch));
    let open = Open {
        vol: vol.name.clone(),
        host_type: "storage".into(),
        pbs: dev.pbs,
        size_lb: dev.size_lb,
        bulk_lb,
        cur_time: now(),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let (mut flow, snap) = HashFlow::open(wire::frame(frame::Kind::Open(open)), |s| {
        client.hash_sync(s)
    })
    .await
    .map_err(flow_err)?;
    let snap_from = MetaSnap::from_bytes(&snap)?;
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

    let (htx, hrx) = hash_batches();
    let file = st.wdevd.ddev_path(wdev).await?;
    let ftx = flow.tx.clone();
    let size_lb = dev.size_lb;
    let (scan, _guard) = vol.scan.begin(Scan::new(
        "hash-backup",
        size_lb * walb_core::LBS as u64,
        st.scan_bps.clone(),
    ));
    let progress = scan.clone();
    let worker =
        tokio::task::spawn_blocking(move || compare(file, size_lb, bulk_lb, scan, hrx, ftx));
    flow.forward_hashes(htx, || {
        st.metrics
            .scan_bytes
            .set(&[("vol", &vol.name)], progress.progress.done())
    })
    .await
    .map_err(flow_err)?;
    let (changed, sent) = worker
        .await
        .map_err(|e| CmdError::Internal(format!("compare task: {e}")))??;
    let gid_e = st.explicit_snapshot(vol).await?.gid.0;
    let commit = Commit {
        snap: MetaSnap::new(Gid(gid_b), Gid(gid_e))?.to_bytes().into(),
        uuid: Bytes::copy_from_slice(&uuid.0),
        ..Default::default()
    };
    flow.commit(wire::frame(frame::Kind::Commit(commit)))
        .await
        .map_err(flow_err)?;
    st.metrics.all.transfer("hash-sync", t0.elapsed());
    let secs = progress.progress.started.elapsed().as_secs_f64();
    tracing::info!(
        vol = vol.name,
        "hash backup done: {changed} bulks differed, {sent} bytes sent, gid {gid_b}..{gid_e}; scanned {} MB in {secs:.2} s ({:.0} MB/s)",
        progress.progress.total / 1_000_000,
        progress.progress.total as f64 / 1e6 / secs.max(1e-3)
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
    hashes: HashBatches,
    tx: mpsc::Sender<Frame>,
) -> CmdResult<(u64, u64)> {
    let mut sent = 0u64;
    let mut send = |p: walb_core::wdiff::sorted::EncodedPack| -> walb_core::Result<()> {
        let b = Bytes::from(p.to_bytes());
        sent += b.len() as u64;
        send_chunks_blocking(&tx, b).map_err(|e| walb_core::Error::Invalid(e.to_string()))
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
    let changed = diff_against_hashes(bulks, hashes, Cmpr::new(Codec::Zstd, 1), &mut send)?;
    Ok((changed, sent))
}
