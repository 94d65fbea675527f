//! Thinning a volume's images (docs/repository.md, "Pruning"): all but the newest `keep`
//! indexes are deleted, and the wdiffs that end at or before the oldest image kept, which no
//! restore can use any more. Their chunks go at the next gc.

use walb_core::meta::MetaSnap;

use crate::error::{Error, Result};
use crate::layout;
use crate::list;
use crate::store::Repo;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub images: Vec<MetaSnap>,
    pub wdiffs: usize,
}

pub async fn prune(repo: &Repo, vol: &str, keep: usize) -> Result<Report> {
    if keep == 0 {
        return Err(Error::Invalid("prune must keep at least one image".into()));
    }
    let images = list::images(repo, vol).await?;
    let Some(cut) = images.len().checked_sub(keep).filter(|&n| n > 0) else {
        return Ok(Report::default());
    };
    let oldest_kept = images[cut];
    let mut rep = Report::default();
    for image in &images[..cut] {
        repo.delete(&layout::index(vol, image)).await?;
        rep.images.push(*image);
    }
    for d in list::wdiffs(repo, vol).await? {
        if d.snap_e.gid_b <= oldest_kept.gid_b {
            repo.delete(&layout::wdiff(vol, &d)).await?;
            rep.wdiffs += 1;
        }
    }
    tracing::info!(%vol, ?rep, "repository pruned");
    Ok(rep)
}
