//! Integrity under hostile conditions (docs/recovery.md, "Integrity"): a full disk or a damaged
//! diff during apply, a crash with the cause still there, a wdiff from another device, errors
//! that must name their server and cause, leftovers of a crash, and a random mix of archive
//! operations and failures. Every gid the archive lists as restorable must restore to exactly
//! what the device held at that gid; what cannot be promised is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use walb_tests::cluster::{file_hash, Cluster, Spec};
use walb_tests::{bin, run_ok};

const MIB: usize = 1 << 20;

/// A device of 64 MiB with 8 MiB of data (the rest zero: a sparse base) backed up to an
/// archive on a small file system of its own.
fn small_archive(
    test: &str,
    devices: Vec<(&'static str, u64, u64)>,
    fs_mb: u64,
) -> Option<Cluster> {
    let spec = Spec {
        devices,
        archive_fs_mb: Some(fs_mb),
        // These tests fill the disk themselves.
        archive_flags: vec!["--min-free-mb", "0"],
        ..Spec::default()
    };
    Cluster::backed_up(test, spec, 8 * MIB)
}

/// `n` explicit snapshots, each after `mib` MiB of new data past the first 16 MiB; returns
/// gid → device hash at that gid, once everything is on the archive.
fn snapshots(c: &Cluster, n: usize, mib: usize, seed: u64) -> BTreeMap<u64, String> {
    let mut hashes = BTreeMap::new();
    for i in 0..n {
        let off = (16 + i * mib) as u64 * MIB as u64;
        c.write_random("wdev0", off, mib * MIB, seed + i as u64);
        let gid: u64 = c.walbc(&["snapshot", "s0", "vol0"]).parse().unwrap();
        hashes.insert(gid, c.device_hash("wdev0"));
    }
    c.wait_shipped("wdev0");
    hashes
}

/// The gids of vol0 that archive a0 lists as restorable.
fn restorable(c: &Cluster) -> Vec<u64> {
    restorable_of(c, "vol0")
}

fn restorable_of(c: &Cluster, vol: &str) -> Vec<u64> {
    c.walbc(&["call", "a0", "get", "restorable", vol])
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The path of vol0's stored diff on a0 whose end is clean snapshot `gid`.
fn diff_ending_at(c: &Cluster, vol: &str, gid: u64) -> PathBuf {
    let dir = c.dir.join("a0").join("vols").join(vol);
    std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let size = std::fs::metadata(p).unwrap().len();
            walb_core::meta::parse_name(&name, size)
                .is_ok_and(|d| d.snap_e.is_clean() && d.snap_e.gid_b.0 == gid && d.data_size > 0)
        })
        .unwrap_or_else(|| panic!("no diff of {vol} ends at gid {gid} in {}", dir.display()))
}

/// Flips one byte in the middle of `path`.
fn flip_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// Restores listed gid `gid`, compares it with the device's hash at that gid, and deletes the
/// restored image again (the archive's file system is small).
fn check_gid(c: &Cluster, gid: u64, hash: &str, why: &str) {
    let g = gid.to_string();
    assert_eq!(
        c.restored_hash("a0", &g),
        hash,
        "{why}: gid {gid} is listed restorable but restores wrong\n{}",
        c.logs()
    );
    c.walbc(&["call", "a0", "del-restored", "vol0", &g]);
}

/// Every listed gid whose device hash is known restores to it.
fn check_listed(c: &Cluster, hashes: &BTreeMap<u64, String>) -> usize {
    let mut n = 0;
    for gid in restorable(c) {
        if let Some(h) = hashes.get(&gid) {
            check_gid(c, gid, h, "listed");
            n += 1;
        }
    }
    n
}

