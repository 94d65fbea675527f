//! The diff of an image against another image's bulk hashes (hash backup, hash replication):
//! each bulk whose BLAKE3 differs becomes a record (all-zero bulks as ALLZERO records).

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::types::LBS;
use crate::virt::BulkSource;
use crate::wdiff::cmpr::Cmpr;
use crate::wdiff::rec::{Body, DiffRec};
use crate::wdiff::sorted::{EncodedPack, Packer};

/// Data bytes per pack of a compared diff: the comparison hands each pack to the sender as
/// soon as it fills, so the link starts and stays busy (a pack of `sorted::MAX_PACK_DATA`
/// would hold back 32 MiB of differing bulks at a time).
pub const STREAM_PACK_DATA: u64 = 4 << 20;

/// One bulk of an image: where it is and its bytes.
pub struct ImageBulk {
    pub lba: u64,
    pub blocks: u32,
    pub data: Bytes,
}

/// The bulks of `src` in order from LB 0, `bulk_lb` LB each (the last one may be shorter).
pub fn bulks_of(mut src: impl BulkSource, bulk_lb: u32) -> impl Iterator<Item = Result<ImageBulk>> {
    let mut lba = 0u64;
    std::iter::from_fn(move || {
        let mut buf = vec![0u8; bulk_lb as usize * LBS];
        match src.read_next(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                let b = ImageBulk {
                    lba,
                    blocks: (n / LBS) as u32,
                    data: Bytes::from(buf),
                };
                lba += b.blocks as u64;
                Some(Ok(b))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

/// Compares `bulks` (in order from LB 0) with `hashes`: batches of 32-byte BLAKE3 hashes of
/// the other image's bulks, each batch starting at bulk number `first`, in order. Each bulk
/// that differs becomes a record of sorted-wdiff packs compressed with `cmpr`, each pack going
/// to `emit` (the last one too). Hashes past the image's end are ignored. Returns the number
/// of bulks that differed.
pub fn diff_against_hashes(
    bulks: impl Iterator<Item = Result<ImageBulk>>,
    hashes: impl Iterator<Item = (u64, Bytes)>,
    cmpr: Cmpr,
    emit: &mut dyn FnMut(EncodedPack) -> Result<()>,
) -> Result<u64> {
    let mut packer = Packer::new(cmpr).with_max_data(STREAM_PACK_DATA);
    let changed = compare(bulks, hashes, &mut packer, emit)?;
    if let Some(p) = packer.take() {
        emit(p)?;
    }
    Ok(changed)
}

fn compare(
    bulks: impl Iterator<Item = Result<ImageBulk>>,
    hashes: impl Iterator<Item = (u64, Bytes)>,
    packer: &mut Packer,
    emit: &mut dyn FnMut(EncodedPack) -> Result<()>,
) -> Result<u64> {
    let mut bulks = bulks;
    let (mut next, mut changed) = (0u64, 0u64);
    for (first, hs) in hashes {
        if first != next || !hs.len().is_multiple_of(32) {
            return Err(Error::Invalid(format!(
                "hashes from bulk {first} ({} bytes), expected bulk {next}",
                hs.len()
            )));
        }
        next += hs.len() as u64 / 32;
        for h in hs.chunks_exact(32) {
            let Some(b) = bulks.next() else {
                return Ok(changed);
            };
            let b = b?;
            if blake3::hash(&b.data).as_bytes()[..] == *h {
                continue;
            }
            changed += 1;
            let body = if b.data.iter().all(|&x| x == 0) {
                Body::AllZero
            } else {
                Body::Data(b.data)
            };
            let rec = DiffRec {
                addr: b.lba,
                blocks: b.blocks,
                body,
            };
            packer.push(rec, emit)?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wdiff::cmpr::Codec;
    use crate::wdiff::sorted::parse_pack;

    fn bulks(img: &[u8], bulk: usize) -> impl Iterator<Item = Result<ImageBulk>> + '_ {
        img.chunks(bulk).enumerate().map(move |(i, c)| {
            Ok(ImageBulk {
                lba: (i * bulk / 512) as u64,
                blocks: (c.len() / 512) as u32,
                data: Bytes::copy_from_slice(c),
            })
        })
    }

    #[test]
    fn only_differing_bulks_become_records() {
        let bulk = 4096;
        let old: Vec<u8> = (0..64 * 1024).map(|i| (i % 253) as u8).collect();
        let mut new = old.clone();
        new[5000] ^= 1; // bulk 1
        new[40 * 1024..41 * 1024].fill(0); // bulk 10, partly
        new[60 * 1024..64 * 1024].fill(0); // bulk 15, all zero
        let hs: Vec<u8> = old
            .chunks(bulk)
            .flat_map(|c| blake3::hash(c).as_bytes().to_vec())
            .collect();
        // Two batches, as the archive sends them.
        let batches = vec![
            (0u64, Bytes::copy_from_slice(&hs[..8 * 32])),
            (8u64, Bytes::copy_from_slice(&hs[8 * 32..])),
        ];
        let none = Cmpr::new(Codec::None, 0);
        let mut packs = Vec::new();
        let n = diff_against_hashes(bulks(&new, bulk), batches.into_iter(), none, &mut |p| {
            packs.push(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 3);
        let recs: Vec<DiffRec> = packs
            .iter()
            .flat_map(|p| parse_pack(&Bytes::from(p.to_bytes())).unwrap().unwrap())
            .collect();
        let addrs: Vec<(u64, bool)> = recs
            .iter()
            .map(|r| (r.addr, matches!(r.body, Body::AllZero)))
            .collect();
        assert_eq!(addrs, [(8, false), (80, false), (120, true)]);
        let gap = vec![(9u64, Bytes::from(vec![0u8; 32]))];
        let e = diff_against_hashes(bulks(&new, bulk), gap.into_iter(), none, &mut |_| Ok(()));
        assert!(e.is_err());
    }

    #[test]
    fn packs_are_cut_for_streaming() {
        let bulk = 1 << 20;
        let old = vec![1u8; 12 * bulk];
        let new: Vec<u8> = (0..old.len()).map(|i| (i % 251) as u8).collect();
        let hs: Vec<u8> = old
            .chunks(bulk)
            .flat_map(|c| blake3::hash(c).as_bytes().to_vec())
            .collect();
        let none = Cmpr::new(Codec::None, 0);
        let mut sizes = Vec::new();
        let batches = vec![(0u64, Bytes::from(hs))];
        let n = diff_against_hashes(bulks(&new, bulk), batches.into_iter(), none, &mut |p| {
            sizes.push((p.len() - crate::wdiff::sorted::PACK_HEADER_SIZE) as u64);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 12);
        assert_eq!(sizes, [STREAM_PACK_DATA; 3]);
    }
}
