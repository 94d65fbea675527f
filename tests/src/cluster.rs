//! A whole system on localhost for one test: wdevd with wdev devices on loop devices, and
//! storage, proxy and archive daemons on free 127.0.0.1 ports (or each on a host of its own:
//! `Spec::hosts`), each a child process with its own data dir and log under one temp dir;
//! `walbc` with the matching layout. Dropping the cluster kills every process, detaches the
//! loop devices, unmounts and deletes the hosts' namespaces.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub use crate::daemon::free_addr;
use crate::daemon::{temp_files, Daemon};
use crate::{bin, have_root_and_fuse, run, run_ok};

/// How many servers of each kind, and the devices (name, size in MiB, log size in MiB).
pub struct Spec {
    pub storages: usize,
    pub proxies: usize,
    pub archives: usize,
    pub devices: Vec<(&'static str, u64, u64)>,
    /// Every connection over TLS with client certificates, made by walbc gen-certs for the
    /// layout (each daemon its own, walbc controller.crt).
    pub tls: bool,
    /// A TCP relay in front of every proxy and archive; storages reach them through it
    /// (`Cluster::relay`), walbc directly.
    pub relays: bool,
    /// More flags for every archive daemon (e.g. `--autoresize`).
    pub archive_flags: Vec<&'static str>,
    /// More flags for every storage daemon (e.g. `--snapshot-interval 1`).
    pub storage_flags: Vec<&'static str>,
    /// Each archive's data dir on an ext4 file system of its own of this many MiB (a loop
    /// mounted image), to fill it up.
    pub archive_fs_mb: Option<u64>,
    /// More flags for every storage, proxy and archive daemon.
    pub daemon_flags: Vec<&'static str>,
    /// Across hosts: every daemon in a network namespace of its own (`netns::Host`; plain
    /// TCP with `--insecure` unless `tls`, whose certificates then name the addresses in the
    /// layout), relays as with `relays` on the root sides, and walbc's layout naming the
    /// relays, so that walbc, proxies and archives reach each other through them too. wdevd
    /// stays in the root namespace; storages reach its socket by path.
    pub hosts: bool,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            storages: 1,
            proxies: 1,
            archives: 1,
            devices: vec![("wdev0", 32, 16)],
            tls: false,
            relays: false,
            archive_flags: Vec::new(),
            storage_flags: Vec::new(),
            archive_fs_mb: None,
            daemon_flags: Vec::new(),
            hosts: false,
        }
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    daemons: BTreeMap<String, Daemon>,
    wdevd: Option<Child>,
    /// Device name → loop device.
    pub loops: BTreeMap<String, String>,
    /// walbc's certificates (controller.crt) when the cluster runs TLS.
    pub certs: Option<crate::certs::Certs>,
    relays: BTreeMap<String, crate::relay::Relay>,
    /// File systems mounted for the test, unmounted on drop.
    mounts: Vec<PathBuf>,
    /// The servers walbc's layout lists, in order (the first archive is the primary).
    in_layout: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts everything, or returns `None` (said loudly) without root and /dev/fuse.
    pub fn start(test: &str, spec: Spec) -> Option<Cluster> {
        if !have_root_and_fuse(test) || (spec.hosts && !crate::netns::can_make_hosts(test)) {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            dir: tmp.path().to_path_buf(),
            daemons: BTreeMap::new(),
            wdevd: None,
            loops: BTreeMap::new(),
            certs: None,
            relays: BTreeMap::new(),
            mounts: Vec::new(),
            in_layout: Vec::new(),
            _tmp: tmp,
        };
        c.start_wdevd();
        for (name, mb, log_mb) in &spec.devices {
            c.create_device(name, *mb, *log_mb);
        }
        let ids = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        let (ss, ps, aa) = (
            ids("s", spec.storages),
            ids("p", spec.proxies),
            ids("a", spec.archives),
        );
        let mut hosts: BTreeMap<String, crate::netns::Host> = BTreeMap::new();
        let addrs: BTreeMap<String, String> = ss
            .iter()
            .chain(&ps)
            .chain(&aa)
            .map(|id| {
                if !spec.hosts {
                    return (id.clone(), free_addr());
                }
                // A namespace of its own: every port is free.
                let h = crate::netns::Host::create();
                let addr = format!("{}:7000", h.ip);
                hosts.insert(id.clone(), h);
                (id.clone(), addr)
            })
            .collect();
        if spec.relays || spec.hosts {
            for id in ps.iter().chain(&aa) {
                let ip = hosts.get(id).map_or("127.0.0.1", |h| h.root_ip.as_str());
                c.relays
                    .insert(id.clone(), crate::relay::Relay::listen(ip, &addrs[id]));
            }
        }
        let insecure = (spec.hosts && !spec.tls).then_some(&"--insecure");
        let flags = |more: &[&str]| -> Vec<String> {
            more.iter()
                .chain(insecure)
                .chain(&spec.daemon_flags)
                .map(|f| f.to_string())
                .collect()
        };
        for id in &aa {
            if let Some(mb) = spec.archive_fs_mb {
                c.mount_small_fs(id, mb);
            }
            c.add_daemon(id, "archive", &addrs[id], flags(&spec.archive_flags));
        }
        for id in &ps {
            c.add_daemon(id, "proxy", &addrs[id], flags(&[]));
        }
        let ids: Vec<&str> = ps.iter().map(String::as_str).collect();
        let proxy_list = c.reach_list(&ids);
        // A cluster of devices alone (no servers) has no archive for storages to name.
        let archive0 = aa.first().map(|a| c.reach_list(&[a])).unwrap_or_default();
        let wdevd_sock = c.run_dir().join("wdevd.sock").display().to_string();
        for id in &ss {
            let mut extra = vec![
                "--proxy".into(),
                proxy_list.clone(),
                "--archive".into(),
                archive0.clone(),
                "--wdevd".into(),
                wdevd_sock.clone(),
            ];
            // Tests poll faster than the default (500 ms) unless they say otherwise.
            if !spec.storage_flags.contains(&"--poll-ms") {
                extra.extend(["--poll-ms".into(), "200".into()]);
            }
            let extra = extra
                .into_iter()
                .chain(flags(&spec.storage_flags))
                .collect();
            c.add_daemon(id, "storage", &addrs[id], extra);
        }
        for (id, h) in hosts {
            c.daemons.get_mut(&id).unwrap().host = Some(h);
        }
        c.in_layout = ss.iter().chain(&ps).chain(&aa).cloned().collect();
        c.write_layout();
        if spec.tls {
            c.gen_certs();
        }
        for id in c.daemons.keys().cloned().collect::<Vec<_>>() {
            c.start_daemon(&id);
        }
        Some(c)
    }

