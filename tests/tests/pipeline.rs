//! The pipeline end to end (docs/scenarios.md §2 and §4): real wdevd, storage, proxy and archive
//! processes on localhost, real loop devices; each judged by the hash of the restored image against
//! the device's hash at that gid. Needs root and /dev/fuse.

use walb_tests::cluster::{Cluster, Spec};

/// Full backup of vol0 on wdev0 from s0; returns the gid.
fn full_backup(c: &Cluster) -> String {
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 0, 4 << 20, 1);
    c.write_random("wdev0", 20 << 20, 1 << 20, 2);
    c.walbc(&["full-backup", "s0", "vol0"])
}

#[test]
fn n1_full_backup() {
    let Some(c) = Cluster::start("n1_full_backup", Spec::default()) else {
        return;
    };
    let gid = full_backup(&c);
    assert_eq!(
        c.restored_hash("a0", &gid),
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
    assert_eq!(c.restored_hash("a0", &g1), h1, "{}", c.logs());
    assert_eq!(
        c.restored_hash("a0", &g0),
        h0,
        "the older snapshot is still restorable"
    );
}

/// Writes `total` bytes in 2 MiB pieces over the device, waiting after each for the storage
/// to ship the log (so more than the log size passes without overflow).
fn write_and_drain(c: &Cluster, start: u64, total: u64, seed: u64) {
    let piece = 2u64 << 20;
    let mut at = 0;
    while at < total {
        c.write_random(
            "wdev0",
            (start + at) % (30 << 20),
            piece as usize,
            seed + at,
        );
        at += piece;
        wait_log_below(c, 4 << 20);
    }
}

/// Waits until s0's log usage for vol0 is below `bytes`.
fn wait_log_below(c: &Cluster, bytes: u64) {
    let t = std::time::Instant::now();
    loop {
        let u = c.walbc(&["call", "s0", "get", "log-usage", "vol0"]);
        let used: u64 = u.split_whitespace().next().unwrap().parse().unwrap();
        if used * 4096 < bytes {
            return;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "log not drained (usage {u}):\n{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn restorable(c: &Cluster) -> Vec<String> {
    c.walbc(&["call", "a0", "get", "restorable", "vol0", "all"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn n5_apply_keeps_restore_identical() {
    let Some(c) = Cluster::start("n5_apply_keeps_restore_identical", Spec::default()) else {
        return;
    };
    full_backup(&c);
    c.write_random("wdev0", 3 << 20, 2 << 20, 5);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    assert_eq!(c.restored_hash("a0", &gid), h);
    c.walbc(&["call", "a0", "del-restored", "vol0", &gid]);
    c.walbc(&["apply", "vol0", &gid]);
    assert_eq!(c.restored_hash("a0", &gid), h, "restore after apply");
    let first: u64 = restorable(&c)[0].parse().unwrap();
    assert!(gid.parse::<u64>().unwrap() <= first.max(gid.parse().unwrap()));
    let base = c.walbc(&["call", "a0", "get", "base", "vol0"]);
    assert!(!base.contains("-->"), "base still applying: {base}");
}

#[test]
fn n6_merge() {
    let Some(c) = Cluster::start("n6_merge", Spec::default()) else {
        return;
    };
    full_backup(&c);
    c.write_random("wdev0", 0, 1 << 20, 6);
    let gid_b = c.walbc(&["snapshot", "s0", "vol0"]);
    // Several diffs between the two snapshots: restart the shipping in between.
    for i in 0..3 {
        c.write_random("wdev0", (5 + i) << 20, 1 << 20, 60 + i);
        c.wait_shipped("wdev0");
    }
    let gid_e = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    let before = c
        .walbc(&["call", "a0", "get", "diff", "vol0"])
        .lines()
        .count();
    c.walbc(&["merge", "vol0", &gid_b, &gid_e]);
    let after = c
        .walbc(&["call", "a0", "get", "diff", "vol0"])
        .lines()
        .count();
    assert!(after < before, "merge left {after} of {before} diffs");
    assert_eq!(c.restored_hash("a0", &gid_e), h);
}

#[test]
fn e1_proxy_killed_the_other_takes_over() {
    let spec = Spec {
        proxies: 2,
        ..Spec::default()
    };
    let Some(mut c) = Cluster::start("e1_proxy_killed_the_other_takes_over", spec) else {
        return;
    };
    full_backup(&c);
    c.kill("p0");
    write_and_drain(&c, 0, 24 << 20, 100);
    assert_eq!(c.walbc(&["call", "s0", "get", "is-overflow", "vol0"]), "0");
    c.start_daemon("p0");
    c.walbc(&["kick", "s0", "p0", "p1"]);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    assert_eq!(c.restored_hash("a0", &gid), c.device_hash("wdev0"));
}

#[test]
fn e2_archive_killed_nothing_restorable_until_back() {
    let Some(mut c) = Cluster::start(
        "e2_archive_killed_nothing_restorable_until_back",
        Spec::default(),
    ) else {
        return;
    };
    full_backup(&c);
    c.kill("a0");
    write_and_drain(&c, 0, 24 << 20, 200);
    assert_eq!(c.walbc(&["call", "s0", "get", "is-overflow", "vol0"]), "0");
    let gid = c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let h = c.device_hash("wdev0");
    // While a0 is down its diffs wait on the proxy, which keeps retrying.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let held = c.walbc(&["call", "p0", "get", "proxy-diff", "vol0", "a0"]);
    assert!(!held.is_empty(), "the proxy holds nothing for a0");
    assert_eq!(
        c.walbc(&["call", "p0", "get", "is-wdiff-send-error", "vol0", "a0"]),
        "0"
    );
    c.start_daemon("a0");
    c.walbc(&["kick", "p0"]);
    c.walbc(&["call", "a0", "get", "state", "vol0"]);
    let t = std::time::Instant::now();
    while !restorable(&c).contains(&gid) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(c.restored_hash("a0", &gid), h);
}

#[test]
fn e3_storage_killed_and_restarted() {
    let Some(mut c) = Cluster::start("e3_storage_killed_and_restarted", Spec::default()) else {
        return;
    };
    full_backup(&c);
    c.write_random("wdev0", 2 << 20, 2 << 20, 7);
    c.kill("s0");
    c.write_random("wdev0", 9 << 20, 3 << 20, 8);
    c.start_daemon("s0");
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    assert_eq!(c.restored_hash("a0", &gid), c.device_hash("wdev0"));
}

#[test]
fn e17_duplicate_wdiff_is_too_old() {
    let Some(c) = Cluster::start("e17_duplicate_wdiff_is_too_old", Spec::default()) else {
        return;
    };
    let g0 = full_backup(&c);
    // Wait until the archive's latest snapshot is clean at g0 (the log diff arrived).
    let latest = c.walbc(&["call", "a0", "get", "latest-snap", "vol0"]);
    let gid0: u64 = latest.split_whitespace().next().unwrap().parse().unwrap();
    assert!(gid0 >= g0.parse().unwrap());
    let wlog = c.dir.join("e17.wlog");
    let wdiff = c.dir.join("e17.wdiff");
    walb_tests::run_ok(
        std::process::Command::new(walb_tests::bin("walb-tool"))
            .args(["wlog-gen", "--size", "32M", "--total", "2M", "-o"])
            .arg(&wlog),
    );
    walb_tests::run_ok(
        std::process::Command::new(walb_tests::bin("walb-tool"))
            .arg("wlog-to-wdiff")
            .arg(&wlog)
            .arg("-o")
            .arg(&wdiff),
    );
    let (b, e) = (gid0.to_string(), (gid0 + 1).to_string());
    let f = wdiff.display().to_string();
    // The generated file carries its own device uuid: stamp the volume's on it.
    let uuid = c.walbc(&["call", "a0", "get", "uuid", "vol0"]);
    let send = [
        "wdiff-send",
        "a0",
        "vol0",
        &f,
        &b,
        &e,
        "--size-lb",
        "65536",
        "--unsafe-stamp-uuid",
        &uuid,
    ];
    assert_eq!(c.walbc(&send), "accept");
    let h = c.walbc(&["call", "a0", "bhash", "vol0", &e]);
    assert!(c.walbc_err(&send).contains("too-old-diff"));
    assert_eq!(c.walbc(&["call", "a0", "bhash", "vol0", &e]), h);
    let latest = c.walbc(&["call", "a0", "get", "latest-snap", "vol0"]);
    assert_eq!(latest, format!("{e} {e}"));
}

#[test]
fn n4b_stop_and_start_servers_in_random_orders_under_writes() {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    // A log large enough for the writes of a stopped storage (3 MB/s, at most ~2 s).
    let spec = Spec {
        devices: vec![("wdev0", 32, 64)],
        ..Spec::default()
    };
    let Some(c) = Cluster::start(
        "n4b_stop_and_start_servers_in_random_orders_under_writes",
        spec,
    ) else {
        return;
    };
    full_backup(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, dev) = (stop.clone(), c.loops["wdev0"].clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(44);
            let mut buf = vec![0u8; 64 << 10];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rng.fill(&mut buf[..]);
                f.write_all_at(&buf, rng.gen_range(0..480u64) * (64 << 10))
                    .unwrap();
                n += 1;
                if n.is_multiple_of(16) {
                    f.sync_all().unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            f.sync_all().unwrap();
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for _ in 0..5 {
        let mut servers = vec!["s0", "p0", "a0"];
        servers.shuffle(&mut rng);
        servers.truncate(rng.gen_range(1..=3));
        for s in &servers {
            c.walbc(&["call", s, "stop", "vol0"]);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        servers.shuffle(&mut rng);
        for s in &servers {
            let mut args = vec!["call", s, "start", "vol0"];
            if *s == "s0" {
                args.push("target");
            }
            c.walbc(&args);
        }
        c.walbc(&["kick", "s0", "p0"]);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    assert_eq!(
        c.restored_hash("a0", &gid),
        c.device_hash("wdev0"),
        "{}",
        c.logs()
    );
}
