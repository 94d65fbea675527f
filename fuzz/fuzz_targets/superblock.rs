//! Superblock decoding never panics; what decodes re-encodes to the same block.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_core::ldev::SuperBlock;

fuzz_target!(|data: &[u8]| {
    let _ = SuperBlock::peek_pbs(data);
    for len in [512usize, 4096] {
        let mut b = data.to_vec();
        b.resize(len, 0);
        if let Ok(sb) = SuperBlock::decode(&b, 4096) {
            assert_eq!(SuperBlock::decode(&sb.encode(), 4096).unwrap(), sb);
        }
    }
});
