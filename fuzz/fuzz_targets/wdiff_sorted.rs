//! The sorted wdiff reader never panics; what it yields is sorted, non-overlapping and sized.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_core::source::BytesSource;
use walb_core::wdiff::SortedReader;

mod common;

fuzz_target!(|data: &[u8]| {
    let src = BytesSource::new(bytes::Bytes::copy_from_slice(data));
    if let Ok((_, r)) = SortedReader::open(Box::new(src)) {
        common::check_records(r);
    }
    // Whole packs as a stream receiver sees them.
    let _ = walb_core::wdiff::sorted::parse_pack(&bytes::Bytes::copy_from_slice(data));
});
