//! Thinning of implicit restore points as they age (docs/archive.md, "Implicit points"):
//! every shipped wlog becomes a restorable point, about ten a second under steady writes. The
//! newest points stay as they are; older runs of implicit points are merged so that at most
//! one point per period remains, and the file count stays bounded under constant load.
//! Explicit snapshots, compared (hash) diffs and dirty snapshots are never merged across.

use std::sync::Arc;
use std::time::Duration;

use walb_core::meta::{can_merge, MetaDiff};
use walb_core::Gid;

use crate::archive::Archive;
use crate::volume::State;

/// The thinning policy.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Points younger than this are all kept.
    pub keep_all_secs: u64,
    /// Older implicit points are thinned to one per period of this length.
    pub period_secs: u64,
    /// A merged diff grows no larger than this.
    pub max_bytes: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            keep_all_secs: 300,
            period_secs: 60,
            max_bytes: 256 << 20,
        }
    }
}

/// The runs of `chain` (the base's applicable chain, oldest first) to merge at time `now`,
/// as (first diff's start gid, last diff's end gid). A run's diffs end in the same period,
/// older than `keep_all_secs`, and every point inside it is implicit and clean.
pub fn plan(chain: &[MetaDiff], now: u64, p: &Policy) -> Vec<(Gid, Gid)> {
    let old = |d: &MetaDiff| d.timestamp.saturating_add(p.keep_all_secs) <= now;
    let period = |d: &MetaDiff| d.timestamp / p.period_secs.max(1);
    let clean = |d: &MetaDiff| d.snap_b.is_clean() && d.snap_e.is_clean() && !d.is_comp_diff;
    let mut runs = Vec::new();
    let mut i = 0;
    while i < chain.len() {
        let first = &chain[i];
        if !old(first) {
            break;
        }
        let mut acc = *first;
        let mut j = i;
        while clean(first) {
            let Some(next) = chain.get(j + 1) else { break };
            // `next.is_mergeable`: the point between them is implicit.
            if !(old(next)
                && clean(next)
                && next.is_mergeable
                && period(next) == period(first)
                && acc.data_size + next.data_size <= p.max_bytes
                && can_merge(&acc, next))
            {
                break;
            }
            acc = walb_core::meta::merge(&acc, next);
            j += 1;
        }
        if j > i {
            runs.push((first.snap_b.gid_b, chain[j].snap_e.gid_b));
        }
        i = j + 1;
    }
    runs
}

/// Thins every archived volume every `every`, until the daemon stops.
pub async fn run(a: Arc<Archive>, policy: Policy, every: Duration) {
    let job = move |a: &Archive, vol: &crate::volume::Vol| {
        if !vol.exists() || vol.state()? != State::Archived {
            return Ok(None);
        }
        let base = vol.base()?;
        if base.is_applying {
            return Ok(None);
        }
        let chain = vol.chain(&base, None)?;
        let runs = plan(&chain, walb_core::meta::unix_now(), &policy);
        for &(b, e) in &runs {
            crate::ops::merge(vol, b.0, e.0)?;
        }
        if runs.is_empty() {
            return Ok(None);
        }
        a.refresh_metrics(vol);
        tracing::debug!(vol = %vol.name, "thinned {} runs of implicit points", runs.len());
        Ok(None)
    };
    a.every_volume("thinning implicit points", every, job).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u64, e: u64, mergeable: bool, ts: u64) -> MetaDiff {
        let mut d = MetaDiff::clean(b, e).unwrap();
        d.is_mergeable = mergeable;
        d.timestamp = ts;
        d.data_size = 10;
        d
    }

    const P: Policy = Policy {
        keep_all_secs: 100,
        period_secs: 10,
        max_bytes: 1000,
    };

    #[test]
    fn old_implicit_runs_merge_per_period_and_the_newest_stay() {
        let chain = [
            d(0, 1, false, 1000),
            d(1, 2, true, 1003),
            d(2, 3, true, 1006),
            d(3, 4, true, 1012), // another period
            d(4, 5, true, 1015),
            d(5, 6, false, 1016), // 5 is explicit: never merged across
            d(6, 7, true, 1017),
            d(7, 8, true, 1190), // young
            d(8, 9, true, 1195),
        ];
        assert_eq!(
            plan(&chain, 1200, &P),
            vec![(Gid(0), Gid(3)), (Gid(3), Gid(5)), (Gid(5), Gid(7))]
        );
    }

    #[test]
    fn size_and_dirty_diffs_bound_a_run() {
        let mut big = d(1, 2, true, 1001);
        big.data_size = 985;
        let chain = [d(0, 1, false, 1000), big, d(2, 3, true, 1002)];
        assert_eq!(plan(&chain, 2000, &P), vec![(Gid(0), Gid(2))]);
        let mut comp = d(1, 2, true, 1001);
        comp.is_comp_diff = true;
        assert!(plan(&[d(0, 1, false, 1000), comp], 2000, &P).is_empty());
    }
}
