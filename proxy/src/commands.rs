//! The proxy's control commands (docs/scenarios.md §7.2): argument parsing and reply text.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use walb_daemon::error::{arg, invalid};
use walb_daemon::serve::Commands;
use walb_daemon::{CmdError, CmdResult};

use crate::archive_info::ArchiveInfo;
use crate::proxy::{Proxy, StopMode};

pub struct ProxyCommands(pub Arc<Proxy>);

fn no_more(args: &[String], n: usize) -> CmdResult<()> {
    if args.len() > n {
        return Err(invalid(format!("unexpected arguments: {:?}", &args[n..])));
    }
    Ok(())
}

#[tonic::async_trait]
impl Commands for ProxyCommands {
    async fn call(&self, args: Vec<String>) -> CmdResult<String> {
        let p = &self.0;
        let cmd = arg(&args, 0, "command")?;
        let ok = || Ok("ok".to_string());
        match cmd {
            "archive-info" => self.archive_info(&args[1..]),
            "start" => {
                no_more(&args, 2)?;
                p.start(arg(&args, 1, "volume")?)?;
                ok()
            }
            "stop" => {
                no_more(&args, 3)?;
                let vol = arg(&args, 1, "volume")?;
                let mode = match args.get(2).map(String::as_str) {
                    None | Some("graceful") => StopMode::Graceful,
                    Some("force") => StopMode::Force,
                    Some("empty") => StopMode::Empty,
                    Some(m) => {
                        return Err(invalid(format!(
                            "stop mode {m:?}: graceful, force or empty"
                        )))
                    }
                };
                p.stop(vol, mode).await?;
                ok()
            }
            "clear-vol" => {
                no_more(&args, 2)?;
                p.clear_vol(arg(&args, 1, "volume")?)?;
                ok()
            }
            "kick" => {
                no_more(&args, 3)?;
                p.kick(
                    args.get(1).map(String::as_str),
                    args.get(2).map(String::as_str),
                )?;
                ok()
            }
            "get" => self.get(&args[1..]),
            "status" => {
                no_more(&args, 2)?;
                self.status(args.get(1).map(String::as_str))
            }
            _ => Err(invalid(format!("unknown command {cmd:?}"))),
        }
    }
}

impl ProxyCommands {
    fn archive_info(&self, args: &[String]) -> CmdResult<String> {
        let p = &self.0;
        let sub = arg(args, 0, "archive-info add|update|delete|list|get")?;
        let vol = arg(args, 1, "volume")?;
        match sub {
            "list" => {
                no_more(args, 2)?;
                Ok(p.archive_list(vol)?.join("\n"))
            }
            "add" | "update" => {
                let name = arg(args, 2, "archive name")?;
                let info = ArchiveInfo::from_args(&args[3..])?;
                if sub == "add" {
                    p.archive_add(vol, name, info)?;
                } else {
                    p.archive_update(vol, name, info)?;
                }
                Ok("ok".into())
            }
            "delete" => {
                no_more(args, 3)?;
                p.archive_delete(vol, arg(args, 2, "archive name")?)?;
                Ok("ok".into())
            }
            "get" => {
                no_more(args, 3)?;
                Ok(p.archive_get(vol, arg(args, 2, "archive name")?)?.line())
            }
            _ => Err(invalid(format!(
                "archive-info {sub:?}: add, update, delete, list or get"
            ))),
        }
    }

    fn get(&self, args: &[String]) -> CmdResult<String> {
        let p = &self.0;
        let what = arg(args, 0, "get target")?;
        match what {
            "state" => {
                no_more(args, 2)?;
                Ok(p.vol(arg(args, 1, "volume")?)?.state().to_string())
            }
            "vol" => {
                no_more(args, 1)?;
                Ok(p.vol_names().join("\n"))
            }
            "is-wdiff-send-error" => {
                no_more(args, 3)?;
                let e = p.is_send_error(arg(args, 1, "volume")?, arg(args, 2, "archive name")?)?;
                Ok(if e { "1" } else { "0" }.into())
            }
            "last-send-error" => {
                no_more(args, 3)?;
                p.last_send_failure(arg(args, 1, "volume")?, arg(args, 2, "archive name")?)
            }
            "proxy-diff" => {
                no_more(args, 3)?;
                let v = p.vol(arg(args, 1, "volume")?)?;
                let diffs = match args.get(2) {
                    None => v.dir.held()?,
                    Some(a) => {
                        p.archive_get(&v.name, a)?;
                        v.dir.waiting(a)?
                    }
                };
                Ok(diffs
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
            _ => Err(invalid(format!(
                "get {what:?}: state, vol, is-wdiff-send-error, proxy-diff, host-type or pid"
            ))),
        }
    }

    fn status(&self, vol: Option<&str>) -> CmdResult<String> {
        let p = &self.0;
        let vols = match vol {
            Some(v) => vec![p.vol(v)?],
            None => p.all_vols(),
        };
        let mut out = String::new();
        let w = |e: std::fmt::Error| CmdError::Internal(e.to_string());
        if vol.is_none() {
            writeln!(out, "proxy: {} volumes", vols.len()).map_err(w)?;
        }
        for v in vols {
            let held = v.dir.held()?;
            let bytes: u64 = held.iter().map(|d| d.meta.data_size).sum();
            let st = v.lock();
            writeln!(
                out,
                "{} {} size_lb {} held {} diffs ({} bytes)",
                v.name,
                st.state,
                v.dir.size_lb()?,
                held.len(),
                bytes
            )
            .map_err(w)?;
            for (name, a) in &st.archives {
                let waiting = v.dir.waiting(name)?.len();
                let s = a.ctl.lock();
                let activity = if s.error {
                    "send error (kick to retry)".to_string()
                } else if s.busy {
                    "sending".to_string()
                } else if let Some(d) = s.due {
                    let secs = d.saturating_duration_since(Instant::now()).as_secs();
                    if secs == 0 {
                        "sending soon".into()
                    } else {
                        format!("next send in {secs}s")
                    }
                } else {
                    "idle".to_string()
                };
                write!(
                    out,
                    "  archive {name} {}: waiting {waiting}, {activity}",
                    a.info.line()
                )
                .map_err(w)?;
                if let Some(f) = &s.last_failure {
                    write!(out, ", last failure: {f}").map_err(w)?;
                }
                out.push('\n');
            }
        }
        Ok(out.trim_end().to_string())
    }
}
