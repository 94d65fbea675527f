//! Restore without any daemon (docs/repository.md, "Restore"): the nearest image's chunks
//! fetched in parallel and laid down in order, the chain of wdiffs from there merged over
//! them on the fly (`walb_core::virt::VirtualFull`), into any output.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use walb_core::atomic::Output;
use walb_core::meta::MetaDiff;
use walb_core::source::ReadSource;
use walb_core::virt::{BulkSource, VirtualFull};
use walb_core::wdiff::{Merger, RecStream, SortedReader};
use walb_core::Gid;

use crate::error::{Error, Result};
use crate::frame::{self, Kind};
use crate::index::Index;
use crate::layout;
use crate::list;
use crate::store::Repo;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub size: u64,
    pub chunks: u64,
    pub wdiffs: usize,
    /// Bytes fetched from the store.
    pub bytes_down: u64,
}

/// Restores `vol` at `gid` into `out` (committed at the end), `parallel` requests in flight;
/// wdiffs are fetched into `work` (a directory) first.
pub async fn restore(
    repo: &Repo,
    vol: &str,
    gid: Gid,
    out: Output,
    work: &Path,
    parallel: usize,
) -> Result<Report> {
    let (ix, chain) = list::plan(repo, vol, gid).await?;
    restore_image(repo, vol, ix, &chain, out, work, parallel).await
}

/// Writes image `ix` with `chain` laid over it into `out` (committed at the end).
pub async fn restore_image(
    repo: &Repo,
    vol: &str,
    ix: Index,
    chain: &[MetaDiff],
    out: Output,
    work: &Path,
    parallel: usize,
) -> Result<Report> {
    let down = Arc::new(AtomicU64::new(0));
    let files = fetch_wdiffs(repo, vol, chain, work, parallel, &down).await?;
    let ix = Arc::new(ix);
    let parallel = parallel.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(parallel);
    let fetcher = {
        let (repo, ix, down) = (repo.clone(), ix.clone(), down.clone());
        async move {
            let mut s = futures::stream::iter(0..ix.chunks.len())
                .map(|i| fetch_chunk(&repo, &ix, i, &down))
                .buffered(parallel);
            while let Some(c) = s.next().await {
                let failed = c.is_err();
                // The writer gone means it failed; it reports why.
                if tx.send(c).await.is_err() || failed {
                    break;
                }
            }
        }
    };
    let size = ix.size;
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let recs = open_chain(&files)?;
        let src = ChunkSource {
            rx,
            size,
            cur: Bytes::new(),
        };
        let mut vf = VirtualFull::over(Box::new(src), recs);
        let mut out = out;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = vf.read_next(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| Error::io("write the output", e))?;
            done += n as u64;
        }
        if done != size {
            return Err(Error::Invalid(format!(
                "restored {done} bytes of an image of {size}"
            )));
        }
        out.commit()?;
        Ok(())
    });
    let (_, w) = tokio::join!(fetcher, writer);
    w.map_err(|e| Error::Invalid(format!("restore writer: {e}")))??;
    Ok(Report {
        size,
        chunks: ix.chunks.len() as u64,
        wdiffs: chain.len(),
        bytes_down: down.load(Ordering::Relaxed),
    })
}

/// Chunk `i` of the image, verified against its name (an all-zero chunk is not fetched).
async fn fetch_chunk(repo: &Repo, ix: &Index, i: usize, down: &AtomicU64) -> Result<Bytes> {
    let len = ix.chunk_len(i);
    let Some(h) = ix.chunks[i] else {
        return Ok(Bytes::from(vec![0u8; len]));
    };
    let key = layout::chunk(&h);
    let obj = repo.get(&key).await.map_err(|e| match e {
        Error::NotFound(_) => Error::corrupt(&key, "referenced by an index but missing"),
        e => e,
    })?;
    down.fetch_add(obj.len() as u64, Ordering::Relaxed);
    let k = key.to_string();
    let (_, raw) = tokio::task::spawn_blocking(move || frame::decode(&k, &obj, Kind::Chunk))
        .await
        .map_err(|e| Error::Invalid(format!("decode task: {e}")))??;
    if raw.len() != len {
        return Err(Error::corrupt(
            &key,
            format!("{} bytes where chunk {i} of the index has {len}", raw.len()),
        ));
    }
    Ok(raw)
}

