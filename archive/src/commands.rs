//! The control commands (docs/scenarios.md §7.4, §7.5), typed (proto/control.proto).

use std::path::PathBuf;
use std::sync::Arc;

use walb_core::bhash::DEFAULT_BULK;
use walb_core::meta::MetaSnap;
use walb_core::Gid;
use walb_daemon::error::invalid;
use walb_daemon::serve::Guard;
use walb_daemon::{volfile, CmdError, CmdResult};
use walb_proto::archive_control_server::ArchiveControl;
use walb_proto::archive_reply::{self, Reply};
use walb_proto::archive_request::Cmd;
use walb_proto::{ArchiveReply, ArchiveRequest, Count, Done, Flag, Names, SizeReply, StopMode};

use crate::archive::Archive;
use crate::ops;
use crate::volume::{State, Vol};

/// How long `stop` waits for a running wdiff transfer.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The archive's control service: each command through the daemon's `Guard`.
pub struct ArchiveControlSvc {
    pub archive: Arc<Archive>,
    pub guard: Arc<Guard>,
}

#[tonic::async_trait]
impl ArchiveControl for ArchiveControlSvc {
    async fn call(
        &self,
        req: tonic::Request<ArchiveRequest>,
    ) -> Result<tonic::Response<ArchiveReply>, tonic::Status> {
        let a = &self.archive;
        self.guard
            .serve(
                req,
                |r| r.cmd,
                |c| async move {
                    a.ready()?;
                    Ok(ArchiveReply {
                        reply: Some(handle(a, c).await?),
                    })
                },
            )
            .await
    }
}

/// A volume name from a request, checked.
fn vol_arg(v: &str) -> CmdResult<String> {
    volfile::check_vol_name(v)?;
    Ok(v.to_string())
}

/// The snapshot as the control plane carries it.
fn snap(s: &MetaSnap) -> walb_proto::Snap {
    walb_proto::Snap {
        gid_b: s.gid_b.0,
        gid_e: s.gid_e.0,
    }
}

/// Runs `f` on the volume (which must exist) under its lock.
async fn on_vol<T: Send + 'static>(
    a: &Arc<Archive>,
    name: &str,
    f: impl FnOnce(&Archive, &Vol) -> CmdResult<T> + Send + 'static,
) -> CmdResult<T> {
    let name = vol_arg(name)?;
    a.run(&name, move |a, vol| f(a, &a.vol(&vol.name).require()?))
        .await
}

