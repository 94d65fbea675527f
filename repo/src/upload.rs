//! Uploads (docs/repository.md, "Upload"): an image as content-addressed chunks, then its
//! index (written last, conditionally); a wdiff, verified first, then written conditionally.
//! An interrupted upload leaves no index or wdiff visible: only chunks, which a retry reuses
//! and gc sweeps when nothing refers to them.

use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::WriteMultipart;
use walb_core::meta::{MetaDiff, MetaState};
use walb_core::source::{BytesSource, ReadSource};
use walb_core::wdiff::SortedReader;

use crate::error::{Error, Result};
use crate::frame::{self, Codec, Kind};
use crate::index::Index;
use crate::layout;
use crate::rate::Rate;
use crate::store::{Put, Repo};

/// 1 MiB chunks: small enough that a rewritten tenth of a volume costs about a tenth,
/// large enough that a request moves a useful amount.
pub const DEFAULT_CHUNK: u32 = 1 << 20;

/// Counters of everything uploaded through one `Stats` (the archive's metrics read them).
#[derive(Default, Debug)]
pub struct Stats {
    /// Bytes written to the store (frames included).
    pub bytes_up: AtomicU64,
    /// Non-zero chunk bytes of the images uploaded (what a copy without dedup would hold).
    pub chunk_bytes: AtomicU64,
    /// Of those, the bytes of chunks that were new to the repository.
    pub chunk_bytes_new: AtomicU64,
}

impl Stats {
    /// Image bytes per byte of new chunks (1 without dedup; 0 before any upload).
    pub fn dedup_ratio(&self) -> f64 {
        let new = self.chunk_bytes_new.load(Ordering::Relaxed);
        if new == 0 {
            return 0.0;
        }
        self.chunk_bytes.load(Ordering::Relaxed) as f64 / new as f64
    }
}

