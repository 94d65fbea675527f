//! Explicit and implicit snapshots on the archive (docs/scenarios.md §2, n13): disable-snapshot
//! hides clean snapshots from `get restorable` and lets a merge run across them; enable-snapshot
//! brings them back. Judged by restorable counts and restored images' hashes. Needs root and
//! /dev/fuse.

use walb_tests::cluster::{Cluster, Spec};

/// The gids of a0's `get restorable` for vol0 (`all`: the implicit ones too).
fn restorable(c: &Cluster, all: bool) -> Vec<String> {
    let mut args = vec!["call", "a0", "get", "restorable", "vol0"];
    if !all {
        args.push("explicit");
    }
    c.walbc(&args)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

fn restored_hash(c: &Cluster, gid: &str) -> String {
    let h = c.restored_hash("a0", gid);
    c.walbc(&["call", "a0", "del-restored", "vol0", gid]);
    h
}

#[test]
fn n13_disable_and_enable_snapshots() {
    let Some(c) = Cluster::backed_up("n13_disable_and_enable_snapshots", Spec::default(), 2 << 20)
    else {
        return;
    };
    c.write_random("wdev0", 6 << 20, 1 << 20, 2);
    let applied = c.walbc(&["snapshot", "s0", "vol0"]);
    c.walbc(&["apply", "vol0", &applied]);
    assert_eq!(
        restorable(&c, false),
        std::slice::from_ref(&applied),
        "{}",
        c.logs()
    );

    let snaps: Vec<String> = (0..5u64)
        .map(|i| {
            c.write_random("wdev0", (10 + 2 * i) << 20, 1 << 20, 10 + i);
            c.walbc(&["snapshot", "s0", "vol0"])
        })
        .collect();
    let last = &snaps[4];
    let h_last = c.device_hash("wdev0");
    let mut every = vec![applied.clone()];
    every.extend(snaps.iter().cloned());
    assert_eq!(restorable(&c, false), every);

    let first4: Vec<&str> = snaps[..4].iter().map(String::as_str).collect();
    let with = |cmd: &'static str, gids: &[&str]| {
        let mut args = vec![cmd, "vol0"];
        args.extend(gids);
        c.walbc(&args);
    };
    with("disable-snapshot", &first4);
    assert_eq!(restorable(&c, false), [applied.clone(), last.clone()]);
    let all = restorable(&c, true);
    assert!(
        snaps.iter().all(|g| all.contains(g)),
        "disabled snapshots left `restorable all`: {all:?}"
    );
    with("enable-snapshot", &first4);
    assert_eq!(restorable(&c, false), every);

    // A gid no diff starts at (the newest) is refused by name.
    let e = c.walbc_err(&["disable-snapshot", "vol0", last]);
    assert!(e.contains(&format!("gid {last}")), "{e}");

    // Merge from the first to the last snapshot across the three disabled between.
    with("disable-snapshot", &first4[1..]);
    assert_eq!(restored_hash(&c, last), h_last, "restore before the merge");
    c.walbc(&["merge", "vol0", &snaps[0], last]);
    let diffs = c.walbc(&["call", "a0", "get", "diff", "vol0"]);
    assert!(
        diffs
            .lines()
            .any(|d| d.ends_with(&format!("-{}-{last}.wdiff", snaps[0]))),
        "no merged diff {} → {last}: {diffs}",
        snaps[0]
    );
    assert_eq!(
        restorable(&c, false),
        [applied, snaps[0].clone(), last.clone()]
    );
    assert_eq!(restored_hash(&c, last), h_last, "restore after the merge");
}