#[test]
fn integrity_failed_apply_on_a_full_disk_lists_nothing_it_cannot_restore() {
    let test = "integrity_failed_apply_on_a_full_disk_lists_nothing_it_cannot_restore";
    let Some(c) = small_archive(test, vec![("wdev0", 64, 64)], 200) else {
        return;
    };
    let hashes = snapshots(&c, 4, 10, 10);
    let gids: Vec<u64> = hashes.keys().copied().collect();
    let last = *gids.last().unwrap();
    let filler = c.fill("a0", 12 * MIB as u64);
    let err = c.walbc_err(&["apply", "vol0", &last.to_string()]);
    assert!(
        err.contains("a0") && err.contains("No space left on device"),
        "the error names neither the server nor the cause: {err}"
    );
    let base = c.walbc(&["call", "a0", "get", "base", "vol0"]);
    assert!(
        base.contains("-->"),
        "the apply left no applying state: {base}"
    );
    // Nothing older than the apply's end can be rebuilt from a half-written base.
    assert_eq!(restorable(&c), vec![last], "base {base}");
    let err = c.walbc_err(&["restore", "vol0", &gids[0].to_string()]);
    assert!(err.contains("not a restorable"), "{err}");
    std::fs::remove_file(&filler).unwrap();
    // The apply's end restores right while the base is still half-applied…
    assert_eq!(c.restored_hash("a0", &last.to_string()), hashes[&last]);
    c.walbc(&["call", "a0", "del-restored", "vol0", &last.to_string()]);
    // …and a retried apply resumes the interrupted one.
    c.walbc(&["apply", "vol0", &last.to_string()]);
    assert_eq!(
        c.walbc(&["call", "a0", "get", "base", "vol0"]),
        format!("<|{last}|>")
    );
    assert_eq!(check_listed(&c, &hashes), 1);
}

#[test]
fn integrity_a_damaged_diff_stops_apply_before_the_base_changes() {
    let test = "integrity_a_damaged_diff_stops_apply_before_the_base_changes";
    let Some(c) = Cluster::backed_up(test, Spec::default(), 4 * MIB) else {
        return;
    };
    let hashes = snapshots(&c, 3, 2, 20);
    let gids: Vec<u64> = hashes.keys().copied().collect();
    let bad = diff_ending_at(&c, "vol0", gids[1]);
    flip_byte(&bad);
    let base = c.walbc(&["call", "a0", "get", "base", "vol0"]);
    let err = c.walbc_err(&["apply", "vol0", &gids[2].to_string()]);
    let name = bad.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&name) && err.contains("DataLoss"),
        "the error does not name the damaged file as data loss: {err}"
    );
    assert_eq!(c.walbc(&["call", "a0", "get", "base", "vol0"]), base);
    assert!(
        c.log("a0")
            .lines()
            .any(|l| l.contains("ERROR") && l.contains(&name)),
        "no ERROR line names {name}:\n{}",
        c.log("a0")
    );
    // Before the damage, every point restores right; from it on, restores fail loudly.
    assert_eq!(
        c.restored_hash("a0", &gids[0].to_string()),
        hashes[&gids[0]]
    );
    for g in &gids[1..] {
        let err = c.walbc_err(&["restore", "vol0", &g.to_string()]);
        assert!(err.contains("DataLoss"), "restore of {g}: {err}");
    }
}

#[test]
fn integrity_a_broken_volume_leaves_the_others_served() {
    let test = "integrity_a_broken_volume_leaves_the_others_served";
    let Some(mut c) = small_archive(test, vec![("wdev0", 64, 64), ("wdev1", 16, 16)], 200) else {
        return;
    };
    c.walbc(&["init-storage", "s0", "vol1", "wdev1"]);
    c.write_random("wdev1", 0, 2 * MIB, 30);
    c.walbc(&["full-backup", "s0", "vol1"]);
    let hashes = snapshots(&c, 3, 10, 40);
    let gids: Vec<u64> = hashes.keys().copied().collect();
    let filler = c.fill("a0", 8 * MIB as u64);
    c.walbc_err(&["apply", "vol0", &gids[2].to_string()]);
    c.kill("a0");
    std::fs::remove_file(&filler).unwrap();
    // The cause stays: a diff the interrupted apply needs is damaged.
    flip_byte(&diff_ending_at(&c, "vol0", gids[1]));
    c.start_daemon("a0");
    let why = c.walbc(&["call", "a0", "get", "broken", "vol0"]);
    assert!(why.contains("wdiff"), "vol0 is not marked broken: {why:?}");
    assert!(c.walbc(&["status"]).contains("BROKEN"));
    assert!(
        restorable(&c).is_empty(),
        "a broken volume lists restorable points"
    );
    let err = c.walbc_err(&["restore", "vol0", &gids[2].to_string()]);
    assert!(err.contains("broken"), "{err}");
    // A retried apply meets the same damage and says so; the volume stays broken.
    let err = c.walbc_err(&["apply", "vol0", &gids[2].to_string()]);
    assert!(err.contains("DataLoss"), "{err}");
    assert!(!c.walbc(&["call", "a0", "get", "broken", "vol0"]).is_empty());
    // The other volume of the archive ships and restores as before.
    c.write_random("wdev1", 4 * MIB as u64, MIB, 31);
    let g1 = c.walbc(&["snapshot", "s0", "vol1"]);
    let img = c.walbc(&["restore", "vol1", &g1]);
    assert_eq!(file_hash(Path::new(&img)), c.device_hash("wdev1"));
}

