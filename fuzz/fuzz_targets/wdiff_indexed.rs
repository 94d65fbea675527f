//! The indexed wdiff reader never panics; what it yields is sorted, non-overlapping and sized.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_core::wdiff::{Body, IndexedReader};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = IndexedReader::new(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut end = 0;
    for rec in r {
        let Ok(rec) = rec else { break };
        assert!(rec.addr >= end);
        end = rec.end();
        if let Body::Data(d) = &rec.body {
            assert_eq!(d.len(), rec.blocks as usize * 512);
        }
    }
});
