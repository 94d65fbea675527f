//! What the repository holds for a volume: its images, its wdiffs, and the snapshots they
//! make restorable (walb's rules, `walb_core::meta::restorable`, over each image).

use std::collections::BTreeMap;

use walb_core::meta::{self, MetaDiff, MetaSnap};
use walb_core::Gid;

use crate::error::{Error, Result};
use crate::frame::HEADER;
use crate::index::Index;
use crate::layout;
use crate::store::Repo;

/// A restorable point and the image it is restored from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub gid: Gid,
    pub timestamp: u64,
    pub is_explicit: bool,
    /// The newest image that reaches it.
    pub image: MetaSnap,
}

pub async fn volumes(repo: &Repo) -> Result<Vec<String>> {
    let mut v = repo
        .folders(&object_store::path::Path::from(layout::VOLS))
        .await?;
    v.sort();
    Ok(v)
}

/// The volume's images, oldest first.
pub async fn images(repo: &Repo, vol: &str) -> Result<Vec<MetaSnap>> {
    layout::check_vol(vol)?;
    let mut v: Vec<MetaSnap> = repo
        .list(&layout::images_dir(vol))
        .await?
        .iter()
        .filter_map(|m| layout::parse_index(&m.location))
        .collect();
    v.sort_by_key(|s| (s.gid_b, s.gid_e));
    Ok(v)
}

/// The volume's wdiffs, in gid order (their data size is the object's less its frame).
pub async fn wdiffs(repo: &Repo, vol: &str) -> Result<Vec<MetaDiff>> {
    layout::check_vol(vol)?;
    let mut v = Vec::new();
    for m in repo.list(&layout::wdiffs_dir(vol)).await? {
        let Some(name) = m.location.filename() else {
            continue;
        };
        let size = m.size.saturating_sub(HEADER as u64);
        match meta::parse_name(name, size) {
            Ok(d) => v.push(d),
            Err(e) => tracing::warn!(%vol, "ignoring {}: {e}", m.location),
        }
    }
    v.sort_by_key(MetaDiff::order_key);
    Ok(v)
}

pub async fn index(repo: &Repo, vol: &str, image: &MetaSnap) -> Result<Index> {
    let key = layout::index(vol, image);
    Index::decode(key.as_ref(), &repo.get(&key).await?)
}

/// Every restorable snapshot of `vol`, in gid order.
pub async fn snapshots(repo: &Repo, vol: &str) -> Result<Vec<Snapshot>> {
    let diffs = wdiffs(repo, vol).await?;
    let mut out = BTreeMap::new();
    for image in images(repo, vol).await? {
        let ix = index(repo, vol, &image).await?;
        for r in meta::restorable(&ix.state, &diffs) {
            out.insert(
                r.gid,
                Snapshot {
                    gid: r.gid,
                    timestamp: r.timestamp,
                    is_explicit: r.is_explicit,
                    image,
                },
            );
        }
    }
    Ok(out.into_values().collect())
}

/// How to restore `gid`: the newest image that reaches it and the chain of wdiffs from there.
pub async fn plan(repo: &Repo, vol: &str, gid: Gid) -> Result<(Index, Vec<MetaDiff>)> {
    let diffs = wdiffs(repo, vol).await?;
    let imgs = images(repo, vol).await?;
    if imgs.is_empty() {
        return Err(Error::NotFound(format!(
            "volume {vol} has no image in {}",
            repo.url
        )));
    }
    for image in imgs.iter().rev().filter(|s| s.gid_b <= gid) {
        let ix = index(repo, vol, image).await?;
        if !meta::restorable(&ix.state, &diffs)
            .iter()
            .any(|r| r.gid == gid)
        {
            continue;
        }
        let chain = meta::applicable_chain(&ix.state.snap_b, &diffs, Some(gid));
        let end = meta::apply_all(&ix.state.snap_b, &chain)?;
        if end == MetaSnap::clean(gid) {
            return Ok((ix, chain));
        }
    }
    Err(Error::NotFound(format!(
        "gid {gid} is not a restorable snapshot of volume {vol} in {}",
        repo.url
    )))
}
