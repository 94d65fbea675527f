//! Crash recovery (FORMATS §2.8): replay the log from the superblock's written lsid onto the
//! data device until the first invalid pack; a pack whose record data is bad is cut before
//! that record (and rewritten), so the log ends where the good data ends.

use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::BlockIo;
use walb_core::ldev::Ldev;
use walb_core::Result;

/// Replays `[written_lsid, end)` and returns `end`.
pub fn redo(ldev: &mut Ldev, ddev: &mut dyn BlockIo) -> Result<u64> {
    let pbs = ldev.pbs();
    let salt = ldev.sb.log_checksum_salt;
    let mut lsid = ldev.sb.written_lsid;
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
        lsid = pack.header.next_lsid();
        if bad.is_some() {
            break;
        }
    }
    ap.finish()?;
    ldev.sync()?;
    Ok(lsid)
}
