//! Continuous shipping to the repository on object storage (`--repo URL`, docs/repository.md):
//! every few seconds, for every volume whose lease this archive holds, each registered wdiff
//! the repository lacks is uploaded, and the base image (each apply point) when the
//! repository has no index for it. What is uploaded is found by comparing listings, so a
//! restart resumes where the last run stopped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use walb_core::meta::{self, unix_now, MetaDiff};
use walb_core::Uuid;
use walb_daemon::{CmdError, CmdResult};
use walb_repo::upload::{self, Opts, Stats};
use walb_repo::volinfo::{self, VolInfo};
use walb_repo::{lease, list, Repo};

use crate::archive::Archive;
use walb_core::atomic::TempFile;

pub struct Config {
    pub repo: Repo,
    pub every: Duration,
    pub lease: Duration,
    pub opts: Opts,
    /// Images kept per volume after each upload (0: all).
    pub keep_images: usize,
}

/// What the repository is known to hold of one volume (listed once, then kept up to date).
#[derive(Default)]
struct Known {
    wdiffs: HashSet<String>,
    images: HashSet<walb_core::meta::MetaSnap>,
    info: Option<VolInfo>,
}

pub async fn run(archive: Arc<Archive>, cfg: Config) {
    let stats = Stats::default();
    let mut known: HashMap<String, Known> = HashMap::new();
    let mut refused: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(cfg.every).await;
        if archive.ready().is_err() {
            continue;
        }
        let Ok(names) = archive.volumes() else {
            continue;
        };
        for name in names {
            if archive.broken(&name).is_some() || !archive.vol(&name).has_image() {
                continue;
            }
            match lease::acquire(&cfg.repo, &name, &archive.id, cfg.lease).await {
                Ok(_) => {
                    refused.remove(&name);
                }
                Err(e) => {
                    if refused.insert(name.clone()) {
                        tracing::warn!(vol = %name, "repository: not uploading: {e}");
                    }
                    continue;
                }
            }
            let shipped = ship(&archive, &cfg, &stats, &name, &mut known).await;
            if let Err(e) = &shipped {
                tracing::warn!(vol = %name, "repository upload: {e}");
                // Listed afresh next time: what failed may have half happened.
                known.remove(&name);
            }
            let mut view = archive.repo.lock().expect("repo view");
            match shipped {
                Ok(()) => view.error.remove(&name),
                Err(e) => view.error.insert(name.clone(), e.to_string()),
            };
        }
        let m = &archive.metrics;
        let l = [("repo", cfg.repo.url.as_str())];
        let (up, dedup) = (
            stats.bytes_up.load(Ordering::Relaxed),
            (stats.dedup_ratio() * 1000.0) as u64,
        );
        m.repo_bytes_up.set(&l, up);
        m.repo_dedup_permille.set(&l, dedup);
        let mut view = archive.repo.lock().expect("repo view");
        view.url = Some(cfg.repo.url.clone());
        (view.bytes_up, view.dedup_permille) = (up, dedup);
    }
}

async fn ship(
    archive: &Arc<Archive>,
    cfg: &Config,
    stats: &Stats,
    name: &str,
    known: &mut HashMap<String, Known>,
) -> CmdResult<()> {
    let repo_err = |e: walb_repo::Error| CmdError::Internal(format!("repository: {e}"));
    if !known.contains_key(name) {
        let k = Known {
            wdiffs: list::wdiffs(&cfg.repo, name)
                .await
                .map_err(repo_err)?
                .iter()
                .map(meta::format_name)
                .collect(),
            images: list::images(&cfg.repo, name)
                .await
                .map_err(repo_err)?
                .into_iter()
                .collect(),
            info: volinfo::read(&cfg.repo, name).await.map_err(repo_err)?,
        };
        known.insert(name.to_string(), k);
    }
    let k = known.get_mut(name).expect("listed");
    let vol = archive.vol(name);
    let info = VolInfo {
        uuid: vol.uuid()?,
        archive_uuid: vol.archive_uuid()?,
    };
    if let Some(old) = k.info {
        // A new full backup starts another lineage, whose gids may repeat the old one's: its
        // objects must not mix with the old ones under the same names.
        if old.archive_uuid != info.archive_uuid && old.archive_uuid != Uuid::default() {
            return Err(CmdError::Internal(format!(
                "the repository holds lineage {} of volume {name}, this archive {}: prune or \
                 remove vols/{name} there, or ship to another prefix",
                old.archive_uuid, info.archive_uuid
            )));
        }
    }
    if k.info != Some(info) {
        volinfo::write(&cfg.repo, name, &info)
            .await
            .map_err(repo_err)?;
        k.info = Some(info);
    }
    let diffs = vol.diffs()?;
    let pending: Vec<&MetaDiff> = diffs
        .iter()
        .filter(|d| !k.wdiffs.contains(&meta::format_name(d)))
        .collect();
    set_lag(archive, name, &pending);
    for d in &pending {
        let path = vol.diff_path(d);
        match upload::upload_wdiff(&cfg.repo, name, d, &path, &cfg.opts.rate, stats).await {
            Ok(_) => {
                k.wdiffs.insert(meta::format_name(d));
            }
            // Applied, merged or renamed meanwhile: the next round sees the files as they are.
            Err(walb_repo::Error::Core(e)) if is_gone(&e) => continue,
            Err(walb_repo::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue
            }
            Err(e) => return Err(repo_err(e)),
        }
    }
    set_lag(archive, name, &[]);
    let base = vol.base()?;
    if base.is_applying || k.images.contains(&base.snap_b) {
        return Ok(());
    }
    // The base changes only under the volume's lock: a copy taken under it (a reflink where
    // the file system shares extents) is uploaded after it is released.
    let (state, tmp) = archive
        .run(name, |_, vol| {
            let base = vol.base()?;
            if base.is_applying {
                return Ok(None);
            }
            let tmp = TempFile::create(vol.temp_path("repo-image"))?;
            crate::image::clone_image(&vol.image(), &tmp.file)?;
            Ok::<_, CmdError>(Some((base, tmp)))
        })
        .await?
        .unzip();
    let (Some(state), Some(tmp)) = (state, tmp) else {
        return Ok(());
    };
    upload::upload_image(&cfg.repo, name, &state, &tmp.path, &cfg.opts, stats)
        .await
        .map_err(repo_err)?;
    k.images.insert(state.snap_b);
    if cfg.keep_images > 0 {
        let r = walb_repo::prune::prune(&cfg.repo, name, cfg.keep_images)
            .await
            .map_err(repo_err)?;
        for s in &r.images {
            k.images.remove(s);
        }
        if r.wdiffs > 0 {
            // Listed afresh next round.
            known.remove(name);
        }
    }
    Ok(())
}

fn is_gone(e: &walb_core::Error) -> bool {
    let mut s: Option<&dyn std::error::Error> = Some(e);
    while let Some(x) = s {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::NotFound;
        }
        s = x.source();
    }
    false
}

/// Seconds since the oldest diff not yet in the repository was taken (0: none waiting).
fn set_lag(archive: &Archive, name: &str, pending: &[&MetaDiff]) {
    let lag = pending
        .iter()
        .map(|d| unix_now().saturating_sub(d.timestamp))
        .max()
        .unwrap_or(0);
    archive.metrics.repo_lag.set(&[("vol", name)], lag);
    archive
        .repo
        .lock()
        .expect("repo view")
        .lag_s
        .insert(name.to_string(), lag);
}
