//! The real `walb-proxy` binary alone: archive-info add/list/get/update/delete and the state
//! changes they make; wlog receive (a generated wlog becomes an indexed wdiff equal to its
//! conversion; rejections; corrupt, mismatched and interrupted transfers register nothing and
//! leave no temp file; several wlogs on one stream); sending without a reachable archive (retries, give-up (send error),
//! kick, stop empty, and a restart that keeps diffs and the Started state).

use std::time::{Duration, Instant};

use tonic::Code;
use walb_core::convert::wlog_records;
use walb_core::meta::format_name;
use walb_core::source::BytesSource;
use walb_core::wdiff::{Body, DiffRec, IndexedReader};
use walb_core::wlog::WlogReader;
use walb_core::Uuid;
use walb_proto::flow::Flow;
use walb_proto::proxy_client::ProxyClient;
use walb_proto::{frame, wire, Commit};
use walb_tests::daemon::{free_addr, temp_files, Daemon};
use walb_tests::flows::{
    dead_addr, make_wlog, open_frame, transfer, wlog_diff as diff, wlog_stream, End, Wlog, DEV_LB,
};
use walb_tests::scrape;

// ---- archive-info

#[tokio::test(flavor = "multi_thread")]
async fn archive_info_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start("proxy", dir.path(), &[]);
    assert_eq!(d.ok(&["get", "host-type"]).await, "proxy");
    assert_eq!(d.ok(&["get", "vol"]).await, "");
    let (code, msg) = d.err(&["get", "state", "vol0"]).await;
    assert_eq!(code, Code::NotFound, "{msg}");

    assert_eq!(
        d.ok(&["archive-info", "add", "vol0", "a0", "127.0.0.1:5000"])
            .await,
        "ok"
    );
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Stopped");
    assert_eq!(
        d.ok(&["archive-info", "get", "vol0", "a0"]).await,
        "127.0.0.1:5000 zstd:1 0"
    );
    d.ok(&["archive-info", "add", "vol0", "a1", "h1:6000", "none", "30"])
        .await;
    assert_eq!(
        d.ok(&["archive-info", "get", "vol0", "a1"]).await,
        "h1:6000 none 30"
    );
    assert_eq!(d.ok(&["archive-info", "list", "vol0"]).await, "a0\na1");
    assert_eq!(d.ok(&["get", "vol"]).await, "vol0");
    let (code, _) = d.err(&["archive-info", "add", "vol0", "a0", "h:1"]).await;
    assert_eq!(code, Code::InvalidArgument);
    let (code, msg) = d
        .err(&["archive-info", "add", "vol0", "a2", "nohost"])
        .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("HOST:PORT"), "{msg}");
    let (code, msg) = d
        .err(&["archive-info", "add", "vol0", "a2", "h:1", "bogus"])
        .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("compression"), "{msg}");

    d.ok(&[
        "archive-info",
        "update",
        "vol0",
        "a0",
        "127.0.0.1:5001",
        "zstd:3",
        "5",
    ])
    .await;
    assert_eq!(
        d.ok(&["archive-info", "get", "vol0", "a0"]).await,
        "127.0.0.1:5001 zstd:3 5"
    );
    let (code, _) = d
        .err(&["archive-info", "update", "vol0", "zz", "h:1"])
        .await;
    assert_eq!(code, Code::NotFound);
    let (code, _) = d.err(&["archive-info", "get", "vol0", "zz"]).await;
    assert_eq!(code, Code::NotFound);

    // Started: archive-info cannot change, clear-vol and start are refused.
    assert_eq!(d.ok(&["start", "vol0"]).await, "ok");
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Started");
    for args in [
        &["archive-info", "update", "vol0", "a0", "h:1"][..],
        &["archive-info", "delete", "vol0", "a0"],
        &["archive-info", "add", "vol0", "a3", "h:1"],
        &["clear-vol", "vol0"],
        &["start", "vol0"],
    ] {
        let (code, msg) = d.err(args).await;
        assert_eq!(code, Code::FailedPrecondition, "{args:?}: {msg}");
        assert!(
            msg.contains("Started") && msg.contains(args[0]),
            "{args:?}: {msg}"
        );
    }
    assert_eq!(d.ok(&["stop", "vol0"]).await, "ok");
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Stopped");
    let (code, _) = d.err(&["stop", "vol0"]).await;
    assert_eq!(code, Code::FailedPrecondition);

    // Deleting the last archive makes the volume Clear (gone).
    d.ok(&["archive-info", "delete", "vol0", "a1"]).await;
    assert_eq!(d.ok(&["archive-info", "list", "vol0"]).await, "a0");
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Stopped");
    d.ok(&["archive-info", "delete", "vol0", "a0"]).await;
    assert_eq!(d.err(&["get", "state", "vol0"]).await.0, Code::NotFound);
    assert!(!d.vol_dir("vol0").exists());

    // clear-vol from Stopped.
    d.ok(&["archive-info", "add", "vol1", "a0", "h:1"]).await;
    assert_eq!(d.ok(&["clear-vol", "vol1"]).await, "ok");
    assert_eq!(d.err(&["get", "state", "vol1"]).await.0, Code::NotFound);
    assert_eq!(d.err(&["start", "vol1"]).await.0, Code::NotFound);
    assert_eq!(d.err(&["kick", "vol1"]).await.0, Code::NotFound);
    assert_eq!(d.ok(&["kick"]).await, "ok");
    let (code, _) = d.err(&["archive-info", "add", "../x", "a0", "h:1"]).await;
    assert_eq!(code, Code::InvalidArgument);
}

