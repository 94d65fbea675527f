//! Crash recovery (docs/formats.md §3.7): replay the log from the superblock's written lsid onto
//! the data device until the first invalid pack; a pack whose record data is bad is cut before that
//! record (and rewritten), so the log ends where the good data ends.

use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::BlockIo;
use walb_core::ldev::Ldev;
use walb_core::Result;

/// What a redo replayed: lsids `[begin, end)` in `packs` packs of `bytes` data bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redone {
    pub begin: u64,
    pub end: u64,
    pub packs: u64,
    pub bytes: u64,
}

/// Replays `[written_lsid, end)`.
pub fn redo(ldev: &mut Ldev, ddev: &mut dyn BlockIo) -> Result<Redone> {
    let pbs = ldev.pbs();
    let salt = ldev.sb.log_checksum_salt;
    let begin = ldev.sb.written_lsid;
    let mut lsid = begin;
    let (mut packs, mut bytes) = (0u64, 0u64);
    let mut ap = Applier::new(ddev, DiscardMode::Zero)?;
    while let Some(mut pack) = ldev.read_pack(lsid)? {
        let bad = pack.first_bad_record(pbs, salt);
        if let Some(i) = bad {
            if i == 0 {
                ldev.invalidate(lsid)?;
                break;
            }
            pack.truncate(i, pbs);
            ldev.write_pack(&pack.header, &pack.data)?;
        }
        for rec in pack.diff_recs(pbs) {
            ap.apply(&rec)?;
        }
        packs += 1;
        bytes += pack.data.len() as u64;
        lsid = pack.header.next_lsid();
        if bad.is_some() {
            break;
        }
    }
    ap.finish()?;
    ldev.sync()?;
    Ok(Redone {
        begin,
        end: lsid,
        packs,
        bytes,
    })
}
