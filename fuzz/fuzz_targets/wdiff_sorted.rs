//! The sorted wdiff reader never panics; what it yields is sorted, non-overlapping and sized.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_core::source::BytesSource;
use walb_core::wdiff::{Body, SortedReader};

fuzz_target!(|data: &[u8]| {
    let src = BytesSource::new(bytes::Bytes::copy_from_slice(data));
    let Ok((_, r)) = SortedReader::open(Box::new(src)) else {
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
    // Whole packs as a stream receiver sees them.
    let _ = walb_core::wdiff::sorted::parse_pack(&bytes::Bytes::copy_from_slice(data));
});
