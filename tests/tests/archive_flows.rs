//! The real `walb-archive` binary: full sync, wdiff transfer, rejections, corruption, dropped
//! streams, apply, merge, restore, restart.

use std::time::{Duration, Instant};

use walb_core::{Uuid, LBS};
use walb_tests::daemon::{free_addr, Daemon};
use walb_tests::flows::*;
use walb_tests::scrape;

const LB: u64 = 8192; // 4 MiB
const VOL: &str = "vol0";

/// A daemon with `VOL` fully synced from a random image at `<|0|>`.
async fn synced(dir: &std::path::Path) -> (Daemon, Vec<u8>, Uuid) {
    let d = Daemon::start("archive", dir, &[]);
    assert_eq!(d.ok(&["init-vol", VOL]).await, "ok");
    assert_eq!(d.ok(&["get", "state", VOL]).await, "SyncReady");
    let img = random_image(LB, 1);
    let uuid = Uuid([7; 16]);
    let mut c = d.archive().await;
    assert_eq!(
        full_sync(&mut c, VOL, uuid, &img, snap(0, 0)).await,
        Outcome::Acked
    );
    (d, img, uuid)
}

fn file_hash(p: &str) -> blake3::Hash {
    blake3::hash(&std::fs::read(p).unwrap())
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "condition not reached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_restore_gives_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let (d, img, uuid) = synced(dir.path()).await;
    assert_eq!(d.ok(&["get", "state", VOL]).await, "Archived");
    assert_eq!(d.ok(&["get", "base", VOL]).await, "<|0|>");
    assert_eq!(d.ok(&["get", "uuid", VOL]).await, uuid.to_string());
    let au = d.ok(&["get", "archive-uuid", VOL]).await;
    assert_eq!(au.len(), 32);
    assert_ne!(au, "0".repeat(32));
    assert_eq!(d.ok(&["get", "exists-base-image", VOL]).await, "1");
    assert_eq!(
        d.ok(&["get", "restorable", VOL]).await,
        "0 2023-11-14T22:13:20 1"
    );
    let p = d.ok(&["restore", VOL, "0", "force"]).await;
    assert!(p.ends_with("restored/vol0/0.img"), "{p}");
    assert_eq!(file_hash(&p), blake3::hash(&img));
    assert_eq!(d.ok(&["get", "restored", VOL]).await, "0");
    assert_eq!(d.ok(&["bhash", VOL, "0"]).await, bhash_of(&img));
    // The base image is sparse where zero bulks were elided.
    let md = std::fs::metadata(d.vol_dir(VOL).join("base.img")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        md.blocks() * 512 < img.len() as u64,
        "base image is not sparse"
    );
    assert_eq!(d.ok(&["del-restored", VOL, "0"]).await, "ok");
    assert_eq!(d.ok(&["get", "restored", VOL]).await, "");
    // A second full sync needs SyncReady.
    let mut c = d.archive().await;
    assert_eq!(
        full_sync(&mut c, VOL, uuid, &img, snap(0, 0)).await,
        Outcome::Rejected("archived".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wdiff_transfer_then_restore_and_duplicate_is_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let (d, img, uuid) = synced(dir.path()).await;
    let w1 = make_wdiff(LB, 11, uuid);
    let d1 = diff(0, 1, false, 1_700_000_100);
    let mut c = d.archive().await;
    assert_eq!(
        send_wdiff(&mut c, VOL, uuid, LB, &d1, &w1).await,
        Outcome::Acked
    );
    assert_eq!(d.ok(&["get", "latest-snap", VOL]).await, "1 1");
    let want = applied(&img, &[&w1]);
    let h1 = d.ok(&["bhash", VOL, "1"]).await;
    assert_eq!(h1, bhash_of(&want));
    let p = d.ok(&["restore", VOL, "1", "force"]).await;
    assert_eq!(file_hash(&p), blake3::hash(&want));
    let diffs = d.ok(&["get", "diff", VOL]).await;
    // e17: the same diff again is too old and changes nothing.
    assert_eq!(
        send_wdiff(&mut c, VOL, uuid, LB, &d1, &w1).await,
        Outcome::Rejected("too-old-diff".into())
    );
    assert_eq!(d.ok(&["bhash", VOL, "1"]).await, h1);
    assert_eq!(d.ok(&["get", "diff", VOL]).await, diffs);
    assert_eq!(d.ok(&["get", "state", VOL]).await, "Archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_name_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _img, uuid) = synced(dir.path()).await;
    let w = make_wdiff(LB, 5, uuid);
    let mut c = d.archive().await;
    let d01 = diff(0, 1, false, 1);
    let rej = |s: &str| Outcome::Rejected(s.into());
    assert_eq!(
        send_wdiff(&mut c, "nope", uuid, LB, &d01, &w).await,
        rej("archive-not-found")
    );
    assert_eq!(
        send_wdiff(&mut c, VOL, Uuid([9; 16]), LB, &d01, &w).await,
        rej("different-uuid")
    );
    assert_eq!(
        send_wdiff(&mut c, VOL, uuid, LB + 8, &d01, &w).await,
        rej("smaller-lv-size")
    );
    assert_eq!(
        send_wdiff(&mut c, VOL, uuid, LB, &diff(3, 4, false, 1), &w).await,
        rej("too-new-diff")
    );
    assert_eq!(d.ok(&["stop", VOL]).await, "ok");
    assert_eq!(d.ok(&["get", "state", VOL]).await, "Stopped");
    assert_eq!(
        send_wdiff(&mut c, VOL, uuid, LB, &d01, &w).await,
        rej("stopped")
    );
    // An archive sender may carry another uuid.
    assert_eq!(d.ok(&["start", VOL]).await, "ok");
    let o = flow(
        &mut c,
        true,
        wdiff_open(VOL, "archive", Uuid([9; 16]), LB, &d01),
        wdiff_frames(&make_wdiff(LB, 5, Uuid([9; 16])), 65536),
    )
    .await;
    assert_eq!(o, Outcome::Acked);
    // Commands in the wrong state or on unknown volumes.
    let e = d.call(&["start", VOL]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("Archived"), "{}", e.message());
    let e = d.call(&["get", "base", "nope"]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(e.message(), "volume nope not found");
    let e = d.call(&["clear-vol", VOL]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let e = d.call(&["restore", VOL, "7", "force"]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("gid 7"), "{}", e.message());
    let e = d.call(&["get", "no-such-target", VOL]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_dropped_wdiff_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _img, uuid) = synced(dir.path()).await;
    let before = d.ok(&["bhash", VOL, "0"]).await;
    let mut w = make_wdiff(LB, 21, uuid);
    // A byte of the first pack's data.
    w[32 + 4096 + 100] ^= 0x40;
    let mut c = d.archive().await;
    let o = send_wdiff(&mut c, VOL, uuid, LB, &diff(0, 1, false, 1), &w).await;
    assert!(
        matches!(&o, Outcome::Failed(m) if m.contains("received wdiff")),
        "{o:?}"
    );
    wait_for(|| d.temp_files(VOL).is_empty()).await;
    assert_eq!(d.ok(&["get", "diff", VOL]).await, "");
    assert_eq!(d.ok(&["bhash", VOL, "0"]).await, before);
    assert_eq!(d.ok(&["get", "latest-snap", VOL]).await, "0 0");
    // Bytes after the END pack: checked as they arrive, like the packs.
    let mut w = make_wdiff(LB, 24, uuid);
    w.extend_from_slice(&[7; 100]);
    let o = send_wdiff(&mut c, VOL, uuid, LB, &diff(0, 1, false, 1), &w).await;
    assert!(
        matches!(&o, Outcome::Failed(m) if m.contains("after the END pack")),
        "{o:?}"
    );
    wait_for(|| d.temp_files(VOL).is_empty()).await;
    assert_eq!(d.ok(&["get", "diff", VOL]).await, "");
    // A chunk whose checksum does not match its data.
    let mut frames = wdiff_frames(&make_wdiff(LB, 23, uuid), 65536);
    if let Some(walb_proto::frame::Kind::Chunk(ch)) = &mut frames[0].kind {
        ch.crc32 ^= 1;
    }
    let o = flow(
        &mut c,
        true,
        wdiff_open(VOL, "proxy", uuid, LB, &diff(0, 1, false, 1)),
        frames,
    )
    .await;
    assert!(
        matches!(&o, Outcome::Failed(m) if m.contains("checksum")),
        "{o:?}"
    );
    wait_for(|| d.temp_files(VOL).is_empty()).await;
    assert_eq!(d.ok(&["get", "diff", VOL]).await, "");

    // A transfer cut by stop force.
    let good = make_wdiff(LB, 22, uuid);
    let open = wdiff_open(VOL, "proxy", uuid, LB, &diff(0, 1, false, 1));
    let (tx, mut events) = wdiff_stream(&mut c, open).await;
    for f in wdiff_frames(&good[..good.len() / 2], 4096) {
        if matches!(f.kind, Some(walb_proto::frame::Kind::Commit(_))) {
            break;
        }
        tx.send(f).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(d.ok(&["get", "state", VOL]).await, "WdiffRecv");
    // Another transfer meanwhile is refused.
    let mut c2 = d.archive().await;
    assert_eq!(
        send_wdiff(&mut c2, VOL, uuid, LB, &diff(0, 1, false, 1), &good).await,
        Outcome::Rejected("wdiff-recv".into())
    );
    // stop force cuts the transfer; nothing is registered and the volume is Stopped.
    assert_eq!(d.ok(&["stop", VOL, "force"]).await, "ok");
    assert_eq!(d.ok(&["get", "state", VOL]).await, "Stopped");
    let end = events.message().await;
    assert!(end.is_err(), "{end:?}");
    assert_eq!(d.ok(&["start", VOL]).await, "ok");

    // A sender that goes away mid-transfer.
    let open = wdiff_open(VOL, "proxy", uuid, LB, &diff(0, 1, false, 1));
    let (tx, events) = wdiff_stream(&mut c, open).await;
    tx.send(wdiff_frames(&good, 4096).remove(0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(d.ok(&["get", "state", VOL]).await, "WdiffRecv");
    drop(tx);
    drop(events);
    drop(c);
    let vd = d.vol_dir(VOL);
    wait_for(|| {
        std::fs::read_dir(&vd)
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.'))
    })
    .await;
    let t0 = Instant::now();
    while d.ok(&["get", "state", VOL]).await != "Archived" {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.ok(&["get", "diff", VOL]).await, "");
    assert_eq!(d.ok(&["bhash", VOL, "0"]).await, before);
    // And the same diff sent whole afterwards is accepted.
    assert_eq!(
        send_wdiff(&mut c2, VOL, uuid, LB, &diff(0, 1, false, 1), &good).await,
        Outcome::Acked
    );
}

/// Three diffs: |0|->|1| explicit, then |1|->|2| and |2|->|3| mergeable.
async fn three_diffs(d: &Daemon, uuid: Uuid) -> Vec<Vec<u8>> {
    let mut c = d.archive().await;
    let ws: Vec<Vec<u8>> = (0..3).map(|i| make_wdiff(LB, 100 + i, uuid)).collect();
    let metas = [
        diff(0, 1, false, 1_700_000_100),
        diff(1, 2, true, 1_700_000_200),
        diff(2, 3, true, 1_700_000_300),
    ];
    for (w, m) in ws.iter().zip(&metas) {
        assert_eq!(
            send_wdiff(&mut c, VOL, uuid, LB, m, w).await,
            Outcome::Acked
        );
    }
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_merge_keep_restores_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (d, img, uuid) = synced(dir.path()).await;
    let ws = three_diffs(&d, uuid).await;
    let refs: Vec<&[u8]> = ws.iter().map(Vec::as_slice).collect();
    let want3 = applied(&img, &refs);
    assert_eq!(
        d.ok(&["get", "restorable", VOL, "all"]).await,
        "0 2023-11-14T22:13:20 1\n1 2023-11-14T22:15:00 0\n2 2023-11-14T22:16:40 0\n3 2023-11-14T22:18:20 ?"
    );
    assert_eq!(
        d.ok(&["get", "restorable", VOL, "explicit"]).await,
        "0 2023-11-14T22:13:20 1\n3 2023-11-14T22:18:20 ?"
    );
    let h3 = d.ok(&["bhash", VOL, "3"]).await;
    assert_eq!(h3, bhash_of(&want3));

    // merge |1|->|2| and |2|->|3|.
    assert_eq!(d.ok(&["merge", VOL, "1", "3"]).await, "ok");
    let names = d.ok(&["get", "diff", VOL]).await;
    assert_eq!(names.lines().count(), 2, "{names}");
    assert!(names.ends_with("-M--1-3.wdiff"), "{names}");
    assert_eq!(d.ok(&["bhash", VOL, "3"]).await, h3);
    let p = d.ok(&["restore", VOL, "3", "force"]).await;
    assert_eq!(file_hash(&p), blake3::hash(&want3));
    // gid 2 was an implicit snapshot eaten by the merge.
    assert!(d.call(&["restore", VOL, "2", "force"]).await.is_err());
    // A single diff is no merge.
    assert!(d.call(&["merge", VOL, "0", "1"]).await.is_err());

    // apply up to 1: base moves, diff |0|->|1| goes away, restores are unchanged.
    let p1 = d.ok(&["restore", VOL, "1", "force"]).await;
    let h1 = file_hash(&p1);
    assert_eq!(h1, blake3::hash(&applied(&img, &refs[..1])));
    assert_eq!(d.ok(&["apply", VOL, "1"]).await, "ok");
    assert_eq!(d.ok(&["get", "base", VOL]).await, "<|1|>");
    assert_eq!(d.ok(&["get", "diff", VOL]).await.lines().count(), 1);
    assert_eq!(file_hash(&d.ok(&["restore", VOL, "1", "force"]).await), h1);
    assert_eq!(
        file_hash(&d.ok(&["restore", VOL, "3", "force"]).await),
        blake3::hash(&want3)
    );
    assert_eq!(d.ok(&["apply", VOL, "3"]).await, "ok");
    assert_eq!(d.ok(&["get", "base", VOL]).await, "<|3|>");
    assert_eq!(d.ok(&["get", "diff", VOL]).await, "");
    assert_eq!(d.ok(&["bhash", VOL, "3"]).await, h3);
    // cat writes the same image.
    let out = dir.path().join("cat.img");
    assert_eq!(d.ok(&["cat", VOL, "3", out.to_str().unwrap()]).await, "ok");
    assert_eq!(file_hash(out.to_str().unwrap()), blake3::hash(&want3));
    assert_eq!(d.ok(&["gc-diff", VOL]).await, "0");
}

/// The gids `get restorable` lists (explicit ones only).
async fn explicit_gids(d: &Daemon) -> Vec<String> {
    d.ok(&["get", "restorable", VOL, "explicit"])
        .await
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_and_disable_snapshot_survive_a_restart_and_steer_merge() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _img, uuid) = synced(dir.path()).await;
    three_diffs(&d, uuid).await;
    let h3 = d.ok(&["bhash", VOL, "3"]).await;
    assert_eq!(explicit_gids(&d).await, ["0", "3"]);
    assert_eq!(d.ok(&["enable-snapshot", VOL, "1", "2"]).await, "2");
    assert_eq!(explicit_gids(&d).await, ["0", "1", "2", "3"]);
    d.kill();
    let d = Daemon::start("archive", dir.path(), &[]);
    assert_eq!(explicit_gids(&d).await, ["0", "1", "2", "3"]);
    // Explicit 2 lies between: no merge across it until it is disabled.
    assert!(d.call(&["merge", VOL, "1", "3"]).await.is_err());
    assert_eq!(d.ok(&["disable-snapshot", VOL, "2"]).await, "1");
    assert_eq!(explicit_gids(&d).await, ["0", "1", "3"]);
    assert_eq!(
        d.ok(&["get", "restorable", VOL, "all"])
            .await
            .lines()
            .count(),
        4
    );
    assert_eq!(d.ok(&["merge", VOL, "1", "3"]).await, "ok");
    assert_eq!(d.ok(&["bhash", VOL, "3"]).await, h3);
    assert_eq!(explicit_gids(&d).await, ["0", "1", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_flag_errors_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _img, uuid) = synced(dir.path()).await;
    three_diffs(&d, uuid).await;
    let diffs = d.ok(&["get", "diff", VOL]).await;
    let code = |r: Result<String, tonic::Status>| r.unwrap_err();
    // gid 3 ends the chain: no diff starts there.
    let e = code(d.call(&["disable-snapshot", VOL, "1", "3"]).await);
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("gid 3"), "{e}");
    let e = code(d.call(&["disable-snapshot", VOL]).await);
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = code(d.call(&["enable-snapshot", VOL, "x"]).await);
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = code(d.call(&["enable-snapshot", "nope", "1"]).await);
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    assert_eq!(d.ok(&["stop", VOL]).await, "ok");
    let e = code(d.call(&["enable-snapshot", VOL, "1"]).await);
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert_eq!(d.ok(&["get", "diff", VOL]).await, diffs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (d, img, uuid) = synced(dir.path()).await;
    let ws = three_diffs(&d, uuid).await;
    let restorable = d.ok(&["get", "restorable", VOL, "all"]).await;
    let status = d.ok(&["status", VOL]).await;
    let au = d.ok(&["get", "archive-uuid", VOL]).await;
    // Leftovers of a crash: a temp file, and an apply cut after `<B-->E>` was saved.
    std::fs::write(d.vol_dir(VOL).join(".tmp-wdiff-dead"), b"x").unwrap();
    d.kill();
    let d = Daemon::start("archive", dir.path(), &[]);
    assert!(d.temp_files(VOL).is_empty());
    assert_eq!(d.ok(&["get", "restorable", VOL, "all"]).await, restorable);
    assert_eq!(d.ok(&["status", VOL]).await, status);
    assert_eq!(d.ok(&["get", "archive-uuid", VOL]).await, au);
    assert_eq!(d.ok(&["get", "vol"]).await, VOL);
    let refs: Vec<&[u8]> = ws.iter().map(Vec::as_slice).collect();
    assert_eq!(
        d.ok(&["bhash", VOL, "3"]).await,
        bhash_of(&applied(&img, &refs))
    );
    d.kill();

    // Simulate a crash inside apply: base says <|0|-->|3|> and base.img is half written.
    {
        use walb_core::meta::MetaState;
        let base_path = dir.path().join("vols").join(VOL).join("base");
        let st = MetaState::from_bytes(&std::fs::read(&base_path).unwrap()).unwrap();
        let metas = [
            diff(0, 1, false, 1_700_000_100),
            diff(1, 2, true, 1_700_000_200),
            diff(2, 3, true, 1_700_000_300),
        ];
        let applying = st.begin_apply(&metas).unwrap();
        walb_core::atomic::write_atomic(&base_path, &applying.to_bytes()).unwrap();
        let half = applied(&img, &refs[..1]);
        std::fs::write(dir.path().join("vols").join(VOL).join("base.img"), &half).unwrap();
    }
    let d = Daemon::start("archive", dir.path(), &[]);
    assert_eq!(d.ok(&["get", "base", VOL]).await, "<|3|>");
    assert_eq!(d.ok(&["get", "diff", VOL]).await, "");
    let p = d.ok(&["restore", VOL, "3", "force"]).await;
    assert_eq!(file_hash(&p), blake3::hash(&applied(&img, &refs)));
    assert_eq!(img.len() as u64, LB * LBS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _img, uuid) = synced(dir.path()).await;
    assert!(d.call(&["init-vol", VOL]).await.is_err());
    assert_eq!(d.ok(&["stop", VOL, "graceful"]).await, "ok");
    assert_eq!(d.ok(&["reset-vol", VOL]).await, "ok");
    assert_eq!(d.ok(&["get", "state", VOL]).await, "SyncReady");
    assert_eq!(d.ok(&["get", "exists-base-image", VOL]).await, "0");
    // A full sync that ends without Commit leaves SyncReady and no temp file.
    let img = random_image(1024, 3);
    let mut frames = full_sync_frames(&img, 256, snap(0, 4));
    frames.pop();
    let mut c = d.archive().await;
    let o = flow(&mut c, false, full_sync_open(VOL, uuid, 1024, 256), frames).await;
    assert!(matches!(o, Outcome::Failed(_)), "{o:?}");
    wait_for(|| d.temp_files(VOL).is_empty()).await;
    assert_eq!(d.ok(&["get", "state", VOL]).await, "SyncReady");
    // Dirty base <|0,4|>: nothing restorable yet.
    let o = flow(
        &mut c,
        false,
        full_sync_open(VOL, uuid, 1024, 256),
        full_sync_frames(&img, 256, snap(0, 4)),
    )
    .await;
    assert_eq!(o, Outcome::Acked);
    assert_eq!(d.ok(&["get", "base", VOL]).await, "<|0,4|>");
    assert_eq!(d.ok(&["get", "restorable", VOL]).await, "");
    assert_eq!(d.ok(&["stop", VOL]).await, "ok");
    assert_eq!(d.ok(&["clear-vol", VOL]).await, "ok");
    assert_eq!(d.ok(&["get", "state", VOL]).await, "Clear");
    assert_eq!(d.ok(&["get", "vol"]).await, "");
    assert!(!d.vol_dir(VOL).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_diffs_bytes_and_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let maddr = free_addr();
    let d = Daemon::start(
        "archive",
        dir.path(),
        &["--metrics", &maddr, "--discard", "ignore"],
    );
    assert_eq!(d.ok(&["init-vol", VOL]).await, "ok");
    assert_eq!(d.ok(&["get", "uuid", VOL]).await, "0".repeat(32));
    let img = random_image(LB, 2);
    let uuid = Uuid([3; 16]);
    let mut c = d.archive().await;
    assert_eq!(
        full_sync(&mut c, VOL, uuid, &img, snap(0, 0)).await,
        Outcome::Acked
    );
    let w = make_wdiff(LB, 9, uuid);
    let d01 = diff(0, 1, false, 5);
    assert_eq!(
        send_wdiff(&mut c, VOL, uuid, LB, &d01, &w).await,
        Outcome::Acked
    );
    assert_eq!(
        send_wdiff(&mut c, VOL, uuid, LB, &d01, &w).await,
        Outcome::Rejected("too-old-diff".into())
    );
    let m = scrape(&maddr);
    assert!(m.contains("walb_archive_diffs{vol=\"vol0\"} 1\n"), "{m}");
    assert!(
        m.contains(&format!(
            "walb_archive_diff_bytes{{vol=\"vol0\"}} {}\n",
            w.len()
        )),
        "{m}"
    );
    assert!(
        m.contains("walb_archive_latest_gid{vol=\"vol0\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("walb_archive_rejections_total{vol=\"vol0\",reason=\"too-old-diff\"} 1\n"),
        "{m}"
    );
    let received = m
        .lines()
        .find_map(|l| l.strip_prefix("walb_archive_bytes_received_total{vol=\"vol0\"} "))
        .expect("bytes received")
        .parse::<f64>()
        .unwrap();
    assert!(received > w.len() as f64, "{received}");
    let st = d.ok(&["status"]).await;
    assert!(
        st.starts_with("vol0: state Archived base <|0|> latest |1| diffs 1"),
        "{st}"
    );
}
