//! Real databases on walb-rs: PostgreSQL on ext4 on the wdev loop device under load, its
//! snapshots restored and started (docs/snapshots.md), a disaster failover and the failback
//! after it (docs/recovery.md). The database binaries must be installed (scripts/setup.sh).

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use walb_tests::cluster::{Cluster, Spec};
use walb_tests::db::{assert_markers_present, killpg, Loop, Marker, Markers, Mounted};
use walb_tests::mariadb::{install_db, Maria};
use walb_tests::pg::{initdb, Pg};
use walb_tests::sh;

/// Small WAL and frequent checkpoints keep the device small and crash recovery short;
/// `wal_level=minimal` lets `pgbench -i` skip WAL for the tables it fills.
const PG_SETTINGS: &[&str] = &[
    "shared_buffers=32MB",
    "max_wal_size=96MB",
    "min_wal_size=32MB",
    "checkpoint_timeout=30s",
    "wal_level=minimal",
    "max_wal_senders=0",
    "fsync=on",
    "synchronous_commit=on",
    "full_page_writes=on",
];

/// A PostgreSQL cluster with `pgbench -i -s 10` and a `markers` table on ext4 on wdev0
/// (384 MiB, a 256 MiB log), fully backed up as vol0.
struct PgOnWdev {
    pg: Pg,
    mnt: Mounted,
    c: Cluster,
}

/// A cluster whose wdev0 (`mb` MiB, a `log_mb` MiB log) holds a fresh ext4 mounted on
/// `DIR/mnt`, bound to vol0 on s0 (not backed up yet).
fn ext4_on_wdev(test: &str, spec: Spec, mb: u64, log_mb: u64) -> Option<(Cluster, Mounted)> {
    let c = Cluster::start(
        test,
        Spec {
            devices: vec![("wdev0", mb, log_mb)],
            ..spec
        },
    )?;
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    sh(&format!("mkfs.ext4 -q -F {}", c.loops["wdev0"]), &c.dir);
    let mnt = Mounted::new(&c.loops["wdev0"], &c.dir.join("mnt"));
    Some((c, mnt))
}

fn pg_on_wdev(test: &str, spec: Spec) -> Option<PgOnWdev> {
    let t = Instant::now();
    let (c, mnt) = ext4_on_wdev(test, spec, 384, 256)?;
    let data = mnt.0.join("pg");
    initdb(&data);
    let pg = Pg::start(&data, &c.dir.join("sock"), PG_SETTINGS);
    pg.pgbench(&["-i", "-s", "10", "-q"]);
    pg.sql("create table markers(id serial primary key, t timestamptz not null default now())");
    c.walbc(&["full-backup", "s0", "vol0"]);
    eprintln!(
        "{test}: pgbench -i -s 10 and full backup in {:?}",
        t.elapsed()
    );
    Some(PgOnWdev { pg, mnt, c })
}

/// pgbench with 4 clients in the background until killed.
fn pgbench_load(pg: &Pg) -> Vec<Child> {
    let mut cmd = pg.client("pgbench");
    cmd.args(["-n", "-c", "4", "-j", "2", "-T", "600"]);
    vec![spawn_load(cmd)]
}

/// A load client in the background, in a process group of its own, output discarded.
fn spawn_load(mut cmd: Command) -> Child {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn().expect("start a load client")
}

/// Stops the marker thread and kills the load; returns every marker committed.
fn stop_writers(test: &str, t0: Instant, markers: Markers, load: Vec<Child>) -> Vec<Marker> {
    let all = markers.stop();
    for mut l in load {
        killpg(&l, libc::SIGKILL);
        let _ = l.wait();
    }
    eprintln!(
        "{test}: {} markers committed, writers stopped at {:?}",
        all.len(),
        t0.elapsed()
    );
    all
}

/// A marker committed every second into `pg`'s `markers` (through psql).
fn pg_markers(pg: &Pg) -> Markers {
    let mut psql = pg.psql();
    psql.args([
        "-c",
        "insert into markers default values returning id, extract(epoch from t)",
    ]);
    Markers::by_command(psql, '|')
}

/// PostgreSQL started on the data directory of a restored image: it recovers; `want`'s
/// markers are there, pgbench's invariant holds and pg_amcheck finds nothing.
fn check_restored_pg(data: &Path, sock: &Path, want: &[Marker], what: &str) {
    // The lock file names the original postmaster, which may still run.
    let _ = std::fs::remove_file(data.join("postmaster.pid"));
    let t = Instant::now();
    let pg = Pg::start(data, sock, PG_SETTINGS);
    let n = assert_markers_present(want, &pg.sql("select id from markers"), what);
    let sums = pg.pgbench_sums();
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "{what}: pgbench invariant broken: accounts, branches, tellers, history sum to {sums:?}"
    );
    pg.amcheck();
    pg.stop();
    eprintln!(
        "{what}: started, {} markers, sums {}, amcheck clean in {:?}",
        n,
        sums[0],
        t.elapsed()
    );
}

