//! Format and algorithm throughput, each next to the limit it is judged against (same buffer,
//! same machine): walb checksum vs crc32fast and memcpy; bulk hashing vs blake3 alone.
//! Criterion prints MB/s (Throughput::Bytes) for every line of a group.

use std::hint::black_box;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::RngCore;
use walb_core::apply::{Applier, DiscardMode};
use walb_core::bhash::{hash_bulks, DEFAULT_BULK};
use walb_core::blockio::{FileIo, UringIo};
use walb_core::checksum::checksum;
use walb_core::convert::wlog_records;
use walb_core::source::BytesSource;
use walb_core::virt::{BulkSource, ImageSource, VirtualFull};
use walb_core::wdiff::{
    Body, Cmpr, Codec, DiffMemory, Merger, RecStream, SortedReader, SortedWriter,
};
use walb_core::wlog::{GenConfig, Generator, WlogHeader, WlogReader, WlogWriter};
use walb_core::{Pbs, Uuid};

fn random_buf(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn bench_checksum(c: &mut Criterion) {
    let buf = random_buf(1 << 20);
    let mut g = c.benchmark_group("checksum_1MiB");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("walb_checksum", |b| b.iter(|| checksum(black_box(&buf), 7)));
    g.bench_function("limit_crc32fast", |b| {
        b.iter(|| crc32fast::hash(black_box(&buf)))
    });
    let mut dst = vec![0u8; buf.len()];
    g.bench_function("limit_memcpy", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&buf)))
    });
    g.finish();
}

/// An image held in memory, so the bench measures hashing, not the disk.
struct MemImage {
    data: std::sync::Arc<Vec<u8>>,
    pos: usize,
}

