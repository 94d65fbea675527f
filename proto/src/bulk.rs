//! Bulks of a full sync (a full backup, a full replication) on the wire: a bulk is sent empty
//! when all zero, else encoded by the chosen compression (`--bulk-cmpr none|lz4|zstd:N`) and
//! raw when that does not make it smaller (random data costs no decompression then), with a
//! crc32 of what travels. Encoding runs on several threads in order (`encode_ordered`), so a
//! full sync is bound by the disk or the link rather than by one core.

use std::str::FromStr;
use std::sync::mpsc;

use bytes::Bytes;

use crate::{Bulk, BulkCodec};

/// The compression a sender applies to bulks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkCmpr {
    None,
    Lz4,
    /// zstd at this level (1 to 19).
    Zstd(i32),
}

impl Default for BulkCmpr {
    fn default() -> Self {
        BulkCmpr::Zstd(1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("bulk compression {0:?}: none, lz4 or zstd:LEVEL (1 to 19)")]
    Choice(String),
    #[error("bulk at LB {lba}: crc32 {got:#010x}, expected {want:#010x}")]
    Crc { lba: u64, got: u32, want: u32 },
    #[error("bulk at LB {lba}: {what}")]
    Decode { lba: u64, what: String },
}

impl FromStr for BulkCmpr {
    type Err = BulkError;

    fn from_str(s: &str) -> Result<Self, BulkError> {
        let bad = || BulkError::Choice(s.to_string());
        match s {
            "none" => Ok(BulkCmpr::None),
            "lz4" => Ok(BulkCmpr::Lz4),
            "zstd" => Ok(BulkCmpr::Zstd(1)),
            _ => {
                let level = s.strip_prefix("zstd:").ok_or_else(bad)?;
                let level: i32 = level.parse().map_err(|_| bad())?;
                if !(1..=19).contains(&level) {
                    return Err(bad());
                }
                Ok(BulkCmpr::Zstd(level))
            }
        }
    }
}

impl std::fmt::Display for BulkCmpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BulkCmpr::None => write!(f, "none"),
            BulkCmpr::Lz4 => write!(f, "lz4"),
            BulkCmpr::Zstd(l) => write!(f, "zstd:{l}"),
        }
    }
}

/// The bulk of `data` (whole logical blocks) at `lba`. Raw data travels as the same bytes
/// (no copy); a compression that would not make it smaller is given up as soon as its output
/// reaches the input's size, and after such a bulk the thread sends the next ones raw without
/// trying for a while (`Backoff`).
pub fn encode(lba: u64, data: Bytes, cmpr: BulkCmpr) -> Bulk {
    let blocks = (data.len() / 512) as u32;
    let (codec, out) = if data.iter().all(|&b| b == 0) {
        (BulkCodec::BulkRaw, Bytes::new())
    } else if cmpr == BulkCmpr::None || Backoff::skip() {
        (BulkCodec::BulkRaw, data)
    } else {
        let packed = packed(&data, cmpr);
        Backoff::tried(packed.is_some());
        packed.unwrap_or((BulkCodec::BulkRaw, data))
    };
    Bulk {
        lba,
        blocks,
        crc32: crc32fast::hash(&out),
        data: out,
        codec: codec as i32,
    }
}

/// `data` compressed by `cmpr` when that makes it smaller.
fn packed(data: &[u8], cmpr: BulkCmpr) -> Option<(BulkCodec, Bytes)> {
    match cmpr {
        BulkCmpr::None => None,
        BulkCmpr::Lz4 => Some(lz4_flex::compress(data))
            .filter(|p| p.len() < data.len())
            .map(|p| (BulkCodec::BulkLz4, Bytes::from(p))),
        BulkCmpr::Zstd(level) => zstd_smaller(data, level).map(|p| (BulkCodec::BulkZstd, p)),
    }
}

/// Bulks a thread sends raw without trying to compress them after one that did not compress,
/// at most: random data (encrypted or already compressed) then costs one attempt in this many
/// bulks rather than one per bulk.
const MAX_SKIP: u32 = 16;

/// Each encoding thread's back-off from data that does not compress: after a failed attempt it
/// skips the next `n` bulks, `n` doubling (1, 2, 4, … `MAX_SKIP`) while attempts keep failing;
/// one that compresses starts over.
#[derive(Clone, Copy)]
struct Backoff {
    /// Bulks still to skip.
    left: u32,
    /// Bulks to skip after the next failed attempt.
    next: u32,
}

thread_local! {
    static BACKOFF: std::cell::Cell<Backoff> = const { std::cell::Cell::new(Backoff::START) };
}

