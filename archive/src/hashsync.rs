//! Hash sync (docs/formats.md §7.3), the archive side: the storage opens, the archive answers with
//! its latest snapshot S and streams one BLAKE3 hash per bulk of its virtual image at S, while the
//! storage streams back sorted-wdiff packs of the bulks that differ. At Commit{|gidB,gidE|, uuid}
//! the packs become the dirty diff `S → |gidB,gidE|` under the new WAL uuid; Ack once it is
//! registered. Anything else leaves the volume as it was.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use walb_core::bhash::each_bulk_hash;
use walb_core::meta::{MetaDiff, MetaSnap};
use walb_core::wdiff::header::FILE_HEADER_SIZE;
use walb_core::wdiff::sorted::end_pack;
use walb_core::wdiff::{FileHeader, Kind};
use walb_core::LBS;
use walb_proto::hashflow::HashBatcher;
use walb_proto::{hash_event, Accept, Ack, Frame, HashEvent, Open};

use crate::archive::{Archive, Transient};
use crate::flow::{
    admit, blocking, cmd_status, fits, from_archive, internal, receive_chunks, uuid_of,
    verify_wdiff,
};
use crate::image;
use crate::volume::State;
use walb_core::atomic::TempFile;

type HashEvents = mpsc::Sender<Result<HashEvent, Status>>;

fn ev(kind: hash_event::Kind) -> Result<HashEvent, Status> {
    Ok(HashEvent { kind: Some(kind) })
}

async fn send(tx: &HashEvents, kind: hash_event::Kind) -> Result<(), Status> {
    tx.send(ev(kind))
        .await
        .map_err(|_| Status::cancelled("the storage went away"))
}

pub async fn hash_sync_flow(
    a: Arc<Archive>,
    open: Open,
    mut input: Streaming<Frame>,
    tx: HashEvents,
) -> Result<(), Status> {
    // From an archive it is hash replication: the diff is a compared diff to a clean snapshot.
    let from_archive = from_archive(&open);
    if !(1..=8192).contains(&open.bulk_lb) || open.size_lb == 0 {
        return Err(Status::invalid_argument(format!(
            "bulk_lb {} must be 1 to 8192 and size_lb {} positive",
            open.bulk_lb, open.size_lb
        )));
    }
    let reject = |word: &'static str| {
        a.count_rejection(&open.vol, word);
        tracing::info!(vol = open.vol, "hash sync rejected: {word}");
        hash_event::Kind::Reject(word.into())
    };
    if walb_daemon::volfile::check_vol_name(&open.vol).is_err() {
        return send(&tx, reject("archive-not-found")).await;
    }
    let vol = a.vol(&open.vol);
    let admitted = admit(&a, &vol, 0, || {
        Ok(match vol.state().map_err(cmd_status)? {
            State::Archived if !fits(&a, &vol, open.size_lb)? => Err("smaller-lv-size"),
            State::Archived => Ok(Transient::HashSync),
            State::SyncReady => Err("sync-ready"),
            State::Stopped => Err("stopped"),
        })
    })
    .await?;
    let transient = match admitted {
        Ok(g) => g,
        Err(word) => return send(&tx, reject(word)).await,
    };
    let entry = a.entry(&vol.name);
    let base = vol.base().map_err(cmd_status)?;
    let chain = vol.chain(&base, None).map_err(cmd_status)?;
    let snap_from = vol.latest().map_err(cmd_status)?;
    send(&tx, hash_event::Kind::Accept(Accept {})).await?;
    send(&tx, hash_event::Kind::Snap(snap_from.to_bytes().into())).await?;
    tracing::info!(vol = %vol.name, "hash sync from {snap_from} started");

    let src = image::virtual_full(&vol, &chain).map_err(cmd_status)?;
    let bulk = open.bulk_lb as usize * LBS;
    let htx = tx.clone();
    let hasher = tokio::task::spawn_blocking(move || {
        let mut batcher = HashBatcher::new(bulk, |h| {
            htx.blocking_send(ev(hash_event::Kind::Hashes(h)))
                .map_err(|_| walb_core::Error::Invalid("the hash sync ended".into()))
        });
        each_bulk_hash(Box::new(src), bulk, |h| batcher.push(h.as_bytes()))?;
        batcher.finish()
    });

    // Packs follow a placeholder file header, written once the uuid is known.
    let tmp = TempFile::create(vol.temp_path("hashsync")).map_err(cmd_status)?;
    let off = FILE_HEADER_SIZE as u64;
    let (commit, tmp, off) = receive_chunks(
        &a,
        &entry,
        &vol.name,
        &mut input,
        tmp,
        off,
        "hash sync",
        None,
    )
    .await?;
    hasher
        .await
        .map_err(internal)?
        .map_err(|e| Status::internal(format!("hashing the image: {e}")))?;
    let uuid = uuid_of(&commit.uuid)?;
    let snap_e = MetaSnap::from_bytes(&commit.snap)
        .map_err(|e| Status::invalid_argument(format!("Commit.snap: {e}")))?;
    let expected_ok = if from_archive {
        snap_e.is_clean() && snap_e.gid_b > snap_from.gid_b
    } else {
        snap_e.gid_b.0 == snap_from.gid_e.0 + 1
    };
    if !expected_ok {
        return Err(Status::invalid_argument(format!(
            "Commit.snap {snap_e} does not follow {snap_from} for a hash sync from {}",
            open.host_type
        )));
    }
    let mut diff = MetaDiff::new(snap_from, snap_e)
        .map_err(|e| Status::invalid_argument(format!("hash sync diff: {e}")))?;
    diff.is_mergeable = !from_archive && !snap_from.is_clean();
    diff.is_comp_diff = from_archive;
    diff.timestamp = open.cur_time;
    let size_lb = vol.size_lb().map_err(cmd_status)?;
    let tmp = blocking(move || {
        let h = FileHeader {
            kind: Kind::Sorted,
            uuid,
        };
        tmp.file.write_all_at(&h.encode(), 0).map_err(internal)?;
        tmp.file
            .write_all_at(&end_pack()[..], off)
            .map_err(internal)?;
        tmp.file.sync_all().map_err(internal)?;
        verify_wdiff(&tmp.path, &uuid, size_lb)?;
        Ok(tmp)
    })
    .await?;
    let lock = a.lock(&vol.name).await;
    let a2 = a.clone();
    let name = vol.name.clone();
    blocking(move || {
        let _lock = lock;
        let vol = a2.vol(&name);
        // The uuid first: a crash before the diff is registered leaves log diffs of the new
        // WAL too new (kept by the proxy), never applied onto the old chain.
        vol.set_uuid(&uuid).map_err(cmd_status)?;
        vol.add_diff(tmp, &diff).map_err(cmd_status)?;
        a2.refresh_metrics(&vol);
        Ok(())
    })
    .await?;
    drop(transient);
    tracing::info!(vol = %vol.name, "hash sync done: {diff} ({off} bytes)");
    a.note_restorable(&vol.name, &diff);
    send(&tx, hash_event::Kind::Ack(Ack {})).await
}
