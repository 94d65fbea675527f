//! A 32-byte log record inside a logpack header (docs/formats.md §3.2).

use crate::bytes_le::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};

pub const FLAG_EXIST: u32 = 0x1;
pub const FLAG_PADDING: u32 = 0x2;
pub const FLAG_DISCARD: u32 = 0x4;
pub const RECORD_SIZE: usize = 32;
/// The largest io_size of a normal record, in LB.
pub const MAX_NORMAL_IO_LB: u32 = 65535;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecKind {
    Normal,
    Padding,
    Discard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub kind: RecKind,
    /// Checksum of the first `io_size*512` data bytes with the log salt; 0 for padding/discard.
    pub checksum: u32,
    /// IO address on the data device, in LB.
    pub offset: u64,
    /// IO size in LB.
    pub io_size: u32,
    /// `lsid − logpack_lsid`, ≥ 1.
    pub lsid_local: u16,
    /// Where this record's data begins.
    pub lsid: u64,
}

impl LogRecord {
    pub fn flags(&self) -> u32 {
        FLAG_EXIST
            | match self.kind {
                RecKind::Normal => 0,
                RecKind::Padding => FLAG_PADDING,
                RecKind::Discard => FLAG_DISCARD,
            }
    }

    /// True for records whose data PBs follow the header (normal and padding).
    pub fn has_data(&self) -> bool {
        self.kind != RecKind::Discard
    }

    pub fn encode(&self, b: &mut [u8]) {
        put_u32(b, 0, self.checksum);
        put_u32(b, 4, self.flags());
        put_u64(b, 8, self.offset);
        put_u32(b, 16, self.io_size);
        put_u16(b, 20, self.lsid_local);
        put_u16(b, 22, 0);
        put_u64(b, 24, self.lsid);
    }

    /// Decodes the raw fields; rule checks live in the header's validation.
    pub fn decode(b: &[u8]) -> Result<LogRecord, String> {
        let flags = u32_at(b, 4);
        if flags & FLAG_EXIST == 0 {
            return Err(format!("record flags {flags:#x} lack EXIST"));
        }
        let kind = match (flags & FLAG_PADDING != 0, flags & FLAG_DISCARD != 0) {
            (false, false) => RecKind::Normal,
            (true, false) => RecKind::Padding,
            (false, true) => RecKind::Discard,
            (true, true) => return Err(format!("record flags {flags:#x}: PADDING with DISCARD")),
        };
        Ok(LogRecord {
            kind,
            checksum: u32_at(b, 0),
            offset: u64_at(b, 8),
            io_size: u32_at(b, 16),
            lsid_local: u16_at(b, 20),
            lsid: u64_at(b, 24),
        })
    }
}
