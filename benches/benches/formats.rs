//! Format and algorithm throughput, each next to the limit it is judged against (same buffer,
//! same machine): walb checksum vs crc32fast and memcpy; bulk hashing vs blake3 alone.
//! Criterion prints MB/s (Throughput::Bytes) for every line of a group.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::RngCore;
use walb_core::bhash::{hash_bulks, DEFAULT_BULK};
use walb_core::checksum::checksum;
use walb_core::virt::BulkSource;

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

criterion_group!(benches, bench_checksum, bench_bhash);
criterion_main!(benches);
