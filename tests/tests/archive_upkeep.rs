//! The archive's own upkeep (docs/archive.md): restores through thousands of diffs in bounded
//! memory, and implicit points thinned under constant load. Needs root and /dev/fuse.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use walb_core::meta::{format_name, MetaDiff};
use walb_core::wdiff::{Body, Cmpr, Codec, DiffRec, SortedWriter};
use walb_core::LBS;
use walb_tests::cluster::{file_hash, Cluster, Spec};

const MIB: usize = 1 << 20;

/// The peak resident memory of process `pid`, in bytes (VmHWM).
fn peak_rss(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    kb << 10
}

#[test]
fn defects_restore_through_thousands_of_diffs_in_bounded_memory() {
    const DIFFS: u64 = 3000;
    const REC: usize = 64 << 10;
    let spec = Spec {
        archive_flags: vec!["--implicit-period-secs", "0", "--max-open-diffs", "32"],
        ..Spec::default()
    };
    let test = "defects_restore_through_thousands_of_diffs_in_bounded_memory";
    let Some(mut c) = Cluster::backed_up(test, spec, 4 * MIB) else {
        return;
    };
    c.wait_shipped("wdev0");
    let latest = c.walbc(&["call", "a0", "get", "latest-snap", "vol0"]);
    let g0: u64 = latest.split_whitespace().next().unwrap().parse().unwrap();
    let uuid: walb_core::Uuid = c
        .walbc(&["call", "a0", "get", "uuid", "vol0"])
        .parse()
        .unwrap();
    // What the device holds at g0, and what it would hold after the diffs below.
    let mut image = std::fs::read(&c.loops["wdev0"]).unwrap();
    let size_lb = (image.len() / LBS) as u64;
    c.kill("a0");
    // 3000 implicit points of 64 KiB each (192 MiB of chain), written as a proxy would leave
    // them: sorted wdiffs named by their MetaDiff.
    let dir = c.dir.join("a0").join("vols").join("vol0");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3000);
    let now = walb_core::meta::unix_now();
    for k in 0..DIFFS {
        let blocks = (REC / LBS) as u32;
        let addr = rng.gen_range(0..size_lb - blocks as u64);
        let mut data = vec![0u8; REC];
        rng.fill_bytes(&mut data);
        let at = addr as usize * LBS;
        image[at..at + REC].copy_from_slice(&data);
        let rec = DiffRec {
            addr,
            blocks,
            body: Body::Data(Bytes::from(data)),
        };
        let mut w = SortedWriter::new(Vec::new(), uuid, Cmpr::new(Codec::None, 0)).unwrap();
        w.push(rec).unwrap();
        let bytes = w.finish().unwrap();
        let mut d = MetaDiff::clean(g0 + k, g0 + k + 1).unwrap();
        d.is_mergeable = k > 0;
        d.timestamp = now;
        d.data_size = bytes.len() as u64;
        std::fs::write(dir.join(format_name(&d)), bytes).unwrap();
    }
    c.start_daemon("a0");
    let pid = c.walbc(&["call", "a0", "get", "pid"]);
    let before = peak_rss(&pid);
    let t = Instant::now();
    let img = c.walbc(&["restore", "vol0", &(g0 + DIFFS).to_string()]);
    let took = t.elapsed();
    let peak = peak_rss(&pid);
    let want = blake3::hash(&image).to_hex().to_string();
    assert_eq!(
        file_hash(Path::new(&img)),
        want,
        "restore through {DIFFS} diffs is wrong"
    );
    eprintln!(
        "{test}: {DIFFS} diffs ({} MiB) restored in {took:.1?}; peak RSS {} MiB (before {} MiB)",
        DIFFS as usize * REC / MIB,
        peak >> 20,
        before >> 20
    );
    // 32 open files at about 1 MiB each, the copy buffer and the daemon itself: far below the
    // 192 MiB of the chain that mapping every file kept resident.
    assert!(
        peak < 128 << 20,
        "peak RSS {} MiB for a restore through {DIFFS} diffs",
        peak >> 20
    );
    // No round's temporary file is left.
    let temps = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(temps, 0);
}

