//! wlog receive: a generated wlog becomes an indexed wdiff equal to its conversion; rejections;
//! corrupt, mismatched and interrupted transfers register nothing and leave no temp file.

mod common;

use std::time::Duration;

use common::{dead_addr, diff, make_wlog, open_frame, temps, transfer, Daemon, End, DEV_LB};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use walb_core::convert::wlog_records;
use walb_core::meta::format_name;
use walb_core::source::BytesSource;
use walb_core::wdiff::{Body, DiffRec, IndexedReader};
use walb_core::wlog::WlogReader;
use walb_core::Uuid;
use walb_proto::proxy_client::ProxyClient;
use walb_proto::wire;

/// Per-LB content after applying `recs` in order (newest wins): None = untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Lb {
    Data(Vec<u8>),
    Zero,
    Discard,
}

fn expand(recs: impl IntoIterator<Item = DiffRec>) -> Vec<Option<Lb>> {
    let mut img = vec![None; DEV_LB as usize];
    for r in recs {
        for i in 0..r.blocks as usize {
            img[r.addr as usize + i] = Some(match &r.body {
                Body::Data(d) => Lb::Data(d[i * 512..(i + 1) * 512].to_vec()),
                Body::AllZero => Lb::Zero,
                Body::Discard => Lb::Discard,
            });
        }
    }
    img
}

async fn started(dir: &std::path::Path) -> Daemon {
    let d = Daemon::start(dir, &[]).await;
    d.ok(&["archive-info", "add", "vol0", "a0", &dead_addr()])
        .await;
    d.ok(&["archive-info", "add", "vol0", "a1", &dead_addr()])
        .await;
    d.ok(&["start", "vol0"]).await;
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wlog_becomes_an_indexed_wdiff_queued_for_each_archive() {
    let dir = tempfile::tempdir().unwrap();
    let d = started(dir.path()).await;
    let w = make_wlog(1, 3 << 20, 100);
    let m = diff(0, 1);
    let end = transfer(&d.addr, open_frame("vol0", &w.header, DEV_LB), &w.bytes, &m).await;
    assert_eq!(end, End::Ack);
    let name = format_name(&m);
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, name);
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0", "a0"]).await, name);
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0", "a1"]).await, name);
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Started");
    let vd = d.vol_dir("vol0");
    assert_eq!(
        std::fs::read_to_string(vd.join("size")).unwrap().trim(),
        DEV_LB.to_string()
    );

    let r = IndexedReader::open(&vd.join(&name)).unwrap();
    assert_eq!(r.header().uuid, w.header.uuid);
    let got: Vec<DiffRec> = r.map(|x| x.unwrap()).collect();
    let reader = WlogReader::new(Box::new(BytesSource::new(w.bytes.clone().into()))).unwrap();
    let mut want = Vec::new();
    wlog_records(vec![reader], |rec| {
        want.push(rec);
        Ok(())
    })
    .unwrap();
    assert!(want.len() > 20, "a real wlog: {} records", want.len());
    assert_eq!(expand(got), expand(want));

    // The same diff again: acked, not queued twice.
    let end = transfer(&d.addr, open_frame("vol0", &w.header, DEV_LB), &w.bytes, &m).await;
    assert_eq!(end, End::Ack);
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0", "a0"]).await, name);

    // A second diff, and a bigger volume size.
    let w2 = make_wlog(1, 64 << 10, w_end(&w));
    let m2 = diff(1, 2);
    let end = transfer(
        &d.addr,
        open_frame("vol0", &w2.header, DEV_LB * 2),
        &w2.bytes,
        &m2,
    )
    .await;
    assert_eq!(end, End::Ack);
    assert_eq!(
        d.ok(&["get", "proxy-diff", "vol0"]).await,
        format!("{name}\n{}", format_name(&m2))
    );
    assert_eq!(
        std::fs::read_to_string(vd.join("size")).unwrap().trim(),
        (DEV_LB * 2).to_string()
    );
    assert!(temps(&vd).is_empty());
    assert!(d.ok(&["status", "vol0"]).await.contains("waiting 2"));
}

fn w_end(w: &common::Wlog) -> u64 {
    let mut r = WlogReader::new(Box::new(BytesSource::new(w.bytes.clone().into()))).unwrap();
    for p in &mut r {
        p.unwrap();
    }
    r.end_lsid()
}