impl Backoff {
    /// Nothing to skip; the next failed attempt skips one bulk.
    const START: Backoff = Backoff { left: 0, next: 1 };

    /// Whether this bulk goes raw without an attempt.
    fn skip() -> bool {
        BACKOFF.with(|c| {
            let mut b = c.get();
            let skip = b.left > 0;
            b.left = b.left.saturating_sub(1);
            c.set(b);
            skip
        })
    }

    /// The outcome of an attempt.
    fn tried(compressed: bool) {
        BACKOFF.with(|c| {
            c.set(if compressed {
                Backoff::START
            } else {
                let b = c.get();
                Backoff {
                    left: b.next,
                    next: (b.next * 2).min(MAX_SKIP),
                }
            })
        });
    }
}

thread_local! {
    /// Each encoding thread's zstd context and output buffer, made once rather than per bulk
    /// (a context and a buffer of a bulk's size are hundreds of KiB: fresh ones cost page
    /// faults and zeroing every time).
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// Each decoding thread's zstd context (None if it could not be made: one per bulk then).
    static UNZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// `data` compressed by zstd at `level` when that is smaller than `data`.
fn zstd_smaller(data: &[u8], level: i32) -> Option<Bytes> {
    ZSTD.with(|z| {
        let mut z = z.borrow_mut();
        if z.as_ref().is_none_or(|(l, _, _)| *l != level) {
            *z = Some((level, zstd::bulk::Compressor::new(level).ok()?, Vec::new()));
        }
        let (_, c, out) = z.as_mut().expect("set above");
        out.clear();
        out.reserve_exact(data.len().saturating_sub(1));
        // An output that does not fit in fewer bytes than the input fails: the bulk goes raw.
        let n = c.compress_to_buffer(data, out).ok()?;
        (n < data.len()).then(|| Bytes::copy_from_slice(&out[..n]))
    })
}

/// The bytes of bulk `b` (`blocks` × 512), or None when it is all zero; the crc32, the codec
/// and the decoded length are checked.
pub fn decode(b: &Bulk) -> Result<Option<Bytes>, BulkError> {
    let got = crc32fast::hash(&b.data);
    if got != b.crc32 {
        return Err(BulkError::Crc {
            lba: b.lba,
            got,
            want: b.crc32,
        });
    }
    if b.data.is_empty() {
        return Ok(None);
    }
    let len = b.blocks as usize * 512;
    let err = |what: String| BulkError::Decode { lba: b.lba, what };
    let data = match BulkCodec::try_from(b.codec) {
        Ok(BulkCodec::BulkRaw) => b.data.clone(),
        Ok(BulkCodec::BulkZstd) => Bytes::from(
            UNZSTD
                .with(|d| match &mut *d.borrow_mut() {
                    Some(d) => d.decompress(&b.data, len),
                    None => zstd::bulk::decompress(&b.data, len),
                })
                .map_err(|e| err(format!("zstd: {e}")))?,
        ),
        Ok(BulkCodec::BulkLz4) => {
            Bytes::from(lz4_flex::decompress(&b.data, len).map_err(|e| err(format!("lz4: {e}")))?)
        }
        Err(_) => return Err(err(format!("unknown codec {}", b.codec))),
    };
    if data.len() != len {
        return Err(err(format!(
            "{} bytes after decoding, expected {len}",
            data.len()
        )));
    }
    Ok(Some(data))
}

/// Encodes `input` (LB address and bytes of each bulk, in order) on `workers` threads and
/// hands the bulks to `out` in the input's order; an input error is handed on in its place
/// and ends the run, as does `out` returning false. Memory stays bounded: each worker holds
/// at most two bulks in and two out.
pub fn encode_ordered<E: Send + 'static>(
    input: impl Iterator<Item = Result<(u64, Bytes), E>>,
    cmpr: BulkCmpr,
    workers: usize,
    mut out: impl FnMut(Result<Bulk, E>) -> bool,
) {
    let workers = workers.max(1);
    std::thread::scope(|s| {
        let mut lanes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (itx, irx) = mpsc::sync_channel::<(u64, Bytes)>(2);
            let (otx, orx) = mpsc::sync_channel::<Bulk>(2);
            s.spawn(move || {
                for (lba, data) in irx {
                    if otx.send(encode(lba, data, cmpr)).is_err() {
                        return;
                    }
                }
            });
            lanes.push((itx, orx));
        }
        // Round robin in, round robin out: the order is kept without a reorder buffer.
        let (mut sent, mut taken) = (0usize, 0usize);
        let mut input = input.fuse();
        let mut failed = None;
        loop {
            while failed.is_none() && sent - taken < 2 * workers {
                match input.next() {
                    Some(Ok(b)) => {
                        lanes[sent % workers].0.send(b).expect("worker alive");
                        sent += 1;
                    }
                    Some(Err(e)) => failed = Some(e),
                    None => break,
                }
            }
            if taken == sent {
                if let Some(e) = failed {
                    out(Err(e));
                }
                break;
            }
            let r = lanes[taken % workers].1.recv().expect("worker alive");
            taken += 1;
            if !out(Ok(r)) {
                break;
            }
        }
        // Dropping the channels ends the workers; a bulk not taken is dropped with them.
        drop(lanes);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8], cmpr: BulkCmpr) -> Bulk {
        let b = encode(8, Bytes::copy_from_slice(data), cmpr);
        let back = decode(&b).unwrap();
        match back {
            None => assert!(data.iter().all(|&x| x == 0)),
            Some(d) => assert_eq!(&d[..], data),
        }
        b
    }

    fn text() -> Vec<u8> {
        (0..65536u32).map(|i| (i % 7) as u8).collect()
    }

    /// xorshift64: bytes no codec can shrink.
    fn random() -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_random_data_travels_raw() {
        for c in [BulkCmpr::None, BulkCmpr::Lz4, BulkCmpr::Zstd(3)] {
            // A thread each: the back-off after random data is the thread's.
            std::thread::spawn(move || {
                assert!(roundtrip(&[0u8; 4096], c).data.is_empty());
                let b = roundtrip(&text(), c);
                assert_eq!(b.codec == BulkCodec::BulkRaw as i32, c == BulkCmpr::None);
                assert_eq!(roundtrip(&random(), c).codec, BulkCodec::BulkRaw as i32);
            })
            .join()
            .unwrap();
        }
    }

    #[test]
    fn incompressible_bulks_back_off_and_a_compressible_one_starts_over() {
        let (text, random) = (text(), random());
        let raw = BulkCodec::BulkRaw as i32;
        let codecs = |seq: &[&[u8]]| -> Vec<bool> {
            let c = BulkCmpr::Zstd(1);
            seq.iter().map(|d| roundtrip(d, c).codec != raw).collect()
        };
        // A failed attempt skips the next bulk; one that compresses starts over.
        assert_eq!(
            codecs(&[&random, &text, &text, &text]),
            [false, false, true, true]
        );
        // Failures in a row skip 1, then 2 bulks; all-zero bulks do not count.
        let zero = [0u8; 4096];
        assert_eq!(
            codecs(&[&random, &random, &random, &zero, &text, &text, &text]),
            [false, false, false, false, false, false, true]
        );
    }

    #[test]
    fn damage_and_bad_choices_are_named() {
        let mut b = encode(16, Bytes::from(vec![1u8; 4096]), BulkCmpr::Zstd(1));
        b.crc32 ^= 1;
        assert!(matches!(decode(&b), Err(BulkError::Crc { lba: 16, .. })));
        let mut b = encode(16, Bytes::from(vec![1u8; 4096]), BulkCmpr::Zstd(1));
        b.blocks = 9;
        assert!(decode(&b).is_err());
        for bad in ["zstd:0", "zstd:x", "gzip", "zstd:20"] {
            assert!(bad.parse::<BulkCmpr>().is_err(), "{bad}");
        }
        assert_eq!("zstd:5".parse::<BulkCmpr>().unwrap(), BulkCmpr::Zstd(5));
        assert_eq!(BulkCmpr::Lz4.to_string(), "lz4");
    }

    #[test]
    fn ordered_on_many_workers_and_errors_in_place() {
        let input = (0..100u64).map(|i| Ok::<_, String>((i, Bytes::from(vec![i as u8 + 1; 512]))));
        let mut got = Vec::new();
        encode_ordered(input, BulkCmpr::Lz4, 3, |b| {
            got.push(b.unwrap().lba);
            true
        });
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        let input = (0..10u64).map(|i| {
            if i == 7 {
                Err("read failed".to_string())
            } else {
                Ok((i, Bytes::from(vec![1u8; 512])))
            }
        });
        let mut got = Vec::new();
        encode_ordered(input, BulkCmpr::None, 4, |b| {
            got.push(b.map(|b| b.lba).map_err(|e| format!("{e:?}")));
            true
        });
        assert_eq!(got.len(), 8);
        assert!(got[7].as_ref().unwrap_err().contains("read failed"));
        // A consumer that stops early ends the run.
        let input = (0..1000u64).map(|i| Ok::<_, String>((i, Bytes::from(vec![1u8; 512]))));
        let mut n = 0;
        encode_ordered(input, BulkCmpr::None, 2, |_| {
            n += 1;
            n < 5
        });
        assert_eq!(n, 5);
    }
}
