//! MetaLsidGid: the storage side's mark of "gid at lsid", and gid allocation (docs/formats.md
//! §6.4).

use crate::types::{Gid, Lsid};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaLsidGid {
    pub is_mergeable: bool,
    pub timestamp: u64,
    pub lsid: Lsid,
    pub gid: Gid,
}

/// The gid of a snapshot at lsid `x` after `pre` (the newest queued record, or the done
/// record): gids are reserved in proportion to the log between them, so a transfer cut short
/// can end at an intermediate gid.
pub fn next_gid(pre: &MetaLsidGid, x: Lsid, max_wlog_send_pb: u64) -> Gid {
    let dist = x.0.saturating_sub(pre.lsid.0);
    Gid(pre.gid.0 + 1 + dist / max_wlog_send_pb.max(1))
}

/// The end of one wlog transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferEnd {
    /// Upper bound of the lsid range; the transfer stops before a pack crossing it.
    pub lsid_limit: Lsid,
    /// The record whose lsid ends the transfer when it gets there.
    pub rec_e: MetaLsidGid,
}

/// Picks the end of the next transfer from `done` over `queue` (oldest first): the oldest
/// record, extended to the next one while the current end is mergeable (an implicit
/// snapshot) and the next stays within `done.lsid + max_wlog_send_pb` and `permanent`. A
/// transfer may end at an explicit snapshot but never passes one. `None` when the queue is
/// empty.
pub fn transfer_end(
    done: &MetaLsidGid,
    queue: &[MetaLsidGid],
    permanent: Lsid,
    max_wlog_send_pb: u64,
) -> Option<TransferEnd> {
    let first = *queue.first()?;
    let cap = Lsid((done.lsid.0 + max_wlog_send_pb).min(permanent.0));
    let mut rec_e = first;
    for r in &queue[1..] {
        if !rec_e.is_mergeable || r.lsid > cap {
            break;
        }
        rec_e = *r;
    }
    Some(TransferEnd {
        lsid_limit: Lsid(rec_e.lsid.0.min(cap.0)),
        rec_e,
    })
}

/// The end gid of a transfer that reached `lsid_e`: the record's gid when it got there,
/// otherwise the next gid after `done` (the cut-short case).
pub fn transfer_end_gid(done: &MetaLsidGid, end: &TransferEnd, lsid_e: Lsid) -> Gid {
    if lsid_e == end.rec_e.lsid {
        end.rec_e.gid
    } else {
        Gid(done.gid.0 + 1)
    }
}
