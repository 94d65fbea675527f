//! The 32-byte wdiff file header (docs/formats.md §5.1), shared by both formats.

use crate::bytes_le::{put_u16, u16_at};
use crate::checksum::{is_sealed, seal};
use crate::error::{Error, Result};
use crate::types::Uuid;

pub const FILE_HEADER_SIZE: usize = 32;
const VERSION: u16 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sorted = 0,
    Indexed = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: Kind,
    pub uuid: Uuid,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER_SIZE] {
        let mut b = [0u8; FILE_HEADER_SIZE];
        put_u16(&mut b, 4, VERSION);
        b[6] = self.kind as u8;
        b[16..32].copy_from_slice(&self.uuid.0);
        seal(&mut b, 0, 0);
        b
    }

    pub fn decode(b: &[u8]) -> Result<FileHeader> {
        let bad = |rule: String| Error::corrupt("wdiff file header", 0, rule);
        if b.len() < FILE_HEADER_SIZE {
            return Err(Error::Truncated {
                what: "wdiff file header",
                offset: 0,
                need: FILE_HEADER_SIZE as u64,
                got: b.len() as u64,
            });
        }
        let b = &b[..FILE_HEADER_SIZE];
        if !is_sealed(b, 0) {
            return Err(bad("checksum mismatch (not a wdiff?)".into()));
        }
        if u16_at(b, 4) != VERSION {
            return Err(bad(format!("version {}, expected {VERSION}", u16_at(b, 4))));
        }
        let kind = match b[6] {
            0 => Kind::Sorted,
            1 => Kind::Indexed,
            t => return Err(bad(format!("type {t} (0 sorted, 1 indexed)"))),
        };
        Ok(FileHeader {
            kind,
            uuid: Uuid(b[16..32].try_into().unwrap()),
        })
    }
}
