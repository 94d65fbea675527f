//! The proxy's control commands (docs/scenarios.md §7.2).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use walb_daemon::error::invalid;
use walb_daemon::serve::Guard;
use walb_daemon::{CmdError, CmdResult};
use walb_proto::proxy_control_server::ProxyControl;
use walb_proto::proxy_reply::{self, Reply};
use walb_proto::proxy_request::Cmd;
use walb_proto::{Done, Names, ProxyReply, ProxyRequest, StopMode, Text};

use crate::archive_info::ArchiveInfo;
use crate::proxy::{self, Proxy};

/// The proxy's control service: each command through the daemon's `Guard`.
pub struct ProxyControlSvc {
    pub proxy: Arc<Proxy>,
    pub guard: Arc<Guard>,
}

#[tonic::async_trait]
impl ProxyControl for ProxyControlSvc {
    async fn call(
        &self,
        req: tonic::Request<ProxyRequest>,
    ) -> Result<tonic::Response<ProxyReply>, tonic::Status> {
        let p = &self.proxy;
        self.guard
            .serve(
                req,
                |r| r.cmd,
                |c| async move {
                    Ok(ProxyReply {
                        reply: Some(handle(p, c).await?),
                    })
                },
            )
            .await
    }
}

/// An optional name: empty is none.
fn given(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

/// One command (docs/scenarios.md §7.2).
async fn handle(p: &Arc<Proxy>, cmd: Cmd) -> CmdResult<Reply> {
    Ok(match cmd {
        Cmd::Start(r) => {
            p.start(&r.vol)?;
            Reply::Start(Done {})
        }
        Cmd::Stop(r) => {
            let mode = match r.mode() {
                StopMode::StopGraceful => proxy::StopMode::Graceful,
                StopMode::StopForce => proxy::StopMode::Force,
                StopMode::StopEmpty => proxy::StopMode::Empty,
            };
            p.stop(&r.vol, mode).await?;
            Reply::Stop(Done {})
        }
        Cmd::ClearVol(r) => {
            p.clear_vol(&r.vol)?;
            Reply::ClearVol(Done {})
        }
        Cmd::Kick(r) => {
            p.kick(given(&r.vol), given(&r.archive))?;
            Reply::Kick(Done {})
        }
        Cmd::ArchiveInfoSet(r) => {
            let info = r
                .info
                .as_ref()
                .ok_or_else(|| invalid("archive-info: no address given"))?;
            let info = ArchiveInfo::from_typed(info)?;
            if r.add {
                p.archive_add(&r.vol, &r.archive, info)?;
            } else {
                p.archive_update(&r.vol, &r.archive, info)?;
            }
            Reply::ArchiveInfoSet(Done {})
        }
        Cmd::ArchiveInfoDelete(r) => {
            p.archive_delete(&r.vol, &r.archive)?;
            Reply::ArchiveInfoDelete(Done {})
        }
        Cmd::ArchiveInfoList(r) => Reply::ArchiveInfoList(Names {
            names: p.archive_list(&r.vol)?,
        }),
        Cmd::ArchiveInfoGet(r) => Reply::ArchiveInfoGet(p.archive_get(&r.vol, &r.archive)?.typed()),
        Cmd::ListVols(_) => Reply::ListVols(Names {
            names: p.vol_names(),
        }),
        Cmd::GetState(r) => Reply::GetState(proxy_reply::GetState {
            state: p.vol(&r.vol)?.state().typed() as i32,
        }),
        Cmd::SendError(r) => Reply::SendError(proxy_reply::SendError {
            stopped: p.is_send_error(&r.vol, &r.archive)?,
            last_failure: p.last_send_failure(&r.vol, &r.archive)?,
        }),
        Cmd::HeldDiffs(r) => {
            let v = p.vol(&r.vol)?;
            let diffs = match given(&r.archive) {
                None => v.dir.held()?,
                Some(a) => {
                    p.archive_get(&v.name, a)?;
                    v.dir.waiting(a)?
                }
            };
            Reply::HeldDiffs(Names {
                names: diffs.into_iter().map(|d| d.name).collect(),
            })
        }
        Cmd::Status(r) => Reply::Status(Text {
            text: status(p, given(&r.vol))?,
        }),
    })
}

fn status(p: &Proxy, vol: Option<&str>) -> CmdResult<String> {
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
