//! The wlog reader never panics on any stream, and every pack it yields is internally valid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_core::source::BytesSource;
use walb_core::wlog::WlogReader;

fuzz_target!(|data: &[u8]| {
    let src = BytesSource::new(bytes::Bytes::copy_from_slice(data));
    let Ok(r) = WlogReader::new(Box::new(src)) else {
        return;
    };
    let pbs = r.header().pbs;
    for p in r {
        let Ok(p) = p else { break };
        assert_eq!(p.data.len(), p.header.total_io_size as usize * pbs.bytes());
        for rec in p.diff_recs(pbs) {
            let _ = rec.end();
        }
    }
});
