//! Test helpers: start and stop the real `walb-archive` binary, talk to it with the generated
//! clients, build images and wdiffs with walb-core, and compute expected images.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Status;
use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::FileIo;
use walb_core::convert::wlog_records;
use walb_core::meta::{MetaDiff, MetaSnap};
use walb_core::source::BytesSource;
use walb_core::wdiff::{Cmpr, Codec, DiffMemory, SortedReader, SortedWriter};
use walb_core::wlog::{GenConfig, Generator, WlogHeader, WlogReader, WlogWriter};
use walb_core::{Gid, Pbs, Uuid, LBS};
use walb_proto::archive_client::ArchiveClient;
use walb_proto::wire;
use walb_proto::{event, frame, Commit, Event, Frame, Open};

/// A running daemon; killed on drop.
pub struct Daemon {
    child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    pub async fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with(data_dir, &[]).await
    }

    /// Starts the daemon with extra flags.
    pub async fn start_with(data_dir: &Path, extra: &[&str]) -> Daemon {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_walb-archive"))
            .args(["--id", "a0", "--listen", &addr, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn walb-archive");
        let d = Daemon {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        };
        let t0 = Instant::now();
        loop {
            if d.try_ctl(&["get", "host-type"]).await.is_ok() {
                return d;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "daemon did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn archive(&self) -> ArchiveClient<Channel> {
        walb_proto::sized!(ArchiveClient::new(wire::connect(&self.addr).await.unwrap()))
    }

    /// A control command; Err is the status.
    pub async fn try_ctl(&self, args: &[&str]) -> Result<String, Status> {
        walb_controller::walbc::words::call_words(&self.addr, args)
            .await
            .map_err(|e| Status::new(e.code, e.message))
    }

    pub async fn ctl(&self, args: &[&str]) -> String {
        match self.try_ctl(args).await {
            Ok(t) => t,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    pub fn vol_dir(&self, vol: &str) -> PathBuf {
        self.data_dir.join("vols").join(vol)
    }

    /// Names of temporary files in the volume directory.
    pub fn temp_files(&self, vol: &str) -> Vec<String> {
        std::fs::read_dir(self.vol_dir(vol))
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                n.starts_with('.').then_some(n)
            })
            .collect()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
            let bulk = walb_proto::bulk::encode(i as u64 * bulk_lb as u64, b, Default::default());
            wire::frame(frame::Kind::Bulk(bulk.unwrap()))
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
    let mut w = WlogWriter::new(Vec::new(), h).unwrap();
    for (ph, d) in Generator::new(cfg) {
        w.write_pack(&ph, &d).unwrap();
    }
    let wlog = Bytes::from(w.finish().unwrap());
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

/// The text of `GET /metrics` at `addr`.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

pub fn file_hash(p: &str) -> blake3::Hash {
    blake3::hash(&std::fs::read(p).unwrap())
}

pub fn diff(b: u64, e: u64, mergeable: bool, ts: u64) -> MetaDiff {
    let mut d = MetaDiff::clean(b, e).unwrap();
    d.is_mergeable = mergeable;
    d.timestamp = ts;
    d
}

pub fn snap(b: u64, e: u64) -> MetaSnap {
    MetaSnap::new(Gid(b), Gid(e)).unwrap()
}
