//! wlog receive (docs/formats.md §7.4): the `Proxy.WlogTransfer` service. Open → Accept | Reject
//! (`not-found`, `stopped`, `wlog-recv`, `no-space`: less free disk than the announced log) →
//! Chunk* (a wlog file) → Commit{clean MetaDiff} → Ack.
//! The chunks go to a temporary file; at Commit it is read back with every checksum verified
//! and converted to an indexed wdiff, which is registered durably before the Ack. Anything
//! else (an error, a stream without Commit, `stop force`) removes the temporary files and
//! leaves the volume as it was.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use walb_core::convert::wlog_records;
use walb_core::meta::{format_name, MetaDiff};
use walb_core::source::open_source;
use walb_core::wdiff::{Cmpr, Codec, IndexedWriter};
use walb_core::wlog::WlogReader;
use walb_core::{Pbs, Uuid};
use walb_daemon::limits::FlowGuard;
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

/// A file removed when dropped unless kept.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("temp file present")
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().expect("temp file present")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
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
    size_lb: u64,
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
        size_lb: o.size_lb,
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

async fn receive(
    proxy: Arc<Proxy>,
    flow: FlowGuard,
    mut input: Streaming<Frame>,
    tx: Events,
) -> Result<(), Status> {
    let open = flow.read_open(&mut input).await?;
    let ann = check_open(&open)?;
    if let Ok(v) = proxy.vol(&open.vol) {
        check_storage(&v, &flow)?;
    }
    let (guard, abort) = match begin(&proxy, &open.vol) {
        Ok(g) => g,
        Err(word) => {
            tracing::info!(vol = %open.vol, "wlog transfer rejected: {word}");
            return send(&tx, reject(word)).await;
        }
    };
    let vol = guard.0.clone();
    if let Some(need) = ann.max_bytes {
        let free = walb_daemon::disk::free_bytes(&vol.dir.dir)
            .map_err(|e| Status::internal(format!("statvfs {}: {e}", vol.dir.dir.display())))?;
        if free < need {
            tracing::warn!(vol = %vol.name, "wlog transfer rejected: {free} bytes free, {need} announced");
            return send(&tx, reject("no-space")).await;
        }
    }
    let tmp = TempFile(Some(vol.dir.temp_path("wlog")));
    let mut out = BufWriter::with_capacity(
        1 << 20,
        File::create(tmp.path())
            .map_err(|e| Status::internal(format!("create {}: {e}", tmp.path().display())))?,
    );
    send(&tx, accept()).await?;

    let mut bytes = 0u64;
    let diff = loop {
        let k = tokio::select! {
            k = next_frame(&mut input, "Chunk or Commit") => k?,
            _ = abort.notified() => return Err(Status::aborted(format!("{}: stopped by stop force", vol.name))),
        };
        match k {
            frame::Kind::Chunk(c) => {
                let data = check_chunk(&c).map_err(|e| Status::data_loss(e.to_string()))?;
                bytes += data.len() as u64;
                if let Some(max) = ann.max_bytes.filter(|&m| bytes > m) {
                    return Err(Status::invalid_argument(format!(
                        "wlog exceeds the announced {max} bytes"
                    )));
                }
                tokio::task::block_in_place(|| out.write_all(data)).map_err(|e| {
                    Status::internal(format!("write {}: {e}", tmp.path().display()))
                })?;
            }
            frame::Kind::Commit(c) => {
                let d = MetaDiff::from_bytes(&c.diff)
                    .map_err(|e| Status::invalid_argument(format!("Commit.diff: {e}")))?;
                if !d.is_clean() {
                    return Err(Status::invalid_argument(format!(
                        "Commit.diff {d} is dirty; wlog diffs must be clean"
                    )));
                }
                break d;
            }
            _ => {
                return Err(Status::invalid_argument(
                    "wlog transfer takes Chunk or Commit",
                ))
            }
        }
    };
    tokio::task::block_in_place(|| out.flush())
        .map_err(|e| Status::internal(format!("write {}: {e}", tmp.path().display())))?;
    drop(out);

    let name = format_name(&diff);
    let archives: Vec<String> = vol.lock().archives.keys().cloned().collect();
    let v = vol.clone();
    let size_lb = ann.size_lb;
    let stored = tokio::task::spawn_blocking(move || -> Result<bool, Status> {
        let wdiff = TempFile(Some(v.dir.temp_path("wdiff")));
        convert(tmp.path(), wdiff.path(), &ann)?;
        drop(tmp);
        let fresh = v
            .dir
            .register(&wdiff.keep(), &name, &archives)
            .map_err(|e| Status::internal(e.to_string()))?;
        if size_lb
            > v.dir
                .size_lb()
                .map_err(|e| Status::internal(e.to_string()))?
        {
            v.dir
                .set_size_lb(size_lb)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(fresh)
    })
    .await
    .map_err(|e| Status::internal(format!("convert task: {e}")))??;
    if stored {
        tracing::debug!(vol = %vol.name, "received {diff} ({bytes} bytes of wlog)");
        walb_daemon::transfers::record_diff("received wlogs", &vol.name, bytes, &diff);
        proxy.on_received(&vol, bytes);
    } else {
        tracing::info!(vol = %vol.name, "{diff} is already held; not queued again");
    }
    drop(guard);
    send(&tx, ack()).await
}

/// Reads the wlog at `src` (every pack and record checksum verified, header as announced) and
/// writes it as an indexed wdiff to `dst`, fsynced.
fn convert(src: &Path, dst: &Path, ann: &Announce) -> Result<(), Status> {
    let bad = |e: walb_core::Error| Status::invalid_argument(format!("received wlog: {e}"));
    let r = WlogReader::new(open_source(src).map_err(bad)?).map_err(bad)?;
    let h = r.header();
    if h.uuid != ann.uuid || h.pbs != ann.pbs || h.salt != ann.salt {
        return Err(Status::invalid_argument(format!(
            "received wlog header (uuid {}, pbs {}, salt {:#x}) differs from Open (uuid {}, pbs {}, salt {:#x})",
            h.uuid, h.pbs, h.salt, ann.uuid, ann.pbs, ann.salt
        )));
    }
    let f = File::create(dst)
        .map_err(|e| Status::internal(format!("create {}: {e}", dst.display())))?;
    let mut w = IndexedWriter::new(BufWriter::with_capacity(1 << 20, f), ann.uuid, STORE_CMPR)
        .map_err(|e| Status::internal(e.to_string()))?;
    wlog_records(vec![r], |rec| w.add(rec)).map_err(bad)?;
    let f = w
        .finish()
        .map_err(|e| Status::internal(e.to_string()))?
        .into_inner()
        .map_err(|e| Status::internal(format!("write {}: {e}", dst.display())))?;
    f.sync_all()
        .map_err(|e| Status::internal(format!("fsync {}: {e}", dst.display())))
}
