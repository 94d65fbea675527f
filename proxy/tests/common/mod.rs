//! Helpers for the proxy's integration tests: the real `walb-proxy` binary on a free loopback
//! port (killed on drop), a Control client, wlog generation and a wlog-transfer client.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use walb_core::meta::MetaDiff;
use walb_core::wlog::{GenConfig, Generator, WlogHeader, WlogWriter};
use walb_core::{Pbs, Uuid};
use walb_proto::proxy_client::ProxyClient;
use walb_proto::wire;
use walb_proto::{event, frame, Commit, Event, Frame, Open};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running walb-proxy; killed (SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
}

impl Daemon {
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Daemon {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_walb-proxy"))
            .args(["--id", "p0", "--listen", &addr, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn walb-proxy");
        let d = Daemon {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        };
        let t0 = Instant::now();
        loop {
            if d.call(&["get", "pid"]).await.is_ok() {
                return d;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "walb-proxy did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn call(&self, args: &[&str]) -> Result<String, Status> {
        Daemon::call_at(&self.addr, args).await
    }

    /// A Control call to the daemon at `addr` (for calls made from another task).
    pub async fn call_at(addr: &str, args: &[&str]) -> Result<String, Status> {
        walb_controller::walbc::words::call_words(addr, args)
            .await
            .map_err(|e| Status::new(e.code, e.message))
    }

    /// The reply of a command that must succeed.
    pub async fn ok(&self, args: &[&str]) -> String {
        match self.call(args).await {
            Ok(t) => t,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    /// The status code and message of a command that must fail.
    pub async fn err(&self, args: &[&str]) -> (Code, String) {
        match self.call(args).await {
            Ok(t) => panic!("{args:?} succeeded: {t}"),
            Err(e) => (e.code(), e.message().to_string()),
        }
    }

    pub fn vol_dir(&self, vol: &str) -> PathBuf {
        self.data_dir.join("vols").join(vol)
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `get state VOL` is `want`.
    pub async fn wait_state(&self, vol: &str, want: &str) {
        let t0 = Instant::now();
        loop {
            let s = self.ok(&["get", "state", vol]).await;
            if s == want {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "state {s}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address nobody listens on.
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

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
    let mut w = WlogWriter::new(Vec::new(), header.clone()).unwrap();
    for (h, d) in Generator::new(cfg) {
        w.write_pack(&h, &d).unwrap();
    }
    Wlog {
        bytes: w.finish().unwrap(),
        header,
    }
}

/// A clean mergeable diff `|b| --> |e|`.
pub fn diff(b: u64, e: u64) -> MetaDiff {
    let mut d = MetaDiff::clean(b, e).unwrap();
    d.is_mergeable = true;
    d.timestamp = 1_700_000_000 + e;
    d
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
    let ch = wire::connect(addr).await.unwrap();
    let mut c = walb_proto::sized!(ProxyClient::new(ch));
    let (tx, rx) = mpsc::channel::<Frame>(4);
    tx.send(open).await.unwrap();
    let mut events = c
        .wlog_transfer(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
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

async fn next(events: &mut tonic::Streaming<Event>) -> Result<event::Kind, String> {
    match events.message().await {
        Ok(Some(Event { kind: Some(k) })) => Ok(k),
        Ok(_) => Err("stream ended".into()),
        Err(s) => Err(s.message().to_string()),
    }
}

/// Names of temporary files left in a volume directory.
pub fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}