#[test]
fn integrity_a_wdiff_from_another_device_is_refused() {
    let test = "integrity_a_wdiff_from_another_device_is_refused";
    let Some(c) = Cluster::backed_up(test, Spec::default(), 2 * MIB) else {
        return;
    };
    c.wait_shipped("wdev0");
    let latest = c.walbc(&["call", "a0", "get", "latest-snap", "vol0"]);
    let gid: u64 = latest.split_whitespace().next().unwrap().parse().unwrap();
    // A log of some other device, made into a wdiff.
    let wlog = c.dir.join("other.wlog");
    let wdiff = c.dir.join("other.wdiff");
    run_ok(
        Command::new(bin("walb-tool"))
            .args([
                "wlog-gen", "--size", "32M", "--total", "1M", "--seed", "9", "-o",
            ])
            .arg(&wlog),
    );
    run_ok(
        Command::new(bin("walb-tool"))
            .arg("wlog-to-wdiff")
            .arg(&wlog)
            .arg("-o")
            .arg(&wdiff),
    );
    let diffs = c.walbc(&["call", "a0", "get", "diff", "vol0"]);
    let (b, e) = (gid.to_string(), (gid + 1).to_string());
    let err = c.walbc_err(&["wdiff-send", "a0", "vol0", wdiff.to_str().unwrap(), &b, &e]);
    assert!(err.contains("different-uuid"), "{err}");
    assert_eq!(c.walbc(&["call", "a0", "get", "diff", "vol0"]), diffs);
    // The real log of that range still arrives and restores right.
    c.write_random("wdev0", 8 * MIB as u64, MIB, 50);
    let g = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &g, "wdev0");
}

#[test]
fn integrity_errors_name_the_server_and_the_cause() {
    let spec = Spec {
        devices: vec![("wdev0", 16, 16)],
        archive_fs_mb: Some(40),
        archive_flags: vec!["--min-free-mb", "0"],
        ..Spec::default()
    };
    let test = "integrity_errors_name_the_server_and_the_cause";
    let Some(c) = Cluster::backed_up(test, spec, 8 * MIB) else {
        return;
    };
    c.wait_shipped("wdev0");
    // The archive's disk fills while a diff comes in: the proxy learns which server failed
    // and why, and the status says so.
    let filler = c.fill("a0", MIB as u64);
    c.write_random("wdev0", 0, 8 * MIB, 60);
    let t = Instant::now();
    let errors = loop {
        let j: serde_json::Value =
            serde_json::from_str(&c.walbc(&["status", "vol0", "--json"])).unwrap();
        let e = j["archives"][0]["send_errors"].to_string();
        if e.contains("No space left on device") {
            break e;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no cause shown: {j}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        errors.contains("a0:"),
        "the error does not name the server: {errors}"
    );
    // Nothing half-written is left behind, and shipping resumes once there is room.
    c.assert_no_temp_files("a0", "vol0");
    std::fs::remove_file(filler).unwrap();
    c.walbc(&["kick", "p0"]);
    let g = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &g, "wdev0");
}

