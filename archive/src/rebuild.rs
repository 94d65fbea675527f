//! `walb-archive --repo URL --rebuild VOL` (docs/repository.md, "Rebuilding an archive"): a
//! volume this archive does not hold is made from the repository before the daemon serves —
//! the newest image as the base, the chain of wdiffs after it, the uuids — so the archive can
//! take over from a lost one (docs/recovery.md's archive replacement, then a hash backup).

use walb_core::atomic::{Output, TempFile};
use walb_core::meta;
use walb_daemon::error::bad_state;
use walb_daemon::{CmdError, CmdResult};
use walb_repo::{list, restore, volinfo, Repo};

use crate::archive::Archive;
use crate::store_error::StoreError;
use crate::volume::State;

fn repo_err(e: walb_repo::Error) -> CmdError {
    CmdError::Internal(format!("repository: {e}"))
}

/// Rebuilds `name`; returns what it restored, for the log.
pub async fn rebuild(
    archive: &Archive,
    repo: &Repo,
    name: &str,
    parallel: usize,
) -> CmdResult<String> {
    let vol = archive.vol(name);
    if vol.exists() {
        return Err(bad_state(format!(
            "volume {name} exists in this archive: clear it before rebuilding it from {}",
            repo.url
        )));
    }
    let image = *list::images(repo, name)
        .await
        .map_err(repo_err)?
        .last()
        .ok_or_else(|| CmdError::NotFound(format!("volume {name} has no image in {}", repo.url)))?;
    let ix = list::index(repo, name, &image).await.map_err(repo_err)?;
    let diffs = list::wdiffs(repo, name).await.map_err(repo_err)?;
    let chain = meta::applicable_chain(&ix.state.snap_b, &diffs, None);
    let info = volinfo::read(repo, name)
        .await
        .map_err(repo_err)?
        .unwrap_or_default();
    // Files first, the state last: until it is written the volume does not exist here.
    std::fs::create_dir_all(&vol.dir).map_err(StoreError::io(&vol.dir))?;
    for d in &chain {
        let tmp = TempFile::create(vol.temp_path("rebuild"))?;
        restore::wdiff_to_file(repo, name, d, &tmp.path)
            .await
            .map_err(repo_err)?;
        vol.add_diff(tmp, d)?;
    }
    let out = Output::create(&vol.image())?;
    // The diffs are in place already: the image alone (no chain, so no work files).
    let r = restore::restore_image(repo, name, ix.clone(), &[], out, &vol.dir, parallel)
        .await
        .map_err(repo_err)?;
    vol.set_base(&ix.state)?;
    vol.set_uuid(&info.uuid)?;
    vol.set_archive_uuid(&info.archive_uuid)?;
    vol.set_state(State::Archived)?;
    Ok(format!(
        "volume {name} rebuilt from {}: image {} ({} bytes), {} wdiffs after it",
        repo.url,
        ix.state.snap_b,
        r.size,
        chain.len()
    ))
}