pub struct Opts {
    /// Requests in flight (also bounds memory: about that many chunks).
    pub parallel: usize,
    pub chunk_size: u32,
    pub zstd_level: i32,
    pub rate: Arc<Rate>,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            parallel: 8,
            chunk_size: DEFAULT_CHUNK,
            zstd_level: 3,
            rate: Arc::new(Rate::unlimited()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageReport {
    pub chunks: u64,
    pub zero_chunks: u64,
    pub new_chunks: u64,
    /// Raw bytes of the new chunks.
    pub new_bytes: u64,
    /// Bytes written to the store.
    pub bytes_up: u64,
    /// False: the index was there already (another upload won); nothing changed.
    pub written: bool,
}

/// One chunk read from the image: its hash, or `None` when all zero.
type Piece = (Option<[u8; 32]>, Bytes);

/// Uploads the image file `image` whose state is `state` as volume `vol`'s image.
pub async fn upload_image(
    repo: &Repo,
    vol: &str,
    state: &MetaState,
    image: &Path,
    opts: &Opts,
    stats: &Stats,
) -> Result<ImageReport> {
    layout::check_vol(vol)?;
    if state.is_applying {
        return Err(Error::Invalid(format!(
            "volume {vol}: an image being applied ({}) is not uploaded",
            state.snap_b
        )));
    }
    let key = layout::index(vol, &state.snap_b);
    if repo.exists(&key).await? {
        return Ok(ImageReport::default());
    }
    // The marker tells gc that chunks not yet in any index are about to be (docs/repository.md,
    // "Garbage collection").
    let marker = layout::pending(vol, &state.snap_b);
    repo.put(&marker, Bytes::new()).await?;

    let f = File::open(image).map_err(|e| Error::io(format!("open {}", image.display()), e))?;
    let size = f
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", image.display()), e))?
        .len();
    let cs = opts.chunk_size as u64;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Piece>>(opts.parallel.max(1));
    let name = image.display().to_string();
    let reader = tokio::task::spawn_blocking(move || {
        let mut off = 0u64;
        while off < size {
            let n = (size - off).min(cs) as usize;
            let mut buf = vec![0u8; n];
            let r = f
                .read_exact_at(&mut buf, off)
                .map_err(|e| Error::io(format!("read {name} at {off}"), e))
                .map(|()| {
                    let h = (!buf.iter().all(|&b| b == 0)).then(|| *blake3::hash(&buf).as_bytes());
                    (h, Bytes::from(buf))
                });
            let failed = r.is_err();
            if tx.blocking_send(r).is_err() || failed {
                return;
            }
            off += n as u64;
        }
    });
    let report = std::sync::Mutex::new(ImageReport::default());
    let report_ref = &report;
    let chunks: Vec<Option<[u8; 32]>> = futures::stream::poll_fn(|cx| rx.poll_recv(cx))
        .map(|piece| async move {
            let (hash, data) = piece?;
            let Some(h) = hash else {
                report_ref.lock().expect("report").zero_chunks += 1;
                return Ok::<_, Error>(None);
            };
            stats
                .chunk_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            let key = layout::chunk(&h);
            if !repo.exists(&key).await? {
                let level = opts.zstd_level;
                let obj = tokio::task::spawn_blocking(move || {
                    frame::encode(Kind::Chunk, &data, Codec::Zstd, level).map(|o| (o, data.len()))
                })
                .await
                .map_err(|e| Error::Invalid(format!("compress task: {e}")))??;
                let (obj, raw) = obj;
                opts.rate.take(obj.len() as u64).await;
                let up = obj.len() as u64;
                repo.put(&key, obj).await?;
                stats.bytes_up.fetch_add(up, Ordering::Relaxed);
                stats
                    .chunk_bytes_new
                    .fetch_add(raw as u64, Ordering::Relaxed);
                let mut r = report_ref.lock().expect("report");
                r.new_chunks += 1;
                r.new_bytes += raw as u64;
                r.bytes_up += up;
            }
            Ok(Some(h))
        })
        .buffered(opts.parallel.max(1))
        .try_collect()
        .await?;
    reader
        .await
        .map_err(|e| Error::Invalid(format!("image reader: {e}")))?;
    if chunks.len() as u64 != size.div_ceil(cs) {
        return Err(Error::Invalid(format!(
            "{}: read {} chunks of {size} bytes",
            image.display(),
            chunks.len()
        )));
    }
    let mut report = report.into_inner().expect("report");
    report.chunks = chunks.len() as u64;
    let ix = Index {
        state: *state,
        size,
        chunk_size: opts.chunk_size,
        chunks,
    };
    let obj = ix.encode()?;
    let up = obj.len() as u64;
    report.written = repo.put_new(&key, obj).await? == Put::Written;
    if report.written {
        report.bytes_up += up;
        stats.bytes_up.fetch_add(up, Ordering::Relaxed);
    }
    repo.delete(&marker).await?;
    tracing::info!(
        %vol, image = %state.snap_b, chunks = report.chunks, new = report.new_chunks,
        zero = report.zero_chunks, bytes_up = report.bytes_up, "image uploaded"
    );
    Ok(report)
}

/// Uploads the sorted wdiff file `path` as `d` of volume `vol`, after reading every record
/// through its checksums. Returns the bytes written, or `None` when it was there already.
pub async fn upload_wdiff(
    repo: &Repo,
    vol: &str,
    d: &MetaDiff,
    path: &Path,
    rate: &Rate,
    stats: &Stats,
) -> Result<Option<u64>> {
    layout::check_vol(vol)?;
    let key = layout::wdiff(vol, d);
    if repo.exists(&key).await? {
        return Ok(None);
    }
    // One descriptor for every pass: the file may be renamed or removed meanwhile.
    let f = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let size = f
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    if size > STREAM_WDIFF {
        return stream_wdiff(repo, &key, f, size, path, rate, stats)
            .await
            .map(Some);
    }
    let p = path.to_path_buf();
    let obj = tokio::task::spawn_blocking(move || -> Result<Bytes> {
        let mut data = vec![0u8; size as usize];
        f.read_exact_at(&mut data, 0)
            .map_err(|e| Error::io(format!("read {}", p.display()), e))?;
        let data = Bytes::from(data);
        check_wdiff(&data).map_err(|e| e.in_file(&p))?;
        frame::encode(Kind::Wdiff, &data, Codec::None, 0)
    })
    .await
    .map_err(|e| Error::Invalid(format!("wdiff reader: {e}")))??;
    let up = obj.len() as u64;
    rate.take(up).await;
    match repo.put_new(&key, obj).await? {
        Put::Written => {
            stats.bytes_up.fetch_add(up, Ordering::Relaxed);
            tracing::debug!(%vol, wdiff = %key, bytes = up, "wdiff uploaded");
            Ok(Some(up))
        }
        Put::Existed => Ok(None),
    }
}

/// Wdiffs larger than this (a hash backup's, a long merge's) are streamed, not held in memory.
pub const STREAM_WDIFF: u64 = 32 << 20;

/// A large wdiff: read through its checksums, hashed, then sent in parts of a multipart
/// upload, which the store makes visible only when complete. Stores offer no conditional
/// multipart completion here: the volume's lease keeps other writers away.
async fn stream_wdiff(
    repo: &Repo,
    key: &object_store::path::Path,
    f: File,
    size: u64,
    path: &Path,
    rate: &Rate,
    stats: &Stats,
) -> Result<u64> {
    let f = Arc::new(f);
    let (g, p) = (f.clone(), path.to_path_buf());
    let hash = tokio::task::spawn_blocking(move || -> Result<[u8; 32]> {
        let file = |e| Error::io(format!("read {}", p.display()), e);
        let r = g.try_clone().map_err(file)?;
        let src = ReadSource::new(BufReader::with_capacity(1 << 20, r));
        let (_, recs) = SortedReader::open(Box::new(src)).map_err(|e| e.in_file(&p))?;
        for rec in recs {
            rec.map_err(|e| e.in_file(&p))?;
        }
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < size {
            let n = (size - off).min(buf.len() as u64) as usize;
            g.read_exact_at(&mut buf[..n], off).map_err(file)?;
            h.update(&buf[..n]);
            off += n as u64;
        }
        Ok(*h.finalize().as_bytes())
    })
    .await
    .map_err(|e| Error::Invalid(format!("wdiff reader: {e}")))??;
    let header = frame::Header {
        kind: Kind::Wdiff,
        codec: Codec::None,
        raw_len: size,
        body_len: size,
        raw_hash: hash,
        body_hash: hash,
    };
    const PART: u64 = 8 << 20;
    let mut w =
        WriteMultipart::new_with_chunk_size(repo.store.put_multipart(key).await?, PART as usize);
    w.put(Bytes::copy_from_slice(&header.to_bytes()));
    let mut off = 0u64;
    let sent: Result<()> = async {
        while off < size {
            let n = (size - off).min(PART);
            let (g, at) = (f.clone(), off);
            let buf = tokio::task::spawn_blocking(move || {
                let mut b = vec![0u8; n as usize];
                g.read_exact_at(&mut b, at).map(|()| b)
            })
            .await
            .map_err(|e| Error::Invalid(format!("wdiff reader: {e}")))?
            .map_err(|e| Error::io(format!("read {} at {off}", path.display()), e))?;
            rate.take(n).await;
            w.wait_for_capacity(4).await?;
            w.put(Bytes::from(buf));
            off += n;
        }
        Ok(())
    }
    .await;
    if let Err(e) = sent {
        let _ = w.abort().await;
        return Err(e);
    }
    w.finish().await?;
    let up = size + frame::HEADER as u64;
    stats.bytes_up.fetch_add(up, Ordering::Relaxed);
    tracing::debug!(wdiff = %key, bytes = up, "wdiff uploaded in parts");
    Ok(up)
}

/// Reads a sorted wdiff through: header, every pack and record checksum, the END pack.
pub fn check_wdiff(data: &Bytes) -> walb_core::Result<()> {
    let (_, r) = SortedReader::open(Box::new(BytesSource::new(data.clone())))?;
    for rec in r {
        rec?;
    }
    Ok(())
}
