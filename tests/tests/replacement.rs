//! Replacing a server (docs/scenarios.md §5, r1–r4), each by the walbc sequence docs/recovery.md
//! gives, then back: judged after every swap by the hash of a restore against the device's.
//! Needs root and /dev/fuse.

use walb_tests::cluster::{Cluster, Spec};

/// Writes to `dev`, takes a snapshot from storage `sid` (waited on the primary archive) and
/// checks its restore on `archive` against the device.
fn snapshot_check(c: &Cluster, sid: &str, dev: &str, archive: &str, seed: u64) -> String {
    c.write_random(dev, (seed % 8) << 20, 1 << 20, seed);
    let gid = c.walbc(&["snapshot", sid, "vol0"]);
    assert_eq!(
        c.restored_hash(archive, &gid),
        c.device_hash(dev),
        "{archive} at {gid}\n{}",
        c.logs()
    );
    gid
}

/// True when server `id` does not know vol0 any more.
fn forgot(c: &Cluster, id: &str) -> bool {
    let out = walb_tests::run(c.walbc_cmd().args(["call", id, "get", "state", "vol0"]));
    let said = String::from_utf8_lossy(&out.stdout);
    !out.status.success() || said.trim() == "Clear"
}

#[test]
fn r1_replace_a_storage() {
    let spec = Spec {
        storages: 2,
        devices: vec![("wdev0", 32, 16), ("wdev1", 32, 16)],
        ..Spec::default()
    };
    let Some(c) = Cluster::backed_up("r1_replace_a_storage", spec, 3 << 20) else {
        return;
    };
    // s1 takes over with its own replica (wdev1): s0 stands by, s1 is the target.
    for (old, new, dev, seed) in [("s0", "s1", "wdev1", 2), ("s1", "s0", "wdev0", 3)] {
        c.walbc(&["go-standby", old, "vol0"]);
        c.walbc(&["init-storage", new, "vol0", dev]);
        c.write_random(dev, 6 << 20, 2 << 20, seed);
        let gid = c.walbc(&["hash-backup", new, "vol0"]);
        assert_eq!(
            c.restored_hash("a0", &gid),
            c.device_hash(dev),
            "{}",
            c.logs()
        );
        c.walbc(&["clear", old, "vol0"]);
        assert!(forgot(&c, old), "{old} still knows vol0");
        assert_eq!(c.walbc(&["call", new, "get", "state", "vol0"]), "Target");
        snapshot_check(&c, new, dev, "a0", seed + 10);
    }
}

#[test]
fn r2_replace_a_proxy() {
    let spec = Spec {
        proxies: 2,
        ..Spec::default()
    };
    let Some(mut c) = Cluster::start("r2_replace_a_proxy", spec) else {
        return;
    };
    c.use_proxies(&["p0"]);
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 0, 3 << 20, 1);
    c.walbc(&["full-backup", "s0", "vol0"]);
    assert!(forgot(&c, "p1"), "p1 was not in the layout");
    for (old, new, seed) in [("p0", "p1", 4), ("p1", "p0", 5)] {
        // The operator adds the new proxy to the layout, moves the volume, drops the old.
        c.relist("proxy", &[old, new]);
        c.walbc(&["copy-archive-info", "vol0", old, new]);
        c.walbc(&["clear", old, "vol0"]);
        assert!(forgot(&c, old), "{old} still knows vol0");
        c.use_proxies(&[new]);
        snapshot_check(&c, "s0", "wdev0", "a0", seed);
        assert_eq!(c.walbc(&["call", new, "get", "state", "vol0"]), "Started");
    }
}

#[test]
fn r3_replace_the_synchronizing_primary_archive() {
    let spec = Spec {
        archives: 2,
        ..Spec::default()
    };
    let Some(mut c) = Cluster::backed_up(
        "r3_replace_the_synchronizing_primary_archive",
        spec,
        3 << 20,
    ) else {
        return;
    };
    for (old, new, seed) in [("a0", "a1", 6), ("a1", "a0", 7)] {
        c.walbc(&["start-synchronizing", "vol0", new]);
        c.walbc(&["stop-synchronizing", "vol0", old]);
        c.walbc(&["clear", old, "vol0"]);
        assert!(forgot(&c, old), "{old} still knows vol0");
        c.use_archives(new, &[old]);
        snapshot_check(&c, "s0", "wdev0", new, seed);
        // The storages back up to the new primary too.
        c.walbc(&["go-standby", "s0", "vol0"]);
        c.write_random("wdev0", 12 << 20, 1 << 20, seed + 10);
        let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
        assert_eq!(c.restored_hash(new, &gid), c.device_hash("wdev0"));
    }
}

#[test]
fn r4_replace_a_non_synchronizing_archive() {
    let spec = Spec {
        archives: 3,
        ..Spec::default()
    };
    let Some(c) = Cluster::backed_up("r4_replace_a_non_synchronizing_archive", spec, 3 << 20)
    else {
        return;
    };
    c.write_random("wdev0", 5 << 20, 1 << 20, 2);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    let h = c.device_hash("wdev0");
    c.walbc(&["replicate", "vol0", "a0", "a1"]);
    // a2 takes a1's place: copied from a1, then a1 forgets the volume.
    c.walbc(&["replicate", "vol0", "a1", "a2"]);
    c.walbc(&["clear", "a1", "vol0"]);
    assert!(forgot(&c, "a1"), "a1 still knows vol0");
    assert_eq!(c.restored_hash("a2", &gid), h);
    assert_eq!(
        c.walbc(&["call", "a2", "get", "archive-uuid", "vol0"]),
        c.walbc(&["call", "a0", "get", "archive-uuid", "vol0"])
    );
}
