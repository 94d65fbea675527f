//! Reads wlog files: header, packs (data checksums verified), end header; several wlogs back to
//! back are read as one stream when their uuids match and their lsids are contiguous.

use crate::error::{Error, Result};
use crate::logpack::header::END_LSID;
use crate::logpack::{LogPack, LogPackHeader};
use crate::source::Source;
use crate::wlog::header::{WlogHeader, WLOG_HEADER_SIZE};

pub struct WlogReader {
    src: Box<dyn Source>,
    first: WlogHeader,
    cur: WlogHeader,
    next_lsid: u64,
    done: bool,
}

impl WlogReader {
    pub fn new(mut src: Box<dyn Source>) -> Result<WlogReader> {
        let at = src.pos();
        let b = src.take_exact(WLOG_HEADER_SIZE, "wlog header")?;
        let h = WlogHeader::decode(&b, at)?;
        Ok(WlogReader {
            src,
            next_lsid: h.begin_lsid,
            first: h.clone(),
            cur: h,
            done: false,
        })
    }

    /// The first file's header.
    pub fn header(&self) -> &WlogHeader {
        &self.first
    }

    /// The real end: the next lsid after the last pack read so far.
    pub fn end_lsid(&self) -> u64 {
        self.next_lsid
    }

    fn read_pack(&mut self) -> Result<Option<LogPack>> {
        loop {
            let pbs = self.cur.pbs;
            let at = self.src.pos();
            let Some(hb) = self.src.take(pbs.bytes(), "logpack header")? else {
                return Ok(None);
            };
            let is_end = crate::bytes_le::u64_at(&hb, 8) == END_LSID;
            let expected = (!is_end).then_some(self.next_lsid);
            let header = LogPackHeader::decode(&hb, self.cur.salt, expected, at)?;
            if header.is_end() {
                if !self.next_file()? {
                    return Ok(None);
                }
                continue;
            }
            if header.records.is_empty() {
                continue;
            }
            let len = header.total_io_size as usize * pbs.bytes();
            let data = self.src.take_exact(len, "logpack data")?;
            let pack = LogPack { header, data };
            pack.verify(pbs, self.cur.salt, at)?;
            self.next_lsid = pack.header.next_lsid();
            return Ok(Some(pack));
        }
    }

    /// After an end header: the next concatenated wlog's header, if any.
    fn next_file(&mut self) -> Result<bool> {
        let at = self.src.pos();
        let Some(b) = self.src.take(WLOG_HEADER_SIZE, "wlog header")? else {
            return Ok(false);
        };
        let h = WlogHeader::decode(&b, at)?;
        if h.uuid != self.first.uuid {
            return Err(Error::corrupt(
                "wlog header",
                at,
                format!(
                    "concatenated wlog has uuid {}, the first has {}",
                    h.uuid, self.first.uuid
                ),
            ));
        }
        if h.begin_lsid != self.next_lsid {
            return Err(Error::corrupt(
                "wlog header",
                at,
                format!(
                    "concatenated wlog begins at lsid {}, the previous ended at {}",
                    h.begin_lsid, self.next_lsid
                ),
            ));
        }
        self.cur = h;
        Ok(true)
    }
}

impl Iterator for WlogReader {
    type Item = Result<LogPack>;
    fn next(&mut self) -> Option<Result<LogPack>> {
        if self.done {
            return None;
        }
        let r = self.read_pack().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}
