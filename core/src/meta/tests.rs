//! Rules of docs/formats.md §6 by example, and the algebra's laws by property.

use proptest::prelude::*;

use super::*;
use crate::types::{Gid, Lsid};

fn snap(b: u64, e: u64) -> MetaSnap {
    MetaSnap::new(Gid(b), Gid(e)).unwrap()
}

fn diff(b: MetaSnap, e: MetaSnap, mergeable: bool) -> MetaDiff {
    let mut d = MetaDiff::new(b, e).unwrap();
    d.is_mergeable = mergeable;
    d
}

#[test]
fn relation_boundaries() {
    let s = snap(10, 10);
    let d = |b, e| MetaDiff::clean(b, e).unwrap();
    assert_eq!(relation(&s, &d(11, 12)), Relation::TooNew);
    assert_eq!(relation(&s, &d(10, 12)), Relation::Applicable);
    assert_eq!(relation(&s, &d(5, 11)), Relation::Applicable);
    assert_eq!(relation(&s, &d(5, 10)), Relation::TooOld);
    let mut c = d(10, 12);
    c.is_comp_diff = true;
    assert_eq!(relation(&s, &c), Relation::Applicable);
    c.snap_b = MetaSnap::clean(Gid(9));
    assert_eq!(relation(&s, &c), Relation::NotApplicable);
}

#[test]
fn full_backup_base_becomes_clean() {
    // Base |0,10| plus the log diff |0|-->|10| is clean |10|.
    let base = snap(0, 10);
    let d = MetaDiff::clean(0, 10).unwrap();
    assert_eq!(apply_snap(&base, &d), snap(10, 10));
    // A shorter log diff leaves it dirty.
    assert_eq!(
        apply_snap(&base, &MetaDiff::clean(0, 4).unwrap()),
        snap(4, 10)
    );
    // A dirty diff gives its end.
    let h = diff(snap(10, 10), snap(11, 15), false);
    assert_eq!(apply_snap(&snap(10, 10), &h), snap(11, 15));
}

#[test]
fn invalid_diffs_are_rejected() {
    assert!(MetaDiff::clean(5, 5).is_err());
    assert!(MetaDiff::new(snap(3, 9), snap(4, 8)).is_err());
    assert!(MetaSnap::new(Gid(5), Gid(4)).is_err());
}

#[test]
fn names_round_trip() {
    let d = parse_name("20181031123456-M--10-12.wdiff", 77).unwrap();
    assert!(d.is_mergeable && !d.is_comp_diff && d.is_clean());
    assert_eq!(
        (d.snap_b, d.snap_e, d.data_size),
        (snap(10, 10), snap(12, 12), 77)
    );
    assert_eq!(format_name(&d), "20181031123456-M--10-12.wdiff");
    let d = parse_name("20181031123456----5-7-9-9.wdiff", 0).unwrap();
    assert_eq!((d.snap_b, d.snap_e), (snap(5, 7), snap(9, 9)));
    assert_eq!(format_name(&d), "20181031123456----5-7-9-9.wdiff");
    for bad in [
        "20181031123456-M--10-12.wdif",
        "20181031123456XM--10-12.wdiff",
        "20181031123456-M--12-10.wdiff",
        "20181031123456-Q--10-12.wdiff",
        "20181331123456-M--10-12.wdiff",
        "20181031123456-M--1-2-3.wdiff",
    ] {
        assert!(parse_name(bad, 0).is_err(), "{bad}");
    }
}

#[test]
fn state_apply_is_crash_safe() {
    let st = MetaState::new(snap(0, 10), 1);
    let ds = [
        MetaDiff::clean(0, 4).unwrap(),
        MetaDiff::clean(4, 12).unwrap(),
    ];
    let a = st.begin_apply(&ds).unwrap();
    assert!(a.is_applying);
    assert_eq!(a.snap_e, snap(12, 12));
    assert!(a.begin_apply(&ds).is_err());
    assert_eq!(a.end_apply().unwrap().snap_b, snap(12, 12));
    assert!(st.begin_apply(&[MetaDiff::clean(5, 6).unwrap()]).is_err());
    let back = MetaState::from_bytes(&a.to_bytes()).unwrap();
    assert_eq!(back, a);
}

#[test]
fn restorable_marks_explicit_snapshots() {
    // |0| --(M)--> |4| --(M)--> |8| --(-)--> |12|: 0 base, 4 implicit, 8 explicit, 12 newest.
    let ds = [
        diff(snap(0, 0), snap(4, 4), true),
        diff(snap(4, 4), snap(8, 8), true),
        diff(snap(8, 8), snap(12, 12), false),
    ];
    let base = MetaState::new(snap(0, 0), 0);
    let r = restorable(&base, &ds);
    let got: Vec<(u64, bool)> = r.iter().map(|x| (x.gid.0, x.is_explicit)).collect();
    assert_eq!(got, vec![(0, true), (4, false), (8, true), (12, true)]);
    // Only the next diff will tell whether the newest point is explicit.
    let settled: Vec<bool> = r.iter().map(|x| x.is_settled).collect();
    assert_eq!(settled, vec![true, true, true, false]);
    assert_eq!(applicable_chain(&snap(0, 0), &ds, Some(Gid(8))).len(), 2);
}

