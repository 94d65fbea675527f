//! Failback (docs/recovery.md): once the old primary is back, its device becomes a copy of
//! the image promoted by `failover`, without a full copy when their history is shared. It is
//! a hash sync in reverse (walb.proto `Storage.Failback`): the storage hashes its device bulk
//! by bulk, the hashes come here, where the promoted image is, and only the bulks that differ
//! go back; the storage writes them through the wdev device. A hash backup then re-syncs the
//! archive (again only what differs), and shipping resumes.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use walb_core::bhash::DEFAULT_BULK;
use walb_core::blockio::{BlockIo, FileIo};
use walb_core::virt::ImageSource;
use walb_core::wdiff::hashdiff::{bulks_of, diff_against_hashes};
use walb_core::wdiff::sorted::EncodedPack;
use walb_core::wdiff::{Cmpr, Codec};
use walb_core::LBS;
use walb_proto::flow::FlowError;
use walb_proto::hashflow::{hash_batches, send_chunks_blocking, HashFlow};
use walb_proto::storage_client::StorageClient;
use walb_proto::{frame, wire, Commit, Open};

use super::layout::Server;
use super::ops::Ctl;

/// What a failback did.
pub struct Failback {
    /// The volume's size in bytes.
    pub size: u64,
    /// Bulks where the device differed from the image.
    pub changed: u64,
    /// Bytes of packs sent to the storage (compressed).
    pub sent: u64,
    /// The hash backup's snapshot, restorable on the primary archive.
    pub gid: u64,
}

const BULK_LB: u32 = (DEFAULT_BULK / LBS) as u32;

impl Ctl {
    /// Makes storage `sid`'s device of `vol` a copy of the image or block device `from` (on
    /// this host): the storage checks the size, its volume's state (Target, Stopped or
    /// SyncReady) and that the device is not in use, takes the volume to SyncReady and writes
    /// the differing bulks through the wdev device; then a hash backup re-syncs the primary
    /// archive. Refused before anything changes when a check fails.
    pub async fn failback(&self, vol: &str, sid: &str, from: &Path) -> Result<Failback> {
        let s = self.storage(sid)?.clone();
        let mut img =
            FileIo::open(from, false).with_context(|| format!("open {}", from.display()))?;
        let size = img
            .size()
            .with_context(|| format!("size of {}", from.display()))?;
        if size == 0 || !size.is_multiple_of(LBS as u64) {
            bail!(
                "{} is {size} bytes: not a whole number of 512-byte blocks",
                from.display()
            );
        }
        let a = self.layout.primary_archive()?;
        let ast = self.archive_state(a, vol).await?;
        use walb_proto::ArchiveState as A;
        if !matches!(ast, A::ArchiveArchived | A::ArchiveWdiffRecv) {
            bail!(
                "{}: volume {vol} is {}; a failback ends with a hash backup, which needs it \
                 Archived",
                a.id,
                super::words::state_word(ast.as_str_name())
            );
        }
        let (changed, sent) = failback_flow(&s, vol, from.to_path_buf(), size).await?;
        let gid = self.hash_backup(sid, vol, None).await?;
        Ok(Failback {
            size,
            changed,
            sent,
            gid,
        })
    }
}

/// The flow with the storage: Open → Accept → its hashes in, the differing bulks of `img`
/// out → Commit → Ack (the bulks are on the device). Returns (bulks that differed, bytes
/// sent).
async fn failback_flow(s: &Server, vol: &str, img: PathBuf, size: u64) -> Result<(u64, u64)> {
    let err = |e: FlowError| match e {
        FlowError::Rejected(w) => anyhow!("{}: refused the failback of {vol}: {w}", s.id),
        FlowError::Transport(t) => anyhow!("{}: failback of {vol}: {t}", s.id),
    };
    let ch = wire::connect(&s.addr)
        .await
        .map_err(|e| anyhow!("{}: connect {}: {e}", s.id, s.addr))?;
    let mut client = walb_proto::sized!(StorageClient::new(ch));
    let open = Open {
        vol: vol.to_string(),
        host_type: "controller".into(),
        size_lb: size / LBS as u64,
        bulk_lb: BULK_LB,
        cur_time: walb_core::meta::unix_now(),
        ..Default::default()
    };
    let mut flow = HashFlow::open_accepted(wire::frame(frame::Kind::Open(open)), |st| {
        client.failback(st)
    })
    .await
    .map_err(err)?;
    let (htx, hrx) = hash_batches();
    let ftx = flow.tx.clone();
    let worker = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let io = FileIo::open(&img, false).with_context(|| format!("open {}", img.display()))?;
        let src = ImageSource::new(Box::new(io))?;
        let mut sent = 0u64;
        let mut send = |p: EncodedPack| {
            let b = Bytes::from(p.to_bytes());
            sent += b.len() as u64;
            send_chunks_blocking(&ftx, b).map_err(|e| walb_core::Error::Invalid(e.to_string()))
        };
        let cmpr = Cmpr::new(Codec::Zstd, 1);
        let changed = diff_against_hashes(bulks_of(src, BULK_LB), hrx, cmpr, &mut send)
            .with_context(|| format!("compare {} with the device's hashes", img.display()))?;
        Ok((changed, sent))
    });
    flow.forward_hashes(htx, || {}).await.map_err(err)?;
    let (changed, sent) = worker.await.context("compare thread")??;
    flow.commit(wire::frame(frame::Kind::Commit(Commit::default())))
        .await
        .map_err(err)?;
    Ok((changed, sent))
}
