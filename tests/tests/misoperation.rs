//! Misoperations and switching the backup target (docs/scenarios.md §2–§3, m1, m2, n12): a wrong
//! command is refused without harm, and the documented recovery works. Judged by restored images'
//! hashes. Needs root and /dev/fuse.

use walb_tests::cluster::{Cluster, Spec};

#[test]
fn m1_full_backup_of_a_backed_up_volume_is_refused() {
    let Some(c) = Cluster::backed_up(
        "m1_full_backup_of_a_backed_up_volume_is_refused",
        Spec::default(),
        2 << 20,
    ) else {
        return;
    };
    let e = c.walbc_err(&["full-backup", "s0", "vol0"]);
    assert!(e.contains("Archived"), "{e}");
    // Nothing changed: the volume still ships.
    assert_eq!(c.walbc(&["call", "s0", "get", "state", "vol0"]), "Target");
    c.write_random("wdev0", 4 << 20, 1 << 20, 2);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn m2_hash_backup_to_a_reset_archive_is_refused() {
    let Some(c) = Cluster::backed_up(
        "m2_hash_backup_to_a_reset_archive_is_refused",
        Spec::default(),
        2 << 20,
    ) else {
        return;
    };
    c.walbc(&["call", "a0", "stop", "vol0"]);
    c.walbc(&["call", "a0", "reset-vol", "vol0"]);
    let e = c.walbc_err(&["hash-backup", "s0", "vol0"]);
    assert!(e.contains("SyncReady") && e.contains("full backup"), "{e}");
    c.write_random("wdev0", 6 << 20, 1 << 20, 3);
    let gid = c.walbc(&["full-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
}

#[test]
fn n12_switch_the_backup_target_between_two_storages() {
    let spec = Spec {
        storages: 2,
        devices: vec![("wdev0", 32, 16), ("wdev1", 32, 16)],
        ..Spec::default()
    };
    let Some(c) = Cluster::backed_up(
        "n12_switch_the_backup_target_between_two_storages",
        spec,
        2 << 20,
    ) else {
        return;
    };
    // s1 holds the other replica of vol0 and starts as a standby.
    c.walbc(&["init-storage", "s1", "vol0", "wdev1"]);
    c.walbc(&["go-standby", "s1", "vol0"]);
    c.write_random("wdev0", 0, 3 << 20, 4);
    c.write_random("wdev1", 0, 3 << 20, 5);
    c.write_random("wdev1", 9 << 20, 1 << 20, 6);
    c.walbc(&["go-standby", "s0", "vol0"]);
    let gid = c.walbc(&["hash-backup", "s1", "vol0"]);
    c.check_restore("a0", &gid, "wdev1");
    assert_eq!(c.walbc(&["call", "s0", "get", "state", "vol0"]), "Standby");
    assert_eq!(c.walbc(&["call", "s1", "get", "state", "vol0"]), "Target");
    c.write_random("wdev0", 12 << 20, 2 << 20, 7);
    c.walbc(&["go-standby", "s1", "vol0"]);
    let gid = c.walbc(&["hash-backup", "s0", "vol0"]);
    c.check_restore("a0", &gid, "wdev0");
    assert_eq!(c.walbc(&["call", "s0", "get", "state", "vol0"]), "Target");
    assert_eq!(c.walbc(&["call", "s1", "get", "state", "vol0"]), "Standby");
}
