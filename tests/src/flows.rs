//! Data for one daemon's data flows, and raw flow clients that send it (crafted or broken
//! streams included): wlogs from core's generator and a wlog-transfer client for a proxy;
//! images, sorted wdiffs, expected images and bhash digests built with walb-core, and
//! full-sync and wdiff-transfer clients for an archive.

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::FileIo;
use walb_core::convert::wlog_records;
use walb_core::meta::{MetaDiff, MetaSnap};
use walb_core::source::BytesSource;
use walb_core::wdiff::{Cmpr, Codec, DiffMemory, SortedReader, SortedWriter};
use walb_core::wlog::{GenConfig, Generator, WlogHeader, WlogReader, WlogWriter};
use walb_core::{Gid, Pbs, Uuid, LBS};
use walb_proto::archive_client::ArchiveClient;
use walb_proto::proxy_client::ProxyClient;
use walb_proto::wire;
use walb_proto::{event, frame, Commit, Event, Frame, Open};

/// A clean diff `|b| --> |e|`.
pub fn diff(b: u64, e: u64, mergeable: bool, ts: u64) -> MetaDiff {
    let mut d = MetaDiff::clean(b, e).unwrap();
    d.is_mergeable = mergeable;
    d.timestamp = ts;
    d
}

pub fn snap(b: u64, e: u64) -> MetaSnap {
    MetaSnap::new(Gid(b), Gid(e)).unwrap()
}

// ---- proxy: wlogs and the wlog transfer

/// An address nobody listens on.
pub fn dead_addr() -> String {
    crate::daemon::free_addr()
}

/// The device size of the generated wlogs, in logical blocks.
pub const DEV_LB: u64 = 8192;

/// A generated wlog: its bytes and header.
pub struct Wlog {
    pub bytes: Vec<u8>,
    pub header: WlogHeader,
}

/// A wlog of about `total` bytes made by core's generator (no discards or padding, so the
/// first record of the first pack carries checksummed data).
pub fn make_wlog(seed: u64, total: u64, begin_lsid: u64) -> Wlog {
    let pbs = Pbs::B4096;
    let mut cfg = GenConfig::new(DEV_LB, total, pbs, seed);
    cfg.begin_lsid = begin_lsid;
    cfg.salt = seed as u32 ^ 0x5a5a;
    cfg.discard = false;
    cfg.padding = false;
    let header = WlogHeader {
        salt: cfg.salt,
        pbs,
        uuid: Uuid([seed as u8; 16]),
        begin_lsid,
        end_lsid: u64::MAX,
    };
    Wlog {
        bytes: write_wlog(cfg, header.clone()),
        header,
    }
}

/// The wlog file of `header` and the packs `cfg` generates.
fn write_wlog(cfg: GenConfig, header: WlogHeader) -> Vec<u8> {
    let mut w = WlogWriter::new(Vec::new(), header).unwrap();
    for (h, d) in Generator::new(cfg) {
        w.write_pack(&h, &d).unwrap();
    }
    w.finish().unwrap()
}

/// A clean mergeable diff `|b| --> |e|` as a storage sends it with a wlog.
pub fn wlog_diff(b: u64, e: u64) -> MetaDiff {
    diff(b, e, true, 1_700_000_000 + e)
}

pub fn open_frame(vol: &str, w: &WlogHeader, size_lb: u64) -> Frame {
    wire::frame(frame::Kind::Open(Open {
        vol: vol.into(),
        host_type: "storage".into(),
        uuid: w.uuid.0.to_vec().into(),
        pbs: w.pbs.get(),
        salt: w.salt,
        size_lb,
        max_log_pb: 1 << 14,
        ..Default::default()
    }))
}

/// How a wlog transfer ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Ack,
    Reject(String),
    Error(String),
}

/// Sends `open`, then (if accepted) `data` in 1 MiB chunks and Commit{d}.
pub async fn transfer(addr: &str, open: Frame, data: &[u8], d: &MetaDiff) -> End {
    let (tx, mut events) = wlog_transfer(addr, open).await;
    match next(&mut events).await {
        Ok(event::Kind::Accept(_)) => {}
        Ok(event::Kind::Reject(w)) => return End::Reject(w),
        Ok(k) => panic!("unexpected {k:?}"),
        Err(e) => return End::Error(e),
    }
    for piece in data.chunks(wire::CHUNK) {
        if tx.send(wire::chunk(piece.to_vec())).await.is_err() {
            break;
        }
    }
    let commit = Commit {
        diff: d.to_bytes().into(),
        ..Default::default()
    };
    let _ = tx.send(wire::frame(frame::Kind::Commit(commit))).await;
    match next(&mut events).await {
        Ok(event::Kind::Ack(_)) => End::Ack,
        Ok(k) => panic!("unexpected {k:?}"),
        Err(e) => End::Error(e),
    }
}

