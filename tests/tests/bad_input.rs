//! Bad input against a running pipeline: an unknown volume, a command in the wrong state, a
//! corrupt wdiff, a wdiff with another volume's uuid, a sender that disconnects mid-stream.
//! Each gets a clear error and the archive's data stays as it was (checked by its hash).
//! Needs root and /dev/fuse.

use bytes::Bytes;
use walb_proto::archive_client::ArchiveClient;
use walb_proto::{frame, wire, Open};
use walb_tests::cluster::{Cluster, Spec};
use walb_tests::{bin, run_ok};

/// A cluster with vol0 backed up; returns it and the archive's latest clean gid.
fn backed_up(test: &str) -> Option<(Cluster, u64)> {
    let c = Cluster::start(test, Spec::default())?;
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 0, 2 << 20, 1);
    let gid: u64 = c.walbc(&["full-backup", "s0", "vol0"]).parse().unwrap();
    Some((c, gid))
}

fn make_wdiff(c: &Cluster, name: &str) -> std::path::PathBuf {
    let wlog = c.dir.join(format!("{name}.wlog"));
    let wdiff = c.dir.join(format!("{name}.wdiff"));
    run_ok(
        std::process::Command::new(bin("walb-tool"))
            .args([
                "wlog-gen",
                "--size",
                "32M",
                "--total",
                "1M",
                "--no-discard",
                "-o",
            ])
            .arg(&wlog),
    );
    run_ok(
        std::process::Command::new(bin("walb-tool"))
            .args(["wlog-to-wdiff", "--cmpr", "none", "-o"])
            .arg(&wdiff)
            .arg(&wlog),
    );
    wdiff
}

fn bhash(c: &Cluster, gid: u64) -> String {
    c.walbc(&["call", "a0", "bhash", "vol0", &gid.to_string()])
}

#[test]
fn bad_input_unknown_volume_and_wrong_state() {
    let Some((c, _)) = backed_up("bad_input_unknown_volume_and_wrong_state") else {
        return;
    };
    for args in [
        ["s0", "snapshot", "nosuch"],
        ["p0", "start", "nosuch"],
        ["a0", "restore", "nosuch"],
    ] {
        let mut a = vec!["call"];
        a.extend(args);
        if args[0] == "a0" {
            a.push("1");
        }
        let e = c.walbc_err(&a);
        assert!(
            e.contains("nosuch") && e.contains("NotFound"),
            "{args:?}: {e}"
        );
    }
    // Target: a full backup again is the wrong state on both sides.
    let e = c.walbc_err(&["call", "s0", "full-bkp", "vol0"]);
    assert!(
        e.contains("Target") && e.contains("FailedPrecondition"),
        "{e}"
    );
    let e = c.walbc_err(&["full-backup", "s0", "vol0"]);
    assert!(e.contains("Archived"), "{e}");
    let e = c.walbc_err(&["call", "s0", "start", "vol0", "sideways"]);
    assert!(e.contains("sideways"), "{e}");
}

#[test]
fn bad_input_corrupt_or_foreign_wdiff_changes_nothing() {
    let Some((c, gid)) = backed_up("bad_input_corrupt_or_foreign_wdiff_changes_nothing") else {
        return;
    };
    let before = bhash(&c, gid);
    let diffs = c.walbc(&["call", "a0", "get", "diff", "vol0"]);
    let wdiff = make_wdiff(&c, "bad");
    let mut bytes = std::fs::read(&wdiff).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let corrupt = c.dir.join("corrupt.wdiff");
    std::fs::write(&corrupt, &bytes).unwrap();
    let (b, e) = (gid.to_string(), (gid + 1).to_string());
    // walbc re-encodes what it sends, so a corrupt file fails in walbc itself…
    let err = c.walbc_err(&[
        "wdiff-send",
        "a0",
        "vol0",
        corrupt.to_str().unwrap(),
        &b,
        &e,
    ]);
    assert!(err.contains("checksum") || err.contains("corrupt"), "{err}");
    // …and a foreign uuid is refused by the archive.
    let w = wdiff.to_str().unwrap();
    let other = "00112233445566778899aabbccddeeff";
    let r = c.walbc_err(&[
        "wdiff-send",
        "a0",
        "vol0",
        w,
        &b,
        &e,
        "--unsafe-stamp-uuid",
        other,
    ]);
    assert!(r.contains("different-uuid"), "{r}");
    assert_eq!(c.walbc(&["call", "a0", "get", "diff", "vol0"]), diffs);
    assert_eq!(bhash(&c, gid), before);
}

#[test]
fn bad_input_corrupt_stream_and_disconnect_change_nothing() {
    let Some((c, gid)) = backed_up("bad_input_corrupt_stream_and_disconnect_change_nothing") else {
        return;
    };
    let before = bhash(&c, gid);
    let diffs = c.walbc(&["call", "a0", "get", "diff", "vol0"]);
    let uuid = c.walbc(&["call", "a0", "get", "uuid", "vol0"]);
    let uuid: walb_core::Uuid = uuid.parse().unwrap();
    let diff = walb_core::meta::MetaDiff::clean(gid, gid + 1).unwrap();
    let addr = c.addr("a0").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let open = Open {
            vol: "vol0".into(),
            host_type: "proxy".into(),
            uuid: Bytes::copy_from_slice(&uuid.0),
            size_lb: 65536,
            diff: diff.to_bytes().into(),
            ..Default::default()
        };
        // Garbage after a valid open: the archive must refuse it at commit at the latest.
        let mut client = ArchiveClient::new(wire::connect(&addr).await.unwrap());
        let mut flow =
            walb_proto::flow::Flow::open(wire::frame(frame::Kind::Open(open.clone())), |s| {
                client.wdiff_transfer(s)
            })
            .await
            .expect("accepted");
        let _ = flow.send_bytes(Bytes::from(vec![0xAB; 100_000])).await;
        let r = flow
            .commit(wire::frame(frame::Kind::Commit(Default::default())))
            .await;
        assert!(r.is_err(), "garbage wdiff was acked");
        // A sender that goes away after some data.
        let mut client = ArchiveClient::new(wire::connect(&addr).await.unwrap());
        let mut flow = walb_proto::flow::Flow::open(wire::frame(frame::Kind::Open(open)), |s| {
            client.wdiff_transfer(s)
        })
        .await
        .expect("accepted");
        let _ = flow.send_bytes(Bytes::from(vec![0u8; 4096])).await;
        drop(flow);
        drop(client);
    });
    // The archive is back to Archived and unchanged.
    let t = std::time::Instant::now();
    while c.walbc(&["call", "a0", "get", "state", "vol0"]) != "Archived" {
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(c.walbc(&["call", "a0", "get", "diff", "vol0"]), diffs);
    assert_eq!(bhash(&c, gid), before);
    let vol_dir = c.dir.join("a0/vols/vol0");
    let temps: Vec<_> = std::fs::read_dir(&vol_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
}
