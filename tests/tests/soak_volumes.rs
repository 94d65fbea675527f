//! Three volumes backed up at once through one storage, proxy and archive (docs/scenarios.md §6,
//! scenario1.py): a thread per volume does a full backup, then random actions (full,
//! continuous and hash backup, merge across a disabled snapshot, apply, stop/start of the
//! volume on a server). Every action ends with the restore of its gid hashing equal to the
//! device at that gid. `WALB_SOAK_ACTIONS` sets the number of actions (default 6),
//! `WALB_SOAK_SEED` replays a run. Needs root and /dev/fuse.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use walb_tests::cluster::{file_hash, Cluster, Spec};

const DEV_MIB: u64 = 32;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// One volume's thread: its names, its random choices, and the flag that stops the others once
/// one fails.
struct Worker<'a> {
    c: &'a Cluster,
    vol: String,
    dev: String,
    seed: u64,
    rng: StdRng,
    failed: &'a AtomicBool,
}

/// Raises the shared flag when the worker's thread unwinds, so the other threads stop early.
struct FailFlag<'a>(&'a AtomicBool);

impl Drop for FailFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

impl Worker<'_> {
    fn walbc(&self, args: &[&str]) -> String {
        self.c.walbc(args)
    }

    /// One to three random writes (4 KiB-aligned, 64 KiB to 1 MiB each: at most 3 MiB).
    fn write(&mut self) {
        for _ in 0..self.rng.gen_range(1..=3) {
            let len = self.rng.gen_range(16..=256usize) * 4096;
            let off = self.rng.gen_range(0..((DEV_MIB << 20) - len as u64) / 4096) * 4096;
            let seed = self.rng.gen();
            self.c.write_random(&self.dev, off, len, seed);
        }
    }

    /// Restores `gid` on a0, returns its hash and deletes the image.
    fn restored_hash(&self, gid: &str) -> String {
        let img = self.walbc(&["restore", &self.vol, gid, "--force"]);
        let h = file_hash(Path::new(&img));
        self.walbc(&["call", "a0", "del-restored", &self.vol, gid]);
        h
    }

    /// The restore of `gid` must hash as `want`.
    fn check(&self, action: &str, gid: &str, want: &str) {
        let got = self.restored_hash(gid);
        assert_eq!(
            got,
            want,
            "{}: {action}: restore of gid {gid} differs from {} (seed {})\n{}",
            self.vol,
            self.dev,
            self.seed,
            self.c.logs()
        );
    }

    /// An explicit snapshot (restorable once it returns) and the device's hash at it.
    fn snapshot(&self) -> (String, String) {
        let gid = self.walbc(&["snapshot", "s0", &self.vol]);
        (gid, self.c.device_hash(&self.dev))
    }

    fn full_backup(&mut self) {
        if self.walbc(&["call", "a0", "get", "state", &self.vol]) != "Clear" {
            self.walbc(&["call", "a0", "stop", &self.vol]);
            self.walbc(&["call", "a0", "reset-vol", &self.vol]);
        }
        self.write();
        let gid = self.walbc(&["full-backup", "s0", &self.vol]);
        self.check("full backup", &gid, &self.c.device_hash(&self.dev));
    }

    fn continuous_backup(&mut self) {
        self.write();
        let (gid, h) = self.snapshot();
        self.check("continuous backup", &gid, &h);
    }

    fn hash_backup(&mut self) {
        self.walbc(&["go-standby", "s0", &self.vol]);
        self.write();
        let gid = self.walbc(&["hash-backup", "s0", &self.vol]);
        self.check("hash backup", &gid, &self.c.device_hash(&self.dev));
    }

    /// Three snapshots, the middle one disabled, merged first → last.
    fn merge(&mut self) {
        self.write();
        let (first, _) = self.snapshot();
        self.write();
        self.c.wait_vol_shipped(&self.dev, &self.vol);
        let (middle, _) = self.snapshot();
        self.write();
        let (last, h) = self.snapshot();
        self.walbc(&["disable-snapshot", &self.vol, &middle]);
        let explicit = self.walbc(&["call", "a0", "get", "restorable", &self.vol, "explicit"]);
        assert!(
            !explicit
                .lines()
                .any(|l| l.starts_with(&format!("{middle} "))),
            "{}: disabled {middle} still explicit: {explicit} (seed {})",
            self.vol,
            self.seed
        );
        self.check("before merge", &last, &h);
        self.walbc(&["merge", &self.vol, &first, &last]);
        self.check("after merge", &last, &h);
    }

    fn apply(&mut self) {
        self.write();
        let (gid, h) = self.snapshot();
        self.check("before apply", &gid, &h);
        self.walbc(&["apply", &self.vol, &gid]);
        self.check("after apply", &gid, &h);
    }

    /// Stops and starts the volume on s0, p0 or a0, then a snapshot.
    fn stop_start(&mut self) {
        let server = ["s0", "p0", "a0"][self.rng.gen_range(0..3)];
        self.walbc(&["call", server, "stop", &self.vol]);
        let mut start = vec!["call", server, "start", &self.vol];
        if server == "s0" {
            start.push("target");
        }
        self.walbc(&start);
        self.walbc(&["kick", "s0", "p0"]);
        self.write();
        let (gid, h) = self.snapshot();
        self.check(&format!("stop/start on {server}"), &gid, &h);
    }

    fn run(mut self, actions: u64) {
        let _flag = FailFlag(self.failed);
        self.walbc(&["init-storage", "s0", &self.vol, &self.dev]);
        self.full_backup();
        for _ in 0..actions {
            if self.failed.load(Ordering::Relaxed) {
                return;
            }
            let n = self.rng.gen_range(0..6);
            let name = ["full", "continuous", "hash", "merge", "apply", "stop/start"][n];
            eprintln!("{}: {name}", self.vol);
            match n {
                0 => self.full_backup(),
                1 => self.continuous_backup(),
                2 => self.hash_backup(),
                3 => self.merge(),
                4 => self.apply(),
                _ => self.stop_start(),
            }
        }
    }
}

#[test]
fn soak_three_volumes() {
    let spec = Spec {
        devices: vec![
            ("wdev0", DEV_MIB, 16),
            ("wdev1", DEV_MIB, 16),
            ("wdev2", DEV_MIB, 16),
        ],
        ..Spec::default()
    };
    let Some(c) = Cluster::start("soak_three_volumes", spec) else {
        return;
    };
    let actions = env_u64("WALB_SOAK_ACTIONS").unwrap_or(6);
    let seed = env_u64("WALB_SOAK_SEED").unwrap_or_else(rand::random);
    eprintln!("soak_three_volumes: seed {seed} (WALB_SOAK_SEED={seed} replays), {actions} actions per volume");
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for i in 0..3u64 {
            let w = Worker {
                c: &c,
                vol: format!("vol{i}"),
                dev: format!("wdev{i}"),
                seed,
                rng: StdRng::seed_from_u64(seed.wrapping_add(i)),
                failed: &failed,
            };
            s.spawn(move || w.run(actions));
        }
    });
}
