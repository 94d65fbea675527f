//! The logpack header block (docs/formats.md §3.1) with the five validity rules of §3.6.

use crate::bytes_le::{put_u16, put_u64, u16_at, u64_at};
use crate::checksum::{is_sealed, seal};
use crate::error::{Error, Result};
use crate::logpack::record::{LogRecord, RecKind, MAX_NORMAL_IO_LB, RECORD_SIZE};
use crate::types::Pbs;

pub const SECTOR_TYPE_LOGPACK: u16 = 0x0003;
/// `logpack_lsid` of the end header that terminates wlog files and streams.
pub const END_LSID: u64 = u64::MAX;
const HEADER_FIXED: usize = 24;

/// Records that fit in one header block: 15 for pbs 512, 127 for pbs 4096.
pub fn max_records(pbs: Pbs) -> usize {
    (pbs.bytes() - HEADER_FIXED) / RECORD_SIZE
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPackHeader {
    pub lsid: u64,
    /// PBs of data after the header (padding included, discards excluded).
    pub total_io_size: u16,
    pub records: Vec<LogRecord>,
}

impl LogPackHeader {
    pub fn new(lsid: u64) -> LogPackHeader {
        LogPackHeader {
            lsid,
            total_io_size: 0,
            records: Vec::new(),
        }
    }

    /// The end header of wlog files.
    pub fn end() -> LogPackHeader {
        LogPackHeader::new(END_LSID)
    }

    pub fn is_end(&self) -> bool {
        self.lsid == END_LSID && self.records.is_empty()
    }

    pub fn n_padding(&self) -> u16 {
        self.records
            .iter()
            .filter(|r| r.kind == RecKind::Padding)
            .count() as u16
    }

    /// The lsid right after this pack; a pack without records takes no space.
    pub fn next_lsid(&self) -> u64 {
        if self.records.is_empty() {
            self.lsid
        } else {
            self.lsid + 1 + self.total_io_size as u64
        }
    }

    /// Encodes into one sealed PB.
    pub fn encode(&self, pbs: Pbs, salt: u32) -> Vec<u8> {
        let mut b = vec![0u8; pbs.bytes()];
        self.encode_into(&mut b, salt);
        b
    }

    pub fn encode_into(&self, b: &mut [u8], salt: u32) {
        b.fill(0);
        put_u16(b, 4, SECTOR_TYPE_LOGPACK);
        put_u16(b, 6, self.total_io_size);
        put_u64(b, 8, self.lsid);
        put_u16(b, 16, self.records.len() as u16);
        put_u16(b, 18, self.n_padding());
        for (i, r) in self.records.iter().enumerate() {
            let o = HEADER_FIXED + i * RECORD_SIZE;
            r.encode(&mut b[o..o + RECORD_SIZE]);
        }
        seal(b, 0, salt);
    }

    /// Decodes and validates one header block. `expected` is the lsid the reader expects here
    /// (rule 5); `None` skips that rule (for the end header, whose lsid is `END_LSID`).
    /// `at` is the byte offset of the block in its file, for error messages.
    pub fn decode(b: &[u8], salt: u32, expected: Option<u64>, at: u64) -> Result<LogPackHeader> {
        let bad = |rule: String| Error::corrupt("logpack header", at, rule);
        if u16_at(b, 4) != SECTOR_TYPE_LOGPACK {
            return Err(bad(format!(
                "sector type {:#06x}, expected {SECTOR_TYPE_LOGPACK:#06x}",
                u16_at(b, 4)
            )));
        }
        let total_io_size = u16_at(b, 6);
        let lsid = u64_at(b, 8);
        let n_records = u16_at(b, 16) as usize;
        let n_padding = u16_at(b, 18);
        if n_records == 0 {
            if total_io_size != 0 || n_padding != 0 {
                return Err(bad(format!(
                    "empty pack with total_io_size {total_io_size} and n_padding {n_padding}"
                )));
            }
        } else {
            let pbs = Pbs::new(b.len() as u32).expect("header block is one PB");
            if n_records > max_records(pbs) {
                return Err(bad(format!(
                    "n_records {n_records} exceeds {} for pbs {pbs}",
                    max_records(pbs)
                )));
            }
            if n_padding > 1 || n_padding as usize > n_records {
                return Err(bad(format!(
                    "n_padding {n_padding} with n_records {n_records}"
                )));
            }
            if lsid.checked_add(1 + total_io_size as u64).is_none() {
                return Err(bad(format!("lsid {lsid} + total_io_size overflows")));
            }
            if !is_sealed(b, salt) {
                return Err(bad(format!("checksum mismatch (salt {salt:#010x})")));
            }
        }
        if let Some(x) = expected {
            if lsid != x {
                return Err(bad(format!("logpack_lsid {lsid}, expected {x}")));
            }
        }
        let mut records = Vec::with_capacity(n_records);
        let mut data_pb = 0u64;
        let mut seen_padding = 0;
        for i in 0..n_records {
            let o = HEADER_FIXED + i * RECORD_SIZE;
            let r = LogRecord::decode(&b[o..o + RECORD_SIZE])
                .map_err(|e| bad(format!("record {i}: {e}")))?;
            check_record(&r, lsid).map_err(|e| bad(format!("record {i}: {e}")))?;
            if r.kind == RecKind::Padding {
                seen_padding += 1;
            }
            if r.has_data() {
                let pbs = Pbs::new(b.len() as u32).expect("header block is one PB");
                // Data-bearing records follow each other with no gaps.
                if r.lsid != lsid + 1 + data_pb {
                    return Err(bad(format!(
                        "record {i}: lsid {} but data cursor is at {}",
                        r.lsid,
                        lsid + 1 + data_pb
                    )));
                }
                data_pb += pbs.pbs_for_lb(r.io_size as u64);
            }
            records.push(r);
        }
        if seen_padding != n_padding {
            return Err(bad(format!(
                "n_padding {n_padding} but {seen_padding} padding records"
            )));
        }
        if data_pb != total_io_size as u64 {
            return Err(bad(format!(
                "total_io_size {total_io_size} but records carry {data_pb} PBs"
            )));
        }
        Ok(LogPackHeader {
            lsid,
            total_io_size,
            records,
        })
    }

    /// Byte offset of record `i`'s data inside the pack's data area.
    pub fn data_offset(&self, i: usize, pbs: Pbs) -> usize {
        (self.records[i].lsid - self.lsid - 1) as usize * pbs.bytes()
    }

    /// Keeps records `[0, n)` and recomputes sizes (used when a later record's data is bad).
    pub fn truncate(&mut self, n: usize, pbs: Pbs) {
        self.records.truncate(n);
        self.total_io_size = self
            .records
            .iter()
            .filter(|r| r.has_data())
            .map(|r| pbs.pbs_for_lb(r.io_size as u64))
            .sum::<u64>() as u16;
    }
}

fn check_record(r: &LogRecord, pack_lsid: u64) -> std::result::Result<(), String> {
    if r.io_size == 0 && r.kind != RecKind::Padding {
        return Err("io_size 0".into());
    }
    if r.io_size > MAX_NORMAL_IO_LB && r.kind != RecKind::Discard {
        return Err(format!("io_size {} exceeds {MAX_NORMAL_IO_LB}", r.io_size));
    }
    if r.lsid_local == 0 {
        return Err("lsid_local 0".into());
    }
    if r.lsid > u64::MAX - 1 {
        return Err(format!("lsid {} out of range", r.lsid));
    }
    if r.lsid.wrapping_sub(r.lsid_local as u64) != pack_lsid {
        return Err(format!(
            "lsid {} − lsid_local {} ≠ logpack_lsid {pack_lsid}",
            r.lsid, r.lsid_local
        ));
    }
    Ok(())
}
