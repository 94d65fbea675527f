//! The data services: full sync (docs/formats.md §7.2) and wdiff transfer (§7.5) over our frames
//! (hash sync, §7.3, is in `hashsync`).
//! Open → Accept | Reject(word) → Bulk*/Chunk* → Commit → Ack; Ack is sent only after the data
//! and the metadata are durable. Anything else (an error, a stream that ends without Commit)
//! removes the temporary file and leaves the volume as it was.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use walb_core::meta::{self, MetaDiff, MetaSnap, MetaState, Relation};
use walb_core::{Uuid, LBS};
use walb_proto::archive_server::Archive as ArchiveSvc;
use walb_proto::bulk::decode;
use walb_proto::flow::next_frame;
use walb_proto::wire::{accept, ack, reject};
use walb_proto::{frame, Event, Frame, HashEvent, Open};

use crate::archive::{Archive, Transient};
use crate::flow::{
    admit, blocking, cmd_status, fits, from_archive, internal, receive_chunks, uuid_of, Decision,
    WdiffCheck,
};
use crate::volume::{State, Vol};
use walb_core::atomic::TempFile;

type Events = mpsc::Sender<Result<Event, Status>>;

pub struct Service(pub Arc<Archive>);

/// Admits data flow `name` (`Service.Method`: the caller's role, its count of running flows)
/// and runs it in its own task from its Open (whose host type must be the caller's role); its
/// events (and a final error status) go to the client.
pub(crate) fn spawn_flow<T, F, Fut>(
    arc: Arc<Archive>,
    name: &str,
    req: Request<Streaming<Frame>>,
    flow: F,
) -> Result<Response<ReceiverStream<Result<T, Status>>>, Status>
where
    T: Send + 'static,
    F: FnOnce(Arc<Archive>, Open, Streaming<Frame>, mpsc::Sender<Result<T, Status>>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    let guard = walb_daemon::limits::admit_flow(name, &req)?;
    let mut input = req.into_inner();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let id = arc.id.clone();
        let run = async {
            let open = guard.read_open(&mut input).await?;
            crate::owner::check(&arc, &guard, &open)?;
            flow(arc, open, input, tx.clone()).await
        };
        // The guard counts the flow against its peer until it ends.
        let result = run.await;
        drop(guard);
        if let Err(st) = result {
            if matches!(st.code(), tonic::Code::Internal | tonic::Code::DataLoss) {
                tracing::error!("data flow failed: {}", st.message());
            } else {
                tracing::warn!("data flow failed: {}", st.message());
            }
            // The sender's operator learns which server failed, and why.
            let st = Status::new(st.code(), format!("{id}: {}", st.message()));
            let _ = tx.send(Err(st)).await;
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

#[tonic::async_trait]
impl ArchiveSvc for Service {
    type WdiffTransferStream = ReceiverStream<Result<Event, Status>>;
    type FullSyncStream = ReceiverStream<Result<Event, Status>>;
    type HashSyncStream = ReceiverStream<Result<HashEvent, Status>>;

    async fn hash_sync(
        &self,
        req: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::HashSyncStream>, Status> {
        spawn_flow(
            self.0.clone(),
            "Archive.HashSync",
            req,
            crate::hashsync::hash_sync_flow,
        )
    }

    async fn wdiff_transfer(
        &self,
        req: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::WdiffTransferStream>, Status> {
        spawn_flow(self.0.clone(), "Archive.WdiffTransfer", req, wdiff_flow)
    }

    async fn full_sync(
        &self,
        req: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::FullSyncStream>, Status> {
        spawn_flow(self.0.clone(), "Archive.FullSync", req, full_sync_flow)
    }
}

async fn send(tx: &Events, ev: Event) -> Result<(), Status> {
    tx.send(Ok(ev))
        .await
        .map_err(|_| Status::cancelled("the sender went away"))
}

async fn send_reject(a: &Archive, tx: &Events, vol: &str, reason: &str) -> Result<(), Status> {
    tracing::info!(vol, "data flow rejected: {reason}");
    a.count_rejection(vol, reason);
    send(tx, reject(reason)).await
}

// ---- wdiff transfer ----

/// The checks of a wdiff transfer once the volume exists and is idle.
fn decide_wdiff(
    a: &Archive,
    vol: &Vol,
    open: &Open,
    uuid: &Uuid,
    diff: &MetaDiff,
) -> Result<Decision, Status> {
    if vol.state().map_err(cmd_status)? != State::Archived {
        return Ok(Err("stopped"));
    }
    if open.host_type == "proxy" && *uuid != vol.uuid().map_err(cmd_status)? {
        return Ok(Err("different-uuid"));
    }
    if !fits(a, vol, open.size_lb)? {
        return Ok(Err("smaller-lv-size"));
    }
    if let Some(word) = relation_word(vol, diff)? {
        return Ok(Err(word));
    }
    Ok(Ok(Transient::WdiffRecv))
}

/// The rejection for a diff that is not applicable to the latest snapshot.
fn relation_word(vol: &Vol, diff: &MetaDiff) -> Result<Option<&'static str>, Status> {
    let latest = vol.latest().map_err(cmd_status)?;
    Ok(match meta::relation(&latest, diff) {
        Relation::Applicable => None,
        Relation::TooOld => Some("too-old-diff"),
        Relation::TooNew => Some("too-new-diff"),
        Relation::NotApplicable if diff.snap_b.gid_b < latest.gid_b => Some("too-old-diff"),
        Relation::NotApplicable => Some("too-new-diff"),
    })
}

/// A wdiff transfer: one diff, or a chain of diffs of one volume from one sender each
/// opened right after the previous one's Commit (replication, docs/formats.md §7.5); each is
/// answered Accept|Reject … Ack in turn. A rejection ends the stream.
async fn wdiff_flow(
    a: Arc<Archive>,
    mut open: Open,
    mut input: Streaming<Frame>,
    tx: Events,
) -> Result<(), Status> {
    loop {
        if !receive_wdiff(&a, &open, &mut input, &tx).await? {
            return Ok(());
        }
        match walb_daemon::limits::next_open(&mut input).await? {
            None => return Ok(()),
            Some(next) if next.vol == open.vol && next.host_type == open.host_type => open = next,
            Some(_) => return Err(Status::invalid_argument(
                "a wdiff transfer goes on with the Open of the same volume's next diff, or ends",
            )),
        }
    }
}

/// Receives the diff `open` announces, through its Ack; false when it was rejected.
async fn receive_wdiff(
    a: &Arc<Archive>,
    open: &Open,
    input: &mut Streaming<Frame>,
    tx: &Events,
) -> Result<bool, Status> {
    let reject = |word| async move { send_reject(a, tx, &open.vol, word).await.map(|()| false) };
    if walb_daemon::volfile::check_vol_name(&open.vol).is_err() {
        return reject("archive-not-found").await;
    }
    let uuid = uuid_of(&open.uuid)?;
    let diff = MetaDiff::from_bytes(&open.diff)
        .map_err(|e| Status::invalid_argument(format!("Open.diff: {e}")))?;
    let vol = a.vol(&open.vol);
    // A diff's size is known only once it arrives: the floor alone is checked.
    let admitted = admit(a, &vol, 0, || decide_wdiff(a, &vol, open, &uuid, &diff)).await?;
    let entry = a.entry(&vol.name);
    let transient = match admitted {
        Ok(g) => g,
        Err(word) => return reject(word).await,
    };
    send(tx, accept()).await?;
    tracing::debug!(vol = %vol.name, "receiving wdiff {diff}");

    let tmp = TempFile::create(vol.temp_path("wdiff")).map_err(cmd_status)?;
    let size_lb = vol.size_lb().map_err(cmd_status)?;
    let check = WdiffCheck::start(uuid, size_lb);
    let (_, tmp, off) = receive_chunks(
        a,
        &entry,
        &vol.name,
        input,
        tmp,
        0,
        "wdiff transfer",
        Some(check),
    )
    .await?;
    let tmp = blocking(move || {
        tmp.file.sync_all().map_err(internal)?;
        Ok(tmp)
    })
    .await?;

    let commit = {
        let lock = a.lock(&vol.name).await;
        let a2 = a.clone();
        let name = vol.name.clone();
        blocking(move || {
            let _lock = lock;
            let vol = a2.vol(&name);
            // Nothing else registers diffs while WdiffRecv runs, but apply and merge may have
            // run: the relation is checked again against the latest snapshot.
            if let Some(word) = relation_word(&vol, &diff)? {
                return Ok(Some(word));
            }
            vol.add_diff(tmp, &diff).map_err(cmd_status)?;
            a2.refresh_metrics(&vol);
            Ok(None)
        })
        .await?
    };
    // The flow is over before the sender learns it, so its next transfer is not refused.
    drop(transient);
    if let Some(word) = commit {
        return reject(word).await;
    }
    tracing::debug!(vol = %vol.name, "registered wdiff {diff} ({off} bytes)");
    walb_daemon::transfers::record_diff("registered wdiffs", &vol.name, off, &diff);
    a.note_restorable(&vol.name, &diff);
    send(tx, ack()).await.map(|()| true)
}

// ---- full sync ----

/// Waits for one bulk write of a full sync; its error (or panic) ends the flow.
async fn join_write(writes: &mut tokio::task::JoinSet<Result<(), Status>>) -> Result<(), Status> {
    match writes.join_next().await {
        Some(r) => r.map_err(|e| Status::internal(format!("bulk write task: {e}")))?,
        None => Ok(()),
    }
}

async fn full_sync_flow(
    a: Arc<Archive>,
    open: Open,
    mut input: Streaming<Frame>,
    tx: Events,
) -> Result<(), Status> {
    let from_archive = from_archive(&open);
    if walb_daemon::volfile::check_vol_name(&open.vol).is_err() {
        return send_reject(&a, &tx, &open.vol, "archive-not-found").await;
    }
    let uuid = uuid_of(&open.uuid)?;
    if open.size_lb == 0 || open.bulk_lb == 0 {
        return Err(Status::invalid_argument(
            "size_lb and bulk_lb must be positive",
        ));
    }
    let vol = a.vol(&open.vol);
    // The whole image may be written (less where bulks are all zero).
    let admitted = admit(&a, &vol, open.size_lb * LBS as u64, || {
        Ok(match vol.state().map_err(cmd_status)? {
            State::SyncReady => Ok(Transient::FullSync),
            State::Archived => Err("archived"),
            State::Stopped => Err("stopped"),
        })
    })
    .await?;
    let entry = a.entry(&vol.name);
    let transient = match admitted {
        Ok(g) => g,
        Err(word) => return send_reject(&a, &tx, &vol.name, word).await,
    };
    let size = open.size_lb * LBS as u64;
    let tmp = TempFile::create(vol.temp_path("fullsync")).map_err(cmd_status)?;
    tmp.file.set_len(size).map_err(internal)?;
    let tmp = Arc::new(tmp);
    send(&tx, accept()).await?;
    tracing::info!(vol = %vol.name, size_lb = open.size_lb, "full sync started");

    let mut writes = tokio::task::JoinSet::new();
    let workers = a.bulk.workers();
    let (snap, lineage) = loop {
        let next = tokio::select! {
            f = next_frame(&mut input, "Bulk or Commit") => f?,
            _ = entry.aborted() => return Err(Status::aborted("the volume was stopped by force")),
        };
        match next {
            frame::Kind::Bulk(b) => {
                let end = b.lba.checked_add(b.blocks as u64);
                if b.blocks == 0 || end.is_none_or(|e| e > open.size_lb) {
                    return Err(Status::invalid_argument(format!(
                        "bulk at LB {} (+{}) outside the volume's {} LB",
                        b.lba, b.blocks, open.size_lb
                    )));
                }
                a.count_received(&vol.name, b.data.len());
                if b.data.is_empty() {
                    // All zero: the image is sparse.
                    continue;
                }
                // Decoded and written on the blocking pool, several bulks at once; a failure
                // ends the flow at the next bulk or at Commit.
                while writes.len() >= workers * 2 {
                    join_write(&mut writes).await?;
                }
                let t = tmp.clone();
                writes.spawn_blocking(move || {
                    let data = decode(&b)
                        .map_err(|e| Status::data_loss(e.to_string()))?
                        .expect("not empty");
                    t.file
                        .write_all_at(&data, b.lba * LBS as u64)
                        .map_err(internal)
                });
            }
            frame::Kind::Commit(c) => {
                while !writes.is_empty() {
                    join_write(&mut writes).await?;
                }
                // A replica keeps its source's lineage; a full backup starts a new one.
                let lineage = if from_archive {
                    uuid_of(&c.uuid)?
                } else {
                    Uuid::random()
                };
                break (
                    MetaSnap::from_bytes(&c.snap)
                        .map_err(|e| Status::invalid_argument(format!("Commit.snap: {e}")))?,
                    lineage,
                );
            }
            _ => return Err(Status::invalid_argument("full sync takes Bulk or Commit")),
        }
    };
    let tmp = Arc::into_inner(tmp).expect("no write in flight");
    let lock = a.lock(&vol.name).await;
    let a2 = a.clone();
    let name = vol.name.clone();
    let cur_time = open.cur_time;
    blocking(move || {
        let _lock = lock;
        let vol = a2.vol(&name);
        // The state file is the commit point: written last, after everything else is durable.
        vol.remove_diffs(&vol.diffs().map_err(cmd_status)?)
            .map_err(cmd_status)?;
        tmp.persist(&vol.image()).map_err(cmd_status)?;
        vol.set_base(&MetaState::new(snap, cur_time))
            .map_err(cmd_status)?;
        vol.set_archive_uuid(&lineage).map_err(cmd_status)?;
        vol.set_uuid(&uuid).map_err(cmd_status)?;
        vol.set_state(State::Archived).map_err(cmd_status)?;
        a2.refresh_metrics(&vol);
        Ok(())
    })
    .await?;
    drop(transient);
    tracing::info!(vol = %vol.name, "full sync done: base <{snap}>");
    send(&tx, ack()).await
}
