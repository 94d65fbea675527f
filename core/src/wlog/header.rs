//! The 4096-byte wlog file header (docs/formats.md §4).

use crate::bytes_le::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};
use crate::checksum::{is_sealed, seal};
use crate::error::{Error, Result};
use crate::types::{Pbs, Uuid, LBS};

pub const SECTOR_TYPE_WALBLOG_HEADER: u16 = 0x0004;
pub const WLOG_HEADER_SIZE: usize = 4096;
const VERSION: u16 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WlogHeader {
    pub salt: u32,
    pub pbs: Pbs,
    pub uuid: Uuid,
    pub begin_lsid: u64,
    /// An upper bound only; the real end is the last pack's next lsid.
    pub end_lsid: u64,
}

impl WlogHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; WLOG_HEADER_SIZE];
        put_u16(&mut b, 0, SECTOR_TYPE_WALBLOG_HEADER);
        put_u16(&mut b, 2, VERSION);
        put_u16(&mut b, 4, WLOG_HEADER_SIZE as u16);
        put_u32(&mut b, 12, self.salt);
        put_u32(&mut b, 16, LBS as u32);
        put_u32(&mut b, 20, self.pbs.get());
        b[24..40].copy_from_slice(&self.uuid.0);
        put_u64(&mut b, 40, self.begin_lsid);
        put_u64(&mut b, 48, self.end_lsid);
        seal(&mut b, 8, 0);
        b
    }

    pub fn decode(b: &[u8], at: u64) -> Result<WlogHeader> {
        let bad = |rule: String| Error::corrupt("wlog header", at, rule);
        if u16_at(b, 0) != SECTOR_TYPE_WALBLOG_HEADER {
            return Err(bad(format!(
                "sector type {:#06x}, expected {SECTOR_TYPE_WALBLOG_HEADER:#06x} (not a wlog?)",
                u16_at(b, 0)
            )));
        }
        if u16_at(b, 2) != VERSION {
            return Err(bad(format!("version {}, expected {VERSION}", u16_at(b, 2))));
        }
        if u16_at(b, 4) as usize != WLOG_HEADER_SIZE {
            return Err(bad(format!("header_size {}, expected 4096", u16_at(b, 4))));
        }
        if !is_sealed(b, 0) {
            return Err(bad("checksum mismatch".into()));
        }
        if u32_at(b, 16) != LBS as u32 {
            return Err(bad(format!("logical_bs {}, expected 512", u32_at(b, 16))));
        }
        let pbs = Pbs::new(u32_at(b, 20))
            .ok_or_else(|| bad(format!("physical_bs {} is not 512 or 4096", u32_at(b, 20))))?;
        let h = WlogHeader {
            salt: u32_at(b, 12),
            pbs,
            uuid: Uuid(b[24..40].try_into().unwrap()),
            begin_lsid: u64_at(b, 40),
            end_lsid: u64_at(b, 48),
        };
        if h.end_lsid <= h.begin_lsid {
            return Err(bad(format!(
                "end_lsid {} ≤ begin_lsid {}",
                h.end_lsid, h.begin_lsid
            )));
        }
        Ok(h)
    }
}
