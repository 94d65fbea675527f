//! The indexed wdiff reader never panics; what it yields is sorted, non-overlapping and sized.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_core::wdiff::IndexedReader;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = IndexedReader::new(bytes::Bytes::copy_from_slice(data)) {
        common::check_records(r);
    }
});