/// A snapshot taken under load: its gid, the markers committed before it, and whether it was
/// taken with `--freeze`.
struct Snap {
    gid: String,
    before: Vec<Marker>,
    frozen: bool,
}

/// Four snapshots of vol0 5 s apart while `markers` commit; the odd ones with `--freeze mnt`,
/// `--pre pre` and a `--post` hook whose run is checked. `status --json` must then name the
/// last one as the newest consistent point.
fn snapshots_under_load(c: &Cluster, mnt: &Path, markers: &Markers, pre: &str) -> Vec<Snap> {
    let mut snaps = Vec::new();
    for i in 0..4 {
        std::thread::sleep(Duration::from_secs(5));
        let before = markers.committed();
        let frozen = i % 2 == 1;
        let post_ran = c.dir.join(format!("post{i}"));
        let (m, post) = (
            mnt.display().to_string(),
            format!("touch {}", post_ran.display()),
        );
        let mut args = vec!["snapshot", "s0", "vol0"];
        if frozen {
            args.extend(["--freeze", &m, "--pre", pre, "--post", &post]);
        }
        let gid = c.walbc(&args);
        assert_eq!(
            post_ran.exists(),
            frozen,
            "the --post hook ran {}",
            post_ran.exists()
        );
        eprintln!(
            "snapshot {gid} (frozen {frozen}) after marker {:?}",
            before.last().map(|m| m.id)
        );
        snaps.push(Snap {
            gid,
            before,
            frozen,
        });
    }
    let status: serde_json::Value =
        serde_json::from_str(&c.walbc(&["status", "vol0", "--json"])).unwrap();
    let newest = status["archives"][0]["newest_consistent"]["gid"].as_u64();
    assert_eq!(
        newest.map(|g| g.to_string()).as_deref(),
        Some(snaps[3].gid.as_str()),
        "status --json does not name the last frozen snapshot: {status:#}"
    );
    snaps
}

/// Restores every snapshot, checks that the frozen ones are clean ext4 without a journal
/// replay, mounts each read-write (the journal replays) and runs `check` with the mount point,
/// a directory for the server's socket, the markers committed before the snapshot and a name.
fn restore_each(c: &Cluster, snaps: &[Snap], check: impl Fn(&Path, &Path, &[Marker], &str)) {
    for s in snaps {
        let what = format!("snapshot {} (frozen {})", s.gid, s.frozen);
        let img = c.walbc(&["restore", "vol0", &s.gid]);
        let lp = Loop::attach(Path::new(&img));
        if s.frozen {
            sh(&format!("e2fsck -fn {}", lp.0), &c.dir);
        }
        let m = Mounted::new(&lp.0, &c.dir.join(format!("r{}", s.gid)));
        check(&m.0, &c.dir.join(format!("srv{}", s.gid)), &s.before, &what);
        m.unmount();
        drop(lp);
        c.walbc(&["call", "a0", "del-restored", "vol0", &s.gid]);
    }
}

#[test]
fn db1_postgres_snapshots_restore_consistent() {
    let test = "db1_postgres_snapshots_restore_consistent";
    let t0 = Instant::now();
    let Some(PgOnWdev { pg, mnt, c }) = pg_on_wdev(test, Spec::default()) else {
        return;
    };
    let load = pgbench_load(&pg);
    let markers = pg_markers(&pg);
    let checkpoint = format!(
        "{} -h {} -p {} -U postgres -X -q -c CHECKPOINT",
        walb_tests::pg::pg_bin("psql").display(),
        pg.sock.display(),
        pg.port
    );
    let snaps = snapshots_under_load(&c, &mnt.0, &markers, &checkpoint);
    stop_writers(test, t0, markers, load);
    restore_each(&c, &snaps, |m, srv, before, what| {
        check_restored_pg(&m.join("pg"), srv, before, what)
    });
    pg.stop();
    drop(mnt);
    eprintln!("{test}: done in {:?}", t0.elapsed());
}

/// What a disaster left: every marker committed before it, and the point `walbc failover`
/// restored (its gid and time, unix seconds) in an image file.
struct Disaster {
    all: Vec<Marker>,
    img: std::path::PathBuf,
    gid: String,
    time: u64,
}