/// A wlog transfer opened with `open` and held: the frames to send next and the events, once
/// the first event (Accept) has come.
pub async fn wlog_stream(
    addr: &str,
    open: Frame,
) -> (mpsc::Sender<Frame>, tonic::Streaming<Event>) {
    let (tx, mut events) = wlog_transfer(addr, open).await;
    events.message().await.unwrap().unwrap();
    (tx, events)
}

/// A wlog transfer to the proxy at `addr` opened with `open`: the frames to send next and the
/// events.
async fn wlog_transfer(addr: &str, open: Frame) -> (mpsc::Sender<Frame>, tonic::Streaming<Event>) {
    let ch = wire::connect(addr).await.unwrap();
    let mut c = walb_proto::sized!(ProxyClient::new(ch));
    let (tx, rx) = mpsc::channel::<Frame>(4);
    tx.send(open).await.unwrap();
    let events = c
        .wlog_transfer(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, events)
}

async fn next(events: &mut tonic::Streaming<Event>) -> Result<event::Kind, String> {
    match events.message().await {
        Ok(Some(Event { kind: Some(k) })) => Ok(k),
        Ok(_) => Err("stream ended".into()),
        Err(s) => Err(s.message().to_string()),
    }
}

// ---- archive: full sync and wdiff transfer

/// How a data flow ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Rejected(String),
    Acked,
    Failed(String),
}

/// Sends Open, then (if accepted) `rest`; reports the outcome.
pub async fn flow(
    client: &mut ArchiveClient<Channel>,
    wdiff: bool,
    open: Open,
    rest: Vec<Frame>,
) -> Outcome {
    let (tx, rx) = mpsc::channel(4);
    tx.send(wire::frame(frame::Kind::Open(open))).await.unwrap();
    let resp = if wdiff {
        client.wdiff_transfer(ReceiverStream::new(rx)).await
    } else {
        client.full_sync(ReceiverStream::new(rx)).await
    };
    let mut events = match resp {
        Ok(r) => r.into_inner(),
        Err(e) => return Outcome::Failed(e.message().to_string()),
    };
    match events.message().await {
        Ok(Some(Event {
            kind: Some(event::Kind::Reject(w)),
        })) => return Outcome::Rejected(w),
        Ok(Some(Event {
            kind: Some(event::Kind::Accept(_)),
        })) => {}
        other => return Outcome::Failed(format!("{other:?}")),
    }
    let sender = tokio::spawn(async move {
        for f in rest {
            if tx.send(f).await.is_err() {
                break;
            }
        }
    });
    let out = match events.message().await {
        Ok(Some(Event {
            kind: Some(event::Kind::Ack(_)),
        })) => Outcome::Acked,
        Ok(other) => Outcome::Failed(format!("{other:?}")),
        Err(e) => Outcome::Failed(e.message().to_string()),
    };
    sender.abort();
    out
}

/// A wdiff transfer opened with `open` and held: the frames to send next and the events, once
/// the first event (Accept) has come.
pub async fn wdiff_stream(
    client: &mut ArchiveClient<Channel>,
    open: Open,
) -> (mpsc::Sender<Frame>, tonic::Streaming<Event>) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(wire::frame(frame::Kind::Open(open))).await.unwrap();
    let mut events = client
        .wdiff_transfer(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    events.message().await.unwrap().unwrap(); // Accept
    (tx, events)
}

pub fn wdiff_open(vol: &str, host: &str, uuid: Uuid, size_lb: u64, diff: &MetaDiff) -> Open {
    Open {
        vol: vol.into(),
        host_type: host.into(),
        uuid: Bytes::copy_from_slice(&uuid.0),
        size_lb,
        diff: diff.to_bytes().into(),
        ..Default::default()
    }
}

/// The wdiff file cut in chunk frames, then Commit.
pub fn wdiff_frames(file: &[u8], chunk: usize) -> Vec<Frame> {
    let mut v: Vec<Frame> = file
        .chunks(chunk)
        .map(|c| wire::chunk(Bytes::copy_from_slice(c)))
        .collect();
    v.push(wire::frame(frame::Kind::Commit(Commit::default())));
    v
}

