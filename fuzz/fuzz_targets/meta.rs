//! Meta binary forms and wdiff names never panic; parsed values are valid and round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_core::meta::{format_name, parse_name, MetaDiff, MetaLsidGid, MetaSnap, MetaState};

fuzz_target!(|data: &[u8]| {
    let _ = MetaSnap::from_bytes(data);
    let _ = MetaState::from_bytes(data);
    let _ = MetaLsidGid::from_bytes(data);
    if let Ok(d) = MetaDiff::from_bytes(data) {
        assert!(d.check().is_ok());
        assert_eq!(MetaDiff::from_bytes(&d.to_bytes()).unwrap(), d);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = parse_name(s, 0) {
            let again = parse_name(&format_name(&d), 0).unwrap();
            assert_eq!((again, again.timestamp), (d, d.timestamp));
        }
    }
});
