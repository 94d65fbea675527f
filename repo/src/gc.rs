//! Chunk garbage collection (docs/repository.md, "Garbage collection"): mark every chunk an
//! index refers to, sweep the others older than a grace period. An image upload keeps a
//! marker under `pending/` while its chunks are not yet referenced; while any marker younger
//! than the grace period exists nothing is swept (markers older than that are stale, left by
//! an interrupted upload, and removed).

use std::collections::HashSet;
use std::time::Duration;

use object_store::path::Path;

use crate::error::Result;
use crate::layout;
use crate::list;
use crate::store::Repo;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub indexes: usize,
    pub referenced: usize,
    pub chunks: usize,
    pub swept: usize,
    pub swept_bytes: u64,
    /// Unreferenced but younger than the grace period.
    pub young: usize,
    /// Uploads in flight: nothing was swept.
    pub uploads_in_flight: usize,
    pub stale_markers: usize,
}

pub async fn gc(repo: &Repo, grace: Duration, dry_run: bool) -> Result<Report> {
    let mut rep = Report::default();
    let now = walb_core::meta::unix_now() as i64;
    let old = |t: i64| now - t >= grace.as_secs() as i64;
    for m in repo.list(&Path::from(layout::PENDING)).await? {
        if old(m.last_modified.timestamp()) {
            rep.stale_markers += 1;
            if !dry_run {
                repo.delete(&m.location).await?;
            }
        } else {
            rep.uploads_in_flight += 1;
        }
    }
    let mut referenced = HashSet::new();
    for vol in list::volumes(repo).await? {
        for image in list::images(repo, &vol).await? {
            let ix = list::index(repo, &vol, &image).await?;
            rep.indexes += 1;
            referenced.extend(ix.chunks.iter().flatten().copied());
        }
    }
    rep.referenced = referenced.len();
    for m in repo.list(&Path::from(layout::CHUNKS)).await? {
        rep.chunks += 1;
        let Some(h) = layout::parse_chunk(&m.location) else {
            continue;
        };
        if referenced.contains(&h) {
            continue;
        }
        if !old(m.last_modified.timestamp()) {
            rep.young += 1;
            continue;
        }
        if rep.uploads_in_flight > 0 {
            continue;
        }
        rep.swept += 1;
        rep.swept_bytes += m.size;
        if !dry_run {
            repo.delete(&m.location).await?;
        }
    }
    tracing::info!(?rep, "repository gc");
    Ok(rep)
}