/// The disaster: PostgreSQL on wdev0 (implicit snapshots every second), then after 12 s of
/// pgbench load with markers, the database, wdevd, the storage and the proxy die at once
/// (kill -9, loop device gone); then `walbc failover` to an image file on the archive side.
/// None when the test cannot run here.
fn disaster_failover(test: &str, t0: Instant) -> Option<(Disaster, Cluster)> {
    let spec = Spec {
        storage_flags: vec!["--snapshot-interval", "1"],
        ..Default::default()
    };
    let PgOnWdev { pg, mnt, mut c } = pg_on_wdev(test, spec)?;
    let load = pgbench_load(&pg);
    let markers = pg_markers(&pg);
    std::thread::sleep(Duration::from_secs(12));
    pg.kill9();
    c.kill("s0");
    c.kill("p0");
    c.crash_wdevd();
    let all = stop_writers(test, t0, markers, load);
    drop(mnt);
    let img = c.dir.join("failover.img");
    let out = c.walbc(&["failover", "vol0", "--to", &img.display().to_string()]);
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("failover printed no {k}: {out}"))
            .to_string()
    };
    let time = walb_core::meta::parse_iso_utc(&field("time")).expect("failover time");
    eprintln!(
        "{test}: failover to gid {} at {} ({:?})",
        field("gid"),
        field("time"),
        t0.elapsed()
    );
    let d = Disaster {
        all,
        img,
        gid: field("gid"),
        time,
    };
    Some((d, c))
}

#[test]
fn db2_postgres_disaster_failover() {
    let test = "db2_postgres_disaster_failover";
    let t0 = Instant::now();
    let Some((Disaster { all, img, time, .. }, c)) = disaster_failover(test, t0) else {
        return;
    };
    let last = *all.last().expect("no marker committed");
    let lp = Loop::attach(&img);
    let m = Mounted::new(&lp.0, &c.dir.join("failover"));
    // Markers committed before the restored point's second began are in it.
    let want: Vec<Marker> = all.iter().copied().filter(|m| m.t < time as f64).collect();
    check_restored_pg(&m.0.join("pg"), &c.dir.join("sockf"), &want, "failover");
    m.unmount();
    drop(lp);
    let window = last.t - time as f64;
    eprintln!(
        "{test}: data-loss window {window:.1} s (last committed marker {} at {:.1}, restored \
         point at {time}); {} markers before it; done in {:?}",
        last.id,
        last.t,
        want.len(),
        t0.elapsed()
    );
    assert!(window <= 5.0, "data-loss window {window:.1} s > 5 s");
}

