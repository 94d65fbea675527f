//! The protected application never sees wdevd die (docs/wdev.md, "Restarts"): ext4 on a wdev
//! loop device keeps working while the serving worker is killed or upgraded; every fsynced
//! file is intact, e2fsck is clean, and the logs redone onto the initial data device give the
//! data device. With every wdevd process gone, the manual recovery of docs/wdev.md loses
//! nothing acknowledged. Needs root and /dev/fuse (says so loudly otherwise).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use walb_tests::cluster::{Cluster, Spec};
use walb_tests::{bin, file_hashes, run_ok, sh};

const DEV: &str = "wdev0";
/// Files the workload keeps.
const KEEP: u32 = 1000;
/// Files the workload creates a second at the most (each up to 64 KiB, fsynced).
const MAX_RATE: f64 = 300.0;

/// ext4 on a fresh wdev device (128 MiB data, a 1 GiB log that never wraps in these
/// tests), mounted at DIR/m, with the workload running on it.
fn loaded_ext4(test: &str, until_error: bool) -> Option<(Cluster, PathBuf, Workload)> {
    let mut c = Cluster::start(
        test,
        Spec {
            storages: 0,
            proxies: 0,
            archives: 0,
            devices: vec![(DEV, 128, 1024)],
            ..Spec::default()
        },
    )?;
    let lp = c.loops[DEV].clone();
    sh(&format!("mkfs.ext4 -q -F {lp}"), &c.dir);
    let m = c.mount(&lp, "m", "");
    let w = Workload::start(&m, until_error);
    Some((c, m, w))
}

/// A writer creating files with fsync and reading each back, until stopped, removing each
/// file again 1000 files later (the file system stays below 40 MiB). Any I/O error fails
/// the test, or (`until_error`) ends the writer; the files fsynced and kept are returned with
/// their hashes.
struct Workload {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Vec<(String, String)>, u32)>,
}

impl Workload {
    fn start(m: &Path, until_error: bool) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let (m, flag) = (m.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(11);
            let mut done = std::collections::VecDeque::new();
            let mut i = 0u32;
            let t0 = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                // At most MAX_RATE files a second: a fast machine would otherwise log more
                // than the 1 GiB ring holds in 30 s, and the redo check needs every log.
                if f64::from(i) > t0.elapsed().as_secs_f64() * MAX_RATE {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                let len = rng.gen_range(1..64) * 1024 + rng.gen_range(0..1024);
                if i >= KEEP {
                    let old = format!("f{:05}", i - KEEP);
                    if let Err(e) = std::fs::remove_file(m.join(&old)) {
                        assert!(until_error, "remove {old}: {e}");
                        break;
                    }
                    done.pop_front();
                }
                let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                let name = format!("f{i:05}");
                let p = m.join(&name);
                let mut back = Vec::new();
                let r = std::fs::File::create(&p)
                    .and_then(|mut f| f.write_all(&data).and_then(|_| f.sync_all()))
                    .and_then(|_| std::fs::File::open(&p)?.read_to_end(&mut back));
                match r {
                    Err(e) if until_error => {
                        eprintln!("writer stopped at {name}: {e}");
                        break;
                    }
                    Err(e) => panic!("{name}: {e}"),
                    Ok(_) => assert!(back == data, "{name} read back differs"),
                }
                done.push_back((name, blake3::hash(&data).to_hex().to_string()));
                i += 1;
            }
            (done.into(), i)
        });
        Workload { stop, thread }
    }

    /// The files kept and how many were written in all.
    fn finish(self) -> (Vec<(String, String)>, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the workload saw an I/O error")
    }
}

