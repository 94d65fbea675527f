//! Every path from a log to an image gives the same bytes: redo(wlog) == redo(wlog→sorted
//! wdiff) == redo(indexed wdiff) == redo(merge(wdiffs)) == virtual full image, for random logs
//! of both pbs with discards, all-zero writes, large IOs and ring wrap-around.

use std::fs::File;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use proptest::prelude::*;
use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::{FileIo, UringIo};
use walb_core::convert::wlog_records;
use walb_core::ldev::Ldev;
use walb_core::source::BytesSource;
use walb_core::virt::{BulkSource, VirtualFull};
use walb_core::wdiff::{
    Cmpr, Codec, DiffMemory, DiffRec, IndexedReader, IndexedWriter, Merger, RecStream,
    SortedReader, SortedWriter,
};
use walb_core::wlog::{GenConfig, Generator, WlogHeader, WlogReader, WlogWriter};
use walb_core::{Pbs, Result, Uuid, LBS};

const DEV_LB: u64 = 4096;

fn image() -> File {
    let f = tempfile::tempfile().unwrap();
    f.set_len(DEV_LB * LBS as u64).unwrap();
    f
}

fn read_all(f: &File) -> Vec<u8> {
    let mut v = vec![0u8; (DEV_LB * LBS as u64) as usize];
    f.read_exact_at(&mut v, 0).unwrap();
    v
}

fn redo(recs: impl IntoIterator<Item = Result<DiffRec>>) -> Vec<u8> {
    let f = image();
    let mut io = UringIo::new(f.try_clone().unwrap(), 32);
    let mut ap = Applier::new(&mut io, DiscardMode::Zero).unwrap();
    for r in recs {
        ap.apply(&r.unwrap()).unwrap();
    }
    ap.finish().unwrap();
    read_all(&f)
}

fn wlog_reader(b: &Bytes) -> WlogReader {
    WlogReader::new(Box::new(BytesSource::new(b.clone()))).unwrap()
}

/// Generates packs into a small ldev ring starting near its end, then extracts them as wlogs
/// split in `parts` contiguous files.
fn make_wlogs(pbs: Pbs, seed: u64, big: bool, parts: usize) -> Vec<Bytes> {
    let ring = 20_000u64;
    let f = tempfile::NamedTempFile::new().unwrap();
    let off = walb_core::ldev::superblock::ring_offset_pb(pbs);
    f.as_file()
        .set_len((off + ring) * pbs.bytes() as u64)
        .unwrap();
    let mut ldev = Ldev::format(
        Box::new(FileIo::open(f.path(), true).unwrap()),
        DEV_LB * LBS as u64,
        pbs,
        "p",
    )
    .unwrap();
    let total = (1536 << 10).min(ring / 2 * pbs.bytes() as u64);
    let mut c = GenConfig::new(DEV_LB, total, pbs, seed);
    c.salt = ldev.sb.log_checksum_salt;
    c.ring_size = Some(ring);
    c.begin_lsid = ring * 5 - 300;
    c.max_io_lb = if big { 2600 } else { 64 };
    c.random_data = seed.is_multiple_of(3);
    let packs: Vec<_> = Generator::new(c.clone()).collect();
    for (h, d) in &packs {
        ldev.write_pack(h, d).unwrap();
    }
    let chunk = packs.len().div_ceil(parts);
    let mut out = Vec::new();
    let mut lsid = c.begin_lsid;
    for group in packs.chunks(chunk) {
        let h = WlogHeader {
            salt: c.salt,
            pbs,
            uuid: ldev.sb.uuid,
            begin_lsid: lsid,
            end_lsid: u64::MAX,
        };
        let mut w = WlogWriter::new(Vec::new(), h).unwrap();
        for _ in group {
            let p = ldev.read_pack(lsid).unwrap().expect("pack in ring");
            assert!(p.first_bad_record(pbs, c.salt).is_none());
            w.write_pack(&p.header, &p.data).unwrap();
            lsid = p.header.next_lsid();
        }
        out.push(Bytes::from(w.finish().unwrap()));
    }
    out
}

