//! The pipeline across real hosts (docs/scenarios.md §8): every daemon in a network namespace
//! of its own, each host's link a relay in the root namespace with 25 ms each way (50 ms round
//! trip) and 200 Mbit/s (25 MB/s) each way (`Spec::hosts`), TLS with client certificates
//! between them as a deployment across hosts runs (server certificates name IP addresses). Full backup, continuous shipping,
//! hash backup and diff replication carry random (incompressible) data over it; a link cut
//! mid-shipping recovers by itself. Each is judged by the restored image's hash against the
//! device's, and prints its throughput against the link rate (wire bytes counted by the
//! relay over the time the flow took); speed is never asserted. Needs root, /dev/fuse and
//! network namespaces.

use std::time::{Duration, Instant};

use walb_tests::cluster::{Cluster, Spec};

/// One-way delay of every link.
const DELAY: Duration = Duration::from_millis(25);
/// Every link's rate each way: 200 Mbit/s.
const RATE: u64 = 25_000_000;
const MIB: usize = 1 << 20;

/// A cluster across hosts with a device of `mb` MiB (a log as large) and `archives` archives,
/// every link shaped; vol0 bound to s0 and backed up (`first` MiB of random data written
/// first, the rest zeros, which the full backup carries compressed).
fn wan(test: &str, archives: usize, mb: u64, first: usize) -> Option<Cluster> {
    let spec = Spec {
        archives,
        devices: vec![("wdev0", mb, mb)],
        hosts: true,
        tls: true,
        ..Spec::default()
    };
    let c = Cluster::start(test, spec)?;
    for id in links(archives) {
        c.relay(id).set_delay(DELAY);
        c.relay(id).set_rate(Some(RATE));
    }
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    if first > 0 {
        c.write_random("wdev0", 0, first, 1);
        c.walbc(&["full-backup", "s0", "vol0"]);
    }
    Some(c)
}

/// The hosts whose links have relays: the proxy and the archives.
fn links(archives: usize) -> Vec<&'static str> {
    ["p0", "a0", "a1"][..1 + archives].to_vec()
}

/// Runs `flow` (which returns a gid of vol0), timing it and counting the bytes relay `link`
/// forwards meanwhile; prints the throughput against the link rate; then checks that the
/// gid restored on `archive` reads as the device does.
fn check_flow(test: &str, c: &Cluster, link: &str, archive: &str, flow: impl FnOnce() -> String) {
    check_flow_until(test, c, link, archive, || (flow(), Instant::now()))
}

/// `check_flow` for a flow that returns when its data was through as well as its gid.
fn check_flow_until(
    test: &str,
    c: &Cluster,
    link: &str,
    archive: &str,
    flow: impl FnOnce() -> (String, Instant),
) {
    let (bytes, t) = (c.relay(link).bytes_forwarded(), Instant::now());
    let (gid, through) = flow();
    let secs = (through - t).as_secs_f64();
    let mbps = (c.relay(link).bytes_forwarded() - bytes) as f64 / secs / 1e6;
    let link_mbps = RATE as f64 / 1e6;
    println!(
        "{test}: {mbps:.1} MB/s over a {link_mbps:.1} MB/s link ({:.0}%) in {secs:.1} s",
        100.0 * mbps / link_mbps
    );
    c.check_restore(archive, &gid, "wdev0");
}

#[test]
fn wan_full_backup() {
    let test = "wan_full_backup";
    let Some(c) = wan(test, 1, 160, 0) else {
        return;
    };
    c.write_random("wdev0", 0, 128 * MIB, 2);
    check_flow(test, &c, "a0", "a0", || {
        c.walbc(&["full-backup", "s0", "vol0"])
    });
}

#[test]
fn wan_continuous_shipping() {
    let test = "wan_continuous_shipping";
    let Some(c) = wan(test, 1, 160, MIB) else {
        return;
    };
    // A steady load as fast as the link: 128 MiB written 4 MiB at a time at 25 MB/s while
    // it ships; the flow ends when the proxy has handed everything on to the archive (the
    // snapshot taken then for the restore check is not timed). (A burst would ship as one
    // wlog of up to --max-wlog-send-mb, which the proxy forwards only once it has all of it:
    // two hops one after the other.)
    check_flow_until(test, &c, "p0", "a0", || {
        let t = Instant::now();
        for i in 0..32u64 {
            c.write_random("wdev0", (i * 4) << 20, 4 * MIB, 10 + i);
            let due = Duration::from_secs_f64((i + 1) as f64 * (4 * MIB) as f64 / RATE as f64);
            std::thread::sleep(due.saturating_sub(t.elapsed()));
        }
        c.wait_shipped("wdev0");
        let through = Instant::now();
        (c.walbc(&["snapshot", "s0", "vol0"]), through)
    });
}

#[test]
fn wan_hash_backup() {
    let test = "wan_hash_backup";
    let Some(c) = wan(test, 1, 160, MIB) else {
        return;
    };
    c.wait_shipped("wdev0");
    c.walbc(&["go-standby", "s0", "vol0"]);
    // 96 MiB of the 160 rewritten while nothing ships: the hash backup sends just those.
    c.write_random("wdev0", 32 << 20, 96 * MIB, 3);
    check_flow(test, &c, "a0", "a0", || {
        c.walbc(&["hash-backup", "s0", "vol0"])
    });
}

#[test]
fn wan_diff_replication() {
    let test = "wan_diff_replication";
    let Some(c) = wan(test, 2, 160, MIB) else {
        return;
    };
    // The off-site archive gets a full copy, then 96 MiB of diffs through its link.
    c.walbc(&["replicate", "vol0", "a0", "a1"]);
    c.write_random("wdev0", 16 << 20, 96 * MIB, 4);
    check_replication(test, &c);
}

/// Once vol0's writes are shipped and a snapshot taken: a0 → a1 replication, timed through
/// a1's link.
fn check_replication(test: &str, c: &Cluster) {
    c.wait_shipped("wdev0");
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    check_flow(test, c, "a1", "a1", || {
        let latest = c.walbc(&["replicate", "vol0", "a0", "a1"]);
        assert_eq!(latest, format!("{gid} {gid}"));
        gid
    });
}

#[test]
fn wan_diff_replication_many_snapshots() {
    let test = "wan_diff_replication_many_snapshots";
    let Some(c) = wan(test, 2, 64, MIB) else {
        return;
    };
    c.walbc(&["replicate", "vol0", "a0", "a1"]);
    // 40 snapshots of 1 MiB each: 40 small diffs for the off-site archive, sent back to back
    // on one stream (docs/formats.md §7.5), not a round trip each.
    for i in 0..40u64 {
        c.write_random("wdev0", (16 + i) << 20, MIB, 100 + i);
        c.walbc(&["snapshot", "s0", "vol0"]);
    }
    check_replication(test, &c);
}

#[test]
fn wan_cut_link_recovers() {
    let test = "wan_cut_link_recovers";
    let Some(c) = wan(test, 1, 96, MIB) else {
        return;
    };
    // 64 MiB to ship (about 2.7 s on the link); the storage → proxy link is cut a second in,
    // for 3 s, and shipping resumes by itself (the storage's back-off, no kick).
    check_flow(test, &c, "p0", "a0", || {
        c.write_random("wdev0", 16 << 20, 64 * MIB, 5);
        std::thread::sleep(Duration::from_secs(1));
        c.relay("p0").cut();
        std::thread::sleep(Duration::from_secs(3));
        c.relay("p0").restore();
        c.walbc(&["snapshot", "s0", "vol0"])
    });
}
