//! Full backup (docs/formats.md §7.2): reset the WAL, stream every bulk of the live
//! device to the primary archive (zero bulks empty, others encoded per `--bulk-cmpr` on several
//! threads), then take the explicit snapshot that ends it; the volume goes to Target.

use bytes::Bytes;
use tokio::sync::mpsc;
use walb_core::meta::MetaSnap;
use walb_core::LBS;
use walb_daemon::args::BulkArgs;
use walb_daemon::{CmdError, CmdResult};
use walb_proto::archive_client::ArchiveClient;
use walb_proto::bulk::encode_ordered;
use walb_proto::{frame, wire, Commit, Frame, Open};

use std::sync::Arc;

use crate::record::now;
use crate::scan::Scan;
use crate::storage::Storage;
use crate::vol::{save, zero_done, State, Vol};
use walb_proto::flow::{Flow, FlowError};

/// Runs a full backup of `vol` with bulks of `bulk_lb`; returns the snapshot's gid.
pub async fn full_backup(st: &Storage, vol: &Vol, bulk_lb: u32) -> CmdResult<u64> {
    vol.backup(State::FullSync, "full-bkp", |wdev| async move {
        run(st, vol, &wdev, bulk_lb).await
    })
    .await
}

async fn run(st: &Storage, vol: &Vol, wdev: &str, bulk_lb: u32) -> CmdResult<u64> {
    st.wdevd.reset_wal(wdev).await?;
    {
        let mut m = vol.meta.lock().await;
        m.done = zero_done();
        m.queue.clear();
        save(&vol.dir, &m)?;
    }
    let dev = st.wdevd.status(wdev).await?;
    let uuid: walb_core::Uuid = dev
        .uuid
        .parse()
        .map_err(|e| CmdError::Internal(format!("wdevd uuid: {e}")))?;
    let open = Open {
        vol: vol.name.clone(),
        host_type: "storage".into(),
        uuid: Bytes::copy_from_slice(&uuid.0),
        pbs: dev.pbs,
        size_lb: dev.size_lb,
        bulk_lb,
        cur_time: now(),
        ..Default::default()
    };
    let ch = wire::connect(&st.archive)
        .await
        .map_err(|e| CmdError::Internal(e.to_string()))?;
    let mut client = walb_proto::sized!(ArchiveClient::new(ch));
    let t0 = std::time::Instant::now();
    let mut flow = Flow::open(wire::frame(frame::Kind::Open(open)), |s| {
        client.full_sync(s)
    })
    .await
    .map_err(flow_err)?;
    let file = st.wdevd.ddev_path(wdev).await?;
    let (tx, mut rx) = mpsc::channel::<CmdResult<Frame>>(4);
    let size_lb = dev.size_lb;
    let (scan, _guard) = vol.scan.begin(Scan::new(
        "full-backup",
        size_lb * LBS as u64,
        st.scan_bps.clone(),
    ));
    let bulk = st.bulk;
    let reader =
        tokio::task::spawn_blocking(move || read_bulks(&file, size_lb, bulk_lb, scan, bulk, tx));
    let mut sent = 0u64;
    while let Some(f) = rx.recv().await {
        let f = f?;
        if let Some(frame::Kind::Bulk(b)) = &f.kind {
            sent += b.blocks as u64 * LBS as u64;
            st.metrics.scan_bytes.set(&[("vol", &vol.name)], sent);
        }
        flow.send(f).await.map_err(flow_err)?;
    }
    reader
        .await
        .map_err(|e| CmdError::Internal(format!("reader task: {e}")))?;
    // The snapshot ends the dirty image: logs up to it make it clean.
    let gid = st.explicit_snapshot(vol).await?.gid.0;
    let snap = MetaSnap::new(walb_core::Gid(0), walb_core::Gid(gid))?;
    flow.commit(wire::frame(frame::Kind::Commit(Commit {
        snap: snap.to_bytes().into(),
        ..Default::default()
    })))
    .await
    .map_err(flow_err)?;
    st.metrics.all.transfer("full-sync", t0.elapsed());
    tracing::info!(vol = vol.name, "full backup done: {sent} bytes, gid {gid}");
    Ok(gid)
}

fn flow_err(e: FlowError) -> CmdError {
    match e {
        FlowError::Rejected(r) => CmdError::State(format!("archive refused the full backup: {r}")),
        FlowError::Transport(t) => CmdError::Internal(format!("full backup to the archive: {t}")),
    }
}

/// Turns the device's bulks into frames (zero bulks empty, others encoded on `bulk`'s
/// threads, in order).
fn read_bulks(
    path: &std::path::Path,
    size_lb: u64,
    bulk_lb: u32,
    scan: Arc<Scan>,
    bulk: BulkArgs,
    tx: mpsc::Sender<CmdResult<Frame>>,
) {
    let input = crate::scan::read_bulks(path.to_path_buf(), size_lb, bulk_lb, scan)
        .into_iter()
        .map(|b| b.map(|b| (b.lba, b.data)));
    encode_ordered(input, bulk.bulk_cmpr, bulk.workers(), |b| {
        let frame = b.map(|b| wire::frame(frame::Kind::Bulk(b)));
        let failed = frame.is_err();
        tx.blocking_send(frame).is_ok() && !failed
    });
}
