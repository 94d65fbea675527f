//! The repository on object storage (docs/repository.md) against a real S3 server process
//! (moto's, tests/src/s3.rs), one bucket per test: continuous shipping, restore with no
//! archive, dedup, interrupted uploads and gc. Needs root and /dev/fuse.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use walb_repo::{layout, list, Repo};
use walb_tests::cluster::{file_hash, Cluster, Spec};
use walb_tests::{bin, run_ok, scrape};

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// vol0 on wdev0 (`mb` MiB), every archive shipping to `url` every second.
fn spec(url: &str, mb: u64, more: &[&'static str]) -> Spec {
    let mut flags = vec!["--repo", leak(url.to_string()), "--repo-every-secs", "1"];
    flags.extend_from_slice(more);
    Spec {
        devices: vec![("wdev0", mb, mb.max(32))],
        archive_flags: flags,
        ..Spec::default()
    }
}

fn walbc_repo(args: &[&str]) -> String {
    run_ok(Command::new(bin("walbc")).arg("repo").args(args))
}

/// Waits (180 s at most) until the repository lists `gid` of `vol` as restorable.
fn wait_in_repo(c: &Cluster, url: &str, vol: &str, gid: &str) {
    let t = Instant::now();
    loop {
        let out = walbc_repo(&["snapshots", url, vol]);
        if out
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(gid))
        {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "gid {gid} of {vol} not in the repository:\n{out}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Bytes of every chunk object in the repository.
fn chunk_bytes(url: &str) -> u64 {
    rt().block_on(async {
        let repo = Repo::open(url).unwrap();
        repo.list(&object_store::path::Path::from(layout::CHUNKS))
            .await
            .unwrap()
            .iter()
            .map(|m| m.size)
            .sum()
    })
}

/// The value of the first sample of `name` (labels included when given) in an OpenMetrics
/// text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            rest.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

fn restore_hash(url: &str, vol: &str, gid: &str, dir: &Path) -> String {
    let img = dir.join(format!("{vol}-{gid}.img"));
    walbc_repo(&["restore", url, vol, gid, "-o", img.to_str().unwrap()]);
    let h = file_hash(&img);
    std::fs::remove_file(&img).unwrap();
    h
}

#[test]
fn repo_restore_without_the_archive() {
    let s3 = walb_tests::s3::server();
    let url = s3.bucket("restore-without-archive");
    let maddr = leak(walb_tests::cluster::free_addr());
    let Some(mut c) = Cluster::backed_up(
        "repo_restore_without_the_archive",
        spec(&url, 32, &["--metrics", maddr]),
        8 << 20,
    ) else {
        return;
    };
    let mut points = Vec::new();
    for seed in 2..5u64 {
        c.write_random("wdev0", seed << 20, 3 << 20, seed);
        let gid = c.walbc(&["snapshot", "s0", "vol0"]);
        points.push((gid, c.device_hash("wdev0")));
    }
    // Shipping is continuous: the newest point reaches the repository within seconds.
    let t = Instant::now();
    wait_in_repo(&c, &url, "vol0", &points[2].0);
    let lag = t.elapsed();
    assert!(lag < Duration::from_secs(30), "repository lag {lag:?}");
    let metrics = scrape(maddr);
    let up = metric(&metrics, "walb_archive_repo_bytes_up");
    assert!(up > 0.0, "nothing counted as uploaded:\n{metrics}");
    let lag = metric(&metrics, "walb_archive_repo_lag_seconds{vol=\"vol0\"}");
    assert!(lag < 30.0, "repository lag {lag} s");
    // walbc status says the same: the repository, its lag and what was uploaded.
    let st: serde_json::Value =
        serde_json::from_str(&c.walbc(&["status", "vol0", "--json"])).unwrap();
    let r = &st["archives"][0]["repository"];
    assert_eq!(r["url"], url.as_str(), "{st}");
    assert!(r["lag_seconds"].as_u64().unwrap() < 30, "{st}");
    assert!(r["bytes_up"].as_u64().unwrap() > 0, "{st}");
    assert!(r["error"].is_null(), "{st}");

    // The archive host is lost: its process and every file of its data dir.
    c.kill("a0");
    std::fs::remove_dir_all(c.dir.join("a0")).unwrap();
    // Another host: nothing but walbc, the bucket and an empty directory.
    let other = tempfile::tempdir().unwrap();
    for (gid, hash) in &points {
        assert_eq!(
            &restore_hash(&url, "vol0", gid, other.path()),
            hash,
            "gid {gid} restored from the repository"
        );
    }
    let v = walbc_repo(&["verify", &url, "--deep"]);
    assert!(v.contains("(deep)"), "{v}");
    // A gid that is not restorable is refused, naming it.
    let out = walb_tests::run(
        Command::new(bin("walbc"))
            .args(["repo", "restore", &url, "vol0", "999999", "-o"])
            .arg(other.path().join("x")),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("999999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !other.path().join("x").exists(),
        "a failed restore left its output"
    );
}

#[test]
fn repo_dedup() {
    // 1 GiB gives the same figures (10.0% and 0 bytes, BENCHMARKS.md) in about twice the time.
    const MB: u64 = 512;
    let s3 = walb_tests::s3::server();
    let url = s3.bucket("dedup");
    let mut sp = spec(&url, MB, &["--repo-keep-images", "1"]);
    sp.devices.push(("wdev1", MB, MB));
    let Some(c) = Cluster::start("repo_dedup", sp) else {
        return;
    };
    // The whole device random (incompressible), then a full backup: the first image.
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    for i in 0..MB / 16 {
        c.write_random("wdev0", i * (16 << 20), 16 << 20, 100 + i);
    }
    let g0 = c.walbc(&["full-backup", "s0", "vol0"]);
    c.walbc(&["apply", "vol0", &g0]);
    wait_in_repo(&c, &url, "vol0", &g0);
    let first = chunk_bytes(&url);
    assert!(first >= (MB << 20) * 99 / 100, "first image: {first} bytes");

    // A tenth rewritten (in 1 MiB pieces spread over the device), applied: the second image.
    let pieces = MB / 10;
    for i in 0..pieces {
        c.write_random("wdev0", (i * 10) << 20, 1 << 20, 1000 + i);
    }
    let g1 = c.walbc(&["snapshot", "s0", "vol0"]);
    let want = c.device_hash("wdev0");
    c.walbc(&["apply", "vol0", &g1]);
    let t = Instant::now();
    loop {
        let images = rt().block_on(async {
            list::images(&Repo::open(&url).unwrap(), "vol0")
                .await
                .unwrap()
        });
        if images.iter().any(|s| s.gid_b.0.to_string() == g1) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(180), "{}", c.logs());
        std::thread::sleep(Duration::from_millis(250));
    }
    let second = chunk_bytes(&url) - first;
    println!(
        "dedup: first image {first} bytes, second (10% rewritten) adds {second} ({:.1}%)",
        second as f64 * 100.0 / first as f64
    );
    assert!(
        second * 100 <= first * 12,
        "the second image added {second} bytes to {first}"
    );

    // The same data under a second volume is stored once.
    for i in 0..MB / 16 {
        c.write_random("wdev1", i * (16 << 20), 16 << 20, 100 + i);
    }
    for i in 0..pieces {
        c.write_random("wdev1", (i * 10) << 20, 1 << 20, 1000 + i);
    }
    assert_eq!(c.device_hash("wdev1"), want);
    c.walbc(&["init-storage", "s0", "vol1", "wdev1"]);
    let h0 = c.walbc(&["full-backup", "s0", "vol1"]);
    c.walbc(&["apply", "vol1", &h0]);
    wait_in_repo(&c, &url, "vol1", &h0);
    let third = chunk_bytes(&url) - first - second;
    println!(
        "dedup: the same image under vol1 adds {third} bytes ({:.2}%)",
        third as f64 * 100.0 / first as f64
    );
    assert!(third * 100 <= first, "vol1 added {third} bytes to {first}");
    // vol0 keeps its newest image only: the chunks the rewrite replaced are named by nothing
    // and go at gc; every restore still works.
    let images = rt().block_on(async {
        list::images(&Repo::open(&url).unwrap(), "vol0")
            .await
            .unwrap()
    });
    assert_eq!(images.len(), 1, "{images:?}");
    let (n, swept) = gc_now(&url);
    assert_eq!(n, pieces, "{swept}");
    let other = tempfile::tempdir().unwrap();
    assert_eq!(restore_hash(&url, "vol1", &h0, other.path()), want);
    assert_eq!(restore_hash(&url, "vol0", &g1, other.path()), want);
}

/// `walbc repo gc` with no grace period: how many chunks it swept, and what it said.
fn gc_now(url: &str) -> (u64, String) {
    let swept = walbc_repo(&["gc", url, "--grace-secs", "0"]);
    let n = swept
        .split("; ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{swept}"));
    (n, swept)
}

#[test]
fn repo_interrupted_upload() {
    let s3 = walb_tests::s3::server();
    let url = s3.bucket("interrupted");
    let Some(mut c) = Cluster::start(
        "repo_interrupted_upload",
        spec(&url, 32, &["--repo-rate-mbps", "4"]),
    ) else {
        return;
    };
    let repo = Repo::open(&url).unwrap();
    let rt = rt();
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 0, 32 << 20, 1);
    let g0 = c.walbc(&["full-backup", "s0", "vol0"]);
    c.walbc(&["apply", "vol0", &g0]);
    // Killed in the middle of the image upload (32 MiB at 4 MB/s).
    let t = Instant::now();
    loop {
        let chunks = rt.block_on(repo.list(&object_store::path::Path::from(layout::CHUNKS)));
        if chunks.unwrap().len() >= 4 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.kill("a0");
    let images = rt.block_on(list::images(&repo, "vol0")).unwrap();
    assert!(
        images.is_empty(),
        "an index is visible before its chunks: {images:?}"
    );
    assert_eq!(walbc_repo(&["snapshots", &url, "vol0"]), "");
    walbc_repo(&["verify", &url, "--deep"]);

    // Back without the repository: the first 4 MiB rewritten and applied, so the chunks
    // uploaded for them above are referenced by nothing.
    let with_repo = c.daemon_args("a0").clone();
    let n = with_repo.iter().position(|a| a == "--repo").unwrap();
    c.daemon_args("a0").drain(n..n + 2);
    c.start_daemon("a0");
    c.write_random("wdev0", 0, 4 << 20, 2);
    let g1 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h1 = c.device_hash("wdev0");
    c.walbc(&["apply", "vol0", &g1]);
    c.kill("a0");

    // With the repository again: the new base is uploaded whole.
    *c.daemon_args("a0") = with_repo;
    c.start_daemon("a0");
    wait_in_repo(&c, &url, "vol0", &g1);

    // Killed during a wdiff upload (8 MiB at 4 MB/s): nothing of it is visible.
    c.write_random("wdev0", 8 << 20, 8 << 20, 3);
    let g2 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h2 = c.device_hash("wdev0");
    std::thread::sleep(Duration::from_millis(1200));
    c.kill("a0");
    walbc_repo(&["verify", &url, "--deep"]);
    let listed = walbc_repo(&["snapshots", &url, "vol0"]);
    let has_g2 = listed
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(g2.as_str()));
    c.start_daemon("a0");
    wait_in_repo(&c, &url, "vol0", &g2);
    println!("wdiff of gid {g2} already uploaded at the kill: {has_g2}");

    // gc: within the grace period nothing goes; after it the orphans do, and every
    // referenced chunk stays (verify, restores).
    let kept = walbc_repo(&["gc", &url]);
    assert!(kept.contains(" 0 swept"), "{kept}");
    c.kill("a0");
    let (n, swept) = gc_now(&url);
    assert!(n >= 1, "no orphaned chunk swept: {swept}");
    walbc_repo(&["verify", &url, "--deep"]);
    let other = tempfile::tempdir().unwrap();
    assert_eq!(restore_hash(&url, "vol0", &g1, other.path()), h1);
    assert_eq!(restore_hash(&url, "vol0", &g2, other.path()), h2);
}

#[test]
fn repo_rebuild_archive() {
    let s3 = walb_tests::s3::server();
    let url = s3.bucket("rebuild");
    let mut sp = spec(&url, 32, &["--repo-lease-secs", "5"]);
    sp.archives = 2;
    let Some(mut c) = Cluster::backed_up("repo_rebuild_archive", sp, 8 << 20) else {
        return;
    };
    c.write_random("wdev0", 10 << 20, 2 << 20, 2);
    let g1 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h1 = c.device_hash("wdev0");
    wait_in_repo(&c, &url, "vol0", &g1);

    // a0 is lost with its data; a1 is rebuilt from the repository.
    c.kill("a0");
    std::fs::remove_dir_all(c.dir.join("a0")).unwrap();
    c.kill("a1");
    c.daemon_args("a1")
        .extend(["--rebuild".to_string(), "vol0".to_string()]);
    c.start_daemon("a1");
    assert_eq!(c.restored_hash("a1", &g1), h1, "{}", c.logs());

    // walbc's archive replacement (docs/recovery.md): a1 the primary, the proxies forget a0,
    // and a hash backup (which points the proxies at the primary) bridges whatever a0 had not
    // uploaded.
    c.use_archives("a1", &[]);
    c.walbc(&["stop-synchronizing", "vol0", "a0"]);
    c.walbc(&["go-standby", "s0", "vol0"]);
    c.write_random("wdev0", 16 << 20, 2 << 20, 3);
    let g2 = c.walbc(&["hash-backup", "s0", "vol0"]);
    assert_eq!(c.restored_hash("a1", &g2), c.device_hash("wdev0"));

    // Shipping goes on from a1 (once a0's lease has run out) and through the proxy.
    c.write_random("wdev0", 20 << 20, 2 << 20, 4);
    let g3 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h3 = c.device_hash("wdev0");
    wait_in_repo(&c, &url, "vol0", &g3);
    let other = tempfile::tempdir().unwrap();
    assert_eq!(restore_hash(&url, "vol0", &g3, other.path()), h3);
    assert_eq!(restore_hash(&url, "vol0", &g1, other.path()), h1);

    // A new full backup starts another lineage: a1 refuses to mix it into the repository.
    c.walbc(&["reset", "a1", "vol0"]);
    c.walbc(&["full-backup", "s0", "vol0"]);
    let t = Instant::now();
    while !c.log("a1").contains("the repository holds lineage") {
        assert!(t.elapsed() < Duration::from_secs(30), "{}", c.log("a1"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(restore_hash(&url, "vol0", &g3, other.path()), h3);
}