#[test]
fn integrity_leftovers_of_a_crash_are_removed_at_start() {
    let test = "integrity_leftovers_of_a_crash_are_removed_at_start";
    let Some(mut c) = Cluster::backed_up(test, Spec::default(), 2 * MIB) else {
        return;
    };
    let hashes = snapshots(&c, 4, 1, 70);
    let gids: Vec<u64> = hashes.keys().copied().collect();
    let vol = c.dir.join("a0").join("vols").join("vol0");
    let keep = c.dir.join("kept");
    std::fs::create_dir_all(&keep).unwrap();
    let save = |keep: &Path| {
        for e in std::fs::read_dir(&vol).unwrap().filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().ends_with(".wdiff") {
                std::fs::hard_link(e.path(), keep.join(e.file_name())).unwrap();
            }
        }
    };
    // As if a crash came between apply's new base state and the deletion of its inputs, and
    // between merge's output and the deletion of its inputs.
    save(&keep);
    c.walbc(&["apply", "vol0", &gids[1].to_string()]);
    c.walbc(&["disable-snapshot", "vol0", &gids[2].to_string()]);
    let keep2 = c.dir.join("kept2");
    std::fs::create_dir_all(&keep2).unwrap();
    save(&keep2);
    c.walbc(&["merge", "vol0", &gids[1].to_string(), &gids[3].to_string()]);
    let diffs = c.walbc(&["call", "a0", "get", "diff", "vol0"]);
    c.kill("a0");
    for k in [&keep, &keep2] {
        for e in std::fs::read_dir(k).unwrap().filter_map(|e| e.ok()) {
            let to = vol.join(e.file_name());
            if !to.exists() {
                std::fs::hard_link(e.path(), to).unwrap();
            }
        }
    }
    c.start_daemon("a0");
    assert_eq!(c.walbc(&["call", "a0", "get", "diff", "vol0"]), diffs);
    assert!(c.log("a0").contains("left behind"), "{}", c.log("a0"));
    let last = gids[3];
    assert_eq!(c.restored_hash("a0", &last.to_string()), hashes[&last]);
}

#[test]
fn integrity_no_small_lies() {
    let Some(c) = Cluster::backed_up("integrity_no_small_lies", Spec::default(), 2 * MIB) else {
        return;
    };
    // A fresh volume has no base, not the gid that means "none".
    c.walbc(&["call", "a0", "init-vol", "fresh"]);
    let st = c.walbc(&["call", "a0", "status", "fresh"]);
    assert!(!st.contains("18446744073709551615"), "{st}");
    assert_eq!(c.walbc(&["call", "a0", "get", "base", "fresh"]), "<none>");
    // Implicit points are listed (flagged 0), and each restores right.
    let mut implicit = BTreeMap::new();
    for i in 0..3u64 {
        c.write_random("wdev0", (4 + i) * MIB as u64, MIB, 80 + i);
        c.wait_shipped("wdev0");
        let latest = c.walbc(&["call", "a0", "get", "latest-snap", "vol0"]);
        let gid: u64 = latest.split_whitespace().next().unwrap().parse().unwrap();
        implicit.insert(gid, c.device_hash("wdev0"));
    }
    let listed = c.walbc(&["call", "a0", "get", "restorable", "vol0"]);
    let first = *implicit.keys().next().unwrap();
    let line = listed
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&first.to_string()))
        .unwrap_or_else(|| panic!("implicit point {first} is not listed:\n{listed}"));
    assert!(line.ends_with(" 0"), "{line}");
    // The newest point's kind is not known until the next diff: it is not called explicit.
    let newest = listed.lines().last().unwrap();
    assert!(newest.ends_with(" ?"), "{listed}");
    assert_eq!(c.restored_hash("a0", &first.to_string()), implicit[&first]);
    // Restoring a gid again does not silently replace its image.
    let err = c.walbc_err(&["restore", "vol0", &first.to_string()]);
    assert!(err.contains("restored already"), "{err}");
    c.walbc(&["restore", "vol0", &first.to_string(), "--force"]);
}

