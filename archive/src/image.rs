//! Image work on files: cloning the base image (reflink, else a sparse copy), the merged record
//! stream of a wdiff chain, writing records into an image, and the virtual full image.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::{FileIo, UringIo};
use walb_core::meta::MetaDiff;
use walb_core::virt::VirtualFull;
use walb_core::wdiff::{Merger, RecStream, WdiffReader};
use walb_daemon::{CmdError, CmdResult};

use crate::volume::Vol;

const COPY_BUF: usize = 1 << 20;

fn internal(what: impl std::fmt::Display, e: impl std::fmt::Display) -> CmdError {
    CmdError::Internal(format!("{what}: {e}"))
}

/// Copies `src` into the empty file `dst`: a reflink (FICLONE) when the filesystem shares
/// extents, else a sparse copy. Returns true for a reflink.
pub fn clone_image(src: &Path, dst: &File) -> CmdResult<bool> {
    let s = File::open(src).map_err(|e| internal(src.display(), e))?;
    // SAFETY: FICLONE takes the source descriptor as its argument; both files stay open.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, s.as_raw_fd()) };
    if r == 0 {
        return Ok(true);
    }
    sparse_copy(&s, dst).map_err(|e| internal(format!("copy {}", src.display()), e))?;
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

/// The records of `chain` (oldest first) merged, newest wins; errors name the file.
pub fn chain_records(vol: &Vol, chain: &[MetaDiff]) -> CmdResult<RecStream> {
    let mut inputs: Vec<RecStream> = Vec::with_capacity(chain.len());
    for d in chain {
        inputs.push(open_diff(&vol.diff_path(d))?);
    }
    Ok(Box::new(Merger::new(inputs)))
}

/// The records of a stored wdiff; an error names the file (damage is DATA_LOSS).
pub fn open_diff(path: &Path) -> CmdResult<RecStream> {
    let r = WdiffReader::open(path).map_err(|e| e.in_file(path))?;
    let name: PathBuf = path.to_path_buf();
    Ok(Box::new(r.map(move |r| r.map_err(|e| e.in_file(&name)))))
}

/// Writes `recs` into the image `file` and makes it durable.
pub fn apply_records(file: File, recs: RecStream, mode: DiscardMode) -> CmdResult<u64> {
    let mut io = UringIo::new(file, 32);
    let mut ap = Applier::new(&mut io, mode)?;
    for r in recs {
        ap.apply(&r?)?;
    }
    Ok(ap.finish()?)
}

/// The base image with `chain` laid over it, read without writing anything.
pub fn virtual_full(vol: &Vol, chain: &[MetaDiff]) -> CmdResult<VirtualFull> {
    let base = FileIo::open(&vol.image(), false).map_err(|e| internal(vol.image().display(), e))?;
    Ok(VirtualFull::new(
        Box::new(base),
        chain_records(vol, chain)?,
    )?)
}
