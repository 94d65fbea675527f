//! Defects found running PostgreSQL on walb-rs, each as the scenario that showed it.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use walb_tests::cluster::{Cluster, Spec};
use walb_tests::db::Mounted;
use walb_tests::{bin, file_hashes, have_root_and_fuse, run, run_ok, sh};

fn tool(dir: &Path) -> Command {
    let mut c = Command::new(bin("walb-tool"));
    c.current_dir(dir);
    c
}

/// `walb-tool wlog-gen` with a fixed seed, `-o out`.
fn gen_to(dir: &Path, out: &str) {
    run_ok(tool(dir).args([
        "wlog-gen", "--size", "8M", "--total", "1M", "--seed", "3", "-o", out,
    ]));
}

#[test]
fn defects_output_to_a_fifo_stays_a_fifo() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    gen_to(dir, "ref.wlog");
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut v)
                .unwrap();
            v
        })
    };
    gen_to(dir, "fifo");
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "-o FIFO replaced the FIFO"
    );
    let got = reader.join().unwrap();
    assert!(
        got == std::fs::read(dir.join("ref.wlog")).unwrap(),
        "the FIFO's reader got other bytes than the regular file holds"
    );
    // A copy of /dev/null's node, so that a tool that replaces it harms nothing else.
    let null = dir.join("null");
    mknod_like(&null, Path::new("/dev/null"));
    gen_to(dir, "null");
    let t = std::fs::metadata(&null).unwrap().file_type();
    assert!(t.is_char_device(), "-o a character device replaced it");
}

/// Makes `node` a device node for the same device as `like` (a test run against a tool that
/// replaces its output then clobbers only this node).
fn mknod_like(node: &Path, like: &Path) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(like).unwrap();
    let c = std::ffi::CString::new(node.as_os_str().as_bytes()).unwrap();
    let kind = if m.file_type().is_block_device() {
        libc::S_IFBLK
    } else {
        libc::S_IFCHR
    };
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o600, m.rdev()) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        node.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn defects_output_to_a_block_device_writes_the_device() {
    if !have_root_and_fuse("defects_output_to_a_block_device_writes_the_device") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    gen_to(dir, "ref.wlog");
    let want = std::fs::read(dir.join("ref.wlog")).unwrap();
    let backing = dir.join("disk");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let lp = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(&backing));
    let lp = lp.trim().to_string();
    // The tool writes through a node of its own for the loop device.
    let node = dir.join("dev");
    mknod_like(&node, Path::new(&lp));
    gen_to(dir, "dev");
    let is_block = std::fs::metadata(&node)
        .unwrap()
        .file_type()
        .is_block_device();
    let mut got = vec![0u8; want.len()];
    std::fs::File::open(&lp)
        .unwrap()
        .read_exact(&mut got)
        .unwrap();
    let _ = Command::new("losetup").args(["-d", &lp]).status();
    assert!(is_block, "-o a block device replaced the device node");
    assert!(
        got == want,
        "{lp} does not start with the regular file's bytes"
    );
}

/// INFO lines in `log`.
fn info_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains(" INFO ")).count()
}

/// Waits (`secs` at most) until `f` holds.
fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn defects_logs_are_plain_and_summarize_transfers() {
    const WLOGS: u64 = 40;
    let spec = Spec {
        daemon_flags: vec!["--transfer-summary-secs", "5"],
        ..Default::default()
    };
    let Some(mut c) = Cluster::backed_up(
        "defects_logs_are_plain_and_summarize_transfers",
        spec,
        1 << 20,
    ) else {
        return;
    };
    let ids = ["s0", "p0", "a0"];
    let before: Vec<usize> = ids.iter().map(|id| info_lines(&c.log(id))).collect();
    let t = Instant::now();
    for i in 0..WLOGS {
        c.write_random("wdev0", (2 << 20) + i * 8192, 4096, 100 + i);
        c.wait_shipped("wdev0");
    }
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
    // The summaries of the last period.
    std::thread::sleep(Duration::from_secs(6));
    let secs = t.elapsed().as_secs();
    for (id, want) in [
        ("s0", "shipped wlogs"),
        ("p0", "received wlogs"),
        ("p0", "diff transfers sent"),
        ("a0", "registered wdiffs"),
    ] {
        let log = c.log(id);
        assert!(
            log.lines()
                .any(|l| l.contains(" INFO ") && l.contains(want)),
            "{id}: no INFO summary of {want}:\n{log}"
        );
    }
    for (id, n0) in ids.iter().zip(before) {
        let grown = info_lines(&c.log(id)) - n0;
        assert!(
            grown <= 12,
            "{id}: {grown} more INFO lines for {WLOGS} shipped wlogs in {secs} s:\n{}",
            c.log(id)
        );
    }

    // wdevd killed with logs past its last checkpoint: the next create-wdev redoes them.
    c.write_random("wdev0", 4 << 20, 64 << 10, 7);
    c.crash_wdevd();
    c.start_wdevd();
    c.attach_device("wdev0");
    let log = c.log("wdevd");
    let redo = log
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("wdev0") && l.contains("redo: lsid"))
        .count();
    assert!(redo >= 2, "wdevd logs no redo line for its restart:\n{log}");

    for e in std::fs::read_dir(&c.dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "log") {
            assert!(
                !std::fs::read(&p).unwrap().contains(&0x1b),
                "{} holds an ANSI escape (ESC byte)",
                p.display()
            );
        }
    }
}

