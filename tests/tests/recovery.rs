//! Hash backup and the recoveries built on it (SCENARIOS.md Part A): each judged by the hash of
//! the restored image against the device's. Needs root and /dev/fuse.

use std::path::Path;

use walb_tests::cluster::{file_hash, Cluster, Spec};

fn backed_up(test: &str, spec: Spec) -> Option<Cluster> {
    let c = Cluster::start(test, spec)?;
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 0, 4 << 20, 1);
    c.walbc(&["full-backup", "s0", "vol0"]);
    Some(c)
}

fn check(c: &Cluster, gid: &str) {
    let img = c.walbc(&["restore", "vol0", gid]);
    assert_eq!(
        file_hash(Path::new(&img)),
        c.device_hash("wdev0"),
        "restore of gid {gid} differs from the device\n{}",
        c.logs()
    );
}

#[test]
fn n3_hash_backup_after_standby() {
    let Some(c) = backed_up("n3_hash_backup_after_standby", Spec::default()) else {
        return;
    };
    c.walbc(&["go-standby", "s0", "vol0"]);
    assert_eq!(c.walbc(&["call", "s0", "get", "state", "vol0"]), "Standby");
    c.write_random("wdev0", 6 << 20, 3 << 20, 2);
    c.write_random("wdev0", 0, 4096, 3);
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    assert_eq!(c.walbc(&["call", "s0", "get", "state", "vol0"]), "Target");
    check(&c, &gid);
    // Shipping goes on after the hash backup.
    c.write_random("wdev0", 20 << 20, 1 << 20, 4);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    check(&c, &gid);
}

#[test]
fn e4_storage_down_until_the_log_overflows() {
    let Some(mut c) = backed_up("e4_storage_down_until_the_log_overflows", Spec::default()) else {
        return;
    };
    c.kill("s0");
    // More than the 16 MiB log with nobody shipping.
    for i in 0..12u64 {
        c.write_random("wdev0", (i * 2) << 20, 2 << 20, 10 + i);
    }
    c.start_daemon("s0");
    c.walbc(&["kick", "s0"]);
    let t = std::time::Instant::now();
    while c.walbc(&["call", "s0", "get", "state", "vol0"]) != "Stopped" {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(c.walbc(&["is-overflow", "s0", "vol0"]), "1");
    let e = c.walbc_err(&["snapshot", "s0", "vol0"]);
    assert!(e.contains("overflow"), "{e}");
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    assert_eq!(c.walbc(&["is-overflow", "s0", "vol0"]), "0");
    check(&c, &gid);
}
