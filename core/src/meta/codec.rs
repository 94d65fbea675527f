//! Binary forms of the meta types for persistence and messages: a u16 preamble (0x0311 snap,
//! 0x0312 diff, 0x0313 state, 0x0314 lsid/gid) then the fields, little-endian.

use crate::error::{Error, Result};
use crate::meta::diff::MetaDiff;
use crate::meta::lsidgid::MetaLsidGid;
use crate::meta::snap::MetaSnap;
use crate::meta::state::MetaState;
use crate::types::{Gid, Lsid};

const SNAP: u16 = 0x0311;
const DIFF: u16 = 0x0312;
const STATE: u16 = 0x0313;
const LSIDGID: u16 = 0x0314;

struct Rd<'a> {
    b: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Rd<'a> {
    fn new(b: &'a [u8], what: &'static str, preamble: u16) -> Result<Rd<'a>> {
        let mut r = Rd { b, at: 0, what };
        let p = r.u16()?;
        if p != preamble {
            return Err(Error::corrupt(
                what,
                0,
                format!("preamble {p:#06x}, expected {preamble:#06x}"),
            ));
        }
        Ok(r)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n).ok_or(Error::Truncated {
            what: self.what,
            offset: self.at as u64,
            need: n as u64,
            got: self.b.len().saturating_sub(self.at) as u64,
        })?;
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn bool(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Error::corrupt(
                self.what,
                self.at as u64 - 1,
                format!("bool byte {v}"),
            )),
        }
    }
    fn snap(&mut self) -> Result<MetaSnap> {
        let (b, e) = (self.u64()?, self.u64()?);
        MetaSnap::new(Gid(b), Gid(e))
            .map_err(|e| Error::corrupt(self.what, self.at as u64, e.to_string()))
    }
    fn end(self) -> Result<()> {
        if self.at != self.b.len() {
            return Err(Error::corrupt(self.what, self.at as u64, "trailing bytes"));
        }
        Ok(())
    }
}

fn put_snap(v: &mut Vec<u8>, s: &MetaSnap) {
    v.extend_from_slice(&s.gid_b.0.to_le_bytes());
    v.extend_from_slice(&s.gid_e.0.to_le_bytes());
}

impl MetaSnap {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = SNAP.to_le_bytes().to_vec();
        put_snap(&mut v, self);
        v
    }
    pub fn from_bytes(b: &[u8]) -> Result<MetaSnap> {
        let mut r = Rd::new(b, "MetaSnap", SNAP)?;
        let s = r.snap()?;
        r.end()?;
        Ok(s)
    }
}

impl MetaDiff {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = DIFF.to_le_bytes().to_vec();
        v.push(self.is_mergeable as u8);
        v.push(self.is_comp_diff as u8);
        v.extend_from_slice(&self.timestamp.to_le_bytes());
        put_snap(&mut v, &self.snap_b);
        put_snap(&mut v, &self.snap_e);
        v.extend_from_slice(&self.data_size.to_le_bytes());
        v
    }
    pub fn from_bytes(b: &[u8]) -> Result<MetaDiff> {
        let mut r = Rd::new(b, "MetaDiff", DIFF)?;
        let d = MetaDiff {
            is_mergeable: r.bool()?,
            is_comp_diff: r.bool()?,
            timestamp: r.u64()?,
            snap_b: r.snap()?,
            snap_e: r.snap()?,
            data_size: r.u64()?,
        };
        r.end()?;
        d.check()
            .map_err(|e| Error::corrupt("MetaDiff", 0, e.to_string()))?;
        Ok(d)
    }
}

impl MetaState {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = STATE.to_le_bytes().to_vec();
        v.push(self.is_applying as u8);
        v.extend_from_slice(&self.timestamp.to_le_bytes());
        put_snap(&mut v, &self.snap_b);
        put_snap(&mut v, &self.snap_e);
        v
    }
    pub fn from_bytes(b: &[u8]) -> Result<MetaState> {
        let mut r = Rd::new(b, "MetaState", STATE)?;
        let s = MetaState {
            is_applying: r.bool()?,
            timestamp: r.u64()?,
            snap_b: r.snap()?,
            snap_e: r.snap()?,
        };
        r.end()?;
        if s.is_applying && s.snap_b.gid_b >= s.snap_e.gid_b {
            return Err(Error::corrupt(
                "MetaState",
                0,
                "applying state with snapB.gidB ≥ snapE.gidB",
            ));
        }
        Ok(s)
    }
}

impl MetaLsidGid {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = LSIDGID.to_le_bytes().to_vec();
        v.push(self.is_mergeable as u8);
        v.extend_from_slice(&self.timestamp.to_le_bytes());
        v.extend_from_slice(&self.lsid.0.to_le_bytes());
        v.extend_from_slice(&self.gid.0.to_le_bytes());
        v
    }
    pub fn from_bytes(b: &[u8]) -> Result<MetaLsidGid> {
        let mut r = Rd::new(b, "MetaLsidGid", LSIDGID)?;
        let m = MetaLsidGid {
            is_mergeable: r.bool()?,
            timestamp: r.u64()?,
            lsid: Lsid(r.u64()?),
            gid: Gid(r.u64()?),
        };
        r.end()?;
        Ok(m)
    }
}
