//! Archive → archive replication (docs/scenarios.md §2, n7, n8, n10, n14): full copy, diff copy,
//! synchronizing through the proxies, and a resync after a new full backup. Judged by the
//! hashes of restores of the same gid on both archives and of the device. Needs root and
//! /dev/fuse.

use std::time::Duration;

use walb_tests::cluster::{Cluster, Spec};

fn two_archives(test: &str) -> Option<Cluster> {
    let spec = Spec {
        archives: 2,
        ..Spec::default()
    };
    Cluster::backed_up(test, spec, 3 << 20)
}

#[test]
fn n7_full_replication() {
    let Some(c) = two_archives("n7_full_replication") else {
        return;
    };
    c.write_random("wdev0", 5 << 20, 1 << 20, 2);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    // a1 has nothing: a full copy of the newest restorable snapshot.
    let latest = c.walbc(&["replicate", "vol0", "a0", "a1"]);
    assert_eq!(latest, format!("{gid} {gid}"));
    assert_eq!(c.restored_hash("a1", &gid), h);
    assert_eq!(c.restored_hash("a0", &gid), h);
    assert_eq!(
        c.walbc(&["call", "a0", "get", "archive-uuid", "vol0"]),
        c.walbc(&["call", "a1", "get", "archive-uuid", "vol0"])
    );
}

#[test]
fn n8_diff_replication() {
    let Some(c) = two_archives("n8_diff_replication") else {
        return;
    };
    c.walbc(&["replicate", "vol0", "a0", "a1"]);
    // a0 is ahead: only the diffs follow.
    c.write_random("wdev0", 9 << 20, 2 << 20, 3);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    let latest = c.walbc(&["replicate", "vol0", "a0", "a1"]);
    assert_eq!(latest, format!("{gid} {gid}"));
    assert_eq!(c.restored_hash("a1", &gid), h);
    assert_eq!(c.restored_hash("a0", &gid), h);
}

#[test]
fn n10_synchronizing_archive_follows_the_stream() {
    let Some(c) = two_archives("n10_synchronizing_archive_follows_the_stream") else {
        return;
    };
    c.walbc(&["start-synchronizing", "vol0", "a1"]);
    c.write_random("wdev0", 2 << 20, 2 << 20, 4);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    c.wait_restorable("a1", &gid);
    assert_eq!(c.restored_hash("a1", &gid), h);
    assert_eq!(c.restored_hash("a0", &gid), h);
    c.walbc(&["stop-synchronizing", "vol0", "a1"]);
    c.write_random("wdev0", 6 << 20, 1 << 20, 5);
    let g2 = c.walbc(&["snapshot", "s0", "vol0"]);
    std::thread::sleep(Duration::from_secs(2));
    let latest = c.walbc(&["call", "a1", "get", "latest-snap", "vol0"]);
    let a1_gid: u64 = latest.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        g2.parse::<u64>().unwrap() > a1_gid,
        "a1 still follows: {latest}"
    );
}

#[test]
fn n14_resync_after_a_new_full_backup() {
    let Some(c) = two_archives("n14_resync_after_a_new_full_backup") else {
        return;
    };
    c.walbc(&["replicate", "vol0", "a0", "a1"]);
    c.walbc(&["call", "a0", "stop", "vol0"]);
    c.walbc(&["call", "a0", "clear-vol", "vol0"]);
    c.write_random("wdev0", 4 << 20, 2 << 20, 6);
    let gid = c.walbc(&["full-backup", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    let e = c.walbc_err(&["replicate", "vol0", "a0", "a1"]);
    assert!(e.contains("lineage"), "{e}");
    c.walbc(&["replicate", "vol0", "a0", "a1", "--resync"]);
    assert_eq!(c.restored_hash("a0", &gid), h);
    assert_eq!(c.restored_hash("a1", &gid), h);
}

#[test]
fn e7_synchronizing_archive_lost_and_resynchronized() {
    let Some(mut c) = two_archives("e7_synchronizing_archive_lost_and_resynchronized") else {
        return;
    };
    c.walbc(&["start-synchronizing", "vol0", "a1"]);
    c.kill("a1");
    std::fs::remove_dir_all(c.dir.join("a1")).unwrap();
    c.start_daemon("a1");
    c.write_random("wdev0", 3 << 20, 2 << 20, 7);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    std::thread::sleep(Duration::from_secs(2));
    // a1 does not know the volume any more (NotFound), let alone the snapshot.
    let e = c.walbc_err(&["call", "a1", "get", "restorable", "vol0"]);
    assert!(e.contains("not found"), "{e}");
    c.walbc(&["stop-synchronizing", "vol0", "a1"]);
    c.walbc(&["start-synchronizing", "vol0", "a1"]);
    c.write_random("wdev0", 8 << 20, 1 << 20, 8);
    let g2 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    c.wait_restorable("a1", &g2);
    assert_eq!(c.restored_hash("a0", &g2), h);
    assert_eq!(c.restored_hash("a1", &g2), h);
    assert!(g2.parse::<u64>().unwrap() > gid.parse::<u64>().unwrap());
}

#[test]
fn n9_hash_replication_after_apply() {
    let Some(c) = two_archives("n9_hash_replication_after_apply") else {
        return;
    };
    c.walbc(&["replicate", "vol0", "a0", "a1"]);
    c.write_random("wdev0", 4 << 20, 2 << 20, 9);
    let g1 = c.walbc(&["snapshot", "s0", "vol0"]);
    // a0's base moves past a1's latest snapshot: no diff chain reaches a1 any more.
    c.walbc(&["apply", "vol0", &g1]);
    c.write_random("wdev0", 12 << 20, 1 << 20, 10);
    let g2 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    let latest = c.walbc(&["replicate", "vol0", "a0", "a1"]);
    assert_eq!(latest, format!("{g2} {g2}"));
    assert!(
        c.walbc(&["call", "a1", "get", "diff", "vol0"])
            .lines()
            .any(|l| l.as_bytes().get(16) == Some(&b'C')),
        "no compared diff on a1"
    );
    assert_eq!(c.restored_hash("a1", &g2), h);
    assert_eq!(c.restored_hash("a0", &g2), h);
}
