//! Retention (docs/archive.md, "Retention"): which restorable points to keep by the rules of
//! the archive's config, and dropping the rest — the oldest by applying the base forward, the
//! ones between kept points by merging their diffs — so an archive left alone stays bounded.
//! The newest restorable point is always kept.

use std::collections::{BTreeMap, HashSet};

use walb_core::meta::{iso_utc, Restorable};
use walb_core::Gid;
use walb_daemon::CmdResult;

use crate::volume::Vol;

/// The keep rules; a rule of 0 keeps nothing by itself. Explicit snapshots are counted by the
/// period rules; implicit points are kept only by `within_secs` (and the newest rule).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// The newest N explicit snapshots.
    pub last: usize,
    /// The newest explicit snapshot of each of the last N hours (days, weeks, months) that
    /// have one.
    pub hourly: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    /// Every point (explicit or implicit) younger than this many seconds.
    pub within_secs: u64,
}

impl Rules {
    /// True when no rule is set: retention is off.
    pub fn is_off(&self) -> bool {
        *self == Rules::default()
    }
}

/// Why a point is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Newest,
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Within,
}

impl Why {
    pub fn word(self) -> &'static str {
        match self {
            Why::Newest => "newest",
            Why::Last => "last",
            Why::Hourly => "hourly",
            Why::Daily => "daily",
            Why::Weekly => "weekly",
            Why::Monthly => "monthly",
            Why::Within => "within",
        }
    }
}

/// The period a timestamp falls in (an hour, a day, …), as a key.
type PeriodKey = fn(u64) -> String;

/// Each restorable point (gid order) with the reasons it is kept; empty reasons: dropped.
pub fn plan(points: &[Restorable], now: u64, rules: &Rules) -> Vec<(Restorable, Vec<Why>)> {
    let mut why: BTreeMap<Gid, Vec<Why>> = points.iter().map(|p| (p.gid, Vec::new())).collect();
    if let Some(newest) = points.last() {
        why.entry(newest.gid).or_default().push(Why::Newest);
    }
    let explicit: Vec<&Restorable> = points.iter().rev().filter(|p| p.is_explicit).collect();
    for p in explicit.iter().take(rules.last) {
        why.entry(p.gid).or_default().push(Why::Last);
    }
    let periods: [(usize, Why, PeriodKey); 4] = [
        (rules.hourly, Why::Hourly, |t| (t / 3600).to_string()),
        (rules.daily, Why::Daily, |t| (t / 86_400).to_string()),
        // Weeks from Monday: day 0 (1970-01-01) was a Thursday.
        (rules.weekly, Why::Weekly, |t| {
            ((t / 86_400 + 3) / 7).to_string()
        }),
        (rules.monthly, Why::Monthly, |t| iso_utc(t)[..7].to_string()),
    ];
    for (n, w, key) in periods {
        let mut seen = HashSet::new();
        for p in &explicit {
            if seen.len() == n {
                break;
            }
            // Newest first: the first point of a period is its newest.
            if seen.insert(key(p.timestamp)) {
                why.entry(p.gid).or_default().push(w);
            }
        }
    }
    for p in points {
        if p.timestamp.saturating_add(rules.within_secs) > now && rules.within_secs > 0 {
            why.entry(p.gid).or_default().push(Why::Within);
        }
    }
    points
        .iter()
        .map(|p| (*p, why.remove(&p.gid).unwrap_or_default()))
        .collect()
}

/// Carries out `plan` on `vol`: the base is applied to the oldest kept point, the explicit
/// points between two kept ones are made implicit and the diffs between merged into one.
/// Returns how many points were dropped. Runs under the volume's lock.
pub fn enforce(
    vol: &Vol,
    plan: &[(Restorable, Vec<Why>)],
    mode: walb_core::apply::DiscardMode,
) -> CmdResult<usize> {
    let kept: Vec<Gid> = plan
        .iter()
        .filter(|(_, w)| !w.is_empty())
        .map(|(p, _)| p.gid)
        .collect();
    let Some(&oldest) = kept.first() else {
        return Ok(0);
    };
    let dropped = plan.iter().filter(|(_, w)| w.is_empty()).count();
    if dropped == 0 {
        return Ok(0);
    }
    if vol.base()?.snap_b.gid_b < oldest {
        crate::ops::apply(vol, oldest.0, mode)?;
    }
    for pair in kept.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let between: Vec<Gid> = plan
            .iter()
            .map(|(p, _)| p)
            .filter(|p| a < p.gid && p.gid < b && p.is_explicit)
            .map(|p| p.gid)
            .collect();
        let inside = plan.iter().any(|(p, _)| a < p.gid && p.gid < b);
        if !inside {
            continue;
        }
        if !between.is_empty() {
            vol.set_mergeable(&between, true)?;
        }
        if let Err(e) = crate::ops::merge(vol, a.0, b.0) {
            // A compared or dirty diff in the gap cannot be merged: the points stay.
            tracing::warn!(vol = %vol.name, "retention: merge {a}..{b}: {e}");
        }
    }
    crate::ops::gc(vol, false)?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(gid: u64, ts: u64, explicit: bool) -> Restorable {
        Restorable {
            gid: Gid(gid),
            timestamp: ts,
            is_explicit: explicit,
            is_settled: true,
        }
    }

    fn kept(plan: &[(Restorable, Vec<Why>)]) -> Vec<u64> {
        plan.iter()
            .filter(|(_, w)| !w.is_empty())
            .map(|(p, _)| p.gid.0)
            .collect()
    }

    #[test]
    fn each_rule_keeps_the_newest_of_its_periods() {
        // Hourly explicit snapshots over three days, an implicit point in between.
        let now = 3 * 86_400;
        let mut pts: Vec<Restorable> = (0..72).map(|h| pt(h * 2, h * 3600 + 60, true)).collect();
        pts.push(pt(141, 70 * 3600 + 120, false));
        pts.sort_by_key(|p| p.gid);
        let only = |r: Rules| kept(&plan(&pts, now, &r));
        assert_eq!(only(Rules::default()), vec![142]);
        assert_eq!(
            only(Rules {
                last: 3,
                ..Default::default()
            }),
            vec![138, 140, 142]
        );
        assert_eq!(
            only(Rules {
                daily: 3,
                ..Default::default()
            }),
            vec![46, 94, 142],
            "the last snapshot of each day"
        );
        assert_eq!(
            only(Rules {
                hourly: 2,
                ..Default::default()
            }),
            vec![140, 142]
        );
        // Within 2 h 30 min: the implicit point too.
        assert_eq!(
            only(Rules {
                within_secs: 9000,
                ..Default::default()
            }),
            vec![140, 141, 142]
        );
        let p = plan(
            &pts,
            now,
            &Rules {
                last: 1,
                daily: 1,
                ..Default::default()
            },
        );
        let words = |i: usize| p[i].1.iter().map(|w| w.word()).collect::<Vec<_>>();
        assert_eq!(words(p.len() - 1), ["newest", "last", "daily"]);
        assert_eq!((p[0].0.gid.0, p[0].0.timestamp), (0, 60));
        assert!(words(0).is_empty());
    }
}
