//! Writes wlog files: header, contiguous packs (empty packs skipped), end header.

use std::io::Write;

use crate::error::{Error, IoContext, Result};
use crate::logpack::LogPackHeader;
use crate::wlog::header::WlogHeader;

pub struct WlogWriter<W: Write> {
    w: W,
    header: WlogHeader,
    next_lsid: u64,
}

impl<W: Write> WlogWriter<W> {
    pub fn new(mut w: W, header: WlogHeader) -> Result<WlogWriter<W>> {
        w.write_all(&header.encode())
            .ctx(|| "write wlog header".into())?;
        Ok(WlogWriter {
            w,
            next_lsid: header.begin_lsid,
            header,
        })
    }

    pub fn header(&self) -> &WlogHeader {
        &self.header
    }

    /// The lsid the next pack must start at.
    pub fn next_lsid(&self) -> u64 {
        self.next_lsid
    }

    /// Appends a pack; `data` holds its `total_io_size` PBs.
    pub fn write_pack(&mut self, header: &LogPackHeader, data: &[u8]) -> Result<()> {
        if header.records.is_empty() {
            return Ok(());
        }
        if header.lsid != self.next_lsid {
            return Err(Error::Invalid(format!(
                "pack at lsid {} does not follow lsid {}",
                header.lsid, self.next_lsid
            )));
        }
        let pbs = self.header.pbs;
        if data.len() != header.total_io_size as usize * pbs.bytes() {
            return Err(Error::Invalid(format!(
                "pack at lsid {} carries {} data bytes, its header says {} PBs",
                header.lsid,
                data.len(),
                header.total_io_size
            )));
        }
        self.w
            .write_all(&header.encode(pbs, self.header.salt))
            .ctx(|| "write logpack header".into())?;
        self.w.write_all(data).ctx(|| "write logpack data".into())?;
        self.next_lsid = header.next_lsid();
        Ok(())
    }

    /// Writes the end header and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        let end = LogPackHeader::end().encode(self.header.pbs, self.header.salt);
        self.w
            .write_all(&end)
            .ctx(|| "write wlog end header".into())?;
        self.w.flush().ctx(|| "flush wlog".into())?;
        Ok(self.w)
    }
}
