//! Image work on files: cloning the base image (reflink, else a sparse copy), the merged record
//! stream of a wdiff chain, writing records into an image, and the virtual full image. Their
//! failures are `StoreError`s naming the file.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::{FileIo, UringIo};
use walb_core::meta::MetaDiff;
use walb_core::source::ReadSource;
use walb_core::virt::{BulkSource, VirtualFull};
use walb_core::wdiff::{Cmpr, Codec, Merger, RecStream, SortedReader, SortedWriter};
use walb_core::{Uuid, LBS};
use walb_daemon::progress::Progress;

use crate::store_error::{StoreError, StoreResult};
use crate::volume::Vol;
use walb_core::atomic::TempFile;

const COPY_BUF: usize = 1 << 20;

/// Copies `src` into the empty file `dst`: a reflink (FICLONE) when the filesystem shares
/// extents, else a sparse copy. Returns true for a reflink.
pub fn clone_image(src: &Path, dst: &File) -> StoreResult<bool> {
    let s = File::open(src).map_err(StoreError::io(src))?;
    // SAFETY: FICLONE takes the source descriptor as its argument; both files stay open.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, s.as_raw_fd()) };
    if r == 0 {
        return Ok(true);
    }
    sparse_copy(&s, dst).map_err(|source| StoreError::Copy {
        path: src.to_path_buf(),
        source,
    })?;
    Ok(false)
}

/// Copies the data extents of `src` (SEEK_DATA/SEEK_HOLE), skipping all-zero buffers, so the
/// copy stays as sparse as the source.
fn sparse_copy(src: &File, dst: &File) -> io::Result<()> {
    let size = src.metadata()?.len();
    dst.set_len(size)?;
    let mut buf = vec![0u8; COPY_BUF];
    let mut pos = 0u64;
    while pos < size {
        let (data, hole) = match seek(src, pos, libc::SEEK_DATA) {
            Ok(d) => (d, seek(src, d, libc::SEEK_HOLE).unwrap_or(size)),
            // No data after pos: the rest is a hole.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            // SEEK_DATA unsupported: treat the rest as data.
            Err(_) => (pos, size),
        };
        let mut off = data;
        while off < hole.min(size) {
            let n = (hole.min(size) - off).min(COPY_BUF as u64) as usize;
            src.read_exact_at(&mut buf[..n], off)?;
            if buf[..n].iter().any(|&b| b != 0) {
                dst.write_all_at(&buf[..n], off)?;
            }
            off += n as u64;
        }
        pos = hole.max(data + 1);
    }
    Ok(())
}

fn seek(f: &File, off: u64, whence: libc::c_int) -> io::Result<u64> {
    // SAFETY: lseek on an open descriptor; no memory is passed.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off as libc::off_t, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}

/// Read buffer of each wdiff a merge reads.
const DIFF_READ_BUF: usize = 256 << 10;

/// A merge input: a stored diff, or a round's temporary result (deleted once open).
enum Input {
    Stored(PathBuf),
    Temp(TempFile),
}

impl Input {
    fn open(self) -> StoreResult<RecStream> {
        match self {
            Input::Stored(p) => open_diff(&p),
            // The open descriptor keeps the data; the name goes now.
            Input::Temp(t) => open_diff(&t.path),
        }
    }
}

/// The records of `chain` (oldest first) merged, newest wins; errors name the file.
///
/// At most `vol.max_open_diffs` files are read at once: a longer chain is first merged in
/// rounds of that many into temporary sorted wdiffs. Memory stays bounded (one read buffer
/// and one pack per open file) whatever the chain's length, and each record costs a bounded
/// number of comparisons, so time grows with the chain's bytes rather than its file count.
pub fn chain_records(vol: &Vol, chain: &[MetaDiff]) -> StoreResult<RecStream> {
    let fan_in = vol.max_open_diffs.max(2);
    let mut inputs: Vec<Input> = chain
        .iter()
        .map(|d| Input::Stored(vol.diff_path(d)))
        .collect();
    while inputs.len() > fan_in {
        let mut next = Vec::with_capacity(inputs.len().div_ceil(fan_in));
        let mut rest = inputs.into_iter().peekable();
        while rest.peek().is_some() {
            let group: Vec<Input> = rest.by_ref().take(fan_in).collect();
            next.push(if group.len() == 1 {
                group.into_iter().next().expect("one input")
            } else {
                Input::Temp(merge_to_temp(vol, group)?)
            });
        }
        inputs = next;
    }
    let streams = inputs
        .into_iter()
        .map(Input::open)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Box::new(Merger::new(streams)))
}

/// One round's merge of `group` into a temporary sorted wdiff (uncompressed: it is read once).
fn merge_to_temp(vol: &Vol, group: Vec<Input>) -> StoreResult<TempFile> {
    let tmp = TempFile::create(vol.temp_path("merge"))?;
    let streams = group
        .into_iter()
        .map(Input::open)
        .collect::<StoreResult<Vec<_>>>()?;
    let mut out = BufWriter::with_capacity(1 << 20, &tmp.file);
    let mut w = SortedWriter::new(&mut out, Uuid::default(), Cmpr::new(Codec::None, 0))?;
    for r in Merger::new(streams) {
        w.push(r?)?;
    }
    w.finish()?;
    out.flush().map_err(StoreError::io(&tmp.path))?;
    drop(out);
    Ok(tmp)
}

/// The records of a stored sorted wdiff, read through a buffer (not mapped, so what has been
/// read does not stay resident); an error names the file (damage is DATA_LOSS).
pub fn open_diff(path: &Path) -> StoreResult<RecStream> {
    let f = File::open(path).map_err(|e| walb_core::Error::io("open", e).in_file(path))?;
    let src = ReadSource::new(BufReader::with_capacity(DIFF_READ_BUF, f));
    let (_, r) = SortedReader::open(Box::new(src)).map_err(|e| e.in_file(path))?;
    let name: PathBuf = path.to_path_buf();
    Ok(Box::new(r.map(move |r| r.map_err(|e| e.in_file(&name)))))
}

/// `recs` with `p` following them: records come in address order, so the end of the last
/// one (bytes) is how far into the image the stream got.
pub fn tracked(recs: RecStream, p: Arc<Progress>) -> RecStream {
    Box::new(recs.inspect(move |r| {
        if let Ok(r) = r {
            p.set(r.end() * LBS as u64);
        }
    }))
}

/// A bulk source whose bytes read are counted into a progress.
pub struct Tracked<S> {
    pub src: S,
    pub p: Arc<Progress>,
}

impl<S: BulkSource> BulkSource for Tracked<S> {
    fn size(&self) -> u64 {
        self.src.size()
    }

    fn read_next(&mut self, buf: &mut [u8]) -> walb_core::Result<usize> {
        let n = self.src.read_next(buf)?;
        self.p.add(n as u64);
        Ok(n)
    }
}

/// Writes `recs` into the image `file` and makes it durable.
pub fn apply_records(file: File, recs: RecStream, mode: DiscardMode) -> StoreResult<u64> {
    let mut io = UringIo::new(file, 32);
    let mut ap = Applier::new(&mut io, mode)?;
    for r in recs {
        ap.apply(&r?)?;
    }
    Ok(ap.finish()?)
}

/// The base image with `chain` laid over it, read without writing anything.
pub fn virtual_full(vol: &Vol, chain: &[MetaDiff]) -> StoreResult<VirtualFull> {
    let base = FileIo::open(&vol.image(), false).map_err(StoreError::io(vol.image()))?;
    Ok(VirtualFull::new(
        Box::new(base),
        chain_records(vol, chain)?,
    )?)
}
