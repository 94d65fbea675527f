//! MetaDiff `snapB --> snapE` and the rules that decide what is applicable, mergeable and
//! restorable (docs/formats.md §6.2). These must be exact.

use std::fmt;

use crate::error::{Error, Result};
use crate::meta::snap::MetaSnap;
use crate::meta::state::MetaState;
use crate::types::Gid;

#[derive(Clone, Copy, Debug, Eq)]
pub struct MetaDiff {
    pub snap_b: MetaSnap,
    pub snap_e: MetaSnap,
    pub is_mergeable: bool,
    /// A compared diff (hash replication); never merged.
    pub is_comp_diff: bool,
    /// Unix seconds of the snapshot after applying the diff.
    pub timestamp: u64,
    /// File size in bytes (0 when unknown).
    pub data_size: u64,
}

/// Identity is the gid range only.
impl PartialEq for MetaDiff {
    fn eq(&self, o: &MetaDiff) -> bool {
        self.snap_b == o.snap_b && self.snap_e == o.snap_e
    }
}

impl std::hash::Hash for MetaDiff {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.snap_b.hash(h);
        self.snap_e.hash(h);
    }
}

/// How a diff stands to a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    TooOld,
    TooNew,
    Applicable,
    /// A compare diff that does not start exactly at the snapshot.
    NotApplicable,
}

impl MetaDiff {
    pub fn new(snap_b: MetaSnap, snap_e: MetaSnap) -> Result<MetaDiff> {
        let d = MetaDiff {
            snap_b,
            snap_e,
            is_mergeable: false,
            is_comp_diff: false,
            timestamp: 0,
            data_size: 0,
        };
        d.check()?;
        Ok(d)
    }

    /// A clean diff `|b| --> |e|`.
    pub fn clean(b: u64, e: u64) -> Result<MetaDiff> {
        MetaDiff::new(MetaSnap::clean(Gid(b)), MetaSnap::clean(Gid(e)))
    }

    pub fn check(&self) -> Result<()> {
        let (b, e) = (self.snap_b, self.snap_e);
        if b.gid_b > b.gid_e || e.gid_b > e.gid_e {
            return Err(Error::Invalid(format!("diff {self}: a snapshot has B > E")));
        }
        if b.gid_b >= e.gid_b {
            return Err(Error::Invalid(format!(
                "diff {self}: snapB.gidB must be below snapE.gidB"
            )));
        }
        if b.gid_e > e.gid_e {
            return Err(Error::Invalid(format!(
                "diff {self}: snapB.gidE must not exceed snapE.gidE"
            )));
        }
        Ok(())
    }

    /// The order diffs are listed in (a volume's files, a repository's objects): by where they
    /// start, then where they end.
    pub fn order_key(&self) -> (Gid, Gid, Gid, Gid) {
        (
            self.snap_b.gid_b,
            self.snap_e.gid_b,
            self.snap_b.gid_e,
            self.snap_e.gid_e,
        )
    }

    pub fn is_clean(&self) -> bool {
        self.snap_b.is_clean() && self.snap_e.is_clean()
    }
}

impl fmt::Display for MetaDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-->{}{}{}",
            self.snap_b,
            self.snap_e,
            if self.is_mergeable { " M" } else { "" },
            if self.is_comp_diff { " C" } else { "" }
        )
    }
}

/// How `d` stands to snapshot `s`.
pub fn relation(s: &MetaSnap, d: &MetaDiff) -> Relation {
    if d.is_comp_diff {
        return if d.snap_b.gid_b == s.gid_b {
            Relation::Applicable
        } else {
            Relation::NotApplicable
        };
    }
    if d.snap_b.gid_b > s.gid_b {
        Relation::TooNew
    } else if d.snap_e.gid_b <= s.gid_b {
        Relation::TooOld
    } else {
        Relation::Applicable
    }
}

/// The snapshot after applying `d` to `s` (`d` applicable).
pub fn apply_snap(s: &MetaSnap, d: &MetaDiff) -> MetaSnap {
    if d.is_clean() {
        let b = d.snap_e.gid_b;
        MetaSnap {
            gid_b: b,
            gid_e: b.max(s.gid_e),
        }
    } else {
        d.snap_e
    }
}

pub fn can_merge(d0: &MetaDiff, d1: &MetaDiff) -> bool {
    d1.is_mergeable
        && !d0.is_comp_diff
        && !d1.is_comp_diff
        && d0.snap_b.gid_b <= d1.snap_b.gid_b
        && d1.snap_b.gid_b <= d0.snap_e.gid_b
        && d0.snap_e.gid_b < d1.snap_e.gid_b
}

/// `merge(d0, d1)`; callers check `can_merge` first.
pub fn merge(d0: &MetaDiff, d1: &MetaDiff) -> MetaDiff {
    let snap_e = if d1.is_clean() {
        let b = d1.snap_e.gid_b;
        MetaSnap {
            gid_b: b,
            gid_e: b.max(d0.snap_e.gid_e),
        }
    } else {
        d1.snap_e
    };
    MetaDiff {
        snap_b: d0.snap_b,
        snap_e,
        is_mergeable: d0.is_mergeable,
        is_comp_diff: false,
        timestamp: d1.timestamp,
        data_size: d0.data_size + d1.data_size,
    }
}