fn sorted_wdiff(wlogs: &[Bytes], cmpr: Cmpr) -> Bytes {
    let mut mem = DiffMemory::new();
    let (uuid, _, _) = wlog_records(wlogs.iter().map(wlog_reader).collect(), |r| {
        mem.insert(r);
        Ok(())
    })
    .unwrap();
    let mut w = SortedWriter::new(Vec::new(), uuid, cmpr).unwrap();
    for r in mem.into_sorted() {
        w.push(r).unwrap();
    }
    Bytes::from(w.finish().unwrap())
}

fn indexed_wdiff(wlogs: &[Bytes], cmpr: Cmpr) -> Bytes {
    let mut w = IndexedWriter::new(Vec::new(), Uuid::default(), cmpr).unwrap();
    wlog_records(wlogs.iter().map(wlog_reader).collect(), |r| w.add(r)).unwrap();
    Bytes::from(w.finish().unwrap())
}

fn sorted_recs(b: &Bytes) -> RecStream {
    let (_, r) = SortedReader::open(Box::new(BytesSource::new(b.clone()))).unwrap();
    Box::new(r)
}

fn indexed_recs(b: &Bytes) -> RecStream {
    Box::new(IndexedReader::new(b.clone()).unwrap())
}

fn codec(i: u64) -> Cmpr {
    Cmpr::new(Codec::from_code((i % 6) as u8).unwrap(), 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn every_path_gives_the_same_image(seed in 0u64..100_000, big in any::<bool>()) {
        let pbs = if seed % 2 == 0 { Pbs::B512 } else { Pbs::B4096 };
        let wlogs = make_wlogs(pbs, seed, big, 3);
        let want = redo(wlogs.iter().flat_map(|b| {
            wlog_reader(b).flat_map(move |p| {
                let p = p.unwrap();
                p.diff_recs(pbs).map(Ok).collect::<Vec<_>>()
            })
        }));

        let whole = sorted_wdiff(&wlogs, codec(seed));
        prop_assert!(redo(sorted_recs(&whole)) == want, "sorted wdiff");

        let idx = indexed_wdiff(&wlogs, codec(seed + 1));
        for r in IndexedReader::new(idx.clone()).unwrap() {
            let r = r.unwrap();
            prop_assert!(r.blocks.is_power_of_two() && r.blocks <= 2048);
            prop_assert!(r.addr % r.blocks as u64 == 0);
        }
        prop_assert!(redo(indexed_recs(&idx)) == want, "indexed wdiff");

        // One wdiff per wlog, alternating formats, merged oldest first.
        let parts: Vec<Bytes> = wlogs
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let one = std::slice::from_ref(w);
                if i % 2 == 0 { sorted_wdiff(one, codec(seed + i as u64)) } else { indexed_wdiff(one, codec(seed + i as u64)) }
            })
            .collect();
        let streams = |parts: &[Bytes]| -> Vec<RecStream> {
            parts.iter().enumerate().map(|(i, b)| if i % 2 == 0 { sorted_recs(b) } else { indexed_recs(b) }).collect()
        };
        let mut merged = SortedWriter::new(Vec::new(), Uuid::default(), codec(seed + 2)).unwrap();
        for r in Merger::new(streams(&parts)) {
            merged.push(r.unwrap()).unwrap();
        }
        let merged = Bytes::from(merged.finish().unwrap());
        prop_assert!(redo(sorted_recs(&merged)) == want, "merged wdiff");

        // Applying the parts one after another gives the same image too.
        prop_assert!(redo(streams(&parts).into_iter().flatten()) == want, "wdiff chain");

        // Virtual full image over a zero base.
        let base = tempfile::NamedTempFile::new().unwrap();
        base.as_file().set_len(DEV_LB * LBS as u64).unwrap();
        let mut v = VirtualFull::new(
            Box::new(FileIo::open(base.path(), false).unwrap()),
            Box::new(Merger::new(streams(&parts))),
        ).unwrap();
        let mut got = vec![0u8; want.len()];
        let mut at = 0;
        loop {
            let n = v.read_next(&mut got[at..(at + 100_000).min(want.len())]).unwrap();
            if n == 0 { break; }
            at += n;
        }
        prop_assert!(got == want, "virtual full image");
    }
}
