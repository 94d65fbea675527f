//! Logpack header validation never panics; a valid header round-trips through encode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_core::logpack::LogPackHeader;
use walb_core::Pbs;

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let salt = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let lsid = u64::from_le_bytes(data[4..12].try_into().unwrap());
    let pbs = if data[12] & 1 == 0 { Pbs::B512 } else { Pbs::B4096 };
    let mut b = data[13..].to_vec();
    b.resize(pbs.bytes(), 0);
    if let Ok(h) = LogPackHeader::decode(&b, salt, Some(lsid), 0) {
        let again = LogPackHeader::decode(&h.encode(pbs, salt), salt, Some(lsid), 0).unwrap();
        assert_eq!(again, h);
    }
});
