//! Network cuts between the servers (docs/scenarios.md §4, e9–e13), made by TCP relays the tests
//! own in front of the proxy and the archive. Judged by the restored image's hash against the
//! device's. Needs root and /dev/fuse.

use std::time::{Duration, Instant};

use walb_tests::cluster::{Cluster, Spec};

/// A cluster whose storage reaches p0 and a0 through relays, and p0 reaches a0 through one;
/// vol0 backed up.
fn with_relays(test: &str) -> Option<Cluster> {
    let spec = Spec {
        relays: true,
        ..Spec::default()
    };
    let c = Cluster::start(test, spec)?;
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    let via = c.relay("a0").addr();
    c.walbc(&["call", "p0", "archive-info", "add", "vol0", "a0", &via]);
    c.write_random("wdev0", 0, 2 << 20, 1);
    c.walbc(&["full-backup", "s0", "vol0"]);
    Some(c)
}

fn check(c: &Cluster, gid: &str, want: &str) {
    assert_eq!(c.restored_hash("a0", gid), want, "gid {gid}\n{}", c.logs());
}

#[test]
fn e9_storage_to_proxy_cut() {
    let Some(c) = with_relays("e9_storage_to_proxy_cut") else {
        return;
    };
    c.relay("p0").cut();
    c.write_random("wdev0", 4 << 20, 2 << 20, 2);
    let gid = c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let h = c.device_hash("wdev0");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !c.is_restorable("a0", &gid),
        "restorable through a cut link"
    );
    c.relay("p0").restore();
    c.walbc(&["kick", "s0"]);
    c.wait_restorable("a0", &gid);
    check(&c, &gid, &h);
    c.write_random("wdev0", 8 << 20, 1 << 20, 3);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn e10_storage_to_proxy_cut_until_overflow() {
    let Some(c) = with_relays("e10_storage_to_proxy_cut_until_overflow") else {
        return;
    };
    c.relay("p0").cut();
    for i in 0..12u64 {
        c.write_random("wdev0", (i * 2) << 20, 2 << 20, 20 + i);
    }
    let t = Instant::now();
    while c.walbc(&["is-overflow", "s0", "vol0"]) != "1" {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.relay("p0").restore();
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn e11_proxy_to_archive_cut() {
    let Some(c) = with_relays("e11_proxy_to_archive_cut") else {
        return;
    };
    c.relay("a0").cut();
    c.write_random("wdev0", 4 << 20, 2 << 20, 4);
    let gid = c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let h = c.device_hash("wdev0");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !c.is_restorable("a0", &gid),
        "restorable through a cut link"
    );
    assert!(!c
        .walbc(&["call", "p0", "get", "proxy-diff", "vol0", "a0"])
        .is_empty());
    c.relay("a0").restore();
    c.walbc(&["kick", "p0"]);
    c.wait_restorable("a0", &gid);
    check(&c, &gid, &h);
}

#[test]
fn e12_link_cut_during_full_backup() {
    let spec = Spec {
        relays: true,
        ..Spec::default()
    };
    let Some(c) = Cluster::start("e12_link_cut_during_full_backup", spec) else {
        return;
    };
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    let via = c.relay("a0").addr();
    c.walbc(&["call", "p0", "archive-info", "add", "vol0", "a0", &via]);
    c.write_random("wdev0", 0, 32 << 20, 1);
    // 32 MiB of random data at 4 MiB/s: the backup is still running when the link is cut.
    c.relay("a0").set_rate(Some(4 << 20));
    let mut bg = c
        .walbc_cmd()
        .args(["full-backup", "s0", "vol0"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    c.relay("a0").cut();
    assert!(
        !bg.wait().unwrap().success(),
        "the full backup survived the cut"
    );
    c.wait_state("s0", "SyncReady");
    c.wait_state("a0", "SyncReady");
    c.relay("a0").set_rate(None);
    c.relay("a0").restore();
    let gid = c.walbc(&["full-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn e13_link_cut_during_hash_backup() {
    let Some(c) = with_relays("e13_link_cut_during_hash_backup") else {
        return;
    };
    c.wait_shipped("wdev0");
    c.walbc(&["go-standby", "s0", "vol0"]);
    let before = c.walbc(&["call", "a0", "get", "restorable", "vol0"]);
    // A third of the device changes while nothing ships: the hash backup has 12 MiB to send.
    c.write_random("wdev0", 0, 12 << 20, 5);
    c.relay("a0").set_rate(Some(2 << 20));
    let mut bg = c
        .walbc_cmd()
        .args(["hash-backup", "s0", "vol0"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.walbc(&["call", "a0", "get", "restorable", "vol0"]),
        before,
        "the restorable list changed during the hash backup"
    );
    c.relay("a0").cut();
    assert!(
        !bg.wait().unwrap().success(),
        "the hash backup survived the cut"
    );
    c.wait_state("s0", "SyncReady");
    c.wait_state("a0", "Archived");
    assert_eq!(
        c.walbc(&["call", "a0", "get", "restorable", "vol0"]),
        before
    );
    c.relay("a0").set_rate(None);
    c.relay("a0").restore();
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}