/// Writes the wdiff file `d` of `vol`, as the archive held it, to `path` (created or
/// truncated), streaming, checked against its frame at the end; returns the bytes fetched.
pub async fn wdiff_to_file(repo: &Repo, vol: &str, d: &MetaDiff, path: &Path) -> Result<u64> {
    use tokio::io::AsyncWriteExt;
    let key = layout::wdiff(vol, d);
    let got = match repo.store.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::NotFound(format!("no object {key} in {}", repo.url)))
        }
        Err(e) => return Err(e.into()),
    };
    let len = got.meta.size;
    let io = |e| Error::io(format!("write {}", path.display()), e);
    let mut out = tokio::fs::File::create(path).await.map_err(io)?;
    let mut head = Vec::with_capacity(frame::HEADER);
    let mut h = blake3::Hasher::new();
    let mut s = got.into_stream();
    while let Some(b) = s.next().await {
        let mut b = b?;
        if head.len() < frame::HEADER {
            let n = (frame::HEADER - head.len()).min(b.len());
            head.extend_from_slice(&b.split_to(n));
        }
        h.update(&b);
        out.write_all(&b).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    let hd = frame::parse_header(key.as_ref(), &head, Kind::Wdiff, len)?;
    if h.finalize().as_bytes() != &hd.body_hash {
        return Err(Error::corrupt(&key, "body checksum mismatch"));
    }
    Ok(len)
}

/// The chain's wdiffs fetched into `work`, each checked against its frame, in chain order.
async fn fetch_wdiffs(
    repo: &Repo,
    vol: &str,
    chain: &[MetaDiff],
    work: &Path,
    parallel: usize,
    down: &AtomicU64,
) -> Result<Vec<std::path::PathBuf>> {
    futures::stream::iter(chain.iter().enumerate())
        .map(|(i, d)| async move {
            let path = work.join(format!("{i:06}.wdiff"));
            let n = wdiff_to_file(repo, vol, d, &path).await?;
            down.fetch_add(n, Ordering::Relaxed);
            Ok(path)
        })
        .buffered(parallel.max(1))
        .collect::<Vec<Result<_>>>()
        .await
        .into_iter()
        .collect()
}

/// The chain's records merged, newest wins.
fn open_chain(files: &[std::path::PathBuf]) -> Result<RecStream> {
    let mut streams: Vec<RecStream> = Vec::with_capacity(files.len());
    for p in files {
        let f = File::open(p).map_err(|e| Error::io(format!("open {}", p.display()), e))?;
        let (_, r) = SortedReader::open(Box::new(ReadSource::new(BufReader::with_capacity(
            256 << 10,
            f,
        ))))?;
        streams.push(Box::new(r));
    }
    Ok(Box::new(Merger::new(streams)))
}

/// The image's chunks in order, as they arrive from the fetcher.
struct ChunkSource {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes>>,
    size: u64,
    cur: Bytes,
}

impl BulkSource for ChunkSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_next(&mut self, buf: &mut [u8]) -> walb_core::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.cur.is_empty() {
                match self.rx.blocking_recv() {
                    Some(Ok(c)) => self.cur = c,
                    Some(Err(e)) => return Err(walb_core::Error::Invalid(e.to_string())),
                    // Every chunk delivered.
                    None => break,
                }
            }
            let k = (buf.len() - n).min(self.cur.len());
            buf[n..n + k].copy_from_slice(&self.cur[..k]);
            self.cur = self.cur.slice(k..);
            n += k;
        }
        Ok(n)
    }
}
