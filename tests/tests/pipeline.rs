//! The pipeline end to end (SCENARIOS.md Part A, normal and error rows): real wdevd, storage,
//! proxy and archive processes on localhost, real loop devices; each judged by the hash of the
//! restored image against the device's hash at that gid. Needs root and /dev/fuse.

use std::path::Path;

use walb_tests::cluster::{file_hash, Cluster, Spec};

/// Full backup of vol0 on wdev0 from s0; returns the gid.
fn full_backup(c: &Cluster) -> String {
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 0, 4 << 20, 1);
    c.write_random("wdev0", 20 << 20, 1 << 20, 2);
    c.walbc(&["full-backup", "s0", "vol0"])
}

fn restored_hash(c: &Cluster, gid: &str) -> String {
    let img = c.walbc(&["restore", "vol0", gid]);
    file_hash(Path::new(&img))
}

#[test]
fn n1_full_backup() {
    let Some(c) = Cluster::start("n1_full_backup", Spec::default()) else {
        return;
    };
    let gid = full_backup(&c);
    assert_eq!(
        restored_hash(&c, &gid),
        c.device_hash("wdev0"),
        "{}",
        c.logs()
    );
}

#[test]
fn n2_explicit_snapshot() {
    let Some(c) = Cluster::start("n2_explicit_snapshot", Spec::default()) else {
        return;
    };
    let g0 = full_backup(&c);
    let h0 = c.device_hash("wdev0");
    c.write_random("wdev0", 8 << 20, 3 << 20, 3);
    c.write_random("wdev0", 1 << 20, 4096, 4);
    let g1 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h1 = c.device_hash("wdev0");
    assert!(g1.parse::<u64>().unwrap() > g0.parse::<u64>().unwrap());
    assert_eq!(restored_hash(&c, &g1), h1, "{}", c.logs());
    assert_eq!(
        restored_hash(&c, &g0),
        h0,
        "the older snapshot is still restorable"
    );
}
