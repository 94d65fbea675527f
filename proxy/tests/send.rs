//! Sending without a reachable archive: retries, give-up (send error), kick, stop empty, and a
//! restart that keeps diffs and the Started state.

mod common;

use std::time::{Duration, Instant};

use common::{dead_addr, diff, make_wlog, open_frame, temps, transfer, Daemon, End, DEV_LB};
use tonic::Code;
use walb_core::meta::format_name;

fn metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

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
    let maddr = format!("127.0.0.1:{}", common::free_port());
    let d = Daemon::start(dir.path(), &["--retry-timeout", "2", "--metrics", &maddr]).await;
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
    let m = metrics(&maddr);
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
    let d = Daemon::start(dir.path(), &[]).await;
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
    let d = Daemon::start(dir.path(), &[]).await;
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

    let d = Daemon::start(dir.path(), &[]).await;
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
    assert!(temps(&vd).is_empty(), "{:?}", temps(&vd));
    // Stopped is remembered as well.
    d.ok(&["stop", "vol0"]).await;
    d.kill();
    let d = Daemon::start(dir.path(), &[]).await;
    assert_eq!(d.ok(&["get", "state", "vol0"]).await, "Stopped");
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, format_name(&m));
    // Deleting one archive keeps the diff for the other; clear-vol drops everything.
    d.ok(&["archive-info", "delete", "vol0", "a0"]).await;
    assert_eq!(d.ok(&["get", "proxy-diff", "vol0"]).await, format_name(&m));
    d.ok(&["clear-vol", "vol0"]).await;
    assert!(!vd.exists());
}