#[test]
fn defects_implicit_points_are_thinned_under_load() {
    let spec = Spec {
        archive_flags: vec!["--keep-implicit-secs", "4", "--implicit-period-secs", "3"],
        devices: vec![("wdev0", 32, 32)],
        ..Spec::default()
    };
    let test = "defects_implicit_points_are_thinned_under_load";
    let Some(c) = Cluster::backed_up(test, spec, 2 * MIB) else {
        return;
    };
    let explicit: u64 = c.walbc(&["snapshot", "s0", "vol0"]).parse().unwrap();
    let explicit_hash = c.device_hash("wdev0");
    // Constant small writes for 25 s: a wlog shipped every poll (200 ms in tests).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&c.loops["wdev0"])
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let t = Instant::now();
    let mut max_files = 0;
    while t.elapsed() < Duration::from_secs(25) {
        let mut buf = vec![0u8; 64 << 10];
        rng.fill_bytes(&mut buf);
        let off = rng.gen_range(0..(32 * MIB - buf.len()) as u64) & !4095;
        f.write_all_at(&buf, off).unwrap();
        f.sync_all().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let n = c
            .walbc(&["call", "a0", "get", "diff", "vol0"])
            .lines()
            .count();
        max_files = max_files.max(n);
    }
    drop(f);
    c.wait_shipped("wdev0");
    let now = walb_core::meta::unix_now();
    let listed = c.walbc(&["call", "a0", "get", "restorable", "vol0"]);
    let times: Vec<u64> = listed
        .lines()
        .filter_map(|l| walb_core::meta::parse_iso_utc(l.split_whitespace().nth(1)?))
        .collect();
    // Points older than the keep window (and a thinning pass) are at most one per period.
    let old = times.iter().filter(|&&t| t + 4 + 3 < now).count();
    eprintln!(
        "{test}: {} points listed, {old} older than the keep window; at most {max_files} diff files",
        times.len()
    );
    assert!(old <= 25 / 3 + 3, "{old} old points kept:\n{listed}");
    // The young points (the keep window plus up to two periods of wlogs) are all kept, so the
    // file count follows the write rate; what must stay bounded is the history behind them.
    // The explicit snapshot survived the merges around it, and the newest point is exact.
    assert_eq!(c.restored_hash("a0", &explicit.to_string()), explicit_hash);
    let latest = c.walbc(&["call", "a0", "get", "latest-snap", "vol0"]);
    let newest = latest.split_whitespace().next().unwrap();
    c.check_restore("a0", newest, "wdev0");
}

#[test]
fn capacity_refuses_cleanly_at_the_floor_and_resumes_with_room() {
    let spec = Spec {
        devices: vec![("wdev0", 64, 64)],
        archive_fs_mb: Some(200),
        archive_flags: vec!["--min-free-mb", "60"],
        ..Spec::default()
    };
    let test = "capacity_refuses_cleanly_at_the_floor_and_resumes_with_room";
    let Some(c) = Cluster::backed_up(test, spec, 8 * MIB) else {
        return;
    };
    c.write_random("wdev0", 16 * MIB as u64, 4 * MIB, 1);
    let g1 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h1 = c.device_hash("wdev0");
    // Just above the floor: one more diff is taken, the next ones are refused.
    let filler = c.fill("a0", 64 << 20);
    c.write_random("wdev0", 24 * MIB as u64, 8 * MIB, 2);
    c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    c.write_random("wdev0", 40 * MIB as u64, 4 * MIB, 3);
    let g3 = c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let h3 = c.device_hash("wdev0");
    let t = Instant::now();
    loop {
        let j: serde_json::Value =
            serde_json::from_str(&c.walbc(&["status", "vol0", "--json"])).unwrap();
        let a = &j["archives"][0];
        if a["send_errors"].to_string().contains("archive-full") {
            assert_eq!(a["capacity"]["low"], true, "{j}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "not refused: {j}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!c.is_restorable("a0", &g3));
    // Nothing half-written, and what was restorable still is.
    let dir = c.dir.join("a0").join("vols").join("vol0");
    let temps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    assert_eq!(c.restored_hash("a0", &g1), h1);
    c.walbc(&["call", "a0", "del-restored", "vol0", &g1]);
    std::fs::remove_file(&filler).unwrap();
    // Room again (as after retention): the held diffs go through.
    c.walbc(&["kick", "p0"]);
    c.wait_restorable("a0", &g3);
    assert_eq!(c.restored_hash("a0", &g3), h3);
}

#[test]
fn verify_finds_a_flipped_byte_in_a_stored_diff_and_names_it() {
    let test = "verify_finds_a_flipped_byte_in_a_stored_diff_and_names_it";
    let Some(c) = Cluster::backed_up(test, Spec::default(), 2 * MIB) else {
        return;
    };
    c.write_random("wdev0", 4 * MIB as u64, 2 * MIB, 1);
    c.walbc(&["snapshot", "s0", "vol0"]);
    c.wait_shipped("wdev0");
    assert!(c.walbc(&["verify", "vol0"]).starts_with("ok "));
    let st = c.walbc(&["call", "a0", "status", "vol0"]);
    assert!(st.contains(" ok"), "{st}");
    // The largest stored diff gets one byte flipped in its middle.
    let dir = c.dir.join("a0").join("vols").join("vol0");
    let victim = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wdiff"))
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut b = std::fs::read(&victim).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::write(&victim, b).unwrap();
    let err = c.walbc_err(&["verify", "vol0"]);
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&name) && err.contains("offset") && err.contains("DataLoss"),
        "{err}"
    );
    let st = c.walbc(&["call", "a0", "status", "vol0"]);
    assert!(st.contains("FAILED"), "{st}");
}
