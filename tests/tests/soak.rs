//! Continuous writes on ext4 over the wdev loop device while the pipeline ships them; then a
//! snapshot of the frozen file system, a restore, and the restored image must be clean
//! (e2fsck) and hold the same files. Needs root and /dev/fuse.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use walb_tests::cluster::{Cluster, Spec};
use walb_tests::run_ok;

fn hashes(root: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            let h = blake3::hash(&std::fs::read(e.path()).unwrap());
            (
                e.file_name().to_string_lossy().into_owned(),
                h.to_hex().to_string(),
            )
        })
        .collect()
}

struct Mounted(std::path::PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).status();
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn soak_ext4_continuous_writes_while_shipping() {
    let spec = Spec {
        devices: vec![("wdev0", 128, 64)],
        ..Spec::default()
    };
    let Some(c) = Cluster::start("soak_ext4_continuous_writes_while_shipping", spec) else {
        return;
    };
    let lp = c.loops["wdev0"].clone();
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F", "-E", "nodiscard", &lp]));
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.walbc(&["full-backup", "s0", "vol0"]);
    let mnt = c.dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run_ok(Command::new("mount").arg(&lp).arg(&mnt));
    let m = Mounted(mnt.clone());
    let secs: u64 = std::env::var("WALB_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(secs) {
        let name = mnt.join(format!("f{}", rng.gen_range(0..16)));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&name)
            .unwrap();
        let len = rng.gen_range(1024..=1 << 20);
        let mut buf = vec![0u8; len];
        rng.fill_bytes(&mut buf);
        f.seek(SeekFrom::Start(rng.gen_range(0..3u64 << 20)))
            .unwrap();
        f.write_all(&buf).unwrap();
        if rng.gen_range(0..4) == 0 {
            f.sync_all().unwrap();
        }
        n += 1;
        // About 8 MB/s: a steady load the (debug-built) pipeline ships as it comes; a burst
        // larger than the log would overflow it, as with walb.
        std::thread::sleep(Duration::from_micros(len as u64 / 8));
    }
    run_ok(Command::new("fsfreeze").arg("-f").arg(&mnt));
    let gid = c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let want = {
        run_ok(Command::new("fsfreeze").arg("-u").arg(&mnt));
        hashes(&mnt)
    };
    drop(m);
    let img = {
        c.walbc(&["call", "s0", "kick"]);
        let t = Instant::now();
        loop {
            let r = c.walbc(&["call", "a0", "get", "restorable", "vol0"]);
            if r.lines()
                .any(|l| l.split_whitespace().next() == Some(gid.as_str()))
            {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "{}", c.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
        c.walbc(&["restore", "vol0", &gid])
    };
    eprintln!("soak: {n} writes in {secs} s; restored gid {gid} to {img}");
    run_ok(Command::new("e2fsck").args(["-fn", &img]));
    let rmnt = c.dir.join("rmnt");
    std::fs::create_dir_all(&rmnt).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-o", "loop,ro"])
            .arg(&img)
            .arg(&rmnt),
    );
    let got = hashes(&rmnt);
    let _ = Command::new("umount").arg(&rmnt).status();
    assert_eq!(
        got, want,
        "files in the restored image differ from those at the snapshot"
    );
}
