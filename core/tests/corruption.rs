//! Corrupt and truncated inputs: every flipped byte and every cut either fails with an error or
//! (where the byte is not part of the content, like index padding) reads back the same records.
//! Never a panic, never different data.

use bytes::Bytes;
use walb_core::source::BytesSource;
use walb_core::wdiff::{
    Body, Cmpr, Codec, DiffRec, IndexedReader, IndexedWriter, SortedReader, SortedWriter,
};
use walb_core::{Result, Uuid};

fn recs() -> Vec<DiffRec> {
    let mut v = Vec::new();
    let mut addr = 0;
    for i in 0..40u64 {
        let blocks = 1 + (i * 7 % 19) as u32;
        let body = match i % 5 {
            3 => Body::AllZero,
            4 => Body::Discard,
            _ => Body::Data(Bytes::from(
                (0..blocks as usize * 512)
                    .map(|j| {
                        if i % 2 == 0 {
                            (j / 64) as u8 ^ i as u8
                        } else {
                            (j * 31 + i as usize) as u8
                        }
                    })
                    .collect::<Vec<u8>>(),
            )),
        };
        v.push(DiffRec { addr, blocks, body });
        addr += blocks as u64 + i % 3;
    }
    v
}

fn sorted(cmpr: Cmpr) -> Vec<u8> {
    let mut w = SortedWriter::new(Vec::new(), Uuid([3; 16]), cmpr).unwrap();
    for r in recs() {
        w.push(r).unwrap();
    }
    w.finish().unwrap()
}

fn indexed(cmpr: Cmpr) -> Vec<u8> {
    let mut w = IndexedWriter::new(Vec::new(), Uuid([3; 16]), cmpr).unwrap();
    for r in recs() {
        w.add(r).unwrap();
    }
    // A newer write over older ones, so some images are only partly referenced.
    w.add(DiffRec {
        addr: 5,
        blocks: 30,
        body: Body::AllZero,
    })
    .unwrap();
    w.finish().unwrap()
}

fn read_sorted(b: Vec<u8>) -> Result<Vec<DiffRec>> {
    let (_, r) = SortedReader::open(Box::new(BytesSource::new(Bytes::from(b))))?;
    r.collect()
}

fn read_indexed(b: Vec<u8>) -> Result<Vec<DiffRec>> {
    IndexedReader::new(Bytes::from(b))?.collect()
}

fn flips_and_cuts(good: Vec<u8>, read: fn(Vec<u8>) -> Result<Vec<DiffRec>>, what: &str) {
    let want = read(good.clone()).unwrap();
    let mut caught = 0;
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        match read(bad) {
            Err(_) => caught += 1,
            Ok(got) => assert_eq!(got, want, "{what}: flipped byte {at} gave different data"),
        }
    }
    assert!(
        caught > good.len() / 2,
        "{what}: only {caught} flips caught"
    );
    for cut in 0..good.len() {
        assert!(
            read(good[..cut].to_vec()).is_err(),
            "{what}: cut at {cut} accepted"
        );
    }
}

#[test]
fn sorted_wdiff_corruption_is_always_caught() {
    for code in [0, 4, 5] {
        let cmpr = Cmpr::new(Codec::from_code(code).unwrap(), 0);
        flips_and_cuts(sorted(cmpr), read_sorted, "sorted");
    }
}

#[test]
fn indexed_wdiff_corruption_never_gives_wrong_data() {
    for code in [0, 2, 5] {
        let cmpr = Cmpr::new(Codec::from_code(code).unwrap(), 0);
        flips_and_cuts(indexed(cmpr), read_indexed, "indexed");
    }
}

#[test]
fn wrong_kind_and_garbage_are_named() {
    let e = read_indexed(sorted(Cmpr::NONE)).unwrap_err().to_string();
    assert!(e.contains("sorted wdiff where an indexed"), "{e}");
    let e = read_sorted(vec![0x55; 100]).unwrap_err().to_string();
    assert!(e.contains("wdiff file header"), "{e}");
}