#[test]
fn defects_quickstart_takes_size_and_log_size() {
    if !have_root_and_fuse("defects_quickstart_takes_size_and_log_size") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("qs");
    let qs = || {
        let mut c = Command::new(bin("walbc"));
        c.arg("quickstart").arg("--dir").arg(&dir);
        c
    };
    let e = walb_tests::run_err(qs().args(["--size", "1G", "--log-size", "4M"]));
    assert!(e.contains("too small for a 1024 MiB device"), "{e}");
    let out = run(qs().args(["--size", "96M", "--log-size", "48M"]));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lp = stdout
        .split_whitespace()
        .find(|w| w.starts_with("/dev/loop"))
        .map(str::to_string);
    let size = lp.as_ref().map(|lp| {
        sh(&format!("blockdev --getsize64 {lp}"), d.path())
            .trim()
            .to_string()
    });
    let ldev = std::fs::metadata(dir.join("wdev0.ldev"))
        .map(|m| m.len())
        .ok();
    let stop = run(qs().arg("--stop"));
    let devices = dir.join("run/devices").display().to_string();
    wait_until(20, "wdevd did not unmount", || {
        !std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&devices)
    });
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stop.status.success(), "quickstart --stop failed");
    assert_eq!(
        size.as_deref(),
        Some("100663296"),
        "the device is not 96 MiB:\n{stdout}"
    );
    assert_eq!(ldev, Some(48 << 20), "the log is not 48 MiB");
    assert!(stdout.contains("96 MiB device"), "{stdout}");
}

/// Writes `n` files named `{prefix}{i}` into `m`, each fsynced; returns their (name, hash).
fn write_synced(m: &Path, prefix: &str, n: u32) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let data: Vec<u8> = (0..4096 + i as usize * 131)
                .map(|j| (j as u32 * 17 + i) as u8)
                .collect();
            let name = format!("{prefix}{i}");
            let mut f = std::fs::File::create(m.join(&name)).unwrap();
            std::io::Write::write_all(&mut f, &data).unwrap();
            f.sync_all().unwrap();
            (name, blake3::hash(&data).to_hex().to_string())
        })
        .collect()
}

/// A cluster (`None` without root and /dev/fuse) whose 64 MiB wdev0 holds a fresh ext4, bound
/// to vol0 on s0 and fully backed up.
fn ext4_backed_up(test: &str) -> Option<Cluster> {
    let spec = Spec {
        devices: vec![("wdev0", 64, 32)],
        ..Default::default()
    };
    let c = Cluster::start(test, spec)?;
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    sh(&format!("mkfs.ext4 -q -F {}", c.loops["wdev0"]), &c.dir);
    c.walbc(&["full-backup", "s0", "vol0"]);
    Some(c)
}

/// docs/recovery.md, "The whole primary host crashed", step by step.
#[test]
fn defects_whole_primary_host_crashed() {
    let Some(mut c) = ext4_backed_up("defects_whole_primary_host_crashed") else {
        return;
    };
    let m = c.dir.join("mnt");
    let mnt = Mounted::new(&c.loops["wdev0"], &m);
    let mut synced = write_synced(&m, "a", 100);
    c.walbc(&["snapshot", "s0", "vol0"]);
    synced.extend(write_synced(&m, "b", 100));

    // The crash: every process of the host dies; after the reboot no loop device, no mount.
    c.kill_wdevd();
    c.kill("s0");
    c.kill("p0");
    drop(mnt);
    c.crash_wdevd();

    // The documented steps: wdevd, the device from its files, proxy, storage, mount, the
    // application.
    c.start_wdevd();
    c.attach_device("wdev0");
    c.start_daemon("p0");
    c.start_daemon("s0");
    let mnt = Mounted::new(&c.loops["wdev0"], &m);
    let got = file_hashes(&m);
    for f in &synced {
        assert!(got.contains(f), "fsynced file {} lost or changed", f.0);
    }
    write_synced(&m, "c", 50);
    sh(&format!("umount {}", m.display()), &c.dir);
    drop(mnt);
    sh(&format!("e2fsck -fn {}", c.loops["wdev0"]), &c.dir);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

/// docs/snapshots.md, "Consistent snapshots": a snapshot taken while the file system is frozen
/// restores to a clean ext4 that holds every file written before the freeze, fsynced or not,
/// without a journal replay.
#[test]
fn defects_snapshot_under_fsfreeze_restores_clean() {
    let Some(c) = ext4_backed_up("defects_snapshot_under_fsfreeze_restores_clean") else {
        return;
    };
    let m = c.dir.join("mnt");
    let mnt = Mounted::new(&c.loops["wdev0"], &m);
    let mut want = Vec::new();
    for i in 0..50u32 {
        let data = vec![i as u8; 10_000 + i as usize];
        std::fs::write(m.join(format!("f{i}")), &data).unwrap();
        want.push((format!("f{i}"), blake3::hash(&data).to_hex().to_string()));
    }
    want.sort();
    sh(&format!("fsfreeze -f {}", m.display()), &c.dir);
    let snap = run(c.walbc_cmd().args(["snapshot", "s0", "vol0", "--no-wait"]));
    sh(&format!("fsfreeze -u {}", m.display()), &c.dir);
    assert!(
        snap.status.success(),
        "snapshot under fsfreeze failed: {}",
        String::from_utf8_lossy(&snap.stderr)
    );
    let gid = String::from_utf8_lossy(&snap.stdout).trim().to_string();
    c.wait_restorable("a0", &gid);
    let img = c.walbc(&["restore", "vol0", &gid]);
    sh(&format!("e2fsck -fn {img}"), &c.dir);
    // noload: the image as it is, no journal replay.
    let restored = Mounted::new(&format!("-o ro,loop,noload {img}"), &c.dir.join("img"));
    assert_eq!(
        file_hashes(&restored.0),
        want,
        "the restored image lacks files"
    );
    drop(restored);
    drop(mnt);
}
