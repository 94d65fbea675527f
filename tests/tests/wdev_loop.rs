//! The user-space device under a real file system: ext4 on /dev/loopN over wdevd's FUSE file.
//! Every log the device wrote, extracted with wlog-cat and redone onto the initial data
//! device, must give the data device byte for byte; the file system must be clean and every
//! file must hash the same. Needs root and /dev/fuse (says so loudly otherwise).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use walb_tests::{bin, file_hashes, have_root_and_fuse, run_ok, sh};

/// Stops wdevd and undoes mounts even when the test fails half-way.
struct Rig {
    dir: PathBuf,
    wdevd: Option<Child>,
    mounts: Vec<PathBuf>,
    /// Dropped after `Drop::drop` has unmounted everything below it.
    _tmp: tempfile::TempDir,
}

impl Rig {
    /// A rig in a fresh temp dir, or `None` (said loudly) without root and /dev/fuse.
    fn new(test: &str) -> Option<Rig> {
        if !have_root_and_fuse(test) {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        Some(Rig {
            dir: tmp.path().to_path_buf(),
            wdevd: None,
            mounts: Vec::new(),
            _tmp: tmp,
        })
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    fn wdevc(&self) -> Command {
        let mut c = Command::new(bin("wdevc"));
        c.current_dir(&self.dir)
            .arg("--run-dir")
            .arg(self.run_dir());
        c
    }
    fn start_wdevd(&mut self) {
        std::fs::create_dir_all(self.run_dir()).unwrap();
        // A killed daemon leaves its socket behind; wait for the new one's.
        let _ = std::fs::remove_file(self.run_dir().join("wdevd.sock"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("wdevd.log"))
            .unwrap();
        self.wdevd = Some(
            Command::new(bin("wdevd"))
                .arg("--run-dir")
                .arg(self.run_dir())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let sock = self.run_dir().join("wdevd.sock");
        let t = Instant::now();
        while !sock.exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "wdevd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Formats, starts wdevd, serves v0 and makes ext4 on its loop device; returns the loop.
    fn device_with_ext4(&mut self) -> String {
        sh("truncate -s 64M ldev && truncate -s 128M ddev", &self.dir);
        run_ok(self.wdevc().args([
            "format-ldev",
            "ldev",
            "ddev",
            "--pbs",
            "4096",
            "--name",
            "v0",
        ]));
        self.start_wdevd();
        let loopdev = run_ok(self.wdevc().args(["create-wdev", "v0", "ldev", "ddev"]))
            .trim()
            .to_string();
        assert!(loopdev.starts_with("/dev/loop"), "{loopdev}");
        sh(&format!("mkfs.ext4 -q -F {loopdev}"), &self.dir);
        loopdev
    }

    fn mount(&mut self, what: &str, name: &str, opts: &str) -> PathBuf {
        let m = self.dir.join(name);
        std::fs::create_dir_all(&m).unwrap();
        sh(&format!("mount {opts} {what} {}", m.display()), &self.dir);
        self.mounts.push(m.clone());
        m
    }

    fn stop_wdevd(&mut self) {
        if let Some(mut c) = self.wdevd.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while c.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").arg(&m).status();
        }
        let file = self.run_dir().join("devices/v0");
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "losetup -j {} | cut -d: -f1 | xargs -r losetup -d",
                file.display()
            ))
            .status();
        self.stop_wdevd();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.run_dir().join("devices"))
            .status();
    }
}

#[test]
fn wdev_ext4_logs_redo_to_the_data_device() {
    let Some(mut rig) = Rig::new("wdev_ext4_logs_redo_to_the_data_device") else {
        return;
    };
    let dir = rig.dir.clone();
    let loopdev = rig.device_with_ext4();
    let m = rig.mount(&loopdev, "m", "");
    for i in 0..2000u32 {
        let len = 1 + (i as usize * 7919) % 9000;
        let data: Vec<u8> = (0..len)
            .map(|j| (j as u32 ^ i.wrapping_mul(2654435761)) as u8)
            .collect();
        std::fs::write(m.join(format!("f{i}")), data).unwrap();
    }
    sh(
        &format!(
            "dd if=/dev/urandom of={}/big bs=1M count=24 conv=fsync status=none",
            m.display()
        ),
        &dir,
    );
    sh(&format!("rm {}/f1*", m.display()), &dir);
    sh("sync", &dir);
    let want = file_hashes(&m);
    assert_eq!(want.len(), 2000 - 1111 + 1);
    sh(&format!("umount {}", m.display()), &dir);
    rig.mounts.pop();
    run_ok(rig.wdevc().args(["delete-wdev", "v0"]));
    rig.stop_wdevd();

    // Every log from lsid 0, redone onto the initial (all-zero) data device.
    let tool = || {
        let mut c = Command::new(bin("walb-tool"));
        c.current_dir(&dir);
        c
    };
    run_ok(tool().args(["wlog-cat", "--begin", "0", "ldev", "-o", "x.wlog"]));
    sh("truncate -s 128M copy", &dir);
    run_ok(tool().args(["wlog-redo", "--discard", "zero", "x.wlog", "copy"]));
    let (a, b) = (
        std::fs::read(dir.join("copy")).unwrap(),
        std::fs::read(dir.join("ddev")).unwrap(),
    );
    assert!(
        a == b,
        "redo of the extracted logs differs from the data device"
    );
    sh("e2fsck -fn ddev", &dir);
    let m2 = rig.mount("copy", "m2", "-o loop,ro");
    assert_eq!(file_hashes(&m2), want, "files in the redone image");
}

#[test]
fn wdev_survives_kill_9_during_fsynced_writes() {
    let Some(mut rig) = Rig::new("wdev_survives_kill_9_during_fsynced_writes") else {
        return;
    };
    let dir = rig.dir.clone();
    let loopdev = rig.device_with_ext4();
    let m = rig.mount(&loopdev, "m", "");
    // Files fsynced before the kill must survive it.
    let mut synced = Vec::new();
    for i in 0..300u32 {
        let data: Vec<u8> = (0..4096 + i as usize * 97)
            .map(|j| (j as u32 * 31 + i) as u8)
            .collect();
        let p = m.join(format!("s{i}"));
        let mut f = std::fs::File::create(&p).unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        f.sync_all().unwrap();
        synced.push((format!("s{i}"), blake3::hash(&data).to_hex().to_string()));
    }
    sh(&format!("sync -f {}/s0", m.display()), &dir);
    // Writes go on while the daemon dies.
    let busy = m.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..400u32 {
            let p = busy.join(format!("late{i}"));
            let ok = std::fs::write(&p, vec![i as u8; 65536])
                .and_then(|_| std::fs::File::open(&p)?.sync_all());
            if ok.is_err() {
                return i;
            }
        }
        400
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = rig.wdevd.as_ref().unwrap().id() as i32;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = rig.wdevd.take().unwrap().wait();
    let written = writer.join().unwrap();
    eprintln!("writer stopped after {written} late files");

    // Operator steps (docs/wdev.md): drop the dead mounts, restart, reattach.
    sh(&format!("umount -l {}", m.display()), &dir);
    rig.mounts.pop();
    sh(&format!("losetup -d {loopdev} || true"), &dir);
    sh(&format!("umount -l {}/run/devices", dir.display()), &dir);
    rig.start_wdevd();
    let loop2 = run_ok(rig.wdevc().args(["create-wdev", "v0", "ldev", "ddev"]))
        .trim()
        .to_string();
    let m2 = rig.mount(&loop2, "m2", "");
    let got = file_hashes(&m2);
    for (name, h) in &synced {
        assert!(
            got.contains(&(name.clone(), h.clone())),
            "fsynced file {name} lost or changed"
        );
    }
    sh(&format!("umount {}", m2.display()), &dir);
    rig.mounts.pop();
    sh(&format!("e2fsck -fn {loop2}"), &dir);
    run_ok(rig.wdevc().args(["delete-wdev", "v0"]));
}

#[test]
fn wdev_overflow_freeze_and_resize_through_wdevc() {
    let Some(mut rig) = Rig::new("wdev_overflow_freeze_and_resize_through_wdevc") else {
        return;
    };
    let dir = rig.dir.clone();
    // A 4 MiB log (1021 PBs of ring): a 1 MiB write takes 257 PBs when it reaches wdevd whole
    // and up to 512 when the kernel splits it into 4 KiB writes, each in a pack of its own.
    sh("truncate -s 4M ldev && truncate -s 32M ddev", &dir);
    run_ok(rig.wdevc().args([
        "format-ldev",
        "ldev",
        "ddev",
        "--pbs",
        "4096",
        "--name",
        "v0",
    ]));
    rig.start_wdevd();
    let dev = run_ok(rig.wdevc().args(["create-wdev", "v0", "ldev", "ddev"]))
        .trim()
        .to_string();
    let q = |rig: &Rig, cmd: &str| run_ok(rig.wdevc().args([cmd, "v0"])).trim().to_string();
    let write_mib = |n: u32, seek: u32| {
        sh(
            &format!(
                "dd if=/dev/urandom of={dev} bs=1M count={n} seek={seek} oflag=direct status=none"
            ),
            &dir,
        )
    };

    run_ok(rig.wdevc().args(["set-checkpoint-interval", "2500"]));
    assert_eq!(
        run_ok(rig.wdevc().arg("get-checkpoint-interval")).trim(),
        "2500"
    );
    assert!(
        walb_tests::run_err(rig.wdevc().args(["set-checkpoint-interval", "86400001"]))
            .contains("86400000")
    );

    // Freeing extracted logs keeps a 4 MiB ring from overflowing under 8 MiB of writes.
    for i in 0..8 {
        write_mib(1, i);
        q(&rig, "force-checkpoint");
        let written = q(&rig, "get-written-lsid");
        run_ok(rig.wdevc().args(["set-oldest-lsid", "v0", &written]));
    }
    assert_eq!(q(&rig, "is-log-overflow"), "0");
    // Nobody frees logs: it overflows, writes still succeed, reset-wal clears it.
    write_mib(8, 8);
    assert_eq!(q(&rig, "is-log-overflow"), "1");
    let usage: u64 = q(&rig, "get-log-usage").parse().unwrap();
    let cap: u64 = q(&rig, "get-log-capacity").parse().unwrap();
    assert!(usage > cap, "usage {usage} capacity {cap}");
    q(&rig, "reset-wal");
    assert_eq!(q(&rig, "is-log-overflow"), "0");
    assert_eq!(q(&rig, "get-log-usage"), "0");

    // Freeze holds writes until melt; reads go on.
    q(&rig, "freeze");
    assert_eq!(q(&rig, "is-frozen"), "1");
    let mut held = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={dev}"),
            "bs=64K",
            "count=1",
            "oflag=direct",
            "status=none",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        held.try_wait().unwrap().is_none(),
        "a write went through a frozen device"
    );
    // Reads of the device go on (through its file: the loop device queues them behind the
    // held write).
    let file = rig.run_dir().join("devices/v0");
    sh(
        &format!(
            "dd if={} of=/dev/null bs=64K count=4 iflag=direct status=none",
            file.display()
        ),
        &dir,
    );
    q(&rig, "melt");
    assert!(held.wait().unwrap().success());
    // With a timeout it melts by itself.
    run_ok(rig.wdevc().args(["freeze", "v0", "--timeout", "1"]));
    let t = Instant::now();
    write_mib(1, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "the write waited for the timeout"
    );
    assert_eq!(q(&rig, "is-frozen"), "0");

    // Resize grows the device and its loop device.
    sh("truncate -s 48M ddev", &dir);
    run_ok(rig.wdevc().args(["resize", "v0", "0"]));
    assert_eq!(
        sh(&format!("blockdev --getsize64 {dev}"), &dir).trim(),
        (48u64 << 20).to_string()
    );
    write_mib(1, 47);
    let e = walb_tests::run_err(rig.wdevc().args(["resize", "v0", "1000"]));
    assert!(e.contains("resize to 1000 LB"), "shrinking refused: {e}");
    run_ok(rig.wdevc().args(["delete-wdev", "v0"]));
}
