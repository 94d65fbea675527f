//! The ldev superblock (docs/formats.md §2.2): one PB at byte 4096; only super0 is ever used.

use crate::bytes_le::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};
use crate::checksum::{is_sealed, seal};
use crate::error::{Error, Result};
use crate::types::{Pbs, Uuid, LBS};

pub const SECTOR_TYPE_SUPER: u16 = 0x0001;
pub const WALB_LOG_VERSION: u16 = 2;
/// Host page size walb assumes; the superblock sits right after it.
pub const PAGE_SIZE: u64 = 4096;
pub const NAME_LEN: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuperBlock {
    pub pbs: Pbs,
    pub log_checksum_salt: u32,
    pub uuid: Uuid,
    pub name: String,
    /// Ring size in PBs.
    pub ring_buffer_size: u64,
    pub oldest_lsid: u64,
    pub written_lsid: u64,
    /// Device size in LB.
    pub device_size: u64,
}

/// PB index of super0.
pub fn super0_pb(pbs: Pbs) -> u64 {
    PAGE_SIZE / pbs.bytes() as u64
}

/// Byte offset of super0 (the same for every pbs).
pub fn super0_offset() -> u64 {
    PAGE_SIZE
}

/// First PB of the ring: after the reserved page, super0, and the unused super1.
pub fn ring_offset_pb(pbs: Pbs) -> u64 {
    super0_pb(pbs) + 2
}

/// Ring size for a log device of `ldev_bytes`.
pub fn ring_size_for(ldev_bytes: u64, pbs: Pbs) -> Result<u64> {
    let total = ldev_bytes / pbs.bytes() as u64;
    let off = ring_offset_pb(pbs);
    if total <= off + 1 {
        return Err(Error::Invalid(format!(
            "log device of {ldev_bytes} bytes is too small for a ring (pbs {pbs})"
        )));
    }
    Ok(total - off)
}

impl SuperBlock {
    /// A fresh superblock: new uuid and salt, lsids 0.
    pub fn format(ldev_bytes: u64, ddev_bytes: u64, pbs: Pbs, name: &str) -> Result<SuperBlock> {
        if name.len() >= NAME_LEN {
            return Err(Error::Invalid(format!(
                "device name {name:?} is longer than {} bytes",
                NAME_LEN - 1
            )));
        }
        Ok(SuperBlock {
            pbs,
            log_checksum_salt: rand::random(),
            uuid: Uuid::random(),
            name: name.to_string(),
            ring_buffer_size: ring_size_for(ldev_bytes, pbs)?,
            oldest_lsid: 0,
            written_lsid: 0,
            device_size: ddev_bytes / LBS as u64,
        })
    }

    pub fn ring_offset_pb(&self) -> u64 {
        ring_offset_pb(self.pbs)
    }

    /// Byte offset of the PB that holds `lsid` in the ring.
    pub fn lsid_offset(&self, lsid: u64) -> u64 {
        (self.ring_offset_pb() + lsid % self.ring_buffer_size) * self.pbs.bytes() as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.pbs.bytes()];
        put_u16(&mut b, 0, SECTOR_TYPE_SUPER);
        put_u16(&mut b, 2, WALB_LOG_VERSION);
        put_u32(&mut b, 8, LBS as u32);
        put_u32(&mut b, 12, self.pbs.get());
        put_u32(&mut b, 16, 0);
        put_u32(&mut b, 20, self.log_checksum_salt);
        b[24..40].copy_from_slice(&self.uuid.0);
        b[40..40 + self.name.len()].copy_from_slice(self.name.as_bytes());
        put_u64(&mut b, 72, self.ring_buffer_size);
        put_u64(&mut b, 80, self.oldest_lsid);
        put_u64(&mut b, 88, self.written_lsid);
        put_u64(&mut b, 96, self.device_size);
        seal(&mut b, 4, 0);
        b
    }

    /// The pbs a superblock block claims (read before the block's size is known).
    pub fn peek_pbs(b: &[u8]) -> Option<Pbs> {
        (b.len() >= 16).then(|| Pbs::new(u32_at(b, 12))).flatten()
    }

    /// Decodes and validates a superblock of exactly one PB. `at` is its byte offset.
    pub fn decode(b: &[u8], at: u64) -> Result<SuperBlock> {
        let bad = |rule: String| Error::corrupt("superblock", at, rule);
        let pbs = Pbs::new(b.len() as u32)
            .ok_or_else(|| bad(format!("block of {} bytes is not a PB", b.len())))?;
        if u16_at(b, 0) != SECTOR_TYPE_SUPER {
            return Err(bad(format!(
                "sector type {:#06x}, expected {SECTOR_TYPE_SUPER:#06x}",
                u16_at(b, 0)
            )));
        }
        if u16_at(b, 2) != WALB_LOG_VERSION {
            return Err(bad(format!(
                "version {}, expected {WALB_LOG_VERSION}",
                u16_at(b, 2)
            )));
        }
        if !is_sealed(b, 0) {
            return Err(bad("checksum mismatch".into()));
        }
        if u32_at(b, 8) != LBS as u32 {
            return Err(bad(format!("logical_bs {}, expected 512", u32_at(b, 8))));
        }
        if u32_at(b, 12) != pbs.get() {
            return Err(bad(format!(
                "physical_bs {} differs from the device's {pbs}",
                u32_at(b, 12)
            )));
        }
        if u32_at(b, 16) != 0 {
            return Err(bad(format!(
                "metadata_size {} (only 0 is supported)",
                u32_at(b, 16)
            )));
        }
        let name_raw = &b[40..72];
        let nul = name_raw
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| bad("name is not NUL-terminated within 32 bytes".into()))?;
        let name = std::str::from_utf8(&name_raw[..nul])
            .map_err(|_| bad("name is not UTF-8".into()))?
            .to_string();
        let sb = SuperBlock {
            pbs,
            log_checksum_salt: u32_at(b, 20),
            uuid: Uuid(b[24..40].try_into().unwrap()),
            name,
            ring_buffer_size: u64_at(b, 72),
            oldest_lsid: u64_at(b, 80),
            written_lsid: u64_at(b, 88),
            device_size: u64_at(b, 96),
        };
        if sb.ring_buffer_size == 0 {
            return Err(bad("ring_buffer_size 0".into()));
        }
        if sb.oldest_lsid == u64::MAX || sb.written_lsid == u64::MAX {
            return Err(bad("oldest or written lsid is 2^64−1".into()));
        }
        if sb.oldest_lsid > sb.written_lsid {
            return Err(bad(format!(
                "oldest_lsid {} > written_lsid {}",
                sb.oldest_lsid, sb.written_lsid
            )));
        }
        Ok(sb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(ring_offset_pb(Pbs::B512), 10);
        assert_eq!(ring_offset_pb(Pbs::B4096), 3);
    }

    #[test]
    fn roundtrip_and_corruption() {
        for pbs in [Pbs::B512, Pbs::B4096] {
            let sb = SuperBlock::format(64 << 20, 128 << 20, pbs, "vol0").unwrap();
            let b = sb.encode();
            assert_eq!(SuperBlock::decode(&b, 4096).unwrap(), sb);
            for i in [0, 4, 12, 30, 80, 100] {
                let mut c = b.clone();
                c[i] ^= 0x10;
                assert!(SuperBlock::decode(&c, 4096).is_err(), "flip at {i}");
            }
        }
    }
}