impl BulkSource for MemImage {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_next(&mut self, buf: &mut [u8]) -> walb_core::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn bench_bhash(c: &mut Criterion) {
    let data = std::sync::Arc::new(random_buf(64 << 20));
    let mut g = c.benchmark_group("bhash_64MiB_bulk256KiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("walb_bhash", |b| {
        b.iter(|| {
            let src = MemImage {
                data: data.clone(),
                pos: 0,
            };
            hash_bulks(Box::new(src), DEFAULT_BULK).unwrap()
        })
    });
    g.bench_function("limit_blake3_per_bulk", |b| {
        b.iter(|| {
            data.chunks(DEFAULT_BULK)
                .map(blake3::hash)
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

/// A 64 MiB wlog of compressible writes (up to 256 KiB each) over a 1 GiB device.
fn bench_wlog(seed: u64) -> Bytes {
    let mut c = GenConfig::new(1 << 21, 64 << 20, Pbs::B4096, seed);
    c.max_io_lb = 512;
    c.salt = 9;
    let h = WlogHeader {
        salt: c.salt,
        pbs: c.pbs,
        uuid: Uuid([1; 16]),
        begin_lsid: 0,
        end_lsid: u64::MAX,
    };
    let mut w = WlogWriter::new(Vec::new(), h).unwrap();
    for (h, d) in Generator::new(c) {
        w.write_pack(&h, &d).unwrap();
    }
    Bytes::from(w.finish().unwrap())
}

/// Converts into `out` (reused, so the bench measures conversion, not page faults).
fn to_sorted_into(wlog: &Bytes, cmpr: Cmpr, out: &mut Vec<u8>) {
    let mut mem = DiffMemory::new();
    let r = WlogReader::new(Box::new(BytesSource::new(wlog.clone()))).unwrap();
    wlog_records(vec![r], |rec| {
        mem.insert(rec);
        Ok(())
    })
    .unwrap();
    out.clear();
    let mut w = SortedWriter::new(out, Uuid([1; 16]), cmpr).unwrap();
    for rec in mem.into_sorted() {
        w.push(rec).unwrap();
    }
    w.finish().unwrap();
}

fn to_sorted(wlog: &Bytes, cmpr: Cmpr) -> Vec<u8> {
    let mut out = Vec::new();
    to_sorted_into(wlog, cmpr, &mut out);
    out
}

/// The record data of a wlog, concatenated: what a codec alone would compress.
fn record_data(wlog: &Bytes) -> Vec<Bytes> {
    let r = WlogReader::new(Box::new(BytesSource::new(wlog.clone()))).unwrap();
    let mut out = Vec::new();
    wlog_records(vec![r], |rec| {
        if let Body::Data(d) = rec.body {
            out.push(d);
        }
        Ok(())
    })
    .unwrap();
    out
}

fn bench_convert(c: &mut Criterion) {
    let wlog = bench_wlog(1);
    let data = record_data(&wlog);
    let data_len: usize = data.iter().map(|d| d.len()).sum();
    for (name, cmpr) in [
        ("none", Cmpr::NONE),
        ("snappy", Cmpr::new(Codec::Snappy, 0)),
        ("lz4", Cmpr::new(Codec::Lz4, 0)),
        ("zstd1", Cmpr::new(Codec::Zstd, 1)),
    ] {
        let mut g = c.benchmark_group(format!("wlog_to_wdiff_{name}"));
        g.sample_size(10);
        g.throughput(Throughput::Bytes(wlog.len() as u64));
        let mut out = to_sorted(&wlog, cmpr);
        g.bench_function("walb_convert", |b| {
            b.iter(|| to_sorted_into(&wlog, cmpr, &mut out))
        });
        if cmpr.codec != Codec::None {
            g.throughput(Throughput::Bytes(data_len as u64));
            g.bench_function("limit_codec_alone", |b| {
                b.iter(|| {
                    data.iter()
                        .map(|d| cmpr.compress(d).unwrap().map_or(0, |z| z.len()))
                        .sum::<usize>()
                })
            });
        }
        g.finish();
    }
}

fn bench_merge(c: &mut Criterion) {
    // Four wdiffs of 64 MiB of log each, merged oldest first.
    let inputs: Vec<Bytes> = (0..4u64)
        .map(|i| Bytes::from(to_sorted(&bench_wlog(10 + i), Cmpr::NONE)))
        .collect();
    let total: usize = inputs.iter().map(|b| b.len()).sum();
    let mut g = c.benchmark_group("merge_4x_none");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total as u64));
    // Pre-faulted, reused output: the bench measures merging, not page faults.
    let mut out = vec![0u8; total];
    g.bench_function("walb_merge", |b| {
        b.iter(|| {
            out.clear();
            let streams: Vec<RecStream> = inputs
                .iter()
                .map(|b| -> RecStream {
                    Box::new(
                        SortedReader::open(Box::new(BytesSource::new(b.clone())))
                            .unwrap()
                            .1,
                    )
                })
                .collect();
            let mut w = SortedWriter::new(&mut out, Uuid([1; 16]), Cmpr::NONE).unwrap();
            for r in Merger::new(streams) {
                w.push(r.unwrap()).unwrap();
            }
            w.finish().unwrap();
        })
    });
    let mut dst = vec![0u8; total];
    g.bench_function("limit_memcpy", |b| {
        b.iter(|| {
            let mut at = 0;
            for i in &inputs {
                dst[at..at + i.len()].copy_from_slice(i);
                at += i.len();
            }
        })
    });
    g.finish();
}

fn bench_redo_and_virt(c: &mut Criterion) {
    let wlog = bench_wlog(1);
    let wdiff = Bytes::from(to_sorted(&wlog, Cmpr::NONE));
    let dev = 1u64 << 30;
    let img = tempfile::NamedTempFile::new_in(".").unwrap();
    img.as_file().set_len(dev).unwrap();
    let recs = || {
        SortedReader::open(Box::new(BytesSource::new(wdiff.clone())))
            .unwrap()
            .1
    };
    let data_bytes: u64 = recs()
        .map(|r| r.unwrap())
        .filter(|r| matches!(r.body, Body::Data(_)))
        .map(|r| r.blocks as u64 * 512)
        .sum();
    let mut g = c.benchmark_group("wdiff_redo_file");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data_bytes));
    g.bench_function("walb_redo_uring", |b| {
        b.iter(|| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .open(img.path())
                .unwrap();
            let mut io = UringIo::new(f, 64);
            let mut ap = Applier::new(&mut io, DiscardMode::Ignore).unwrap();
            for r in recs() {
                ap.apply(&r.unwrap()).unwrap();
            }
            ap.finish().unwrap()
        })
    });
    let chunk = vec![7u8; 1 << 20];
    g.bench_function("limit_sequential_pwrite", |b| {
        b.iter(|| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(img.path())
                .unwrap();
            let mut off = 0;
            while off < data_bytes {
                f.write_all_at(&chunk, off).unwrap();
                off += chunk.len() as u64;
            }
            f.sync_data().unwrap();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("virtual_full_read_1GiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(dev));
    let mut buf = vec![0u8; 4 << 20];
    g.bench_function("walb_virt_full", |b| {
        b.iter(|| {
            let base = FileIo::open(img.path(), false).unwrap();
            let mut v = VirtualFull::new(Box::new(base), Box::new(recs())).unwrap();
            while v.read_next(&mut buf).unwrap() > 0 {}
        })
    });
    g.bench_function("limit_plain_read", |b| {
        b.iter(|| {
            let mut src =
                ImageSource::new(Box::new(FileIo::open(img.path(), false).unwrap())).unwrap();
            while src.read_next(&mut buf).unwrap() > 0 {}
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_checksum,
    bench_bhash,
    bench_convert,
    bench_merge,
    bench_redo_and_virt
);
criterion_main!(benches);
