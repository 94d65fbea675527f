//! wlog receive (docs/formats.md §7.4): the `Proxy.WlogTransfer` service. Open → Accept | Reject
//! (`not-found`, `stopped`, `wlog-recv`, `no-space`: less free disk than the announced log) →
//! Chunk* (a wlog file) → Commit{clean MetaDiff} → Ack, then another Open of the same volume
//! (the next wlog, sent before this Ack came) or the end of the stream.
//! The wlog is converted as it arrives: a thread parses the chunks (every pack and record
//! checksum verified) and writes the indexed wdiff, so no byte of the wlog is written to disk.
//! At Commit the wdiff is made durable and registered before the Ack. Anything else (an
//! error, a stream without Commit, `stop force`) removes the temporary file and leaves the
//! volume as it was.

use std::sync::Arc;

use bytes::Bytes;

use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use walb_core::atomic::AtomicFile;
use walb_core::convert::wlog_records;
use walb_core::meta::{format_name, MetaDiff};
use walb_core::source::ChunkSource;
use walb_core::wdiff::{Cmpr, Codec, IndexedWriter};
use walb_core::wlog::WlogReader;
use walb_core::{Pbs, Uuid};
use walb_daemon::chunks::{ChunkThread, Stop};
use walb_daemon::limits::FlowGuard;
use walb_daemon::CmdError;
use walb_proto::flow::next_frame;
use walb_proto::proxy_server::Proxy as ProxySvc;
use walb_proto::wire::{accept, ack, check_chunk, reject};
use walb_proto::{frame, Event, Frame, Open};

use crate::proxy::Proxy;
use crate::volume::{State, Vol};

type Events = mpsc::Sender<Result<Event, Status>>;

/// How received diffs are stored: cheap to compress, still much smaller than raw.
const STORE_CMPR: Cmpr = Cmpr {
    codec: Codec::Zstd,
    level: 1,
};

pub struct Service(pub Arc<Proxy>);

#[tonic::async_trait]
impl ProxySvc for Service {
    type WlogTransferStream = ReceiverStream<Result<Event, Status>>;

