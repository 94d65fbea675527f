//! A logpack with its data: the header plus the data PBs of its data-bearing records, in order.

use bytes::Bytes;

use crate::checksum::checksum;
use crate::error::{Error, Result};
use crate::logpack::header::LogPackHeader;
use crate::logpack::record::RecKind;
use crate::types::{Pbs, LBS};
use crate::wdiff::rec::{is_all_zero, Body, DiffRec};

#[derive(Clone, Debug)]
pub struct LogPack {
    pub header: LogPackHeader,
    /// `total_io_size * pbs` bytes.
    pub data: Bytes,
}

impl LogPack {
    /// The `io_size*512` bytes of record `i` (normal or padding).
    pub fn record_data(&self, i: usize, pbs: Pbs) -> Bytes {
        let r = &self.header.records[i];
        let off = self.header.data_offset(i, pbs);
        self.data.slice(off..off + r.io_size as usize * LBS)
    }

    /// Verifies each normal record's data checksum. On the first mismatch returns its index.
    pub fn first_bad_record(&self, pbs: Pbs, salt: u32) -> Option<usize> {
        self.header.records.iter().enumerate().find_map(|(i, r)| {
            (r.kind == RecKind::Normal && checksum(&self.record_data(i, pbs), salt) != r.checksum)
                .then_some(i)
        })
    }

    /// Verifies all record checksums; `at` is the pack's byte offset for the error.
    pub fn verify(&self, pbs: Pbs, salt: u32, at: u64) -> Result<()> {
        match self.first_bad_record(pbs, salt) {
            None => Ok(()),
            Some(i) => Err(Error::corrupt(
                "logpack record data",
                at + pbs.bytes() as u64 + self.header.data_offset(i, pbs) as u64,
                format!(
                    "pack lsid {} record {i}: data checksum mismatch",
                    self.header.lsid
                ),
            )),
        }
    }

    /// Drops record `i` and all later ones (walb's answer to a bad data checksum).
    pub fn truncate(&mut self, n: usize, pbs: Pbs) {
        self.header.truncate(n, pbs);
        self.data
            .truncate(self.header.total_io_size as usize * pbs.bytes());
    }

    /// The records as diff records in log order: padding dropped, discards kept, all-zero
    /// data detected (docs/formats.md §5.5).
    pub fn diff_recs(&self, pbs: Pbs) -> impl Iterator<Item = DiffRec> + '_ {
        self.header
            .records
            .iter()
            .enumerate()
            .filter_map(move |(i, r)| {
                let body = match r.kind {
                    RecKind::Padding => return None,
                    RecKind::Discard => Body::Discard,
                    RecKind::Normal => {
                        let d = self.record_data(i, pbs);
                        if is_all_zero(&d) {
                            Body::AllZero
                        } else {
                            Body::Data(d)
                        }
                    }
                };
                Some(DiffRec {
                    addr: r.offset,
                    blocks: r.io_size,
                    body,
                })
            })
    }
}