/// Random sequences of snapshot, apply, merge, restore and gc with induced failures (a full
/// disk during apply, kill -9 of the archive in the middle of an apply): after each step,
/// every point the archive lists that the test knows the device's hash of restores to it.
/// `WALB_INTEGRITY_SEED` replays a run.
#[test]
fn integrity_random_operations_and_failures_keep_every_listed_point_right() {
    use rand::{Rng, SeedableRng};
    let test = "integrity_random_operations_and_failures_keep_every_listed_point_right";
    let Some(mut c) = small_archive(test, vec![("wdev0", 64, 64)], 400) else {
        return;
    };
    let seed: u64 = std::env::var("WALB_INTEGRITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut hashes = BTreeMap::new();
    let t0 = Instant::now();
    let mut step = 0;
    while step < 30 && t0.elapsed() < Duration::from_secs(150) {
        step += 1;
        let listed = restorable(&c);
        let pick = |rng: &mut rand::rngs::StdRng| listed[rng.gen_range(0..listed.len())];
        let action = rng.gen_range(0..10);
        eprintln!("step {step}: action {action}, restorable {listed:?}");
        match action {
            0..=4 => {
                let off = rng.gen_range(0..56u64) * MIB as u64;
                c.write_random("wdev0", off, rng.gen_range(1..6) * MIB, rng.gen());
                if action == 4 {
                    // An implicit point: the newest once everything is shipped.
                    c.wait_shipped("wdev0");
                    let latest = c.walbc(&["call", "a0", "get", "latest-snap", "vol0"]);
                    let f: Vec<u64> = latest
                        .split_whitespace()
                        .map(|x| x.parse().unwrap())
                        .collect();
                    if f[0] == f[1] {
                        hashes.insert(f[0], c.device_hash("wdev0"));
                    }
                } else {
                    let gid: u64 = c.walbc(&["snapshot", "s0", "vol0"]).parse().unwrap();
                    hashes.insert(gid, c.device_hash("wdev0"));
                }
            }
            5 => {
                let g = pick(&mut rng).to_string();
                run_ok_or_err(&c, &["apply", "vol0", &g]);
            }
            6 if listed.len() >= 3 => {
                let i = rng.gen_range(0..listed.len() - 2);
                let (b, e) = (listed[i].to_string(), listed[i + 2].to_string());
                // Refused across an explicit snapshot: that is fine too.
                run_ok_or_err(&c, &["merge", "vol0", &b, &e]);
            }
            6 | 7 => {
                c.walbc(&["call", "a0", "gc-diff", "vol0"]);
            }
            8 => {
                let filler = c.fill("a0", rng.gen_range(0..16) * MIB as u64);
                let g = pick(&mut rng).to_string();
                run_ok_or_err(&c, &["apply", "vol0", &g]);
                std::fs::remove_file(filler).unwrap();
            }
            _ => {
                let g = pick(&mut rng).to_string();
                let mut apply = c.walbc_cmd();
                apply.args(["apply", "vol0", &g]);
                let mut child = apply.spawn().unwrap();
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
                c.kill("a0");
                let _ = child.wait();
                c.start_daemon("a0");
            }
        }
        // One listed point with a known hash, restored.
        let known: Vec<u64> = restorable(&c)
            .into_iter()
            .filter(|g| hashes.contains_key(g))
            .collect();
        if !known.is_empty() {
            let g = known[rng.gen_range(0..known.len())];
            check_gid(&c, g, &hashes[&g], &format!("seed {seed}, step {step}"));
        }
    }
    let checked = check_listed(&c, &hashes);
    eprintln!("{test}: {step} steps, {checked} listed points checked at the end");
}

/// Runs walbc; success and failure are both allowed (the caller checks the invariant).
fn run_ok_or_err(c: &Cluster, args: &[&str]) {
    let out = walb_tests::run(c.walbc_cmd().args(args));
    eprintln!("walbc {args:?}: {}", out.status);
}

#[test]
fn integrity_status_says_why_a_volume_lags_and_what_it_does_not_know() {
    let test = "integrity_status_says_why_a_volume_lags_and_what_it_does_not_know";
    let Some(mut c) = Cluster::backed_up(test, Spec::default(), 2 * MIB) else {
        return;
    };
    c.wait_shipped("wdev0");
    // The archive refuses diffs while stopped: the proxy's reason reaches the status.
    c.walbc(&["call", "a0", "stop", "vol0"]);
    c.write_random("wdev0", 4 * MIB as u64, MIB, 90);
    c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let t = Instant::now();
    let errors = loop {
        let j: serde_json::Value =
            serde_json::from_str(&c.walbc(&["status", "vol0", "--json"])).unwrap();
        let e = j["archives"][0]["send_errors"].clone();
        if e.as_array().is_some_and(|a| !a.is_empty()) {
            break e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no send error shown: {j}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(errors.to_string().contains("stopped"), "{errors}");
    // A storage that does not answer leaves the lag unknown, never zero.
    c.kill("s0");
    let j: serde_json::Value =
        serde_json::from_str(&c.walbc(&["status", "vol0", "--json"])).unwrap();
    assert_eq!(j["storages"][0]["reachable"], false, "{j}");
    assert!(j["archives"][0]["lag_gids"].is_null(), "{j}");
}