    async fn wlog_transfer(
        &self,
        req: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::WlogTransferStream>, Status> {
        let flow = walb_daemon::limits::admit_flow("Proxy.WlogTransfer", &req)?;
        let (tx, rx) = mpsc::channel(4);
        let proxy = self.0.clone();
        let input = req.into_inner();
        tokio::spawn(async move {
            if let Err(st) = receive(proxy, flow, input, tx.clone()).await {
                tracing::warn!("wlog transfer failed: {}", st.message());
                let _ = tx.send(Err(st)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// WlogRecv for the duration of one transfer; back to Started when it ends, however it ends.
struct RecvGuard(Arc<Vol>);

impl Drop for RecvGuard {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        if st.state == State::WlogRecv {
            st.state = State::Started;
        }
        st.abort_recv = None;
    }
}

/// Started → WlogRecv, or the rejection word.
fn begin(proxy: &Proxy, vol: &str) -> Result<(RecvGuard, Arc<Notify>), &'static str> {
    let v = proxy.vol(vol).map_err(|_| "not-found")?;
    let mut st = v.lock();
    match st.state {
        State::Started => {}
        State::WlogRecv => return Err("wlog-recv"),
        _ => return Err("stopped"),
    }
    st.state = State::WlogRecv;
    let abort = Arc::new(Notify::new());
    st.abort_recv = Some(abort.clone());
    drop(st);
    Ok((RecvGuard(v), abort))
}

async fn send(tx: &Events, e: Event) -> Result<(), Status> {
    tx.send(Ok(e))
        .await
        .map_err(|_| Status::cancelled("the storage went away"))
}

/// What Open announced.
struct Announce {
    uuid: Uuid,
    pbs: Pbs,
    salt: u32,
    /// Largest acceptable wlog file (header, logs, end header), when announced.
    max_bytes: Option<u64>,
}

fn check_open(o: &Open) -> Result<Announce, Status> {
    let uuid: [u8; 16] = o.uuid.as_ref().try_into().map_err(|_| {
        Status::invalid_argument(format!("uuid must be 16 bytes, got {}", o.uuid.len()))
    })?;
    let pbs = Pbs::new(o.pbs)
        .ok_or_else(|| Status::invalid_argument(format!("pbs {} is not 512 or 4096", o.pbs)))?;
    let max_bytes = (o.max_log_pb > 0).then(|| {
        walb_core::wlog::header::WLOG_HEADER_SIZE as u64
            + o.max_log_pb
                .saturating_add(1)
                .saturating_mul(pbs.bytes() as u64)
    });
    Ok(Announce {
        uuid: Uuid(uuid),
        pbs,
        salt: o.salt,
        max_bytes,
    })
}

/// With TLS, a volume takes wlogs from one storage: the first to ship it after `start` (its
/// certificate's id is kept); another storage is refused.
fn check_storage(vol: &Vol, flow: &FlowGuard) -> Result<(), Status> {
    match flow.other_owner(&vol.dir.storage_file())? {
        None => Ok(()),
        Some(owner) => {
            tracing::warn!(vol = %vol.name, peer = %flow.peer, "wlog transfer denied: the volume takes wlogs from storage {owner}");
            Err(Status::permission_denied(format!(
                "{}: volume {} takes wlogs from storage {owner} (until the proxy's next start)",
                flow.peer, vol.name
            )))
        }
    }
}

/// The transfers of one stream: after each Ack the storage may send the next wlog of the
/// same volume (another Open) or end the stream; a rejection ends it.
async fn receive(
    proxy: Arc<Proxy>,
    flow: FlowGuard,
    mut input: Streaming<Frame>,
    tx: Events,
) -> Result<(), Status> {
    let mut open = flow.read_open(&mut input).await?;
    while receive_wlog(&proxy, &flow, &mut input, &tx, &open).await? {
        match flow.read_next_open(&mut input).await? {
            None => break,
            Some(next) if next.vol == open.vol => open = next,
            Some(next) => {
                return Err(Status::invalid_argument(format!(
                    "a stream carries the wlogs of one volume: {} after {}",
                    next.vol, open.vol
                )))
            }
        }
    }
    Ok(())
}

/// One wlog: Accept, chunks, Commit, the diff registered, Ack; false when it was refused.
async fn receive_wlog(
    proxy: &Arc<Proxy>,
    flow: &FlowGuard,
    input: &mut Streaming<Frame>,
    tx: &Events,
    open: &Open,
) -> Result<bool, Status> {
    let ann = check_open(open)?;
    if let Ok(v) = proxy.vol(&open.vol) {
        check_storage(&v, flow)?;
    }
    let (guard, abort) = match begin(proxy, &open.vol) {
        Ok(g) => g,
        Err(word) => {
            tracing::info!(vol = %open.vol, "wlog transfer rejected: {word}");
            return send(tx, reject(word)).await.map(|()| false);
        }
    };
    let vol = guard.0.clone();
    if let Some(need) = ann.max_bytes {
        let free = walb_daemon::disk::free_bytes(&vol.dir.dir)
            .map_err(|e| Status::internal(format!("statvfs {}: {e}", vol.dir.dir.display())))?;
        if free < need {
            tracing::warn!(vol = %vol.name, "wlog transfer rejected: {free} bytes free, {need} announced");
            return send(tx, reject("no-space")).await.map(|()| false);
        }
    }
    let file = tokio::task::block_in_place(|| vol.dir.incoming()).map_err(CmdError::from)?;
    let max_bytes = ann.max_bytes;
    let converter = ChunkThread::spawn("the wlog converter", move |rx| convert(rx, file, &ann));
    send(tx, accept()).await?;

    // However the chunks end (Commit, an error, stop force), the converter is told the input
    // ended (its channel closed) and waited for, so no file of this transfer outlives it
    // unregistered.
    let received = receive_chunks(input, &abort, &vol.name, max_bytes, &converter).await;
    let ((diff, bytes), file) = converter.join(received).await?;

    let name = format_name(&diff);
    let archives: Vec<String> = vol.lock().archives.keys().cloned().collect();
    let size_lb = open.size_lb;
    let stored = tokio::task::block_in_place(|| -> Result<bool, CmdError> {
        let fresh = vol.dir.register(file, &name, &archives)?;
        if size_lb > vol.dir.size_lb()? {
            vol.dir.set_size_lb(size_lb)?;
        }
        Ok(fresh)
    })
    .map_err(Status::from)?;
    if stored {
        tracing::debug!(vol = %vol.name, "received {diff} ({bytes} bytes of wlog)");
        walb_daemon::transfers::record_diff("received wlogs", &vol.name, bytes, &diff);
        proxy.on_received(&vol, bytes);
    } else {
        tracing::info!(vol = %vol.name, "{diff} is already held; not queued again");
    }
    drop(guard);
    send(tx, ack()).await.map(|()| true)
}

/// Passes the wlog's chunks to the converter until Commit; returns the Commit's clean diff
/// and the wlog's size.
async fn receive_chunks(
    input: &mut Streaming<Frame>,
    abort: &Notify,
    vol: &str,
    max_bytes: Option<u64>,
    converter: &ChunkThread<AtomicFile>,
) -> Result<(MetaDiff, u64), Stop> {
    let mut bytes = 0u64;
    loop {
        let k = tokio::select! {
            k = next_frame(input, "Chunk or Commit") => k?,
            _ = abort.notified() => return Err(Status::aborted(format!("{vol}: stopped by stop force")).into()),
        };
        match k {
            frame::Kind::Chunk(c) => {
                let data = check_chunk(&c).map_err(|e| Status::data_loss(e.to_string()))?;
                bytes += data.len() as u64;
                if let Some(max) = max_bytes.filter(|&m| bytes > m) {
                    return Err(Status::invalid_argument(format!(
                        "wlog exceeds the announced {max} bytes"
                    ))
                    .into());
                }
                converter.send(data.clone()).await?;
            }
            frame::Kind::Commit(c) => {
                let d = MetaDiff::from_bytes(&c.diff)
                    .map_err(|e| Status::invalid_argument(format!("Commit.diff: {e}")))?;
                if !d.is_clean() {
                    return Err(Status::invalid_argument(format!(
                        "Commit.diff {d} is dirty; wlog diffs must be clean"
                    ))
                    .into());
                }
                return Ok((d, bytes));
            }
            _ => {
                return Err(Status::invalid_argument("wlog transfer takes Chunk or Commit").into())
            }
        }
    }
}

/// Parses the wlog arriving on `chunks` (every pack and record checksum verified, header as
/// announced) and writes it as an indexed wdiff into `file`, until the input ends. The file is
/// not yet durable: `register` makes it so.
fn convert(
    mut chunks: mpsc::Receiver<Bytes>,
    file: AtomicFile,
    ann: &Announce,
) -> Result<AtomicFile, Status> {
    let bad = |e: walb_core::Error| Status::invalid_argument(format!("received wlog: {e}"));
    let src = ChunkSource::new(std::iter::from_fn(move || chunks.blocking_recv()));
    let r = WlogReader::new(Box::new(src)).map_err(bad)?;
    let h = r.header();
    if h.uuid != ann.uuid || h.pbs != ann.pbs || h.salt != ann.salt {
        return Err(Status::invalid_argument(format!(
            "received wlog header (uuid {}, pbs {}, salt {:#x}) differs from Open (uuid {}, pbs {}, salt {:#x})",
            h.uuid, h.pbs, h.salt, ann.uuid, ann.pbs, ann.salt
        )));
    }
    let mut w = IndexedWriter::new(file, ann.uuid, STORE_CMPR).map_err(internal)?;
    wlog_records(vec![r], |rec| w.add(rec)).map_err(|e| match e {
        walb_core::Error::Io { .. } => internal(e),
        e => bad(e),
    })?;
    w.finish().map_err(internal)
}

fn internal(e: walb_core::Error) -> Status {
    Status::internal(e.to_string())
}
