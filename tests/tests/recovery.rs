//! Hash backup and the recoveries built on it (docs/scenarios.md §2 and §4): each judged by the
//! hash of the restored image against the device's. Needs root and /dev/fuse.

use walb_tests::cluster::{Cluster, Spec};

#[test]
fn n3_hash_backup_after_standby() {
    let Some(c) = Cluster::backed_up("n3_hash_backup_after_standby", Spec::default(), 4 << 20)
    else {
        return;
    };
    c.walbc(&["go-standby", "s0", "vol0"]);
    assert_eq!(c.walbc(&["call", "s0", "get", "state", "vol0"]), "Standby");
    c.write_random("wdev0", 6 << 20, 3 << 20, 2);
    c.write_random("wdev0", 0, 4096, 3);
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    assert_eq!(c.walbc(&["call", "s0", "get", "state", "vol0"]), "Target");
    c.check_restore("a0", &gid, "wdev0");
    // Shipping goes on after the hash backup.
    c.write_random("wdev0", 20 << 20, 1 << 20, 4);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn e4_storage_down_until_the_log_overflows() {
    let Some(mut c) = Cluster::backed_up(
        "e4_storage_down_until_the_log_overflows",
        Spec::default(),
        4 << 20,
    ) else {
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
    c.check_restore("a0", &gid, "wdev0");
}

/// Kills `id`, removes its data dir and starts it again (the server lost its disk).
fn wipe(c: &mut Cluster, id: &str) {
    c.kill(id);
    std::fs::remove_dir_all(c.dir.join(id)).unwrap();
    c.start_daemon(id);
}

#[test]
fn e6_archive_data_lost_full_backup_again() {
    let Some(mut c) = Cluster::backed_up(
        "e6_archive_data_lost_full_backup_again",
        Spec::default(),
        4 << 20,
    ) else {
        return;
    };
    wipe(&mut c, "a0");
    c.walbc(&["call", "a0", "init-vol", "vol0"]);
    c.write_random("wdev0", 5 << 20, 1 << 20, 5);
    let gid = c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let r = c.walbc(&["call", "a0", "get", "restorable", "vol0"]);
    assert!(
        r.is_empty(),
        "restorable on a wiped archive: {r} (gid {gid})"
    );
    let gid = c.walbc(&["full-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn e8_storage_metadata_lost_init_and_hash_backup() {
    let Some(mut c) = Cluster::backed_up(
        "e8_storage_metadata_lost_init_and_hash_backup",
        Spec::default(),
        4 << 20,
    ) else {
        return;
    };
    c.write_random("wdev0", 7 << 20, 1 << 20, 6);
    wipe(&mut c, "s0");
    c.write_random("wdev0", 9 << 20, 1 << 20, 7);
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 11 << 20, 1 << 20, 8);
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn e5_proxy_data_lost_hash_backup() {
    let Some(mut c) =
        Cluster::backed_up("e5_proxy_data_lost_hash_backup", Spec::default(), 4 << 20)
    else {
        return;
    };
    c.walbc(&["call", "a0", "stop", "vol0", "force"]);
    c.write_random("wdev0", 3 << 20, 2 << 20, 9);
    c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let t = std::time::Instant::now();
    while c
        .walbc(&["call", "p0", "get", "proxy-diff", "vol0", "a0"])
        .is_empty()
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    wipe(&mut c, "p0");
    c.walbc(&["call", "a0", "start", "vol0"]);
    c.write_random("wdev0", 12 << 20, 1 << 20, 10);
    let gid = c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !c.is_restorable("a0", &gid),
        "restorable although the proxy lost the diffs before it"
    );
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn scan_throttle_progress_and_cancel() {
    let Some(c) = Cluster::start("scan_throttle_progress_and_cancel", Spec::default()) else {
        return;
    };
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 0, 32 << 20, 1);
    c.walbc(&["set-full-scan-bps", "s0", &(4u64 << 20).to_string()]);
    let mut bg = c
        .walbc_cmd()
        .args(["full-backup", "s0", "vol0"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let p = c.walbc(&["progress", "s0", "vol0"]);
    assert!(
        p.starts_with("full-backup ") && p.contains("/32.0 MiB"),
        "{p}"
    );
    let raw = c.walbc(&["call", "s0", "get", "progress", "vol0"]);
    let done: u64 = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        done > 0 && done < 32 << 20,
        "{raw}: the 4 MiB/s limit does not hold"
    );
    c.walbc(&["cancel", "s0", "vol0"]);
    assert!(
        !bg.wait().unwrap().success(),
        "the cancelled backup succeeded"
    );
    assert_eq!(
        c.walbc(&["call", "s0", "get", "state", "vol0"]),
        "SyncReady"
    );
    assert_eq!(c.walbc(&["call", "s0", "get", "progress", "vol0"]), "idle");
    c.walbc(&["set-full-scan-bps", "s0", "0"]);
    let gid = c.walbc(&["full-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}
