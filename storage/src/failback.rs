//! Failback (docs/recovery.md), the storage side: a hash sync in reverse (walb.proto
//! `Storage.Failback`). walbc runs where the promoted image is and opens; the volume must be
//! Target, Stopped or SyncReady, the device as large as the image and not in use (its loop
//! device is opened exclusively, so a mounted device is refused); a refusal changes nothing.
//! The volume is then taken to SyncReady (as `stop` and `reset-vol` do), the WAL is reset
//! (everything older reaches the data device), then one BLAKE3 per bulk of the data device
//! goes back while walbc sends sorted-wdiff packs of the bulks where the image differs; they
//! are kept in a temporary file.
//! At Commit they are read back with every checksum verified and written through the wdev
//! device (its loop device when there is one), so they are logged like any write, then
//! synced; Ack. Nothing reaches the device before Commit. The volume is SyncReady after it:
//! walbc then runs a hash backup, which re-syncs the archive.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::FileIo;
use walb_core::wdiff::sorted::{end_pack, SortedReader};
use walb_core::LBS;
use walb_daemon::limits::admit_flow;
use walb_daemon::{CmdError, CmdResult};
use walb_proto::flow::next_frame;
use walb_proto::hashflow::HashBatcher;
use walb_proto::storage_server::Storage as StorageSvc;
use walb_proto::wire::check_chunk;
use walb_proto::{frame, hash_event, Accept, Ack, Frame, HashEvent, Open};

use crate::scan::Scan;
use crate::storage::Storage;
use crate::vol::{require, State, Vol};

type HashEvents = mpsc::Sender<Result<HashEvent, Status>>;

/// The `Storage` gRPC service (failback).
pub struct Service(pub Arc<Storage>);

#[tonic::async_trait]
impl StorageSvc for Service {
    type FailbackStream = ReceiverStream<Result<HashEvent, Status>>;

