//! The control commands (docs/scenarios.md §7.4, §7.5) over the argument vector walbc sends.

use std::path::PathBuf;
use std::sync::Arc;

use walb_core::bhash::DEFAULT_BULK;
use walb_core::Gid;
use walb_daemon::error::{arg, invalid, num_arg};
use walb_daemon::serve::Commands;
use walb_daemon::{volfile, CmdError, CmdResult};

use crate::archive::Archive;
use crate::ops;
use crate::volume::State;
use walb_core::meta::{iso_utc, MetaSnap};

/// How long `stop` waits for a running wdiff transfer.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The command set; a newtype so the trait can be implemented on the shared `Arc<Archive>`.
pub struct ArchiveCommands(pub Arc<Archive>);

#[tonic::async_trait]
impl Commands for ArchiveCommands {
    async fn call(&self, args: Vec<String>) -> CmdResult<String> {
        let a = &self.0;
        a.ready()?;
        let cmd = arg(&args, 0, "command")?;
        match cmd {
            "init-vol" | "clear-vol" | "reset-vol" | "start" | "stop" => state_cmd(a, &args).await,
            "get" => get(a, &args).await,
            "replicate" => {
                let name = vol_arg(&args, 1)?;
                let dst = arg(&args, 2, "destination host:port")?;
                let resync = match args.get(3).map(String::as_str) {
                    None => false,
                    Some("resync") => true,
                    Some(o) => {
                        return Err(invalid(format!("replicate: {o:?}: only resync may follow")))
                    }
                };
                crate::repl::replicate(a, &name, dst, resync).await
            }
            "status" => status(a, &args).await,
            "restore" | "del-restored" | "apply" | "merge" | "gc-diff" | "cat" | "bhash"
            | "verify" | "resize" | "device-hash" | "bind-storage" => data_cmd(a, &args).await,
            "disable-snapshot" | "enable-snapshot" => snapshot_flag(a, &args).await,
            "retention" => {
                // `retention VOL [dry-run]`: the plan (GID TIME keep REASONS | drop), carried
                // out unless dry-run.
                let name = vol_arg(&args, 1)?;
                let dry_run = match args.get(2).map(String::as_str) {
                    None => false,
                    Some("dry-run") => true,
                    Some(o) => {
                        return Err(invalid(format!(
                            "retention: {o:?}: only dry-run may follow"
                        )))
                    }
                };
                a.run(&name, move |a, vol| {
                    a.vol(&vol.name).require()?;
                    crate::retention::run_once(a, vol, dry_run)
                })
                .await
            }
            _ => Err(invalid(format!("unknown command {cmd:?}"))),
        }
    }
}

/// The volume argument at `i`, checked.
fn vol_arg(args: &[String], i: usize) -> CmdResult<String> {
    let v = arg(args, i, "volume")?;
    volfile::check_vol_name(v)?;
    Ok(v.to_string())
}

async fn state_cmd(a: &Arc<Archive>, args: &[String]) -> CmdResult<String> {
    let cmd = args[0].clone();
    let name = vol_arg(args, 1)?;
    if cmd == "stop" {
        let force = match args.get(2).map(String::as_str) {
            None | Some("graceful") => false,
            Some("force") => true,
            Some(mode) => return Err(invalid(format!("stop mode {mode:?}: graceful or force"))),
        };
        // graceful lets a running wdiff transfer finish; force cuts it.
        a.wait_wdiff_recv(&name, force, STOP_WAIT).await;
    }
    let n2 = name.clone();
    a.run(&name, move |a, vol| {
        a.no_transient(&n2, &cmd)?;
        match cmd.as_str() {
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
                vol.expect_state(&cmd, &[State::SyncReady, State::Stopped])?;
                vol.remove_all()?;
                a.set_broken(&n2, None);
                a.metrics.all.forget(&[("vol", &n2)]);
            }
            "reset-vol" => {
                let vol = a.vol(&n2).require()?;
                vol.expect_state(&cmd, &[State::SyncReady, State::Stopped])?;
                vol.remove_data()?;
                vol.reset_files()?;
                a.set_broken(&n2, None);
                a.metrics.all.forget(&[("vol", &n2)]);
            }
            "start" => {
                let vol = a.vol(&n2).require()?;
                vol.expect_state(&cmd, &[State::Stopped])?;
                vol.set_state(State::Archived)?;
            }
            _ => {
                let vol = a.vol(&n2).require()?;
                vol.expect_state(&cmd, &[State::Archived])?;
                vol.set_state(State::Stopped)?;
            }
        }
        a.refresh_metrics(vol);
        Ok("ok".to_string())
    })
    .await
}

