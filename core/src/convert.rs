//! wlog → wdiff conversion (docs/formats.md §5.5): the records of one or more contiguous wlogs of
//! the same WAL generation, in log order, as diff records (padding dropped, discards kept, all-zero
//! data detected). Sinks: `DiffMemory` for sorted output, `IndexedWriter` for indexed output.

use crate::error::{Error, Result};
use crate::types::Uuid;
use crate::wdiff::rec::DiffRec;
use crate::wlog::WlogReader;

/// Feeds every record of `wlogs` (in order) to `sink`; returns the uuid and lsid range.
pub fn wlog_records(
    wlogs: Vec<WlogReader>,
    mut sink: impl FnMut(DiffRec) -> Result<()>,
) -> Result<(Uuid, u64, u64)> {
    let mut first: Option<(Uuid, u64)> = None;
    let mut end = 0;
    for (i, mut r) in wlogs.into_iter().enumerate() {
        let h = r.header().clone();
        match first {
            None => first = Some((h.uuid, h.begin_lsid)),
            Some((uuid, _)) => {
                if h.uuid != uuid {
                    return Err(Error::Invalid(format!(
                        "wlog {i} has uuid {}, the first has {uuid}",
                        h.uuid
                    )));
                }
                if h.begin_lsid != end {
                    return Err(Error::Invalid(format!(
                        "wlog {i} begins at lsid {}, the previous one ended at {end}",
                        h.begin_lsid
                    )));
                }
            }
        }
        for p in &mut r {
            for rec in p?.diff_recs(h.pbs) {
                sink(rec)?;
            }
        }
        end = r.end_lsid();
    }
    let (uuid, begin) = first.ok_or_else(|| Error::Invalid("no wlog given".into()))?;
    Ok((uuid, begin, end))
}
