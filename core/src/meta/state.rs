//! MetaState: the archive base image's state, `<B>` or `<B-->E>` while an apply is in flight
//! (the crash-safe marker of docs/formats.md §6.2).

use std::fmt;

use crate::error::{Error, Result};
use crate::meta::diff::{apply_snap, relation, MetaDiff, Relation};
use crate::meta::snap::MetaSnap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaState {
    pub is_applying: bool,
    pub timestamp: u64,
    pub snap_b: MetaSnap,
    /// Meaningful only while applying.
    pub snap_e: MetaSnap,
}

impl MetaState {
    pub fn new(snap: MetaSnap, timestamp: u64) -> MetaState {
        MetaState {
            is_applying: false,
            timestamp,
            snap_b: snap,
            snap_e: MetaSnap::default(),
        }
    }

    /// The state to save before writing `diffs` into the base: `<B-->apply(B, diffs)>`.
    pub fn begin_apply(&self, diffs: &[MetaDiff]) -> Result<MetaState> {
        if self.is_applying {
            return Err(Error::Invalid(format!("state {self} is already applying")));
        }
        let end = apply_all(&self.snap_b, diffs)?;
        Ok(MetaState {
            is_applying: true,
            timestamp: diffs.last().map_or(self.timestamp, |d| d.timestamp),
            snap_b: self.snap_b,
            snap_e: end,
        })
    }

    /// The state to save once the data is written: `<E>`.
    pub fn end_apply(&self) -> Result<MetaState> {
        if !self.is_applying {
            return Err(Error::Invalid(format!("state {self} is not applying")));
        }
        Ok(MetaState::new(self.snap_e, self.timestamp))
    }

    /// Applies a diff to the state; while applying it must not go back behind snapE.
    pub fn apply(&self, d: &MetaDiff) -> Result<MetaState> {
        if self.is_applying && self.snap_e.gid_b > d.snap_e.gid_b {
            return Err(Error::Invalid(format!(
                "diff {d} ends before the state {self} being applied"
            )));
        }
        Ok(MetaState::new(apply_one(&self.snap_b, d)?, d.timestamp))
    }
}

fn apply_one(s: &MetaSnap, d: &MetaDiff) -> Result<MetaSnap> {
    match relation(s, d) {
        Relation::Applicable => Ok(apply_snap(s, d)),
        r => Err(Error::Invalid(format!(
            "diff {d} is not applicable to {s} ({r:?})"
        ))),
    }
}

/// Applies `diffs` in order; each must be applicable to the result of the previous ones.
pub fn apply_all(s: &MetaSnap, diffs: &[MetaDiff]) -> Result<MetaSnap> {
    diffs.iter().try_fold(*s, |cur, d| apply_one(&cur, d))
}

impl fmt::Display for MetaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.snap_b == MetaSnap::default() {
            // A volume with no data yet (walb's "no snapshot" gid).
            write!(f, "<none>")
        } else if self.is_applying {
            write!(f, "<{}-->{}>", self.snap_b, self.snap_e)
        } else {
            write!(f, "<{}>", self.snap_b)
        }
    }
}