/// One command.
async fn handle(a: &Arc<Archive>, cmd: Cmd) -> CmdResult<Reply> {
    Ok(match cmd {
        Cmd::InitVol(r) => Reply::InitVol(state_cmd(a, "init-vol", &r.vol).await?),
        Cmd::ClearVol(r) => Reply::ClearVol(state_cmd(a, "clear-vol", &r.vol).await?),
        Cmd::ResetVol(r) => Reply::ResetVol(state_cmd(a, "reset-vol", &r.vol).await?),
        Cmd::Start(r) => Reply::Start(state_cmd(a, "start", &r.vol).await?),
        Cmd::Stop(r) => {
            let force = match r.mode() {
                StopMode::StopGraceful => false,
                StopMode::StopForce => true,
                StopMode::StopEmpty => {
                    return Err(invalid(
                        "stop mode empty: an archive stops graceful or force",
                    ))
                }
            };
            // graceful lets a running wdiff transfer finish; force cuts it.
            a.wait_wdiff_recv(&vol_arg(&r.vol)?, force, STOP_WAIT).await;
            Reply::Stop(state_cmd(a, "stop", &r.vol).await?)
        }
        Cmd::ListVols(_) => Reply::ListVols(Names {
            names: a.volumes()?,
        }),
        Cmd::Capacity(_) => Reply::Capacity(archive_reply::Capacity {
            free: a.free_bytes()?,
            floor: a.min_free,
        }),
        // Read without the volume's lock, which the action holds.
        Cmd::GetProgress(r) => Reply::GetProgress(a.entry(&vol_arg(&r.vol)?).running.reply()),
        Cmd::GetState(r) => Reply::GetState(archive_reply::GetState {
            state: state_of(a, &vol_arg(&r.vol)?)? as i32,
        }),
        Cmd::Restorable(r) => {
            let explicit_only = r.explicit_only;
            Reply::Restorable(archive_reply::Restorable {
                points: on_vol(a, &r.vol, move |a, vol| {
                    // A broken volume promises nothing until its recovery is finished.
                    if a.broken(&vol.name).is_some() {
                        return Ok(Vec::new());
                    }
                    Ok(vol
                        .restorable()?
                        .iter()
                        .filter(|r| !explicit_only || r.is_explicit)
                        .map(|r| walb_proto::RestorablePoint {
                            gid: r.gid.0,
                            time: r.timestamp,
                            explicit: r.is_explicit,
                            settled: r.is_settled,
                        })
                        .collect())
                })
                .await?,
            })
        }
        Cmd::Base(r) => Reply::Base(
            on_vol(a, &r.vol, |_, vol| {
                let b = vol.base()?;
                Ok(walb_proto::BaseState {
                    snap_b: Some(snap(&b.snap_b)),
                    snap_e: Some(snap(&b.snap_e)),
                    applying: b.is_applying,
                    timestamp: b.timestamp,
                })
            })
            .await?,
        ),
        Cmd::LatestSnap(r) => {
            Reply::LatestSnap(on_vol(a, &r.vol, |_, vol| Ok(snap(&vol.latest()?))).await?)
        }
        Cmd::Uuids(r) => Reply::Uuids(
            on_vol(a, &r.vol, |_, vol| {
                Ok(archive_reply::Uuids {
                    uuid: vol.uuid()?.to_string(),
                    archive_uuid: vol.archive_uuid()?.to_string(),
                })
            })
            .await?,
        ),
        Cmd::Diffs(r) => Reply::Diffs(Names {
            names: on_vol(a, &r.vol, |_, vol| {
                Ok(vol
                    .diffs()?
                    .iter()
                    .map(walb_core::meta::format_name)
                    .collect())
            })
            .await?,
        }),
        Cmd::HasImage(r) => Reply::HasImage(Flag {
            on: on_vol(a, &r.vol, |_, vol| Ok(vol.has_image())).await?,
        }),
        Cmd::Health(r) => Reply::Health(
            on_vol(a, &r.vol, |a, vol| {
                Ok(archive_reply::Health {
                    broken: a.broken(&vol.name).unwrap_or_default(),
                    verify: crate::verify::last(vol)?
                        .map(|r| r.summary())
                        .unwrap_or_default(),
                })
            })
            .await?,
        ),
        Cmd::RepoStatus(r) => {
            let vol = vol_arg(&r.vol)?;
            let view = a.repo.lock().expect("repo view");
            Reply::RepoStatus(archive_reply::RepoStatus {
                url: view.url.clone().unwrap_or_default(),
                lag_s: view.lag_s.get(&vol).copied().unwrap_or(0),
                bytes_up: view.bytes_up,
                dedup_permille: view.dedup_permille,
                error: view.error.get(&vol).cloned().unwrap_or_default(),
            })
        }
        Cmd::Restored(r) => Reply::Restored(archive_reply::Restored {
            gids: on_vol(a, &r.vol, |_, vol| Ok(vol.restored()?)).await?,
        }),
        Cmd::Replicate(r) => {
            let name = vol_arg(&r.vol)?;
            let latest = crate::repl::replicate(a, &name, &r.dst, r.resync).await?;
            Reply::Replicate(archive_reply::Replicate {
                latest: Some(latest),
            })
        }
        Cmd::Status(r) => Reply::Status(walb_proto::Text {
            text: status(a, &r.vol).await?,
        }),
        Cmd::SetSnapshots(r) => {
            // Explicit → implicit (mergeable) or back; the number of diffs changed. The volume
            // lock keeps apply and merge out meanwhile.
            let word = if r.explicit {
                "enable-snapshot"
            } else {
                "disable-snapshot"
            };
            if r.gids.is_empty() {
                return Err(invalid(format!("{word}: no gid given")));
            }
            let gids: Vec<Gid> = r.gids.iter().copied().map(Gid).collect();
            let n = on_vol(a, &r.vol, move |_, vol| {
                vol.expect_state(word, &[State::Archived])?;
                vol.set_mergeable(&gids, !r.explicit)
            })
            .await?;
            Reply::SetSnapshots(Count { n: n as u64 })
        }
        Cmd::Retention(r) => Reply::Retention(
            on_vol(a, &r.vol, move |a, vol| {
                crate::upkeep::retention_once(a, vol, r.dry_run)
            })
            .await?,
        ),
        Cmd::Restore(r) => data(a, r.vol.clone(), move |a, vol| {
            vol.expect_state("restore", &[State::Archived])?;
            if let Some(why) = a.broken(&vol.name) {
                return Err(walb_daemon::error::bad_state(format!(
                    "volume {} is broken ({why}): nothing of it can be restored until an apply finishes its recovery",
                    vol.name
                )));
            }
            let path = ops::restore(vol, r.gid, a.discard, r.force)?;
            Ok(Reply::Restore(archive_reply::Restore {
                path: path.display().to_string(),
            }))
        })
        .await?,
        Cmd::DelRestored(r) => data(a, r.vol.clone(), move |_, vol| {
            vol.expect_state("del-restored", &[State::Archived, State::Stopped])?;
            ops::del_restored(vol, r.gid)?;
            Ok(Reply::DelRestored(Done {}))
        })
        .await?,
        Cmd::Apply(r) => data(a, r.vol.clone(), move |a, vol| {
            vol.expect_state("apply", &[State::Archived])?;
            // A broken volume's failed recovery is an interrupted apply: this retries it.
            ops::apply(vol, r.gid, a.discard)?;
            a.set_broken(&vol.name, None);
            Ok(Reply::Apply(Done {}))
        })
        .await?,
        Cmd::Merge(r) => data(a, r.vol.clone(), move |_, vol| {
            vol.expect_state("merge", &[State::Archived])?;
            ops::merge(vol, r.gid_b, r.gid_e)?;
            Ok(Reply::Merge(Done {}))
        })
        .await?,
        Cmd::Verify(r) => data(a, r.vol.clone(), move |a, vol| {
            vol.expect_state("verify", &[State::Archived, State::Stopped])?;
            let deep = if r.deep {
                crate::verify::Deep::All
            } else {
                crate::verify::Deep::Off
            };
            let r = crate::verify::verify(vol, deep)?;
            a.note_verify(&vol.name, &r);
            if !r.failures.is_empty() {
                return Err(CmdError::DataLoss(format!(
                    "verify of {}: {} of {} files damaged: {}",
                    vol.name,
                    r.failures.len(),
                    r.files,
                    r.failures.join("; ")
                )));
            }
            Ok(Reply::Verify(archive_reply::Verify {
                files: r.files as u64,
                bytes: r.bytes,
                deep: r.deep as u64,
            }))
        })
        .await?,
        Cmd::BindStorage(r) => data(a, r.vol.clone(), move |_, vol| {
            // Backups of the volume come from this storage (with TLS); without one the
            // next storage to send one binds it.
            let id = Some(r.storage.as_str()).filter(|s| !s.is_empty());
            if let Some(id) = id {
                volfile::check_vol_name(id)
                    .map_err(|_| invalid(format!("bind-storage: {id:?} is not a server id")))?;
            }
            crate::owner::bind(vol, id)?;
            Ok(Reply::BindStorage(Done {}))
        })
        .await?,
        Cmd::DeviceHash(r) => data(a, r.vol.clone(), move |_, vol| {
            // The storage's hash of the device at snapshot gid, for deep verification.
            let h = crate::devhash::DeviceHash::new(r.gid, r.bulk as usize, &r.digest)?;
            let oldest = vol.restorable()?.first().map_or(0, |r| r.gid.0);
            crate::devhash::record(vol, h, oldest)?;
            Ok(Reply::DeviceHash(Done {}))
        })
        .await?,
        Cmd::GcDiff(r) => data(a, r.vol.clone(), move |a, vol| {
            vol.expect_state("gc-diff", &[State::Archived, State::Stopped])?;
            // A running flow's temporary file is not stray.
            let sweep = a.entry(&vol.name).transient().is_none();
            Ok(Reply::GcDiff(Count {
                n: ops::gc(vol, sweep)? as u64,
            }))
        })
        .await?,
        Cmd::Resize(r) => data(a, r.vol.clone(), move |a, vol| {
            vol.expect_state("resize", &[State::Archived, State::Stopped])?;
            if a.entry(&vol.name).transient().is_some() {
                return Err(walb_daemon::error::bad_state(format!(
                    "resize: a transfer runs on {}",
                    vol.name
                )));
            }
            // A file grows with zeros, so walb's `zeroclear` needs no work of its own.
            ops::resize(vol, r.size_lb)?;
            Ok(Reply::Resize(SizeReply {
                size_lb: vol.size_lb()?,
            }))
        })
        .await?,
        Cmd::Cat(r) => data(a, r.vol.clone(), move |_, vol| {
            vol.expect_state("cat", &[State::Archived, State::Stopped])?;
            ops::cat(vol, r.gid, &PathBuf::from(&r.path))?;
            Ok(Reply::Cat(Done {}))
        })
        .await?,
        Cmd::Bhash(r) => data(a, r.vol.clone(), move |_, vol| {
            vol.expect_state("bhash", &[State::Archived, State::Stopped])?;
            let bulk = match r.bulk {
                0 => DEFAULT_BULK,
                b => b as usize,
            };
            Ok(Reply::Bhash(archive_reply::Bhash {
                digest: ops::bhash(vol, r.gid, bulk)?,
            }))
        })
        .await?,
    })
}

