//! 200 volumes on one storage, proxy and archive (and one wdevd): what an idle volume costs
//! each daemon (CPU, memory, threads, descriptors), and fair shipping: while 20 volumes write,
//! every volume's newest restorable point stays within the lag bound, and their last writes
//! are restorable within it once they stop; a sample of them restores as the device reads.
//! Needs root and /dev/fuse; loop devices are created on demand (200 of them).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use walb_tests::cluster::{file_hash, Cluster, Spec};

const VOLS: usize = 200;
const WRITERS: usize = 20;
const DEV_MIB: u64 = 8;
const LOG_MIB: u64 = 8;
/// Each writer writes this much every `WRITE_EVERY` (640 KiB/s a volume, 12.5 MiB/s in all:
/// what the debug build ships with room to spare on a loaded 2-core machine).
const WRITE_BYTES: usize = 128 << 10;
const WRITE_EVERY: Duration = Duration::from_millis(200);
const WRITE_FOR: Duration = Duration::from_secs(40);
/// How far a volume's newest restorable point may fall behind its oldest write not yet
/// restorable: the storage's implicit snapshot interval (2 s here) plus the shipping poll
/// (500 ms), two transfers (storage → proxy → archive) on a loaded machine, and the 1 s
/// granularity of a point's timestamp.
const LAG_BOUND_S: u64 = 10;
/// How long idle CPU is measured over.
const IDLE_WINDOW: Duration = Duration::from_secs(15);
/// The most CPU an idle server may use, in percent of a core.
const IDLE_CPU_MAX: f64 = 2.0;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What the kernel says about a process: CPU ticks used, resident memory, threads, descriptors.
#[derive(Clone, Copy, Debug)]
struct Proc {
    ticks: u64,
    rss_kb: u64,
    threads: u64,
    fds: u64,
}

impl Proc {
    fn of(pid: u32) -> Proc {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name (which may hold spaces): state is field 3, utime 14,
        // stime 15.
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |k: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next())
                .unwrap()
                .parse()
                .unwrap()
        };
        Proc {
            ticks,
            rss_kb: field("VmRSS:"),
            threads: field("Threads:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .count() as u64,
        }
    }
}

/// The processes measured: wdevd's serving worker and the three servers.
fn pids(c: &Cluster) -> BTreeMap<&'static str, u32> {
    let wdevd = c.wdevd_status()["pid"].as_u64().unwrap() as u32;
    BTreeMap::from([
        ("wdevd", wdevd),
        ("storage", c.pid("s0")),
        ("proxy", c.pid("p0")),
        ("archive", c.pid("a0")),
    ])
}

fn snapshot_all(pids: &BTreeMap<&'static str, u32>) -> BTreeMap<&'static str, Proc> {
    pids.iter().map(|(k, p)| (*k, Proc::of(*p))).collect()
}

/// Percent of a core each process used over `window`.
fn cpu_percent(
    pids: &BTreeMap<&'static str, u32>,
    window: Duration,
) -> BTreeMap<&'static str, f64> {
    // SAFETY: sysconf takes a constant name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let before = snapshot_all(pids);
    let t = Instant::now();
    std::thread::sleep(window);
    let after = snapshot_all(pids);
    let secs = t.elapsed().as_secs_f64();
    pids.keys()
        .map(|k| {
            let used = (after[k].ticks - before[k].ticks) as f64 / hz;
            (*k, 100.0 * used / secs)
        })
        .collect()
}

/// Raises its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `f(i)` for i in 0..n on `threads` threads.
fn parallel(n: usize, threads: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                f(i);
            });
        }
    });
}