    /// An ext4 file system of `mb` MiB (an image file on a loop device) mounted as the data
    /// dir of server `id`.
    fn mount_small_fs(&mut self, id: &str, mb: u64) {
        let img = self.dir.join(format!("{id}.fs"));
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(mb << 20).unwrap();
        run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        let dir = self.dir.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&dir),
        );
        self.mounts.push(dir);
    }

    /// Mounts `what` (with mount `opts`) at DIR/`name`; unmounted on drop if still there.
    pub fn mount(&mut self, what: &str, name: &str, opts: &str) -> PathBuf {
        let m = self.dir.join(name);
        std::fs::create_dir_all(&m).unwrap();
        run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(format!("mount {opts} {what} {}", m.display())),
        );
        self.mounts.push(m.clone());
        m
    }

    /// The serving wdevd process (`wdevc status`): pid, supervisor_pid, started_ms,
    /// restarts, first_answer_ms.
    pub fn wdevd_status(&self) -> serde_json::Value {
        serde_json::from_str(run_ok(self.wdevc().arg("status")).trim()).unwrap()
    }

    /// Leaves about `keep` bytes free in the file system of server `id`'s data dir; returns
    /// the filler file to remove.
    pub fn fill(&self, id: &str, keep: u64) -> PathBuf {
        let filler = self.dir.join(id).join("filler");
        let n = self.free_bytes(id).saturating_sub(keep);
        run_ok(
            Command::new("fallocate")
                .args(["-l", &n.to_string()])
                .arg(&filler),
        );
        filler
    }

    /// Asserts that no temporary file (a name starting with '.') is left in volume `vol`'s
    /// directory on archive `id`: a failed or refused flow leaves nothing half-written. A file
    /// of a flow still running (a sender's retry) is gone within seconds; one that stays is
    /// left behind.
    pub fn assert_no_temp_files(&self, id: &str, vol: &str) {
        let dir = self.dir.join(id).join("vols").join(vol);
        let t = Instant::now();
        let mut left = temp_files(&dir);
        while !left.is_empty() && t.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(200));
            let now = temp_files(&dir);
            left.retain(|f| now.contains(f));
        }
        assert!(
            left.is_empty(),
            "temporary files left in {}: {left:?}",
            dir.display()
        );
    }

    /// Bytes free in the file system holding server `id`'s data dir.
    pub fn free_bytes(&self, id: &str) -> u64 {
        let out = run_ok(
            Command::new("df")
                .args(["-B1", "--output=avail"])
                .arg(self.dir.join(id)),
        );
        out.lines().last().unwrap().trim().parse().unwrap()
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// Starts wdevd (again) on the cluster's run dir and waits for its socket.
    pub fn start_wdevd(&mut self) {
        std::fs::create_dir_all(self.run_dir()).unwrap();
        let _ = std::fs::remove_file(self.run_dir().join("wdevd.sock"));
        let log = self.log_file("wdevd");
        self.wdevd = Some(
            Command::new(bin("wdevd"))
                .arg("--run-dir")
                .arg(self.run_dir())
                // Frequent checkpoints let shipped logs be freed quickly.
                .args(["--checkpoint-interval", "500"])
                .stderr(log)
                .spawn()
                .expect("start wdevd"),
        );
        let sock = self.run_dir().join("wdevd.sock");
        let t = Instant::now();
        while !sock.exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "wdevd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL of wdevd: its FUSE mount and the loop devices on it are left dead.
    pub fn kill_wdevd(&mut self) {
        if let Some(mut w) = self.wdevd.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// wdevd dies as in a host crash and leaves what a reboot would: SIGKILL, then its loop
    /// devices detached and its FUSE mount gone. `start_wdevd` and `attach_device` bring the
    /// devices back.
    pub fn crash_wdevd(&mut self) {
        self.kill_wdevd();
        for lp in self.loops.values() {
            let _ = Command::new("losetup").args(["-d", lp]).status();
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.run_dir().join("devices"))
            .status();
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap()
    }

    pub fn wdevc(&self) -> Command {
        let mut c = Command::new(bin("wdevc"));
        c.current_dir(&self.dir)
            .arg("--run-dir")
            .arg(self.run_dir());
        c
    }

    /// Formats device `name` (`mb` MiB of data, `log_mb` MiB of log) as files in the cluster's
    /// dir and serves it on a loop device (`loops[name]`).
    pub fn create_device(&mut self, name: &str, mb: u64, log_mb: u64) {
        let (l, d) = (format!("{name}.ldev"), format!("{name}.ddev"));
        for (f, size) in [(&l, log_mb), (&d, mb)] {
            std::fs::File::create(self.dir.join(f))
                .unwrap()
                .set_len(size << 20)
                .unwrap();
        }
        run_ok(
            self.wdevc()
                .args(["format-ldev", &l, &d, "--pbs", "4096", "--name", name]),
        );
        self.attach_device(name);
    }

    /// `wdevc create-wdev NAME NAME.ldev NAME.ddev` on the existing files (redo runs); the
    /// loop device it prints becomes `loops[name]`.
    pub fn attach_device(&mut self, name: &str) {
        let (l, d) = (format!("{name}.ldev"), format!("{name}.ddev"));
        let lp = run_ok(self.wdevc().args(["create-wdev", name, &l, &d]));
        self.loops.insert(name.to_string(), lp.trim().to_string());
    }

    fn add_daemon(&mut self, id: &str, kind: &'static str, addr: &str, extra: Vec<String>) {
        let (data, log) = (self.dir.join(id), self.dir.join(format!("{id}.log")));
        let d = Daemon::new(kind, id, addr, &data, &log, extra);
        self.daemons.insert(id.to_string(), d);
    }

    /// TLS as walbc gen-certs sets it up for the layout: each daemon its own certificate
    /// (its role and id), walbc controller.crt.
    fn gen_certs(&mut self) {
        let dir = self.dir.join("certs");
        let layout = walb_controller::walbc::layout::Layout::load(&self.layout()).unwrap();
        walb_controller::walbc::certs::generate(&dir, &layout, false).unwrap();
        let controller = crate::certs::Certs::generated(&dir, "controller");
        for (id, d) in &mut self.daemons {
            d.args
                .extend(crate::certs::Certs::generated(&dir, id).flags());
            d.walbc_flags = controller.flags();
        }
        self.certs = Some(controller);
    }

    fn write_layout(&self) {
        let mut t = String::new();
        for kind in ["storage", "proxy", "archive"] {
            for id in self
                .in_layout
                .iter()
                .filter(|id| self.daemons[*id].kind == kind)
            {
                // Across hosts walbc goes through the relays like everyone else; the
                // certificate names the host's own address too (the readiness probe's).
                let own = &self.daemons[id].addr;
                let addr = match self.daemons[id].host {
                    Some(_) => self.reach_list(&[id]),
                    None => own.clone(),
                };
                t.push_str(&format!("[[{kind}]]\nid = \"{id}\"\naddr = \"{addr}\"\n"));
                if addr != *own {
                    let ip = own.rsplit_once(':').map_or(own.as_str(), |(h, _)| h);
                    t.push_str(&format!("names = [\"{ip}\"]\n"));
                }
            }
        }
        std::fs::write(self.layout(), t).unwrap();
    }

    /// What storages connect to for these servers: each one's relay when there is one,
    /// comma-separated.
    fn reach_list(&self, ids: &[&str]) -> String {
        ids.iter()
            .map(|id| {
                self.relays
                    .get(*id)
                    .map(|r| r.addr())
                    .unwrap_or_else(|| self.daemons[*id].addr.clone())
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// From now on the storages send to these proxies, in this order: each storage restarts
    /// with them as `--proxy`, and walbc's layout lists just them.
    pub fn use_proxies(&mut self, ids: &[&str]) {
        self.relist("proxy", ids);
        let list = self.reach_list(ids);
        self.restart_storages("--proxy", &list);
    }

    /// Archive `primary` becomes the primary: each storage restarts with it as `--archive`,
    /// and walbc's layout lists it first, then `others`.
    pub fn use_archives(&mut self, primary: &str, others: &[&str]) {
        let ids: Vec<&str> = std::iter::once(primary)
            .chain(others.iter().copied())
            .collect();
        self.relist("archive", &ids);
        let addr = self.reach_list(&[primary]);
        self.restart_storages("--archive", &addr);
    }

    /// walbc's layout lists these servers of `kind`, in this order, in place of the others.
    pub fn relist(&mut self, kind: &str, ids: &[&str]) {
        let daemons = &self.daemons;
        self.in_layout.retain(|id| daemons[id].kind != kind);
        self.in_layout.extend(ids.iter().map(|s| s.to_string()));
        self.write_layout();
    }

    /// Restarts every storage with `flag` set to `value`.
    fn restart_storages(&mut self, flag: &str, value: &str) {
        let ids: Vec<String> = self
            .daemons
            .iter()
            .filter(|(_, d)| d.kind == "storage")
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let args = &mut self.daemons.get_mut(&id).unwrap().args;
            let at = args.iter().position(|a| a == flag).expect("storage flag") + 1;
            args[at] = value.to_string();
            self.start_daemon(&id);
        }
    }

    pub fn layout(&self) -> PathBuf {
        self.dir.join("layout.toml")
    }

    /// The relay in front of proxy or archive `id` (with `Spec::relays` or `Spec::hosts`).
    pub fn relay(&self, id: &str) -> &crate::relay::Relay {
        self.relays
            .get(id)
            .unwrap_or_else(|| panic!("no relay for {id}: start the cluster with relays"))
    }

    pub fn addr(&self, id: &str) -> &str {
        &self.daemons[id].addr
    }

    /// Starts (or restarts: SIGKILL first) daemon `id` and waits until it answers.
    pub fn start_daemon(&mut self, id: &str) {
        self.daemons.get_mut(id).expect("daemon id").spawn();
    }

    /// The flags daemon `id` is started with (its next `start_daemon` uses changed ones).
    pub fn daemon_args(&mut self, id: &str) -> &mut Vec<String> {
        &mut self.daemons.get_mut(id).expect("daemon id").args
    }

    /// The process id of running daemon `id`.
    pub fn pid(&self, id: &str) -> u32 {
        self.daemons[id].pid().expect("daemon running")
    }

    /// SIGKILL of daemon `id`.
    pub fn kill(&mut self, id: &str) {
        if let Some(d) = self.daemons.get_mut(id) {
            d.sigkill();
        }
    }

    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{id}.log"))).unwrap_or_default()
    }

    pub fn walbc_cmd(&self) -> Command {
        let mut c = Command::new(bin("walbc"));
        c.current_dir(&self.dir)
            .arg("--layout")
            .arg(self.layout())
            .args(["--timeout", "60"])
            .args(self.certs.iter().flat_map(|c| c.flags()));
        c
    }

    /// Runs walbc; it must succeed; returns stdout trimmed.
    pub fn walbc(&self, args: &[&str]) -> String {
        let out = run(self.walbc_cmd().args(args));
        assert!(
            out.status.success(),
            "walbc {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs walbc; it must fail; returns stderr.
    pub fn walbc_err(&self, args: &[&str]) -> String {
        let out = run(self.walbc_cmd().args(args));
        assert!(
            !out.status.success(),
            "walbc {args:?} unexpectedly succeeded"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for id in self.daemons.keys() {
            s.push_str(&format!("---- {id}.log\n{}\n", self.log(id)));
        }
        s
    }

    /// Waits until storage s0 shipped every permanent log of device `dev` (volume vol0) and
    /// proxy p0 holds nothing more for any archive.
    pub fn wait_shipped(&self, dev: &str) {
        self.wait_vol_shipped(dev, "vol0")
    }

    /// `wait_shipped` for volume `vol` on device `dev`.
    pub fn wait_vol_shipped(&self, dev: &str, vol: &str) {
        let t = Instant::now();
        loop {
            let permanent = run_ok(self.wdevc().args(["get-permanent-lsid", dev]));
            let done = self.walbc(&["call", "s0", "get", "done", vol]);
            // The proxy is asked only once the storage is through (a call across hosts costs
            // round trips).
            let shipped = done.split_whitespace().next() == Some(permanent.trim());
            let held = match shipped {
                true => self.walbc(&["call", "p0", "get", "proxy-diff", vol]),
                false => "(not asked)".into(),
            };
            if shipped && held.is_empty() {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "not shipped (done {done}, permanent {permanent}, held {held:?}):\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a cluster (`None` without root and /dev/fuse) and backs vol0 up: wdev0 bound
    /// to s0, `bytes` of random data (seed 1) written at 0, a full backup to the primary.
    pub fn backed_up(test: &str, spec: Spec, bytes: usize) -> Option<Cluster> {
        let c = Cluster::start(test, spec)?;
        c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
        c.write_random("wdev0", 0, bytes, 1);
        c.walbc(&["full-backup", "s0", "vol0"]);
        Some(c)
    }

    /// BLAKE3 of vol0's snapshot `gid` restored (afresh) on `archive`.
    pub fn restored_hash(&self, archive: &str, gid: &str) -> String {
        let img = self.walbc(&["restore", "vol0", gid, "--archive", archive, "--force"]);
        file_hash(Path::new(&img))
    }

    /// vol0's snapshot `gid` restored on `archive` reads as device `dev` does now.
    pub fn check_restore(&self, archive: &str, gid: &str, dev: &str) {
        assert_eq!(
            self.restored_hash(archive, gid),
            self.device_hash(dev),
            "{archive}'s restore of gid {gid} differs from {dev}\n{}",
            self.logs()
        );
    }

    /// Waits (20 s at most) until server `id` reports vol0's state as `want`.
    pub fn wait_state(&self, id: &str, want: &str) {
        let t = Instant::now();
        loop {
            let s = self.walbc(&["call", id, "get", "state", "vol0"]);
            if s == want {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{id} is {s}, not {want}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True when vol0's snapshot `gid` is restorable on `archive`.
    pub fn is_restorable(&self, archive: &str, gid: &str) -> bool {
        self.walbc(&["call", archive, "get", "restorable", "vol0"])
            .lines()
            .any(|l| l.split_whitespace().next() == Some(gid))
    }

    /// Waits (60 s at most) until vol0's snapshot `gid` is restorable on `archive`.
    pub fn wait_restorable(&self, archive: &str, gid: &str) {
        let t = Instant::now();
        while !self.is_restorable(archive, gid) {
            assert!(t.elapsed() < Duration::from_secs(60), "{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Writes `len` random bytes (seeded) at `offset` of device `name` and fsyncs.
    pub fn write_random(&self, name: &str, offset: u64, len: usize, seed: u64) {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut buf = vec![0u8; len];
        rng.fill_bytes(&mut buf);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.loops[name])
            .unwrap();
        f.write_all_at(&buf, offset).unwrap();
        f.sync_all().unwrap();
    }

    /// BLAKE3 of the whole device `name` as it reads now.
    pub fn device_hash(&self, name: &str) -> String {
        file_hash(Path::new(&self.loops[name]))
    }
}

/// BLAKE3 of a file or block device, hex.
pub fn file_hash(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().to_hex().to_string()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in self.daemons.values_mut() {
            d.sigkill();
        }
        for lp in self.loops.values() {
            let _ = Command::new("losetup").args(["-d", lp]).status();
        }
        if let Some(mut w) = self.wdevd.take() {
            // SAFETY: kill takes a pid and a signal number.
            unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
            let _ = w.wait();
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.run_dir().join("devices"))
            .status();
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = std::io::stderr().flush();
    }
}