/// Merges a run oldest first; `None` if some neighbour pair cannot merge or the run is empty.
pub fn merge_all(ds: &[MetaDiff]) -> Option<MetaDiff> {
    let (first, rest) = ds.split_first()?;
    rest.iter()
        .try_fold(*first, |acc, d| can_merge(&acc, d).then(|| merge(&acc, d)))
}

/// True when `dc` covers `d` (which can then be deleted).
pub fn contains(dc: &MetaDiff, d: &MetaDiff) -> bool {
    dc.snap_b.gid_b <= d.snap_b.gid_b && d.snap_e.gid_b <= dc.snap_e.gid_b
}

/// Among `diffs`, the one to apply to `s` next: applicable, largest E.gidB, ties to the larger
/// B.gidB.
pub fn choose_next<'a>(s: &MetaSnap, diffs: &'a [MetaDiff]) -> Option<&'a MetaDiff> {
    diffs
        .iter()
        .filter(|d| relation(s, d) == Relation::Applicable)
        .max_by_key(|d| (d.snap_e.gid_b, d.snap_b.gid_b))
}

/// The diffs that take `s` forward, in order: greedily the best applicable one each step
/// (`choose_next`'s choice). With `up_to`, only diffs that end at or below that gid are used.
///
/// In O(n log n) rather than a scan of every diff per step: a volume shipped continuously
/// holds thousands. The diffs are taken in order of their start; those starting at or below
/// the current gid wait in a heap by `choose_next`'s key (ties to the later one in `diffs`, as
/// `max_by_key` picks). One that is not applicable when it comes to the top never will be,
/// since the current gid only grows, so it is dropped.
pub fn applicable_chain(s: &MetaSnap, diffs: &[MetaDiff], up_to: Option<Gid>) -> Vec<MetaDiff> {
    let mut by_start: Vec<(usize, &MetaDiff)> = diffs
        .iter()
        .enumerate()
        .filter(|(_, d)| up_to.is_none_or(|g| d.snap_e.gid_b <= g))
        .collect();
    by_start.sort_by_key(|(i, d)| (d.snap_b.gid_b, *i));
    let mut waiting = std::collections::BinaryHeap::new();
    let mut next = 0;
    let mut cur = *s;
    let mut out = Vec::new();
    loop {
        while let Some(&(i, d)) = by_start
            .get(next)
            .filter(|(_, d)| d.snap_b.gid_b <= cur.gid_b)
        {
            waiting.push((d.snap_e.gid_b, d.snap_b.gid_b, i));
            next += 1;
        }
        let chosen = loop {
            let Some(&(_, _, i)) = waiting.peek() else {
                break None;
            };
            if relation(&cur, &diffs[i]) == Relation::Applicable {
                break Some(diffs[i]);
            }
            waiting.pop();
        };
        let Some(d) = chosen else { break };
        let after = apply_snap(&cur, &d);
        if after.gid_b <= cur.gid_b {
            // Only an invalid diff (snapB.gidB not below snapE.gidB) could do this.
            break;
        }
        cur = after;
        out.push(d);
    }
    out
}

/// A clean snapshot a restore can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restorable {
    pub gid: Gid,
    pub timestamp: u64,
    /// An explicit snapshot: the base, or a point the next diff starts non-mergeable from.
    /// The newest point counts as explicit (it may be), but see `is_settled`.
    pub is_explicit: bool,
    /// Whether `is_explicit` is known: false for the newest point after the base, whose kind
    /// only the next diff will tell (its mergeable flag).
    pub is_settled: bool,
}

/// Clean snapshots reachable from the base state `base` through `diffs`, in gid order: the
/// base itself when clean, then every clean state along the applicable chain.
///
/// While the base is being applied (`<B-->E>`), the image holds B with part of the diffs
/// B → E written: only points at E or later can be rebuilt from it (the chain from B rewrites
/// every block those diffs touch), so nothing older is listed.
pub fn restorable(base: &MetaState, diffs: &[MetaDiff]) -> Vec<Restorable> {
    let floor = if base.is_applying {
        base.snap_e.gid_b
    } else {
        Gid(0)
    };
    let mut out = Vec::new();
    if base.snap_b.is_clean() && !base.is_applying {
        out.push(Restorable {
            gid: base.snap_b.gid_b,
            timestamp: base.timestamp,
            is_explicit: true,
            is_settled: true,
        });
    }
    let chain = applicable_chain(&base.snap_b, diffs, None);
    let mut cur = base.snap_b;
    for (i, d) in chain.iter().enumerate() {
        cur = apply_snap(&cur, d);
        if cur.is_clean() && cur.gid_b >= floor {
            // Explicit iff the next diff is non-mergeable; the newest is not known yet.
            let next = chain.get(i + 1);
            out.push(Restorable {
                gid: cur.gid_b,
                timestamp: d.timestamp,
                is_explicit: !next.is_some_and(|n| n.is_mergeable),
                is_settled: next.is_some(),
            });
        }
    }
    out
}