async fn get(a: &Arc<Archive>, args: &[String]) -> CmdResult<String> {
    let what = arg(args, 1, "get target")?.to_string();
    if what == "vol" {
        return Ok(a.volumes()?.join("\n"));
    }
    if what == "capacity" {
        // FREE FLOOR, in bytes: flows are refused once FREE would fall under FLOOR.
        return Ok(format!("{} {}", a.free_bytes()?, a.min_free));
    }
    let name = vol_arg(args, 2)?;
    if what == "progress" {
        // Read without the volume's lock, which the action holds.
        return Ok(a.entry(&name).running.line());
    }
    if what == "state" {
        // Clear is the absence of the volume; transients show over the static state.
        let vol = a.vol(&name);
        if !vol.exists() {
            return Ok("Clear".into());
        }
        if let Some(t) = a.entry(&name).transient() {
            return Ok(t.word().into());
        }
        return Ok(vol.state()?.word().into());
    }
    // `restorable` lists implicit points too (flagged 0); `explicit` only the explicit ones.
    let explicit_only = match args.get(3).map(String::as_str) {
        None => false,
        Some("all") if what == "restorable" => false,
        Some("explicit") if what == "restorable" => true,
        Some(x) => return Err(invalid(format!("get {what}: unexpected argument {x:?}"))),
    };
    a.run(&name, move |a, vol| {
        let vol = a.vol(&vol.name).require()?;
        Ok(match what.as_str() {
            // A broken volume promises nothing until its recovery is finished.
            "restorable" if a.broken(&vol.name).is_some() => String::new(),
            "restorable" => vol
                .restorable()?
                .iter()
                .filter(|r| !explicit_only || r.is_explicit)
                .map(|r| {
                    // 1 explicit, 0 implicit, ? the newest point, whose kind the next diff
                    // will tell.
                    let kind = match (r.is_settled, r.is_explicit) {
                        (false, _) => "?",
                        (true, true) => "1",
                        (true, false) => "0",
                    };
                    format!("{} {} {kind}", r.gid, iso_utc(r.timestamp))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            "base" => vol.base()?.to_string(),
            "latest-snap" => {
                let s = vol.latest()?;
                format!("{} {}", s.gid_b, s.gid_e)
            }
            "uuid" => vol.uuid()?.to_string(),
            "archive-uuid" => vol.archive_uuid()?.to_string(),
            "diff" => vol
                .diffs()?
                .iter()
                .map(walb_core::meta::format_name)
                .collect::<Vec<_>>()
                .join("\n"),
            "exists-base-image" => u8::from(vol.has_image()).to_string(),
            "broken" => a.broken(&vol.name).unwrap_or_default(),
            "verify" => crate::verify::last(&vol)?
                .map(|r| r.summary())
                .unwrap_or_default(),
            "restored" => vol
                .restored()?
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => return Err(invalid(format!("unknown get target {what:?}"))),
        })
    })
    .await
}

async fn status(a: &Arc<Archive>, args: &[String]) -> CmdResult<String> {
    let names = match args.get(1) {
        Some(_) => vec![vol_arg(args, 1)?],
        None => a.volumes()?,
    };
    let mut out = Vec::new();
    for name in names {
        let transient = a.entry(&name).transient();
        let line = a
            .run(&name, move |a, vol| {
                let vol = a.vol(&vol.name).require()?;
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
                let verified = match crate::verify::last(&vol)? {
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

/// `disable-snapshot VOL GID...` makes clean snapshots implicit (mergeable), `enable-snapshot`
/// explicit again; replies with the number of diffs changed. The volume lock keeps apply and
/// merge out meanwhile.
async fn snapshot_flag(a: &Arc<Archive>, args: &[String]) -> CmdResult<String> {
    let cmd = args[0].clone();
    let name = vol_arg(args, 1)?;
    // Index 2 is read even when missing: at least one gid.
    let gids = (2..args.len().max(3))
        .map(|i| num_arg(args, i, "gid").map(Gid))
        .collect::<CmdResult<Vec<Gid>>>()?;
    let mergeable = cmd == "disable-snapshot";
    a.run(&name, move |a, vol| {
        let vol = a.vol(&vol.name).require()?;
        vol.expect_state(&cmd, &[State::Archived])?;
        Ok(vol.set_mergeable(&gids, mergeable)?.to_string())
    })
    .await
}

async fn data_cmd(a: &Arc<Archive>, args: &[String]) -> CmdResult<String> {
    let cmd = args[0].clone();
    let name = vol_arg(args, 1)?;
    let mode = a.discard;
    let args = args.to_vec();
    a.run(&name, move |a, vol| {
        let vol = a.vol(&vol.name).require()?;
        let reply = match cmd.as_str() {
            "restore" => {
                vol.expect_state(&cmd, &[State::Archived])?;
                let gid = num_arg(&args, 2, "gid")?;
                let force = match args.get(3).map(String::as_str) {
                    None => false,
                    Some("force") => true,
                    Some(o) => return Err(invalid(format!("restore: {o:?}: only force may follow"))),
                };
                if let Some(why) = a.broken(&vol.name) {
                    return Err(walb_daemon::error::bad_state(format!(
                        "volume {} is broken ({why}): nothing of it can be restored until an apply finishes its recovery",
                        vol.name
                    )));
                }
                ops::restore(&vol, gid, mode, force)?.display().to_string()
            }
            "del-restored" => {
                vol.expect_state(&cmd, &[State::Archived, State::Stopped])?;
                ops::del_restored(&vol, num_arg(&args, 2, "gid")?)?;
                "ok".into()
            }
            "apply" => {
                vol.expect_state(&cmd, &[State::Archived])?;
                let gid = num_arg(&args, 2, "gid")?;
                // A broken volume's failed recovery is an interrupted apply: this retries it.
                ops::apply(&vol, gid, mode)?;
                a.set_broken(&vol.name, None);
                "ok".into()
            }
            "merge" => {
                vol.expect_state(&cmd, &[State::Archived])?;
                let b = num_arg(&args, 2, "gidB")?;
                let e = num_arg(&args, 3, "gidE")?;
                ops::merge(&vol, b, e)?;
                "ok".into()
            }
            "verify" => {
                vol.expect_state(&cmd, &[State::Archived, State::Stopped])?;
                let deep = match args.get(2).map(String::as_str) {
                    None => crate::verify::Deep::Off,
                    Some("deep") => crate::verify::Deep::All,
                    Some(o) => return Err(invalid(format!("verify: {o:?}: only deep may follow"))),
                };
                let r = crate::verify::verify(&vol, deep)?;
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
                format!(
                    "ok {} files {} bytes {} snapshots matching the device",
                    r.files, r.bytes, r.deep
                )
            }
            "bind-storage" => {
                // `bind-storage VOL [ID]`: backups of VOL come from storage ID (with TLS);
                // without ID the next storage to send one binds it.
                let id = args.get(2).map(String::as_str);
                if let Some(id) = id {
                    walb_daemon::volfile::check_vol_name(id)
                        .map_err(|_| invalid(format!("bind-storage: {id:?} is not a server id")))?;
                }
                crate::owner::bind(&vol, id)?;
                "ok".into()
            }
            "device-hash" => {
                // `device-hash VOL GID BULK DIGEST`: the storage's hash of the device at
                // snapshot GID, for deep verification.
                let h = crate::devhash::DeviceHash::new(
                    num_arg(&args, 2, "gid")?,
                    num_arg(&args, 3, "bulk bytes")? as usize,
                    arg(&args, 4, "digest")?,
                )?;
                let oldest = vol.restorable()?.first().map_or(0, |r| r.gid.0);
                crate::devhash::record(&vol, h, oldest)?;
                "ok".into()
            }
            "gc-diff" => {
                vol.expect_state(&cmd, &[State::Archived, State::Stopped])?;
                // A running flow's temporary file is not stray.
                let sweep = a.entry(&vol.name).transient().is_none();
                ops::gc(&vol, sweep)?.to_string()
            }
            "resize" => {
                vol.expect_state(&cmd, &[State::Archived, State::Stopped])?;
                if a.entry(&vol.name).transient().is_some() {
                    return Err(walb_daemon::error::bad_state(format!(
                        "resize: a transfer runs on {}",
                        vol.name
                    )));
                }
                // A file grows with zeros, so `zeroclear` needs no work of its own.
                if let Some(z) = args.get(3).filter(|z| *z != "zeroclear") {
                    return Err(invalid(format!("resize: {z:?}: only zeroclear may follow")));
                }
                ops::resize(&vol, num_arg(&args, 2, "size in LB")?)?;
                a.refresh_metrics(&vol);
                vol.size_lb()?.to_string()
            }
            "cat" => {
                vol.expect_state(&cmd, &[State::Archived, State::Stopped])?;
                let gid = num_arg(&args, 2, "gid")?;
                let path = PathBuf::from(arg(&args, 3, "path")?);
                ops::cat(&vol, gid, &path)?;
                "ok".into()
            }
            _ => {
                vol.expect_state(&cmd, &[State::Archived, State::Stopped])?;
                let gid = num_arg(&args, 2, "gid")?;
                let bulk = match args.get(3) {
                    Some(_) => num_arg(&args, 3, "bulk bytes")? as usize,
                    None => DEFAULT_BULK,
                };
                ops::bhash(&vol, gid, bulk)?
            }
        };
        a.refresh_metrics(&vol);
        Ok::<_, CmdError>(reply)
    })
    .await
}