#[tokio::test(flavor = "multi_thread")]
async fn rejections_and_bad_transfers_register_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]).await;
    let w = make_wlog(2, 256 << 10, 0);
    let m = diff(0, 1);
    let open = || open_frame("vol0", &w.header, DEV_LB);

    assert_eq!(
        transfer(&d.addr, open(), &w.bytes, &m).await,
        End::Reject("not-found".into())
    );
    d.ok(&["archive-info", "add", "vol0", "a0", &dead_addr()])
        .await;
    assert_eq!(
        transfer(&d.addr, open(), &w.bytes, &m).await,
        End::Reject("stopped".into())
    );
    d.ok(&["start", "vol0"]).await;
    let vd = d.vol_dir("vol0");

    // More log announced than the disk holds.
    let mut huge = open();
    if let Some(walb_proto::frame::Kind::Open(o)) = &mut huge.kind {
        o.max_log_pb = 1 << 40;
    }
    assert_eq!(
        transfer(&d.addr, huge, &w.bytes, &m).await,
        End::Reject("no-space".into())
    );
    // A wlog longer than announced.
    let mut small = open();
    if let Some(walb_proto::frame::Kind::Open(o)) = &mut small.kind {
        o.max_log_pb = 4;
    }
    match transfer(&d.addr, small, &w.bytes, &m).await {
        End::Error(e) => assert!(e.contains("exceeds the announced"), "{e}"),
        other => panic!("oversized wlog: {other:?}"),
    }

    // A flipped byte in the first record's data (no discards or padding: it is checksummed).
    let mut bad = w.bytes.clone();
    bad[4096 + 4096 + 10] ^= 0x40;
    match transfer(&d.addr, open(), &bad, &m).await {
        End::Error(e) => assert!(e.contains("logpack record data"), "{e}"),
        other => panic!("corrupt wlog: {other:?}"),
    }
    // A flipped byte in a pack header.
    let mut bad = w.bytes.clone();
    bad[4096 + 40] ^= 0x01;
    match transfer(&d.addr, open(), &bad, &m).await {
        End::Error(e) => assert!(e.contains("logpack header"), "{e}"),
        other => panic!("corrupt header: {other:?}"),
    }
    // Open announces another uuid than the wlog header has.
    let mut h = w.header.clone();
    h.uuid = Uuid([0xee; 16]);
    match transfer(&d.addr, open_frame("vol0", &h, DEV_LB), &w.bytes, &m).await {
        End::Error(e) => assert!(e.contains("differs from Open"), "{e}"),
        other => panic!("wrong uuid: {other:?}"),
    }
    // A dirty diff is refused.
    let mut dirty = m;
    dirty.snap_e.gid_e = walb_core::Gid(5);
    match transfer(&d.addr, open(), &w.bytes, &dirty).await {
        End::Error(e) => assert!(e.contains("dirty"), "{e}"),
        other => panic!("dirty diff: {other:?}"),
    }
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, "");
    assert!(temps(&vd).is_empty(), "{:?}", temps(&vd));
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Started");

    // A storage that goes away mid-stream.
    {
        let ch = wire::connect(&d.addr).await.unwrap();
        let mut c = ProxyClient::new(ch);
        let (tx, rx) = mpsc::channel(4);
        tx.send(open()).await.unwrap();
        let mut ev = c
            .wlog_transfer(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        ev.message().await.unwrap().unwrap();
        tx.send(wire::chunk(w.bytes[..100_000].to_vec()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(d.ok(&["get", "state", "vol0"]).await, "WlogRecv");
        assert_eq!(temps(&vd).len(), 1);
    }
    d.wait_state("vol0", "Started").await;
    assert!(temps(&vd).is_empty(), "{:?}", temps(&vd));
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, "");

    // stop force cuts a running receive; graceful stop would wait for it.
    {
        let ch = wire::connect(&d.addr).await.unwrap();
        let mut c = ProxyClient::new(ch);
        let (tx, rx) = mpsc::channel(4);
        tx.send(open()).await.unwrap();
        let mut ev = c
            .wlog_transfer(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        ev.message().await.unwrap().unwrap();
        tx.send(wire::chunk(w.bytes[..100_000].to_vec()))
            .await
            .unwrap();
        d.wait_state("vol0", "WlogRecv").await;
        assert_eq!(d.ok(&["stop", "vol0", "force"]).await, "ok");
        assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Stopped");
        let e = ev.message().await.expect_err("the receive was aborted");
        assert!(e.message().contains("stop force"), "{e}");
        assert!(temps(&vd).is_empty(), "{:?}", temps(&vd));
        d.ok(&["start", "vol0"]).await;
    }

    // After all that, a good transfer still works.
    assert_eq!(transfer(&d.addr, open(), &w.bytes, &m).await, End::Ack);
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, format_name(&m));
}
