//! archive-info add/list/get/update/delete and the state changes they make.

mod common;

use common::Daemon;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn archive_info_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]).await;
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