/// The newest restorable point (gid, unix seconds) of every volume in `vols` on `archive`.
fn newest_points(
    rt: &tokio::runtime::Runtime,
    archive: &str,
    vols: impl Iterator<Item = usize>,
) -> Vec<(usize, Option<(u64, u64)>)> {
    rt.block_on(async {
        let mut out = Vec::new();
        for i in vols {
            let q = walb_proto::archive_request::Restorable {
                vol: format!("vol{i}"),
                explicit_only: false,
            };
            let r = walb_proto::control::call(archive, q)
                .await
                .unwrap_or_else(|e| panic!("restorable vol{i}: {e}"));
            out.push((i, r.points.last().map(|p| (p.gid, p.time))));
        }
        out
    })
}

#[test]
fn scale_200_volumes() {
    let t_test = Instant::now();
    let spec = Spec {
        devices: Vec::new(),
        // The storage polls wdevd at its default interval: an idle server is measured as it
        // ships (the other tests poll every 200 ms, which costs both ends 2.5 times as much).
        storage_flags: vec!["--snapshot-interval", "2", "--poll-ms", "500"],
        // The scheduled verification reads each new volume whole once, right after its first
        // backup (then once a day): a job of its own, not what an idle volume costs.
        archive_flags: vec!["--verify-every-hours", "0"],
        ..Spec::default()
    };
    let Some(mut c) = Cluster::start("scale_200_volumes", spec) else {
        return;
    };
    let pids = pids(&c);
    let empty = snapshot_all(&pids);

    let t = Instant::now();
    for i in 0..VOLS {
        c.create_device(&format!("wdev{i}"), DEV_MIB, LOG_MIB);
    }
    let devices_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    parallel(VOLS, 8, |i| {
        let (vol, dev) = (format!("vol{i}"), format!("wdev{i}"));
        c.walbc(&["init-storage", "s0", &vol, &dev]);
        c.walbc(&["full-backup", "s0", &vol]);
    });
    let backups_s = t.elapsed().as_secs_f64();
    eprintln!(
        "setup: {VOLS} devices in {devices_s:.1} s, init + full backup of {VOLS} volumes in \
         {backups_s:.1} s"
    );

    // Idle: every volume backed up, nothing writes.
    std::thread::sleep(Duration::from_secs(3));
    let idle_cpu = cpu_percent(&pids, IDLE_WINDOW);
    let idle = snapshot_all(&pids);
    eprintln!(
        "idle with {VOLS} volumes (CPU over {IDLE_WINDOW:?}; per volume: the growth from no \
         volumes / {VOLS}):"
    );
    for (k, p) in &idle {
        let e = empty[k];
        let per = |a: u64, b: u64| (a as f64 - b as f64) / VOLS as f64;
        eprintln!(
            "  {k:8} CPU {:5.2}% of a core, RSS {:6.1} MiB ({:+.1} KiB/volume), threads {:4} \
             ({:+.2}/volume), fds {:5} ({:+.2}/volume)",
            idle_cpu[k],
            p.rss_kb as f64 / 1024.0,
            per(p.rss_kb, e.rss_kb),
            p.threads,
            per(p.threads, e.threads),
            p.fds,
            per(p.fds, e.fds),
        );
    }

    // 20 volumes write; every volume's newest restorable point is sampled.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let archive = c.addr("a0").to_string();
    let base: Vec<u64> = newest_points(&rt, &archive, 0..VOLS)
        .into_iter()
        .map(|(i, p)| {
            p.unwrap_or_else(|| panic!("vol{i} has no restorable point"))
                .0
        })
        .collect();
    let writers: Vec<usize> = (0..WRITERS).map(|k| k * VOLS / WRITERS).collect();
    let last_write: Vec<AtomicU64> = writers.iter().map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let t0_ms = now_ms();
    let mut max_lag = vec![0u64; WRITERS];
    let mut samples = 0;
    // The longest the archive took to list the writers' restorable points.
    let mut slowest = Duration::ZERO;
    std::thread::scope(|s| {
        for (k, &i) in writers.iter().enumerate() {
            let (c, stop, last) = (&c, &stop, &last_write[k]);
            s.spawn(move || {
                let dev = format!("wdev{i}");
                let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
                let blocks = ((DEV_MIB << 20) - WRITE_BYTES as u64) / 4096;
                while !stop.load(Ordering::Relaxed) {
                    let off = rng.gen_range(0..blocks) * 4096;
                    c.write_random(&dev, off, WRITE_BYTES, rng.gen());
                    last.store(now_ms(), Ordering::Relaxed);
                    std::thread::sleep(WRITE_EVERY);
                }
            });
        }
        // The writers stop however this thread leaves (an assertion too).
        let _stop = StopOnDrop(&stop);
        let t = Instant::now();
        while t.elapsed() < WRITE_FOR {
            let now = now_ms();
            let mut lags = Vec::new();
            let asked = Instant::now();
            let points = newest_points(&rt, &archive, writers.iter().copied());
            slowest = slowest.max(asked.elapsed());
            for (k, (i, p)) in points.into_iter().enumerate() {
                let (_, time) = p.unwrap();
                // The oldest write not yet restorable is at most the newest point's time (or
                // the start of the writes) old; none when the last write is older than it.
                let lag_s = if last_write[k].load(Ordering::Relaxed) < time * 1000 {
                    0
                } else {
                    now.saturating_sub((time * 1000).max(t0_ms)) / 1000
                };
                max_lag[k] = max_lag[k].max(lag_s);
                lags.push(lag_s);
                assert!(
                    lag_s <= LAG_BOUND_S,
                    "vol{i}: newest restorable point {lag_s} s behind its writes (bound \
                     {LAG_BOUND_S} s)\n{}",
                    c.logs()
                );
            }
            if samples % 5 == 0 {
                eprintln!(
                    "{:4.0} s: lag of the writers {lags:?}",
                    t.elapsed().as_secs_f64()
                );
                // The idle ones stay restorable: their newest point never goes back.
                for (i, p) in newest_points(&rt, &archive, 0..VOLS) {
                    let gid = p.map_or(0, |p| p.0);
                    assert!(gid >= base[i], "vol{i}: newest gid {gid} < {}", base[i]);
                }
            }
            samples += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Once the writes stop, each writer's last write becomes restorable within the bound:
    // every permanent log shipped and the proxy holding nothing more for the archive.
    let stopped = Instant::now();
    for &i in &writers {
        c.wait_vol_shipped(&format!("wdev{i}"), &format!("vol{i}"));
    }
    let drained = stopped.elapsed();
    eprintln!(
        "{WRITERS} volumes wrote {} KiB every {WRITE_EVERY:?} for {WRITE_FOR:?} ({samples} \
         samples, the slowest {slowest:.1?}); every write restorable {:.1} s after the writes \
         stopped",
        WRITE_BYTES >> 10,
        drained.as_secs_f64()
    );
    assert!(
        drained <= Duration::from_secs(LAG_BOUND_S),
        "the last writes took {drained:?} to be shipped (bound {LAG_BOUND_S} s)"
    );
    let lags: Vec<String> = writers
        .iter()
        .zip(&max_lag)
        .map(|(i, l)| format!("vol{i} {l}"))
        .collect();
    eprintln!("max lag (s) per writing volume: {}", lags.join(", "));

    // A sample of writing volumes: an explicit snapshot restores as the device reads.
    for &i in &writers[..3] {
        let vol = format!("vol{i}");
        let gid = c.walbc(&["snapshot", "s0", &vol]);
        let want = c.device_hash(&format!("wdev{i}"));
        let img = c.walbc(&["restore", &vol, &gid, "--force"]);
        assert_eq!(file_hash(Path::new(&img)), want, "vol{i} gid {gid}");
        c.walbc(&["call", "a0", "del-restored", &vol, &gid]);
    }
    for (k, cpu) in &idle_cpu {
        assert!(
            *cpu < IDLE_CPU_MAX,
            "idle {k} used {cpu:.2}% of a core (most {IDLE_CPU_MAX}%)"
        );
    }
    eprintln!("scale_200_volumes: {:.0} s", t_test.elapsed().as_secs_f64());
}