// ---- wlog receive

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
    let d = Daemon::start("proxy", dir, &[]);
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
    assert!(temp_files(&vd).is_empty());
    assert!(d.ok(&["status", "vol0"]).await.contains("waiting 2"));
}

fn w_end(w: &Wlog) -> u64 {
    let mut r = WlogReader::new(Box::new(BytesSource::new(w.bytes.clone().into()))).unwrap();
    for p in &mut r {
        p.unwrap();
    }
    r.end_lsid()
}

/// One stream carries several wlogs of a volume, each sent before the previous one's Ack
/// (docs/formats.md §7.4): both are registered, in order, and acked in turn; another volume's
/// Open on that stream ends it as bad input and registers nothing.
#[tokio::test(flavor = "multi_thread")]
async fn one_stream_carries_several_wlogs_acked_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let d = started(dir.path()).await;
    let w1 = make_wlog(1, 1 << 20, 100);
    let w2 = make_wlog(1, 256 << 10, w_end(&w1));
    let (m1, m2) = (diff(0, 1), diff(1, 2));
    let commit = |m: &walb_core::meta::MetaDiff| {
        wire::frame(frame::Kind::Commit(Commit {
            diff: m.to_bytes().into(),
            ..Default::default()
        }))
    };
    let ch = wire::connect(&d.addr).await.unwrap();
    let mut c = walb_proto::sized!(ProxyClient::new(ch));
    let mut flow = Flow::start(
        open_frame("vol0", &w1.header, DEV_LB),
        move |s| async move { c.wlog_transfer(s).await },
    );
    flow.send_bytes(w1.bytes.clone().into()).await.unwrap();
    flow.send(commit(&m1)).await.unwrap();
    flow.send(open_frame("vol0", &w2.header, DEV_LB))
        .await
        .unwrap();
    flow.send_bytes(w2.bytes.clone().into()).await.unwrap();
    flow.send(commit(&m2)).await.unwrap();
    flow.acked().await.unwrap();
    flow.acked().await.unwrap();
    let names = format!("{}\n{}", format_name(&m1), format_name(&m2));
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0", "a0"]).await, names);

    let _ = flow.send(open_frame("vol1", &w2.header, DEV_LB)).await;
    let e = flow.acked().await.unwrap_err();
    assert!(e.to_string().contains("wlogs of one volume"), "{e}");
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0", "a0"]).await, names);
    assert!(temp_files(&d.vol_dir("vol0")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rejections_and_bad_transfers_register_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start("proxy", dir.path(), &[]);
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
    assert!(temp_files(&vd).is_empty(), "{:?}", temp_files(&vd));
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Started");

    // A storage that goes away mid-stream.
    {
        let (tx, _ev) = wlog_stream(&d.addr, open()).await;
        tx.send(wire::chunk(w.bytes[..100_000].to_vec()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(d.ok(&["get", "state", "vol0"]).await, "WlogRecv");
        assert_eq!(temp_files(&vd).len(), 1);
    }
    d.wait_state("vol0", "Started").await;
    assert!(temp_files(&vd).is_empty(), "{:?}", temp_files(&vd));
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, "");

    // stop force cuts a running receive; graceful stop would wait for it.
    {
        let (tx, mut ev) = wlog_stream(&d.addr, open()).await;
        tx.send(wire::chunk(w.bytes[..100_000].to_vec()))
            .await
            .unwrap();
        d.wait_state("vol0", "WlogRecv").await;
        assert_eq!(d.ok(&["stop", "vol0", "force"]).await, "ok");
        assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Stopped");
        let e = ev.message().await.expect_err("the receive was aborted");
        assert!(e.message().contains("stop force"), "{e}");
        assert!(temp_files(&vd).is_empty(), "{:?}", temp_files(&vd));
        d.ok(&["start", "vol0"]).await;
    }

    // After all that, a good transfer still works.
    assert_eq!(transfer(&d.addr, open(), &w.bytes, &m).await, End::Ack);
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, format_name(&m));
}

// ---- sending

async fn wait_send_error(d: &Daemon, want: &str, within: Duration) {
    let t0 = Instant::now();
    loop {
        let e = d.ok(&["get", "is-wdiff-send-error", "vol0", "a0"]).await;
        if e == want {
            return;
        }
        assert!(t0.elapsed() < within, "is-wdiff-send-error stayed {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_archive_retries_then_gives_up_until_kicked() {
    let dir = tempfile::tempdir().unwrap();
    let maddr = free_addr();
    let d = Daemon::start(
        "proxy",
        dir.path(),
        &["--retry-timeout", "2", "--metrics", &maddr],
    );
    d.ok(&["archive-info", "add", "vol0", "a0", &dead_addr()])
        .await;
    d.ok(&["start", "vol0"]).await;
    let w = make_wlog(3, 128 << 10, 0);
    let m = diff(0, 1);
    let end = transfer(&d.addr, open_frame("vol0", &w.header, DEV_LB), &w.bytes, &m).await;
    assert_eq!(end, End::Ack);

    // Retrying: no error yet, the diff still waits, status names the failure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        d.ok(&["get", "is-wdiff-send-error", "vol0", "a0"]).await,
        "0"
    );
    let st = d.ok(&["status", "vol0"]).await;
    assert!(
        st.contains("last failure") && st.contains("connect"),
        "{st}"
    );
    // Give-up after the 2 s retry timeout (back-off 1 s, 2 s).
    wait_send_error(&d, "1", Duration::from_secs(8)).await;
    assert_eq!(
        d.ok(&["get", "proxy-diff", "vol0", "a0"]).await,
        format_name(&m)
    );
    assert!(d.ok(&["status", "vol0"]).await.contains("send error"));
    let m = scrape(&maddr);
    for line in [
        "walb_proxy_send_error{vol=\"vol0\",archive=\"a0\"} 1",
        "walb_proxy_send_errors_total{vol=\"vol0\",archive=\"a0\"} 1",
        "walb_proxy_diffs{vol=\"vol0\",archive=\"a0\"} 1",
        &format!(
            "walb_proxy_bytes_received_total{{vol=\"vol0\"}} {}",
            w.bytes.len()
        ),
    ] {
        assert!(m.contains(line), "{line} not in\n{m}");
    }

    // kick VOL NAME clears it (and retrying starts over).
    assert_eq!(d.ok(&["kick", "vol0", "a0"]).await, "ok");
    assert_eq!(
        d.ok(&["get", "is-wdiff-send-error", "vol0", "a0"]).await,
        "0"
    );
    wait_send_error(&d, "1", Duration::from_secs(8)).await;
    // A new wlog clears it too.
    let w2 = make_wlog(3, 64 << 10, 1_000_000);
    let end = transfer(
        &d.addr,
        open_frame("vol0", &w2.header, DEV_LB),
        &w2.bytes,
        &diff(1, 2),
    )
    .await;
    assert_eq!(end, End::Ack);
    assert_eq!(
        d.ok(&["get", "is-wdiff-send-error", "vol0", "a0"]).await,
        "0"
    );
    let (code, _) = d.err(&["get", "is-wdiff-send-error", "vol0", "zz"]).await;
    assert_eq!(code, Code::NotFound);
    // stop, start clears errors as well.
    wait_send_error(&d, "1", Duration::from_secs(8)).await;
    d.ok(&["stop", "vol0", "force"]).await;
    d.ok(&["start", "vol0"]).await;
    assert_eq!(
        d.ok(&["get", "is-wdiff-send-error", "vol0", "a0"]).await,
        "0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_empty_waits_while_diffs_wait_and_force_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start("proxy", dir.path(), &[]);
    d.ok(&["archive-info", "add", "vol0", "a0", &dead_addr()])
        .await;
    d.ok(&["start", "vol0"]).await;
    let w = make_wlog(4, 128 << 10, 0);
    let m = diff(0, 1);
    assert_eq!(
        transfer(&d.addr, open_frame("vol0", &w.header, DEV_LB), &w.bytes, &m).await,
        End::Ack
    );

    let addr = d.addr.clone();
    let empty = tokio::spawn(async move {
        let probe = Daemon::call_at(&addr, &["stop", "vol0", "empty"]).await;
        probe
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !empty.is_finished(),
        "stop empty returned while a diff waits"
    );
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "WaitForEmpty");
    // No wlog is taken while waiting for empty.
    let w2 = make_wlog(4, 64 << 10, 1_000_000);
    assert_eq!(
        transfer(
            &d.addr,
            open_frame("vol0", &w2.header, DEV_LB),
            &w2.bytes,
            &diff(1, 2)
        )
        .await,
        End::Reject("stopped".into())
    );
    assert_eq!(d.ok(&["stop", "vol0", "force"]).await, "ok");
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Stopped");
    let r = tokio::time::timeout(Duration::from_secs(5), empty)
        .await
        .expect("stop empty ended")
        .unwrap();
    let e = r.expect_err("stop empty was overtaken");
    assert_eq!(e.code(), Code::FailedPrecondition);
    // The diff is still held.
    assert_eq!(
        d.ok(&["get", "proxy-diff", "vol0", "a0"]).await,
        format_name(&m)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_diffs_and_started() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start("proxy", dir.path(), &[]);
    for v in ["vol0", "vol1"] {
        d.ok(&["archive-info", "add", v, "a0", &dead_addr()]).await;
        d.ok(&["archive-info", "add", v, "a1", &dead_addr(), "none", "3"])
            .await;
    }
    d.ok(&["start", "vol0"]).await;
    let w = make_wlog(5, 128 << 10, 0);
    let m = diff(0, 1);
    assert_eq!(
        transfer(&d.addr, open_frame("vol0", &w.header, DEV_LB), &w.bytes, &m).await,
        End::Ack
    );
    let vd = d.vol_dir("vol0");
    d.kill();
    // Leftover of a receive cut by the crash.
    std::fs::write(vd.join(".tmp.wlog.1.1"), b"partial").unwrap();

    let d = Daemon::start("proxy", dir.path(), &[]);
    assert_eq!(d.ok(&["get", "vol"]).await, "vol0\nvol1");
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Started");
    assert_eq!(d.ok(&["get", "state", "vol1"]).await, "Stopped");
    assert_eq!(
        d.ok(&["archive-info", "get", "vol1", "a1"])
            .await
            .split(' ')
            .nth(1),
        Some("none")
    );
    for a in ["a0", "a1"] {
        assert_eq!(
            d.ok(&["get", "proxy-diff", "vol0", a]).await,
            format_name(&m)
        );
    }
    assert!(temp_files(&vd).is_empty(), "{:?}", temp_files(&vd));
    // Stopped is remembered as well.
    d.ok(&["stop", "vol0"]).await;
    d.kill();
    let d = Daemon::start("proxy", dir.path(), &[]);
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Stopped");
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, format_name(&m));
    // Deleting one archive keeps the diff for the other; clear-vol drops everything.
    d.ok(&["archive-info", "delete", "vol0", "a0"]).await;
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, format_name(&m));
    d.ok(&["clear-vol", "vol0"]).await;
    assert!(!vd.exists());
}
