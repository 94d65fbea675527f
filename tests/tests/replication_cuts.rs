//! Link cuts during archive → archive replication (docs/scenarios.md §4, e14–e16): a0 reaches a1
//! through a relay the test owns, slowed so the copy is still running when the link is cut.
//! The destination must roll back to its previous state, and a retry must finish the copy;
//! judged by the hashes of restores of the same gid on both archives and of the device.
//! Needs root and /dev/fuse.

use std::process::Child;
use std::time::Duration;

use walb_tests::cluster::{Cluster, Spec};

/// Two archives, relays in front of every proxy and archive; vol0 backed up to a0.
fn cluster(test: &str, written: usize) -> Option<Cluster> {
    let spec = Spec {
        archives: 2,
        relays: true,
        ..Spec::default()
    };
    Cluster::backed_up(test, spec, written)
}

fn replicate_args(c: &Cluster) -> Vec<String> {
    let via = c.relay("a1").addr();
    ["replicate", "vol0", "a0", "a1", "--dst-addr", &via]
        .map(String::from)
        .to_vec()
}

/// Replicates a0 → a1 through the relay.
fn replicate(c: &Cluster) -> String {
    let args = replicate_args(c);
    c.walbc(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Starts a replication through a relay slowed to 2 MiB/s, cuts the link after 3 s and
/// checks that the replication failed; the link is whole and fast again afterwards.
fn cut_replication(c: &Cluster) {
    c.relay("a1").set_rate(Some(2 << 20));
    let mut bg: Child = c.walbc_cmd().args(replicate_args(c)).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    c.relay("a1").cut();
    assert!(
        !bg.wait().unwrap().success(),
        "the replication survived the cut\n{}",
        c.logs()
    );
    c.relay("a1").set_rate(None);
    c.relay("a1").restore();
}

fn latest(c: &Cluster, archive: &str) -> String {
    c.walbc(&["call", archive, "get", "latest-snap", "vol0"])
}

/// Restores `gid` on both archives: each equals the device's hash `h`.
fn check_both(c: &Cluster, gid: &str, h: &str) {
    assert_eq!(c.restored_hash("a0", gid), h, "a0 at {gid}\n{}", c.logs());
    assert_eq!(c.restored_hash("a1", gid), h, "a1 at {gid}\n{}", c.logs());
}

#[test]
fn e14_link_cut_during_full_replication() {
    let Some(c) = cluster("e14_link_cut_during_full_replication", 24 << 20) else {
        return;
    };
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    // a1 has nothing: 24 MiB of random data to copy at 2 MiB/s.
    cut_replication(&c);
    c.wait_state("a1", "SyncReady");
    assert_eq!(replicate(&c), format!("{gid} {gid}"));
    check_both(&c, &gid, &h);
}

#[test]
fn e15_link_cut_during_hash_replication() {
    let Some(c) = cluster("e15_link_cut_during_hash_replication", 2 << 20) else {
        return;
    };
    replicate(&c);
    c.write_random("wdev0", 4 << 20, 2 << 20, 2);
    let g0 = c.walbc(&["snapshot", "s0", "vol0"]);
    // a0's base moves past a1's latest: only a compared diff by hashes reaches a1.
    c.walbc(&["apply", "vol0", &g0]);
    c.write_random("wdev0", 0, 10 << 20, 3);
    c.wait_shipped("wdev0");
    let g1 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    let before = latest(&c, "a1");
    cut_replication(&c);
    c.wait_state("a1", "Archived");
    assert_eq!(latest(&c, "a1"), before, "a1 moved through a cut hash copy");
    assert_eq!(replicate(&c), format!("{g1} {g1}"));
    check_both(&c, &g1, &h);
}

#[test]
fn e16_link_cut_during_diff_replication() {
    let Some(c) = cluster("e16_link_cut_during_diff_replication", 2 << 20) else {
        return;
    };
    replicate(&c);
    // A third of the device changes: about 10 MiB of diffs to send at 2 MiB/s.
    c.write_random("wdev0", 0, 10 << 20, 4);
    c.wait_shipped("wdev0");
    let g0 = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    cut_replication(&c);
    c.wait_state("a1", "Archived");
    let after = latest(&c, "a1");
    assert_ne!(
        after.split_whitespace().next(),
        Some(g0.as_str()),
        "a1 reached {g0} through a cut link"
    );
    assert_eq!(replicate(&c), format!("{g0} {g0}"));
    check_both(&c, &g0, &h);
}