    async fn failback(
        &self,
        req: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::FailbackStream>, Status> {
        // Roles, host type and the peer's flow count as for every data flow.
        let guard = admit_flow("Storage.Failback", &req)?;
        let (tx, rx) = mpsc::channel(4);
        let st = self.0.clone();
        let mut input = req.into_inner();
        tokio::spawn(async move {
            let run = async {
                let open = guard.read_open(&mut input).await?;
                flow(&st, open, input, &tx).await
            };
            let result = run.await;
            drop(guard);
            if let Err(s) = result {
                tracing::warn!("failback failed: {}", s.message());
                // walbc's operator learns which server failed, and why.
                let s = Status::new(s.code(), format!("{}: {}", st.id, s.message()));
                let _ = tx.send(Err(s)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn send(tx: &HashEvents, kind: hash_event::Kind) -> Result<(), Status> {
    tx.send(Ok(HashEvent { kind: Some(kind) }))
        .await
        .map_err(|_| Status::cancelled("walbc went away"))
}

async fn reject(tx: &HashEvents, vol: &str, why: String) -> Result<(), Status> {
    tracing::info!(vol, "failback refused: {why}");
    send(tx, hash_event::Kind::Reject(why)).await
}

async fn flow(
    st: &Storage,
    open: Open,
    mut input: Streaming<Frame>,
    tx: &HashEvents,
) -> Result<(), Status> {
    if !(1..=8192).contains(&open.bulk_lb) || open.size_lb == 0 {
        return Err(Status::invalid_argument(format!(
            "bulk_lb {} must be 1 to 8192 and size_lb {} positive",
            open.bulk_lb, open.size_lb
        )));
    }
    let vol = match st.vol(&open.vol).await {
        Ok(v) => v,
        Err(e) => return reject(tx, &open.vol, e.to_string()).await,
    };
    let m = vol.meta.lock().await.clone();
    let ok = [State::Target, State::Stopped, State::SyncReady];
    if let Err(e) = require(&m, &ok, "failback") {
        return reject(tx, &vol.name, e.to_string()).await;
    }
    let (out, target) = match check_device(st, &m.wdev, &open).await? {
        Ok(d) => d,
        Err(why) => return reject(tx, &vol.name, why).await,
    };
    // Every check passed: the volume is taken to SyncReady as for a hash backup (the logs
    // not shipped yet are dropped; the device is about to be overwritten).
    to_sync_ready(st, &vol).await?;
    let r = vol
        .run_from_sync_ready(State::Failback, "failback", State::SyncReady, |wdev| {
            run(st, &vol, wdev, &open, (out, target), &mut input, tx)
        })
        .await;
    r.map_err(Status::from)
}

/// The device checks that change nothing: its size must be the image's and it must not be in
/// use. Ok(Err(why)) refuses; Ok(Ok(..)) is the device opened for writing and its path.
async fn check_device(
    st: &Storage,
    wdev: &str,
    open: &Open,
) -> Result<Result<(File, PathBuf), String>, Status> {
    let dev = st.wdevd.status(wdev).await?;
    if dev.size_lb != open.size_lb {
        return Ok(Err(format!(
            "the image is {} bytes and device {wdev} of {} is {} bytes: sizes differ (resize \
             the smaller one first)",
            open.size_lb * LBS as u64,
            open.vol,
            dev.size_lb * LBS as u64
        )));
    }
    let target = write_path(st, wdev).await?;
    match open_exclusive(&target) {
        Ok(f) => Ok(Ok((f, target))),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(Err(format!(
            "{} (device {wdev}) is in use (mounted?): unmount it and stop what uses it",
            target.display()
        ))),
        Err(e) => Err(internal(&format!("open {}", target.display()))(e).into()),
    }
}

/// Target → Stopped → SyncReady, as `stop` and `reset-vol` do.
async fn to_sync_ready(st: &Storage, vol: &Vol) -> Result<(), Status> {
    let state = vol.meta.lock().await.state;
    if state == State::Target {
        match st.stop(&vol.name).await {
            // Stopped on its own meanwhile (a log overflow).
            Ok(_) | Err(CmdError::State(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if vol.meta.lock().await.state == State::Stopped {
        st.reset_vol(&vol.name, 0).await?;
    }
    Ok(())
}

/// Where writes to device `wdev` go so that wdevd logs them: its loop device when there is one
/// (reads through it then see them too), else wdevd's device file.
async fn write_path(st: &Storage, wdev: &str) -> CmdResult<PathBuf> {
    let file = st.wdevd.device_file(wdev)?;
    let f = file.clone();
    let lp = tokio::task::spawn_blocking(move || wdev_client::loopdev::loop_of(&f))
        .await
        .map_err(|e| CmdError::Internal(format!("losetup task: {e}")))?
        .map_err(|e| CmdError::Internal(e.to_string()))?;
    Ok(lp.map(PathBuf::from).unwrap_or(file))
}

/// Opens `p` for writing; a block device exclusively (refused while mounted or held).
fn open_exclusive(p: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if std::fs::metadata(p)?.file_type().is_block_device() {
        o.custom_flags(libc::O_EXCL);
    }
    o.open(p)
}

/// The received packs, removed when dropped.
struct Packs {
    path: PathBuf,
    file: File,
}

impl Drop for Packs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn internal(what: &str) -> impl Fn(std::io::Error) -> CmdError + '_ {
    move |e| CmdError::Internal(format!("{what}: {e}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> CmdResult<T> + Send + 'static,
) -> CmdResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CmdError::Internal(format!("failback task: {e}")))?
}

async fn run(
    st: &Storage,
    vol: &Vol,
    wdev: String,
    open: &Open,
    (out, target): (File, PathBuf),
    input: &mut Streaming<Frame>,
    tx: &HashEvents,
) -> CmdResult<()> {
    let status = |e: Status| CmdError::Internal(e.message().to_string());
    let size_lb = open.size_lb;
    // The data device then holds everything the device acknowledged.
    st.wdevd.reset_wal(&wdev).await?;
    send(tx, hash_event::Kind::Accept(Accept {}))
        .await
        .map_err(status)?;
    tracing::info!(vol = vol.name, "failback onto {} started", target.display());

    let ddev = st.wdevd.ddev_path(&wdev).await?;
    let bulk_lb = open.bulk_lb;
    let (scan, _guard) = vol.scan.begin(Scan::new(
        "failback",
        size_lb * LBS as u64,
        st.scan_bps.clone(),
    ));
    let progress = scan.clone();
    let htx = tx.clone();
    let hasher = tokio::task::spawn_blocking(move || -> CmdResult<()> {
        let mut batcher = HashBatcher::new(bulk_lb as usize * LBS, |h| {
            htx.blocking_send(Ok(HashEvent {
                kind: Some(hash_event::Kind::Hashes(h)),
            }))
            .map_err(|_| CmdError::Internal("walbc went away".into()))
        });
        for b in crate::scan::read_bulks(ddev, size_lb, bulk_lb, scan) {
            batcher.push(blake3::hash(&b?.data).as_bytes())?;
        }
        batcher.finish()
    });

    let path = vol.dir.join(".failback.packs");
    let file = File::create(&path).map_err(internal("create the failback packs file"))?;
    let packs = Arc::new(Packs { path, file });
    let mut off = 0u64;
    loop {
        match next_frame(input, "Chunk or Commit").await.map_err(status)? {
            frame::Kind::Chunk(c) => {
                let data = check_chunk(&c)
                    .map_err(|e| CmdError::Invalid(format!("failback chunk at byte {off}: {e}")))?
                    .clone();
                let (p, at) = (packs.clone(), off);
                off += data.len() as u64;
                blocking(move || {
                    p.file
                        .write_all_at(&data, at)
                        .map_err(internal("write the failback packs file"))
                })
                .await?;
            }
            frame::Kind::Commit(_) => break,
            _ => return Err(CmdError::Invalid("failback takes Chunk or Commit".into())),
        }
    }
    hasher
        .await
        .map_err(|e| CmdError::Internal(format!("hash task: {e}")))??;
    let received = off;
    let (recs, written) = blocking(move || apply(&packs, off, size_lb, out)).await?;
    let secs = progress.progress.started.elapsed().as_secs_f64();
    tracing::info!(
        vol = vol.name,
        "failback done: {recs} bulks differed, {received} bytes received, {written} bytes \
         written through {} in {secs:.2} s",
        target.display()
    );
    send(tx, hash_event::Kind::Ack(Ack {}))
        .await
        .map_err(status)
}

/// Ends the packs at `end` with an END pack, reads them back with every checksum verified,
/// then writes them onto `out` and syncs it. Returns (records, bytes written).
fn apply(packs: &Packs, end: u64, size_lb: u64, out: File) -> CmdResult<(u64, u64)> {
    packs
        .file
        .write_all_at(&end_pack()[..], end)
        .map_err(internal("write the failback packs file"))?;
    let read = || -> CmdResult<SortedReader> {
        Ok(SortedReader::new(walb_core::source::open_source(
            &packs.path,
        )?))
    };
    let bad = |e: walb_core::Error| CmdError::Invalid(format!("received failback packs: {e}"));
    let mut recs = 0u64;
    for r in read()? {
        let r = r.map_err(bad)?;
        if r.end() > size_lb {
            return Err(CmdError::Invalid(format!(
                "received failback packs: a record at LB {} (+{}) ends beyond the device's \
                 {size_lb} LB",
                r.addr, r.blocks
            )));
        }
        recs += 1;
    }
    let mut io = FileIo::from_file(out).map_err(internal("the device"))?;
    let mut applier = Applier::new(&mut io, DiscardMode::Zero)?;
    for r in read()? {
        applier.apply(&r.map_err(bad)?)?;
    }
    Ok((recs, applier.finish()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use walb_core::wdiff::rec::{Body, DiffRec};
    use walb_core::wdiff::sorted::Packer;
    use walb_core::wdiff::{Cmpr, Codec};

    /// Packs of 4 KiB records (LB address, byte value) as walbc sends them, in file `name`.
    fn packs(dir: &Path, name: &str, recs: &[(u64, u8)]) -> (Packs, u64) {
        let mut bytes = Vec::new();
        let mut emit = |p: walb_core::wdiff::sorted::EncodedPack| {
            bytes.extend(p.to_bytes());
            Ok(())
        };
        let mut packer = Packer::new(Cmpr::new(Codec::Zstd, 1));
        for &(addr, v) in recs {
            let body = Body::Data(Bytes::from(vec![v; 4096]));
            let rec = DiffRec {
                addr,
                blocks: 8,
                body,
            };
            packer.push(rec, &mut emit).unwrap();
        }
        if let Some(p) = packer.take() {
            emit(p).unwrap();
        }
        let path = dir.join(name);
        let file = File::create(&path).unwrap();
        file.write_all_at(&bytes, 0).unwrap();
        (Packs { path, file }, bytes.len() as u64)
    }

    #[test]
    fn packs_are_verified_before_anything_is_written() {
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("dev");
        std::fs::write(&dev, vec![0u8; 128 * LBS]).unwrap();
        let out = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&dev)
                .unwrap()
        };
        // The second record ends past the device: refused, nothing written.
        let (bad, end) = packs(d.path(), "bad", &[(8, 1), (124, 2)]);
        let e = apply(&bad, end, 128, out()).unwrap_err();
        assert!(e.to_string().contains("beyond"), "{e}");
        assert!(std::fs::read(&dev).unwrap().iter().all(|&b| b == 0));

        let (good, end) = packs(d.path(), "good", &[(8, 1), (24, 2)]);
        assert_eq!(apply(&good, end, 128, out()).unwrap(), (2, 8192));
        let img = std::fs::read(&dev).unwrap();
        let want: Vec<u8> = (0..128 * LBS)
            .map(|i| match i / 4096 {
                1 => 1,
                3 => 2,
                _ => 0,
            })
            .collect();
        assert!(img == want, "the device does not hold the two records");
        drop(good);
        assert!(!d.path().join("good").exists(), "the packs file is left");
    }
}