/// The volume's state: Clear is the absence of the volume; transients show over the static
/// state.
fn state_of(a: &Archive, name: &str) -> CmdResult<walb_proto::ArchiveState> {
    let vol = a.vol(name);
    if !vol.exists() {
        return Ok(walb_proto::ArchiveState::ArchiveClear);
    }
    if let Some(t) = a.entry(name).transient() {
        return Ok(t.typed());
    }
    Ok(vol.state()?.typed())
}

async fn state_cmd(a: &Arc<Archive>, cmd: &'static str, name: &str) -> CmdResult<Done> {
    let name = vol_arg(name)?;
    let n2 = name.clone();
    a.run(&name, move |a, vol| {
        a.no_transient(&n2, cmd)?;
        match cmd {
            "init-vol" => {
                if vol.exists() {
                    return Err(walb_daemon::error::bad_state(format!(
                        "volume {} is {}: init-vol needs Clear",
                        vol.name,
                        vol.state()?.word()
                    )));
                }
                vol.create()?;
            }
            "clear-vol" => {
                let vol = a.vol(&n2).require()?;
                vol.expect_state(cmd, &[State::SyncReady, State::Stopped])?;
                vol.remove_all()?;
                a.set_broken(&n2, None);
                a.metrics.all.forget(&[("vol", &n2)]);
            }
            "reset-vol" => {
                let vol = a.vol(&n2).require()?;
                vol.expect_state(cmd, &[State::SyncReady, State::Stopped])?;
                vol.remove_data()?;
                vol.reset_files()?;
                a.set_broken(&n2, None);
                a.metrics.all.forget(&[("vol", &n2)]);
            }
            "start" => {
                let vol = a.vol(&n2).require()?;
                vol.expect_state(cmd, &[State::Stopped])?;
                vol.set_state(State::Archived)?;
            }
            _ => {
                let vol = a.vol(&n2).require()?;
                vol.expect_state(cmd, &[State::Archived])?;
                vol.set_state(State::Stopped)?;
            }
        }
        a.refresh_metrics(vol);
        Ok(Done {})
    })
    .await
}

