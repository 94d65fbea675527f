//! Growing a volume end to end (docs/scenarios.md §2–§3, n11a, n11b, m3): the data device grows,
//! then `walbc resize`; writes in the new area reach the archive. Judged by the restored image's
//! hash against the device's. Needs root and /dev/fuse.

use std::path::Path;
use std::time::{Duration, Instant};

use walb_tests::cluster::{file_hash, Cluster, Spec};

/// Grows wdev0's data device file from 32 to 36 MiB.
fn grow_ddev(c: &Cluster) {
    grow_ddev_to(c, 36 << 20);
}

fn grow_ddev_to(c: &Cluster, bytes: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.dir.join("wdev0.ddev"))
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

fn check(c: &Cluster, gid: &str) {
    check_size(c, gid, 36 << 20);
}

/// The restore of `gid` has `bytes` and the device's hash.
fn check_size(c: &Cluster, gid: &str, bytes: u64) {
    let img = c.walbc(&["restore", "vol0", gid]);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), bytes);
    assert_eq!(
        file_hash(Path::new(&img)),
        c.device_hash("wdev0"),
        "gid {gid}\n{}",
        c.logs()
    );
}

#[test]
fn n11a_resize_with_zero_clear() {
    let Some(c) = Cluster::backed_up("n11a_resize_with_zero_clear", Spec::default(), 2 << 20)
    else {
        return;
    };
    grow_ddev(&c);
    c.walbc(&["resize", "vol0", "36m", "--zero"]);
    let dev_size = walb_tests::run_ok(
        std::process::Command::new("blockdev").args(["--getsize64", &c.loops["wdev0"]]),
    );
    assert_eq!(
        dev_size.trim(),
        (36u64 << 20).to_string(),
        "the loop device did not grow"
    );
    c.write_random("wdev0", 33 << 20, 2 << 20, 2);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    check(&c, &gid);
}

#[test]
fn n11b_resize_then_hash_backup() {
    let Some(c) = Cluster::backed_up("n11b_resize_then_hash_backup", Spec::default(), 2 << 20)
    else {
        return;
    };
    grow_ddev(&c);
    c.walbc(&["resize", "vol0", "36m"]);
    c.write_random("wdev0", 34 << 20, 1 << 20, 3);
    c.walbc(&["go-standby", "s0", "vol0"]);
    c.write_random("wdev0", 32 << 20, 1 << 20, 4);
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    check(&c, &gid);
}

#[test]
fn m3_storage_grown_but_not_the_archive() {
    let Some(c) = Cluster::backed_up(
        "m3_storage_grown_but_not_the_archive",
        Spec::default(),
        2 << 20,
    ) else {
        return;
    };
    grow_ddev(&c);
    c.walbc(&["call", "s0", "resize", "vol0"]);
    c.write_random("wdev0", 33 << 20, 2 << 20, 5);
    let gid = c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let t = Instant::now();
    while c.walbc(&["is-wdiff-send-error", "p0", "vol0", "a0"]) != "1" {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!c.is_restorable("a0", &gid));
    c.walbc(&["resize", "vol0", "36m", "--zero"]);
    c.walbc(&["kick", "s0", "p0"]);
    c.wait_restorable("a0", &gid);
    assert_eq!(c.walbc(&["is-wdiff-send-error", "p0", "vol0", "a0"]), "0");
    check(&c, &gid);
}

#[test]
fn autoresize_archive_follows_a_grown_storage() {
    let spec = Spec {
        archive_flags: vec!["--autoresize"],
        ..Spec::default()
    };
    let Some(c) = Cluster::backed_up("autoresize_archive_follows_a_grown_storage", spec, 2 << 20)
    else {
        return;
    };
    // Only the storage grows: the diffs reaching past the old end grow the archive's image.
    grow_ddev(&c);
    c.walbc(&["call", "s0", "resize", "vol0"]);
    c.write_random("wdev0", 33 << 20, 2 << 20, 6);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    check(&c, &gid);
    // And a hash backup of a larger device does too.
    grow_ddev_to(&c, 40 << 20);
    c.walbc(&["call", "s0", "resize", "vol0"]);
    c.walbc(&["go-standby", "s0", "vol0"]);
    c.write_random("wdev0", 38 << 20, 1 << 20, 7);
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    check_size(&c, &gid, 40 << 20);
}