#[test]
fn nothing_older_than_a_running_apply_is_restorable() {
    // <|0|-->|8|>: the image holds |0| with part of 0 → 4 → 8 written; 0 and 4 are gone, 8
    // and 12 are rebuilt by the whole chain from 0.
    let ds = [
        diff(snap(0, 0), snap(4, 4), false),
        diff(snap(4, 4), snap(8, 8), false),
        diff(snap(8, 8), snap(12, 12), false),
    ];
    let applying = MetaState::new(snap(0, 0), 0).begin_apply(&ds[..2]).unwrap();
    let got: Vec<u64> = restorable(&applying, &ds).iter().map(|r| r.gid.0).collect();
    assert_eq!(got, vec![8, 12]);
}

#[test]
fn gid_allocation() {
    let pre = MetaLsidGid {
        is_mergeable: true,
        timestamp: 0,
        lsid: Lsid(1000),
        gid: Gid(7),
    };
    assert_eq!(next_gid(&pre, Lsid(1000), 100), Gid(8));
    assert_eq!(next_gid(&pre, Lsid(1350), 100), Gid(11));
    let q = [
        MetaLsidGid {
            lsid: Lsid(1100),
            gid: Gid(9),
            ..pre
        },
        MetaLsidGid {
            lsid: Lsid(1150),
            gid: Gid(10),
            ..pre
        },
        MetaLsidGid {
            lsid: Lsid(1200),
            gid: Gid(11),
            is_mergeable: false,
            ..pre
        },
    ];
    // Implicit snapshots are passed over; the explicit one may end the transfer.
    let e = transfer_end(&pre, &q, Lsid(5000), 1000).unwrap();
    assert_eq!(e.rec_e.gid, Gid(11));
    // An explicit snapshot is never passed.
    let q2 = [
        MetaLsidGid {
            is_mergeable: false,
            ..q[0]
        },
        q[1],
    ];
    assert_eq!(
        transfer_end(&pre, &q2, Lsid(5000), 1000).unwrap().rec_e.gid,
        Gid(9)
    );
    let e = transfer_end(&pre, &q[..2], Lsid(5000), 1000).unwrap();
    assert_eq!(e.rec_e.gid, Gid(10));
    assert_eq!(transfer_end_gid(&pre, &e, Lsid(1150)), Gid(10));
    assert_eq!(transfer_end_gid(&pre, &e, Lsid(1120)), Gid(8));
    let e = transfer_end(&pre, &q, Lsid(1120), 1000).unwrap();
    assert_eq!(e.lsid_limit, Lsid(1100));
}

fn arb_snap() -> impl Strategy<Value = MetaSnap> {
    (0u64..20, 0u64..5).prop_map(|(b, w)| snap(b, b + w))
}

fn arb_diff() -> impl Strategy<Value = MetaDiff> {
    (
        arb_snap(),
        1u64..8,
        0u64..5,
        any::<bool>(),
        any::<bool>(),
        0u64..1000,
    )
        .prop_map(|(b, step, w, clean_e, m, ts)| {
            let eb = b.gid_b.0 + step;
            let ee = if clean_e {
                eb.max(b.gid_e.0)
            } else {
                (eb + w).max(b.gid_e.0)
            };
            let mut d = diff(b, snap(eb, ee.max(eb)), m);
            d.timestamp = ts;
            d
        })
}

/// `applicable_chain` by its definition: `choose_next` over every diff, step after step.
fn chain_by_steps(s: &MetaSnap, diffs: &[MetaDiff], up_to: Option<Gid>) -> Vec<MetaDiff> {
    let pool: Vec<MetaDiff> = diffs
        .iter()
        .filter(|d| up_to.is_none_or(|g| d.snap_e.gid_b <= g))
        .copied()
        .collect();
    let (mut cur, mut out) = (*s, Vec::new());
    while let Some(d) = choose_next(&cur, &pool) {
        cur = apply_snap(&cur, d);
        out.push(*d);
    }
    out
}

/// A diff that starts somewhere in `[lo, hi]` and ends past `after`; a log diff (`log`) is
/// clean at both ends, otherwise either end may be dirty (hash backup, replication).
fn diff_from(lo: u64, hi: u64, after: u64, log: bool) -> impl Strategy<Value = MetaDiff> {
    (
        lo..=hi,
        0u64..3,
        1u64..6,
        0u64..3,
        any::<bool>(),
        any::<bool>(),
        0u64..1000,
    )
        .prop_map(move |(bb, bw, step, ew, dirty, m, ts)| {
            let (bw, dirty) = if log { (0, false) } else { (bw, dirty) };
            let b = snap(bb, bb + bw);
            let eb = after.max(bb) + step;
            let e = if dirty {
                snap(eb, eb + ew + bw)
            } else {
                snap(eb, eb.max(bb + bw))
            };
            let mut d = diff(b, e, m);
            d.timestamp = ts;
            d
        })
}

