//! A snapshot with the device's hash at its gid (docs/archive.md, "Deep verification"): the
//! explicit snapshot is taken, every acknowledged write is put on the data device, and the
//! data device is hashed bulk by bulk (core::bhash's digest) while no write comes in. The
//! archive keeps the digest and a deep verify compares the restored snapshot with it, which
//! catches damage no checksum covers (the base image has none).
//!
//! Writes during the hash would make the digest belong to no gid, so the device's newest
//! lsid is compared before and after: a moved lsid refuses the hash (the snapshot stands).
//! With the file system frozen (`walbc snapshot --freeze --hash`) nothing moves.

use walb_core::bhash::BulkHashes;
use walb_core::LBS;
use walb_daemon::{CmdError, CmdResult};

use crate::scan::Scan;
use crate::storage::Storage;
use crate::vol::Vol;

/// The snapshot and the digest of the device at it.
pub struct HashedSnapshot {
    pub gid: u64,
    /// Bulk size of the digest, bytes.
    pub bulk: usize,
    pub digest: blake3::Hash,
}

/// Takes an explicit snapshot of `vol` and hashes the device at it in bulks of `bulk_lb`.
pub async fn snapshot_with_hash(
    st: &Storage,
    vol: &Vol,
    bulk_lb: u32,
) -> CmdResult<HashedSnapshot> {
    let mark = st.snapshot(vol).await?;
    let gid = mark.gid.0;
    let wdev = vol.meta.lock().await.wdev.clone();
    // The snapshot's checkpoint put every write up to its lsid on the data device; one more
    // checkpoint covers a write that came in between, and then the lsid must not have moved.
    st.wdevd.checkpoint(&wdev).await?;
    let before = st.wdevd.status(&wdev).await?;
    if before.latest != mark.lsid.0 {
        return Err(written(gid));
    }
    let size_lb = before.size_lb;
    let file = st.wdevd.ddev_path(&wdev).await?;
    let (scan, _guard) = vol.scan.begin(Scan::new(
        "device-hash",
        size_lb * LBS as u64,
        st.scan_bps.clone(),
    ));
    let bulk = bulk_lb as usize * LBS;
    let hashes = tokio::task::spawn_blocking(move || -> CmdResult<Vec<blake3::Hash>> {
        crate::scan::read_bulks(file, size_lb, bulk_lb, scan)
            .into_iter()
            .map(|b| b.map(|b| blake3::hash(&b.data)))
            .collect()
    })
    .await
    .map_err(|e| CmdError::Internal(format!("device hash task: {e}")))??;
    if st.wdevd.status(&wdev).await?.latest != before.latest {
        return Err(written(gid));
    }
    let digest = BulkHashes {
        size: size_lb * LBS as u64,
        bulk,
        hashes,
    }
    .digest();
    tracing::info!(vol = vol.name, gid, "device hash at the snapshot: {digest}");
    Ok(HashedSnapshot { gid, bulk, digest })
}

fn written(gid: u64) -> CmdError {
    CmdError::State(format!(
        "snapshot {gid} taken, but the device was written while it was hashed: freeze the \
         file system around the snapshot (walbc snapshot --freeze) to record its hash"
    ))
}