/// Failback after a disaster failover: the promoted image on the archive side takes writes
/// (PostgreSQL commits rows there), then the old primary's wdevd, storage and proxy come back
/// and `walbc failback` makes its device a copy of the promoted image, sending only the bulks
/// that differ. The device then hashes as the image does, PostgreSQL on it has the rows, and
/// shipping resumes: a snapshot taken after more commits restores to the device's hash.
#[test]
fn db3_postgres_failback() {
    let test = "db3_postgres_failback";
    let t0 = Instant::now();
    let Some((Disaster { img, gid, .. }, mut c)) = disaster_failover(test, t0) else {
        return;
    };

    // The promoted copy runs the database and commits rows.
    let lp = Loop::attach(&img);
    let m = Mounted::new(&lp.0, &c.dir.join("promoted"));
    let data = m.0.join("pg");
    let _ = std::fs::remove_file(data.join("postmaster.pid"));
    let pg = Pg::start(&data, &c.dir.join("sockp"), PG_SETTINGS);
    pg.sql("create table promoted(id int primary key, note text not null)");
    pg.sql("insert into promoted select g, 'after failover ' || g from generate_series(1, 5000) g");
    let promoted_markers = pg.sql("select count(*), max(id) from markers");
    pg.stop();
    m.unmount();
    drop(lp);
    let want = walb_tests::cluster::file_hash(&img);
    eprintln!(
        "{test}: promoted copy of gid {gid} took 5000 rows ({:?})",
        t0.elapsed()
    );

    // The old primary comes back (as after a reboot) and ships what it had not.
    c.start_wdevd();
    c.attach_device("wdev0");
    c.start_daemon("p0");
    c.start_daemon("s0");

    // A failback refused before anything changes: the error says `why`, the volume stays.
    let refused = |from: &std::path::Path, why: &str| {
        let from = from.display().to_string();
        let e = c.walbc_err(&["failback", "vol0", "--from", &from, "--storage", "s0"]);
        assert!(e.contains(why), "{e}");
        assert_eq!(c.walbc(&["call", "s0", "get", "state", "vol0"]), "Target");
    };
    // From an image of another size.
    let small = c.dir.join("small.img");
    std::fs::File::create(&small)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    refused(&small, "sizes differ");
    // Onto the device while it is mounted.
    let m = Mounted::new(
        &format!("-o ro,noload {}", c.loops["wdev0"]),
        &c.dir.join("busy"),
    );
    refused(&img, "in use");
    m.unmount();

    let t = Instant::now();
    let out = c.walbc(&[
        "failback",
        "vol0",
        "--from",
        &img.display().to_string(),
        "--storage",
        "s0",
    ]);
    let field = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("failback printed no {k}: {out}"))
    };
    let (sent, size, bulks) = (
        field("bytes_sent"),
        field("volume_bytes"),
        field("bulks_differed"),
    );
    eprintln!(
        "{test}: failback in {:?}: {bulks} bulks differed, {sent} bytes sent of a {size}-byte \
         volume ({:.1} %)",
        t.elapsed(),
        sent as f64 * 100.0 / size as f64
    );
    assert_eq!(size, 384 << 20, "{out}");
    assert!(
        sent * 4 < size,
        "failback sent {sent} of {size} bytes: not a small fraction"
    );
    assert_eq!(
        c.device_hash("wdev0"),
        want,
        "the device is not a copy of the promoted image"
    );

    // PostgreSQL on the old primary has what the promoted copy committed; more commits,
    // then a snapshot must restore to the device's hash.
    let m = Mounted::new(&c.loops["wdev0"], &c.dir.join("back"));
    let pg = Pg::start(&m.0.join("pg"), &c.dir.join("sockb"), PG_SETTINGS);
    assert_eq!(pg.sql("select count(*) from promoted"), "5000");
    assert_eq!(
        pg.sql("select count(*), max(id) from markers"),
        promoted_markers
    );
    pg.sql(
        "insert into promoted select g, 'after failback ' || g from generate_series(5001, 6000) g",
    );
    pg.stop();
    m.unmount();
    let snap = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &snap, "wdev0");
    eprintln!(
        "{test}: snapshot {snap} after failback restores to the device; done in {:?}",
        t0.elapsed()
    );
}

/// Accounts whose total stays 1 000 000, moved by `transfers()` (deadlock victims rolled back
/// and retried); markers committed one by one.
const MARIA_SCHEMA: &str = "
create table accounts(id int primary key, bal bigint not null) engine=InnoDB;
insert into accounts select seq, 1000 from seq_1_to_1000;
create table markers(id int auto_increment primary key,
                     t timestamp(6) not null default current_timestamp(6)) engine=InnoDB;
delimiter //
create procedure transfers()
begin
  declare a, b, x int;
  declare continue handler for sqlexception rollback;
  loop
    set a = floor(1 + rand() * 1000), b = floor(1 + rand() * 1000), x = floor(rand() * 100);
    start transaction;
    update accounts set bal = bal - x where id = a;
    update accounts set bal = bal + x where id = b;
    commit;
  end loop;
end//
delimiter ;
";

/// MariaDB started on the data directory of a restored image: InnoDB recovers; `want`'s
/// markers are there, the accounts' total holds and CHECK TABLE … EXTENDED is clean.
fn check_restored_maria(data: &Path, dir: &Path, want: &[Marker], what: &str) {
    let t = Instant::now();
    let db = Maria::start(data, dir);
    let n = assert_markers_present(want, &db.sql("select id from markers"), what);
    let total = db.sql("select sum(bal), count(*) from accounts");
    assert_eq!(total, "1000000\t1000", "{what}: accounts' total and count");
    let moved = db.sql("select count(*) from accounts where bal <> 1000");
    assert_ne!(moved, "0", "{what}: no transfer reached the image");
    db.check_tables("accounts, markers");
    db.stop();
    eprintln!(
        "{what}: MariaDB started, {} markers, total intact, CHECK TABLE clean in {:?}",
        n,
        t.elapsed()
    );
}