/// A diff of any kind followed by two log diffs, each mergeable with the one before: the
/// runs archives and proxies merge. (A dirty-start diff in second place can break
/// associativity of the E.gidE bookkeeping under walb's own rules; such runs are not merged
/// in practice, since hash diffs are never mergeable onto a predecessor.)
fn arb_run() -> impl Strategy<Value = (MetaDiff, MetaDiff, MetaDiff)> {
    diff_from(0, 10, 0, false).prop_flat_map(|a| {
        diff_from(a.snap_b.gid_b.0, a.snap_e.gid_b.0, a.snap_e.gid_b.0, true).prop_flat_map(
            move |b| {
                let b = MetaDiff {
                    is_mergeable: true,
                    ..b
                };
                diff_from(b.snap_b.gid_b.0, b.snap_e.gid_b.0, b.snap_e.gid_b.0, true).prop_map(
                    move |c| {
                        (
                            a,
                            b,
                            MetaDiff {
                                is_mergeable: true,
                                ..c
                            },
                        )
                    },
                )
            },
        )
    })
}

proptest! {
    #[test]
    fn merge_laws_hold_on_mergeable_runs((a, b, c) in arb_run(), w in 0u64..3) {
        prop_assert!(can_merge(&a, &b) && can_merge(&b, &c));
        let ab = merge(&a, &b);
        let bc = merge(&b, &c);
        if can_merge(&ab, &c) && can_merge(&a, &bc) {
            let (l, r) = (merge(&ab, &c), merge(&a, &bc));
            prop_assert_eq!((l.snap_b, l.snap_e, l.is_mergeable, l.timestamp), (r.snap_b, r.snap_e, r.is_mergeable, r.timestamp));
        }
        // apply(apply(s, a), b) == apply(s, merge(a, b)) for a snapshot a applies to.
        let s = snap(a.snap_b.gid_b.0, a.snap_b.gid_b.0 + w);
        prop_assert_eq!(relation(&s, &a), Relation::Applicable);
        let s1 = apply_snap(&s, &a);
        if relation(&s1, &b) == Relation::Applicable {
            prop_assert_eq!(apply_snap(&s1, &b), apply_snap(&s, &ab));
        }
    }

    #[test]
    fn names_and_bytes_round_trip(d in arb_diff(), ts in 0u64..4_000_000_000) {
        let mut d = d;
        d.timestamp = ts;
        let p = parse_name(&format_name(&d), 5).unwrap();
        prop_assert_eq!((p.snap_b, p.snap_e, p.is_mergeable, p.timestamp), (d.snap_b, d.snap_e, d.is_mergeable, d.timestamp));
        let b = MetaDiff::from_bytes(&d.to_bytes()).unwrap();
        prop_assert_eq!((b.snap_b, b.snap_e, b.is_mergeable, b.timestamp, b.data_size), (d.snap_b, d.snap_e, d.is_mergeable, d.timestamp, d.data_size));
        prop_assert_eq!(MetaSnap::from_bytes(&d.snap_e.to_bytes()).unwrap(), d.snap_e);
    }

    #[test]
    fn the_chain_is_the_step_by_step_choice(
        diffs in proptest::collection::vec(
            (arb_diff(), any::<bool>(), 0u64..4).prop_map(|(mut d, comp, size)| {
                d.is_comp_diff = comp;
                d.data_size = size; // tells apart diffs with the same gids
                d
            }),
            0..40,
        ),
        start in 0u64..6,
        up_to in proptest::option::of(0u64..30),
    ) {
        let s = MetaSnap::clean(Gid(start));
        let up_to = up_to.map(Gid);
        prop_assert_eq!(applicable_chain(&s, &diffs, up_to), chain_by_steps(&s, &diffs, up_to));
    }

    #[test]
    fn from_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = MetaSnap::from_bytes(&b);
        let _ = MetaDiff::from_bytes(&b);
        let _ = MetaState::from_bytes(&b);
        let _ = MetaLsidGid::from_bytes(&b);
        let _ = parse_name(&String::from_utf8_lossy(&b), 0);
    }
}

#[test]
fn iso_times_round_trip() {
    for (ts, t) in [
        (0, "1970-01-01T00:00:00"),
        (1_540_989_296, "2018-10-31T12:34:56"),
        (951_782_400, "2000-02-29T00:00:00"),
    ] {
        assert_eq!(crate::meta::iso_utc(ts), t);
        assert_eq!(crate::meta::parse_iso_utc(t), Some(ts));
    }
    assert_eq!(crate::meta::parse_iso_utc("garbage"), None);
    assert_eq!(crate::meta::parse_iso_utc("2018-13-31T12:34:56"), None);
}