async fn status(a: &Arc<Archive>, only: &str) -> CmdResult<String> {
    let names = match only {
        "" => a.volumes()?,
        v => vec![vol_arg(v)?],
    };
    let mut out = Vec::new();
    for name in names {
        let transient = a.entry(&name).transient();
        let line = on_vol(a, &name, move |a, vol| {
            let state = match transient {
                Some(t) => t.word(),
                None => vol.state()?.word(),
            };
            let diffs = vol.diffs()?;
            let bytes: u64 = diffs.iter().map(|d| d.data_size).sum();
            let base = vol.base()?;
            let latest = match vol.latest()? {
                l if l == MetaSnap::default() => "none".to_string(),
                l => l.to_string(),
            };
            let verified = match crate::verify::last(vol)? {
                Some(r) => format!(" verified {}", r.summary()),
                None => " verified never".to_string(),
            };
            let broken = match a.broken(&vol.name) {
                Some(why) => format!(" BROKEN: {why}"),
                None => String::new(),
            };
            let image = crate::capacity::disk_bytes(&vol.image());
            let restored: u64 = vol
                .restored()?
                .iter()
                .map(|g| crate::capacity::disk_bytes(&vol.restored_path(*g)))
                .sum();
            Ok(format!(
                "{}: state {state} base {base} latest {latest} diffs {} ({bytes} bytes) size {} LB restorable {} disk: image {image} diffs {bytes} restored {restored} bytes{verified}{broken}",
                vol.name,
                diffs.len(),
                vol.size_lb()?,
                vol.restorable()?.len(),
            ))
        })
        .await?;
        out.push(line);
    }
    Ok(out.join("\n"))
}

/// Runs a command that reads or rewrites the volume's data, under its lock; the volume's
/// metrics are refreshed after it succeeded.
async fn data(
    a: &Arc<Archive>,
    name: String,
    f: impl FnOnce(&Archive, &Vol) -> CmdResult<Reply> + Send + 'static,
) -> CmdResult<Reply> {
    on_vol(a, &name, move |a, vol| {
        let reply = f(a, vol)?;
        a.refresh_metrics(vol);
        Ok(reply)
    })
    .await
}
