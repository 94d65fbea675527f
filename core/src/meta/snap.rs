//! MetaSnap `|B,E|`: a snapshot between gids B ≤ E; clean when B = E (docs/formats.md §6.1).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::types::Gid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetaSnap {
    pub gid_b: Gid,
    pub gid_e: Gid,
}

impl Default for MetaSnap {
    fn default() -> MetaSnap {
        MetaSnap::clean(Gid(u64::MAX))
    }
}

impl MetaSnap {
    pub fn clean(gid: Gid) -> MetaSnap {
        MetaSnap {
            gid_b: gid,
            gid_e: gid,
        }
    }

    pub fn new(gid_b: Gid, gid_e: Gid) -> Result<MetaSnap> {
        if gid_b > gid_e {
            return Err(Error::Invalid(format!("snapshot |{gid_b},{gid_e}|: B > E")));
        }
        Ok(MetaSnap { gid_b, gid_e })
    }

    pub fn is_clean(&self) -> bool {
        self.gid_b == self.gid_e
    }
}

impl fmt::Display for MetaSnap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            write!(f, "|{}|", self.gid_b)
        } else {
            write!(f, "|{},{}|", self.gid_b, self.gid_e)
        }
    }
}

impl FromStr for MetaSnap {
    type Err = Error;
    fn from_str(s: &str) -> Result<MetaSnap> {
        let bad = || Error::Invalid(format!("snapshot {s:?}: expected |B| or |B,E|"));
        let inner = s
            .strip_prefix('|')
            .and_then(|x| x.strip_suffix('|'))
            .ok_or_else(bad)?;
        let mut it = inner.split(',');
        let b: u64 = it
            .next()
            .ok_or_else(bad)?
            .trim()
            .parse()
            .map_err(|_| bad())?;
        let e: u64 = match it.next() {
            None => b,
            Some(x) => x.trim().parse().map_err(|_| bad())?,
        };
        if it.next().is_some() {
            return Err(bad());
        }
        MetaSnap::new(Gid(b), Gid(e))
    }
}
