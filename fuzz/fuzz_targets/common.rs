//! Checks shared by the wdiff targets: what a reader yields is sorted, non-overlapping and
//! sized as its block count says.

use walb_core::wdiff::{Body, DiffRec};

pub fn check_records(recs: impl Iterator<Item = walb_core::Result<DiffRec>>) {
    let mut end = 0;
    for rec in recs {
        let Ok(rec) = rec else { break };
        assert!(rec.addr >= end);
        end = rec.end();
        if let Body::Data(d) = &rec.body {
            assert_eq!(d.len(), rec.blocks as usize * 512);
        }
    }
}
