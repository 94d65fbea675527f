//! BLAKE3 hashing of an image per bulk (default 256 KiB), with reading overlapped with hashing.
//! The image digest is BLAKE3 over the size, the bulk size and every bulk's hash, so two images
//! are equal exactly when their digests are (for the same bulk size).

use std::sync::mpsc;

use crate::error::{Error, Result};
use crate::virt::BulkSource;

pub const DEFAULT_BULK: usize = 256 * 1024;
/// Bulks read per buffer handed to the hasher.
const BULKS_PER_READ: usize = 4;

pub struct BulkHashes {
    pub size: u64,
    pub bulk: usize,
    pub hashes: Vec<blake3::Hash>,
}

impl BulkHashes {
    pub fn digest(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        h.update(&self.size.to_le_bytes());
        h.update(&(self.bulk as u64).to_le_bytes());
        for b in &self.hashes {
            h.update(b.as_bytes());
        }
        h.finalize()
    }
}

/// Checks a bulk size: a multiple of 512 between 512 B and 4 MiB.
pub fn check_bulk(bulk: usize) -> Result<()> {
    if !(512..=4 << 20).contains(&bulk) || !bulk.is_multiple_of(512) {
        return Err(Error::Invalid(format!(
            "bulk size {bulk}: must be a multiple of 512 from 512 B to 4 MiB"
        )));
    }
    Ok(())
}

/// Hashes every bulk of `src`; a reader thread fills buffers while this thread hashes.
pub fn hash_bulks(src: Box<dyn BulkSource>, bulk: usize) -> Result<BulkHashes> {
    let mut hashes = Vec::with_capacity(src.size().div_ceil(bulk as u64) as usize);
    let size = each_bulk_hash(src, bulk, |h| {
        hashes.push(h);
        Ok(())
    })?;
    Ok(BulkHashes { size, bulk, hashes })
}

/// Hands the hash of every bulk of `src`, in order, to `f` as it is computed (a reader thread
/// fills buffers meanwhile); an error from `f` stops the scan. Returns the image size.
pub fn each_bulk_hash(
    mut src: Box<dyn BulkSource>,
    bulk: usize,
    mut f: impl FnMut(blake3::Hash) -> Result<()>,
) -> Result<u64> {
    check_bulk(bulk)?;
    let size = src.size();
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(2);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..3 {
        empty_tx
            .send(vec![0u8; bulk * BULKS_PER_READ])
            .expect("receiver alive");
    }
    let reader = std::thread::spawn(move || -> Result<()> {
        while let Ok(mut buf) = empty_rx.recv() {
            let n = src.read_next(&mut buf)?;
            if n == 0 || full_tx.send((buf, n)).is_err() {
                break;
            }
        }
        Ok(())
    });
    let mut r = Ok(());
    'scan: for (buf, n) in full_rx.iter() {
        for chunk in buf[..n].chunks(bulk) {
            r = f(blake3::hash(chunk));
            if r.is_err() {
                break 'scan;
            }
        }
        // The reader may be done already; buffers still queued must be hashed regardless.
        let _ = empty_tx.send(buf);
    }
    // Dropping the channels ends a reader that is still waiting on either.
    drop(empty_tx);
    drop(full_rx);
    let read = reader
        .join()
        .map_err(|_| Error::Invalid("image reader thread panicked".into()))?;
    r?;
    read?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::BulkSource;

    struct Mem(Vec<u8>, usize);
    impl BulkSource for Mem {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_next(&mut self, buf: &mut [u8]) -> Result<usize> {
            let n = buf.len().min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn every_bulk_is_hashed_in_order() {
        let data: Vec<u8> = (0..(5 << 20) + 1536).map(|i| (i % 251) as u8).collect();
        for _ in 0..50 {
            let h = hash_bulks(Box::new(Mem(data.clone(), 0)), 64 * 1024).unwrap();
            let want: Vec<_> = data.chunks(64 * 1024).map(blake3::hash).collect();
            assert_eq!(h.hashes, want);
        }
    }
}