/// Waits until a worker other than `old` serves and has answered a FUSE request; returns
/// its status.
fn next_worker(c: &Cluster, old: u64) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let out = walb_tests::run(c.wdevc().arg("status"));
        if out.status.success() {
            let st: serde_json::Value =
                serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
            if st["pid"].as_u64() != Some(old) && st["first_answer_ms"] != 0 {
                return st;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no new worker");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// After the workload: every fsynced file intact, e2fsck clean, and the logs from lsid 0
/// redone onto the initial (all-zero) data device give the data device.
fn check_files_fsck_and_redo(c: &mut Cluster, m: &Path, files: &[(String, String)]) {
    let got = file_hashes(m);
    for f in files {
        assert!(got.contains(f), "fsynced file {} lost or changed", f.0);
    }
    sh(&format!("umount {}", m.display()), &c.dir);
    let lp = c.loops[DEV].clone();
    sh(&format!("e2fsck -fn {lp}"), &c.dir);
    assert_eq!(
        run_ok(c.wdevc().args(["is-log-overflow", DEV])).trim(),
        "0",
        "the log wrapped: the redo check needs every log"
    );
    run_ok(c.wdevc().args(["delete-wdev", DEV]));
    c.loops.remove(DEV);
    let tool = || {
        let mut t = Command::new(bin("walb-tool"));
        t.current_dir(&c.dir);
        t
    };
    let ldev = format!("{DEV}.ldev");
    run_ok(tool().args(["wlog-cat", "--begin", "0", &ldev, "-o", "x.wlog"]));
    sh("truncate -s 128M copy", &c.dir);
    run_ok(tool().args(["wlog-redo", "--discard", "zero", "x.wlog", "copy"]));
    let a = std::fs::read(c.dir.join("copy")).unwrap();
    let b = std::fs::read(c.dir.join(format!("{DEV}.ddev"))).unwrap();
    assert!(a == b, "redo of the logs differs from the data device");
}

#[test]
fn c1_worker_killed_under_fs_load() {
    let Some((mut c, m, w)) = loaded_ext4("c1_worker_killed_under_fs_load", false) else {
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut gaps = Vec::new();
    let t = Instant::now();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(rng.gen_range(2000..6000)));
        let pid = c.wdevd_status()["pid"].as_u64().unwrap();
        let killed = now_ms();
        // SAFETY: kill takes a pid and a signal number.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        let st = next_worker(&c, pid);
        gaps.push(st["first_answer_ms"].as_u64().unwrap() - killed);
    }
    std::thread::sleep(Duration::from_secs(30).saturating_sub(t.elapsed()));
    let (files, written) = w.finish();
    let st = c.wdevd_status();
    assert_eq!(st["restarts"], 5, "{st}");
    // A killed worker's requests are resent only over /dev/fuse (docs/wdev.md, "Transport").
    assert_eq!(st["transport"], "/dev/fuse", "{st}");
    eprintln!("{written} files fsynced over 5 worker kills; SIGKILL to first answer: {gaps:?} ms");
    assert!(
        written > KEEP,
        "the workload made progress: {written} files"
    );
    check_files_fsck_and_redo(&mut c, &m, &files);
}

#[test]
fn c2_upgrade_under_fs_load() {
    let Some((mut c, m, w)) = loaded_ext4("c2_upgrade_under_fs_load", false) else {
        return;
    };
    let mut took = Vec::new();
    for i in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        // A binary at another path, so the worker's executable shows the upgrade happened.
        let new = c.dir.join(format!("wdevd-{i}"));
        std::fs::copy(bin("wdevd"), &new).unwrap();
        let old = c.wdevd_status()["pid"].as_u64().unwrap();
        let t = Instant::now();
        let out = run_ok(c.wdevc().arg("upgrade").arg("--binary").arg(&new));
        let st: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let st = if st["first_answer_ms"] == 0 {
            next_worker(&c, old)
        } else {
            st
        };
        took.push(t.elapsed().as_millis());
        let pid = st["pid"].as_u64().unwrap();
        assert_ne!(pid, old);
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
            new.canonicalize().unwrap()
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let (files, written) = w.finish();
    assert_eq!(c.wdevd_status()["restarts"], 3);
    eprintln!("{written} files fsynced over 3 upgrades; wdevc upgrade took {took:?} ms");
    check_files_fsck_and_redo(&mut c, &m, &files);
}

#[test]
fn c4_every_wdevd_process_killed() {
    let Some((mut c, m, w)) = loaded_ext4("c4_every_wdevd_process_killed", true) else {
        return;
    };
    std::thread::sleep(Duration::from_secs(3));
    let worker = c.wdevd_status()["pid"].as_u64().unwrap() as i32;
    // The supervisor first (the worker dies with it), then the worker, in case.
    c.kill_wdevd();
    // SAFETY: kill takes a pid and a signal number.
    unsafe { libc::kill(worker, libc::SIGKILL) };
    let t = Instant::now();
    while Path::new(&format!("/proc/{worker}")).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "worker {worker} lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (files, written) = w.finish();
    eprintln!("{written} files written before every wdevd process died");
    // The manual recovery of docs/wdev.md.
    let lp = c.loops[DEV].clone();
    sh(&format!("umount -l {}", m.display()), &c.dir);
    sh(&format!("losetup -d {lp} || true"), &c.dir);
    sh(
        &format!("umount -l {}", c.run_dir().join("devices").display()),
        &c.dir,
    );
    c.start_wdevd();
    c.attach_device(DEV);
    let lp = c.loops[DEV].clone();
    let m2 = c.mount(&lp, "m2", "");
    let got = file_hashes(&m2);
    for f in &files {
        assert!(got.contains(f), "fsynced file {} lost or changed", f.0);
    }
    eprintln!(
        "{} fsynced files intact after the manual recovery",
        files.len()
    );
    sh(&format!("umount {}", m2.display()), &c.dir);
    sh(&format!("e2fsck -fn {lp}"), &c.dir);
}

/// The serving worker killed twice: once while a full backup reads the device, once while
/// walb-storage ships writes. The backup finishes, shipping resumes by itself, the writer
/// sees no error, and a snapshot taken afterwards restores to the device's hash at its gid.
#[test]
fn c3_worker_killed_while_shipping_and_during_a_full_backup() {
    let spec = Spec {
        devices: vec![(DEV, 64, 64)],
        ..Spec::default()
    };
    let Some(c) = Cluster::start(
        "c3_worker_killed_while_shipping_and_during_a_full_backup",
        spec,
    ) else {
        return;
    };
    // The I/O that follows waits for the next worker (no need to wait here for it).
    let kill_worker = |c: &Cluster| {
        let pid = c.wdevd_status()["pid"].as_u64().unwrap();
        // SAFETY: kill takes a pid and a signal number.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    };
    c.walbc(&["init-storage", "s0", "vol0", DEV]);
    c.write_random(DEV, 0, 48 << 20, 1);
    // A scan of about 4 s, so the kill lands in the middle of it.
    c.walbc(&["set-full-scan-bps", "s0", "16000000"]);
    let mut backup = c.walbc_cmd();
    backup.args(["full-backup", "s0", "vol0"]);
    let backup = std::thread::spawn(move || walb_tests::run(&mut backup));
    std::thread::sleep(Duration::from_millis(1500));
    kill_worker(&c);
    let out = backup.join().unwrap();
    assert!(
        out.status.success(),
        "full backup across a worker kill: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    c.walbc(&["set-full-scan-bps", "s0", "0"]);
    // Writes being shipped while the worker dies again.
    for i in 0..8u64 {
        c.write_random(DEV, (i * 4) << 20, 1 << 20, 10 + i);
        if i == 3 {
            kill_worker(&c);
        }
    }
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &gid, DEV);
    assert_eq!(c.wdevd_status()["restarts"], 2);
}