pub async fn send_wdiff(
    c: &mut ArchiveClient<Channel>,
    vol: &str,
    uuid: Uuid,
    size_lb: u64,
    diff: &MetaDiff,
    file: &[u8],
) -> Outcome {
    flow(
        c,
        true,
        wdiff_open(vol, "proxy", uuid, size_lb, diff),
        wdiff_frames(file, 100_000),
    )
    .await
}

pub fn full_sync_open(vol: &str, uuid: Uuid, size_lb: u64, bulk_lb: u32) -> Open {
    Open {
        vol: vol.into(),
        host_type: "storage".into(),
        uuid: Bytes::copy_from_slice(&uuid.0),
        size_lb,
        bulk_lb,
        cur_time: 1_700_000_000,
        ..Default::default()
    }
}

/// Bulks of `img` (zero bulks empty), then Commit with `snap`.
pub fn full_sync_frames(img: &[u8], bulk_lb: u32, snap: MetaSnap) -> Vec<Frame> {
    let mut v: Vec<Frame> = img
        .chunks(bulk_lb as usize * LBS)
        .enumerate()
        .map(|(i, b)| {
            let data = bytes::Bytes::copy_from_slice(b);
            let bulk =
                walb_proto::bulk::encode(i as u64 * bulk_lb as u64, data, Default::default());
            wire::frame(frame::Kind::Bulk(bulk))
        })
        .collect();
    v.push(wire::frame(frame::Kind::Commit(Commit {
        snap: snap.to_bytes().into(),
        ..Default::default()
    })));
    v
}

pub async fn full_sync(
    c: &mut ArchiveClient<Channel>,
    vol: &str,
    uuid: Uuid,
    img: &[u8],
    snap: MetaSnap,
) -> Outcome {
    let size_lb = (img.len() / LBS) as u64;
    flow(
        c,
        false,
        full_sync_open(vol, uuid, size_lb, 512),
        full_sync_frames(img, 512, snap),
    )
    .await
}

/// A random image of `lb` blocks whose bulks (256 KiB) alternate data and zeros.
pub fn random_image(lb: u64, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; lb as usize * LBS];
    for (i, b) in v.chunks_mut(512 * LBS).enumerate() {
        if i % 3 != 1 {
            rng.fill_bytes(b);
            // Some compressible runs too.
            let n = rng.gen_range(0..b.len() / 2);
            b[..n].fill(0x5a);
        }
    }
    v
}

/// A sorted wdiff built with core: generated logpacks → wlog → records → SortedWriter.
pub fn make_wdiff(dev_lb: u64, seed: u64, uuid: Uuid) -> Vec<u8> {
    let mut cfg = GenConfig::new(dev_lb, 200 << 10, Pbs::B512, seed);
    cfg.max_io_lb = 32;
    let h = WlogHeader {
        salt: cfg.salt,
        pbs: cfg.pbs,
        uuid,
        begin_lsid: 0,
        end_lsid: u64::MAX,
    };
    let wlog = Bytes::from(write_wlog(cfg, h));
    let mut mem = DiffMemory::new();
    let r = WlogReader::new(Box::new(BytesSource::new(wlog))).unwrap();
    wlog_records(vec![r], |rec| {
        mem.insert(rec);
        Ok(())
    })
    .unwrap();
    let mut sw = SortedWriter::new(Vec::new(), uuid, Cmpr::new(Codec::Snappy, 0)).unwrap();
    for rec in mem.into_sorted() {
        sw.push(rec).unwrap();
    }
    sw.finish().unwrap()
}

/// `img` with the wdiffs applied in order by core's Applier (discards as zeros).
pub fn applied(img: &[u8], wdiffs: &[&[u8]]) -> Vec<u8> {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), img).unwrap();
    let mut io = FileIo::open(f.path(), true).unwrap();
    let mut ap = Applier::new(&mut io, DiscardMode::Zero).unwrap();
    for w in wdiffs {
        let (_, r) =
            SortedReader::open(Box::new(BytesSource::new(Bytes::copy_from_slice(w)))).unwrap();
        for rec in r {
            ap.apply(&rec.unwrap()).unwrap();
        }
    }
    ap.finish().unwrap();
    std::fs::read(f.path()).unwrap()
}

/// core::bhash's digest of an image in memory (default bulk), as the daemon prints it.
pub fn bhash_of(img: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), img).unwrap();
    let io = FileIo::open(f.path(), false).unwrap();
    let src = walb_core::virt::ImageSource::new(Box::new(io)).unwrap();
    walb_core::bhash::hash_bulks(Box::new(src), walb_core::bhash::DEFAULT_BULK)
        .unwrap()
        .digest()
        .to_hex()
        .to_string()
}
