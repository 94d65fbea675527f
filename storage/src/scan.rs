//! Reading a device bulk by bulk on a thread of its own, so reads overlap with what the
//! caller does with each bulk (compress, hash, send).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc;

use bytes::Bytes;
use walb_core::LBS;
use walb_daemon::{CmdError, CmdResult};

/// One bulk: its address, length in LB and bytes.
pub struct Bulk {
    pub lba: u64,
    pub blocks: u32,
    pub data: Bytes,
}

/// Bulks read ahead of the consumer.
const READ_AHEAD: usize = 8;

/// Starts reading `path` from LB 0 to `size_lb` in bulks of `bulk_lb`; the receiver yields
/// them in order (an error ends the stream). Dropping the receiver stops the reader.
pub fn read_bulks(path: PathBuf, size_lb: u64, bulk_lb: u32) -> mpsc::Receiver<CmdResult<Bulk>> {
    let (tx, rx) = mpsc::sync_channel(READ_AHEAD);
    std::thread::spawn(move || {
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(CmdError::Internal(format!(
                    "open {}: {e}",
                    path.display()
                ))));
                return;
            }
        };
        let mut lba = 0u64;
        while lba < size_lb {
            let blocks = (size_lb - lba).min(bulk_lb as u64) as u32;
            let mut buf = vec![0u8; blocks as usize * LBS];
            let r = f
                .read_exact_at(&mut buf, lba * LBS as u64)
                .map(|_| Bulk {
                    lba,
                    blocks,
                    data: Bytes::from(buf),
                })
                .map_err(|e| {
                    CmdError::Internal(format!("read {} at LB {lba}: {e}", path.display()))
                });
            let failed = r.is_err();
            if tx.send(r).is_err() || failed {
                return;
            }
            lba += blocks as u64;
        }
    });
    rx
}