#[test]
fn db4_mariadb_snapshots_restore_consistent() {
    let test = "db4_mariadb_snapshots_restore_consistent";
    let t0 = Instant::now();
    let Some((c, mnt)) = ext4_on_wdev(test, Spec::default(), 256, 128) else {
        return;
    };
    install_db(&mnt.0.join("mysql"));
    let db = Maria::start(&mnt.0.join("mysql"), &c.dir.join("msock"));
    db.create_db();
    db.script(MARIA_SCHEMA);
    c.walbc(&["full-backup", "s0", "vol0"]);
    let load = (0..4)
        .map(|_| {
            let mut cmd = db.client();
            cmd.args(["-e", "call transfers()"]);
            spawn_load(cmd)
        })
        .collect();
    let mut insert = db.client();
    insert.args([
        "-e",
        "insert into markers () values (); \
         select id, unix_timestamp(t) from markers where id = last_insert_id()",
    ]);
    let markers = Markers::by_command(insert, '\t');
    let flush = format!(
        "{} --no-defaults --socket={} -u root -e 'flush tables'",
        walb_tests::mariadb::maria_bin("mariadb").display(),
        db.sock().display()
    );
    let snaps = snapshots_under_load(&c, &mnt.0, &markers, &flush);
    stop_writers(test, t0, markers, load);
    // The procedures run on in the server after their clients died.
    let ids =
        db.sql("select id from information_schema.processlist where info like 'call transfers%'");
    for id in ids.lines() {
        db.sql(&format!("kill {id}"));
    }
    restore_each(&c, &snaps, |m, srv, before, what| {
        check_restored_maria(&m.join("mysql"), srv, before, what)
    });
    db.stop();
    drop(mnt);
    eprintln!("{test}: done in {:?}", t0.elapsed());
}

/// `snapshot --freeze` thaws the file system on every way out: the storage failing the mark,
/// the mark not coming back within `--freeze-timeout` (the storage stopped with SIGSTOP), and
/// `--post` runs after a failed mark; a failing `--pre` takes no snapshot.
#[test]
fn db3_snapshot_freeze_always_thaws() {
    let test = "db3_snapshot_freeze_always_thaws";
    let Some((c, mnt)) = ext4_on_wdev(test, Spec::default(), 64, 32) else {
        return;
    };
    c.walbc(&["full-backup", "s0", "vol0"]);
    let m = mnt.0.display().to_string();
    // A write that a frozen file system would hold: it must finish within 10 s.
    let writable = |what: &str| {
        let out = walb_tests::run(Command::new("timeout").args([
            "10",
            "sh",
            "-c",
            &format!("echo x > {m}/probe && sync {m}/probe"),
        ]));
        assert!(out.status.success(), "{what}: {m} is still frozen");
    };
    let post = c.dir.join("post-ran");
    let post_cmd = format!("touch {}", post.display());
    let e = c.walbc_err(&[
        "snapshot", "s0", "novol", "--freeze", &m, "--pre", "true", "--post", &post_cmd,
    ]);
    assert!(e.contains("novol"), "{e}");
    writable("after a failed mark");
    assert!(post.exists(), "--post did not run after a failed mark");

    let pid = c.walbc(&["call", "s0", "get", "pid"]);
    sh(&format!("kill -STOP {pid}"), &c.dir);
    let e = c.walbc_err(&[
        "snapshot",
        "s0",
        "vol0",
        "--freeze",
        &m,
        "--freeze-timeout",
        "2",
    ]);
    sh(&format!("kill -CONT {pid}"), &c.dir);
    assert!(e.contains("frozen"), "{e}");
    writable("after the freeze timeout");

    std::fs::remove_file(&post).unwrap();
    let e = c.walbc_err(&[
        "snapshot", "s0", "vol0", "--freeze", &m, "--pre", "false", "--post", &post_cmd,
    ]);
    assert!(e.contains("pre hook"), "{e}");
    assert!(!post.exists(), "--post ran although --pre failed");
    writable("after a failed --pre");
    let gid = c.walbc(&["snapshot", "s0", "vol0", "--freeze", &m]);
    c.wait_restorable("a0", &gid);
}

/// `failover --to` a block device writes the newest point into it in place (the node stays a
/// block device); an existing regular file is refused.
#[test]
fn db5_failover_onto_a_block_device() {
    let Some(c) = Cluster::backed_up("db5_failover_onto_a_block_device", Spec::default(), 1 << 20)
    else {
        return;
    };
    c.write_random("wdev0", 2 << 20, 1 << 20, 2);
    c.wait_shipped("wdev0");
    let want = c.device_hash("wdev0");
    let disk = c.dir.join("disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let lp = Loop::attach(&disk);
    let out = c.walbc(&["failover", "vol0", "--to", &lp.0]);
    assert!(out.contains(&format!("path {}", lp.0)), "{out}");
    let meta = std::fs::metadata(&lp.0).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()),
        "{} was replaced",
        lp.0
    );
    assert_eq!(
        walb_tests::cluster::file_hash(Path::new(&lp.0)),
        want,
        "the device does not hold the newest point:\n{out}"
    );
    let e = c.walbc_err(&["failover", "vol0", "--to", &disk.display().to_string()]);
    assert!(e.contains("not a block device"), "{e}");
}
