//! `walbc call SERVER WORD…`: a debugging convenience that maps walb's command words onto the
//! typed requests of proto/control.proto and prints each reply as walb's tools print it. This
//! is the one place that knows the words; every other part of walbc sends typed requests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::Code;
use walb_core::meta::{iso_utc, MetaSnap, MetaState};
use walb_core::Gid;
use walb_proto::control::{call, CallError, Cmd};
use walb_proto::{archive_reply as arp, archive_request as ar, control_reply as crp};
use walb_proto::{control_request as cr, proxy_reply as prp, proxy_request as pr};
use walb_proto::{storage_reply as srp, storage_request as sr};
use walb_proto::{ArchiveReply, ArchiveRequest, ControlReply, ControlRequest};
use walb_proto::{ProxyReply, ProxyRequest, StorageReply, StorageRequest};

/// A parsed command for one kind of server.
#[derive(Debug)]
pub enum Request {
    Control(cr::Cmd),
    Storage(sr::Cmd),
    Proxy(pr::Cmd),
    Archive(ar::Cmd),
}

type Words<'a> = &'a [&'a str];

/// A wrong word, in the form every call error has.
fn bad(msg: impl Into<String>) -> CallError {
    CallError {
        server: "walbc".into(),
        code: Code::InvalidArgument,
        message: msg.into(),
        starting: false,
    }
}

fn at<'a>(w: Words<'a>, i: usize, what: &str) -> Result<&'a str, CallError> {
    w.get(i)
        .copied()
        .ok_or_else(|| bad(format!("missing argument {i}: {what}")))
}

fn num(w: Words, i: usize, what: &str) -> Result<u64, CallError> {
    let s = at(w, i, what)?;
    s.parse()
        .map_err(|_| bad(format!("{what} {s:?} is not a number")))
}

fn opt_num(w: Words, i: usize, what: &str, default: u64) -> Result<u64, CallError> {
    if w.len() > i {
        num(w, i, what)
    } else {
        Ok(default)
    }
}

/// Nothing after argument `n - 1`.
fn no_more(w: Words, n: usize) -> Result<(), CallError> {
    match w.get(n..) {
        Some(rest) if !rest.is_empty() => Err(bad(format!("unexpected arguments: {rest:?}"))),
        _ => Ok(()),
    }
}

/// An optional last word: absent, or one of `choices` (its index + 1), else an error naming it.
fn choice(w: Words, i: usize, choices: &[&str], cmd: &str) -> Result<usize, CallError> {
    no_more(w, i + 1)?;
    match w.get(i) {
        None => Ok(0),
        Some(x) => choices
            .iter()
            .position(|c| c == x)
            .map(|p| p + 1)
            .ok_or_else(|| bad(format!("{cmd}: {x:?}: expected {}", choices.join(" or ")))),
    }
}

/// A bulk size in bytes with an optional k/m suffix (512 B to 4 MiB, a multiple of 512), in LB.
pub fn parse_bulk(s: &str) -> Result<u32, CallError> {
    let bytes = walb_core::size::parse_size(s).map_err(bad)?;
    if !(512..=4 << 20).contains(&bytes) || !bytes.is_multiple_of(512) {
        return Err(bad(format!(
            "bulk size {s}: must be a multiple of 512 from 512 to 4m"
        )));
    }
    Ok((bytes / 512) as u32)
}

/// The words every daemon answers, if `w` is one of them.
fn common(w: Words) -> Option<Result<cr::Cmd, CallError>> {
    Some(match w {
        ["version"] | ["get", "host-type"] | ["get", "pid"] => Ok(cr::Cmd::Hello(cr::Hello {})),
        ["shutdown"] | ["shutdown", "graceful"] => {
            Ok(cr::Cmd::Shutdown(cr::Shutdown { force: false }))
        }
        ["shutdown", "force"] => Ok(cr::Cmd::Shutdown(cr::Shutdown { force: true })),
        ["rotate-certs"] => Ok(cr::Cmd::RotateCerts(cr::RotateCerts {})),
        _ => return None,
    })
}

fn storage(w: Words) -> Result<sr::Cmd, CallError> {
    use sr::Cmd as C;
    let vol = |i| at(w, i, "volume").map(String::from);
    Ok(match at(w, 0, "command")? {
        "init-vol" => C::InitVol(sr::InitVol {
            vol: vol(1)?,
            wdev: at(w, 2, "wdev name")?.into(),
        }),
        "clear-vol" => C::ClearVol(sr::ClearVol { vol: vol(1)? }),
        "reset-vol" => C::ResetVol(sr::ResetVol {
            vol: vol(1)?,
            gid: opt_num(w, 2, "gid", 0)?,
        }),
        "start" => {
            let mode = match at(w, 2, "target|standby")? {
                "target" => walb_proto::StartMode::StartTarget,
                "standby" => walb_proto::StartMode::StartStandby,
                m => return Err(bad(format!("start: mode {m:?}: target or standby"))),
            };
            C::Start(sr::Start {
                vol: vol(1)?,
                mode: mode as i32,
            })
        }
        "stop" => C::Stop(sr::Stop { vol: vol(1)? }),
        "snapshot" => C::Snapshot(sr::Snapshot {
            vol: vol(1)?,
            hash_bulk_lb: match w.get(2) {
                None => 0,
                Some(&"hash") => w.get(3).map_or(Ok(512), |b| parse_bulk(b))?,
                Some(o) => return Err(bad(format!("snapshot: {o:?}: only hash may follow"))),
            },
        }),
        "full-bkp" | "hash-bkp" => {
            let bulk_lb = w.get(2).map_or(Ok(0), |b| parse_bulk(b))?;
            if w[0] == "full-bkp" {
                C::FullBkp(sr::FullBkp {
                    vol: vol(1)?,
                    bulk_lb,
                })
            } else {
                C::HashBkp(sr::HashBkp {
                    vol: vol(1)?,
                    bulk_lb,
                })
            }
        }
        "resize" => C::Resize(sr::Resize {
            vol: vol(1)?,
            size_lb: opt_num(w, 2, "size in LB", 0)?,
        }),
        "set-full-scan-bps" => C::SetFullScanBps(sr::SetFullScanBps {
            bps: num(w, 1, "bytes per second")?,
        }),
        "cancel" => C::Cancel(sr::Cancel { vol: vol(1)? }),
        "kick" => C::Kick(sr::Kick {}),
        "status" => C::Status(sr::Status {
            vol: w.get(1).unwrap_or(&"").to_string(),
        }),
        "get" => match at(w, 1, "get target")? {
            "vol" => C::ListVols(sr::ListVols {}),
            "progress" => C::GetProgress(sr::GetProgress { vol: vol(2)? }),
            "state" | "is-overflow" | "log-usage" | "write-rate" | "uuid" | "latest-snap"
            | "done" => C::Get(sr::Get { vol: vol(2)? }),
            other => return Err(bad(format!("get: unknown target {other:?}"))),
        },
        other => return Err(bad(format!("unknown storage command {other:?}"))),
    })
}

fn proxy(w: Words) -> Result<pr::Cmd, CallError> {
    use pr::Cmd as C;
    let vol = |i| at(w, i, "volume").map(String::from);
    let archive = |i| at(w, i, "archive name").map(String::from);
    let opt = |i: usize| w.get(i).unwrap_or(&"").to_string();
    Ok(match at(w, 0, "command")? {
        "archive-info" => match at(w, 1, "archive-info add|update|delete|list|get")? {
            sub @ ("add" | "update") => {
                no_more(w, 7)?;
                C::ArchiveInfoSet(pr::ArchiveInfoSet {
                    vol: vol(2)?,
                    archive: archive(3)?,
                    info: Some(walb_proto::ArchiveInfo {
                        addr: at(w, 4, "archive address HOST:PORT")?.into(),
                        cmpr: opt(5),
                        delay_s: opt_num(w, 6, "delay", 0)?,
                    }),
                    add: sub == "add",
                })
            }
            "delete" => C::ArchiveInfoDelete(pr::ArchiveInfoDelete {
                vol: vol(2)?,
                archive: archive(3)?,
            }),
            "list" => C::ArchiveInfoList(pr::ArchiveInfoList { vol: vol(2)? }),
            "get" => C::ArchiveInfoGet(pr::ArchiveInfoGet {
                vol: vol(2)?,
                archive: archive(3)?,
            }),
            sub => {
                return Err(bad(format!(
                    "archive-info {sub:?}: add, update, delete, list or get"
                )))
            }
        },
        "start" => {
            no_more(w, 2)?;
            C::Start(pr::Start { vol: vol(1)? })
        }
        "stop" => {
            let mode = match choice(w, 2, &["graceful", "force", "empty"], "stop mode")? {
                0 | 1 => walb_proto::StopMode::StopGraceful,
                2 => walb_proto::StopMode::StopForce,
                _ => walb_proto::StopMode::StopEmpty,
            };
            C::Stop(pr::Stop {
                vol: vol(1)?,
                mode: mode as i32,
            })
        }
        "clear-vol" => C::ClearVol(pr::ClearVol { vol: vol(1)? }),
        "kick" => {
            no_more(w, 3)?;
            C::Kick(pr::Kick {
                vol: opt(1),
                archive: opt(2),
            })
        }
        "status" => C::Status(pr::Status { vol: opt(1) }),
        "get" => match at(w, 1, "get target")? {
            "state" => C::GetState(pr::GetState { vol: vol(2)? }),
            "vol" => C::ListVols(pr::ListVols {}),
            "is-wdiff-send-error" | "last-send-error" => C::SendError(pr::SendError {
                vol: vol(2)?,
                archive: archive(3)?,
            }),
            "proxy-diff" => C::HeldDiffs(pr::HeldDiffs {
                vol: vol(2)?,
                archive: opt(3),
            }),
            what => {
                return Err(bad(format!(
                    "get {what:?}: state, vol, is-wdiff-send-error, last-send-error, proxy-diff, host-type or pid"
                )))
            }
        },
        cmd => return Err(bad(format!("unknown command {cmd:?}"))),
    })
}

fn archive(w: Words) -> Result<ar::Cmd, CallError> {
    use ar::Cmd as C;
    let vol = |i| at(w, i, "volume").map(String::from);
    let gid = |i| num(w, i, "gid");
    Ok(match at(w, 0, "command")? {
        "init-vol" => C::InitVol(ar::InitVol { vol: vol(1)? }),
        "clear-vol" => C::ClearVol(ar::ClearVol { vol: vol(1)? }),
        "reset-vol" => C::ResetVol(ar::ResetVol { vol: vol(1)? }),
        "start" => C::Start(ar::Start { vol: vol(1)? }),
        "stop" => C::Stop(ar::Stop {
            vol: vol(1)?,
            mode: match choice(w, 2, &["graceful", "force"], "stop mode")? {
                2 => walb_proto::StopMode::StopForce,
                _ => walb_proto::StopMode::StopGraceful,
            } as i32,
        }),
        "get" => {
            let what = at(w, 1, "get target")?;
            match what {
                "vol" => return Ok(C::ListVols(ar::ListVols {})),
                "capacity" => return Ok(C::Capacity(ar::Capacity {})),
                _ => {}
            }
            let vol = vol(2)?;
            if what == "restorable" {
                let explicit_only = choice(w, 3, &["all", "explicit"], "get restorable")? == 2;
                return Ok(C::Restorable(ar::Restorable { vol, explicit_only }));
            }
            no_more(w, 3)?;
            match what {
                "progress" => C::GetProgress(ar::GetProgress { vol }),
                "state" => C::GetState(ar::GetState { vol }),
                "base" => C::Base(ar::Base { vol }),
                "latest-snap" => C::LatestSnap(ar::LatestSnap { vol }),
                "uuid" | "archive-uuid" => C::Uuids(ar::Uuids { vol }),
                "diff" => C::Diffs(ar::Diffs { vol }),
                "exists-base-image" => C::HasImage(ar::HasImage { vol }),
                "broken" | "verify" => C::Health(ar::Health { vol }),
                "restored" => C::Restored(ar::Restored { vol }),
                "repo" => C::RepoStatus(ar::RepoStatus { vol }),
                _ => return Err(bad(format!("unknown get target {what:?}"))),
            }
        }
        "replicate" => C::Replicate(ar::Replicate {
            vol: vol(1)?,
            dst: at(w, 2, "destination host:port")?.into(),
            resync: choice(w, 3, &["resync"], "replicate")? == 1,
        }),
        "status" => C::Status(ar::Status {
            vol: w.get(1).unwrap_or(&"").to_string(),
        }),
        "restore" => C::Restore(ar::Restore {
            vol: vol(1)?,
            gid: gid(2)?,
            force: choice(w, 3, &["force"], "restore")? == 1,
        }),
        "del-restored" => C::DelRestored(ar::DelRestored {
            vol: vol(1)?,
            gid: gid(2)?,
        }),
        "apply" => C::Apply(ar::Apply {
            vol: vol(1)?,
            gid: gid(2)?,
        }),
        "merge" => C::Merge(ar::Merge {
            vol: vol(1)?,
            gid_b: num(w, 2, "gidB")?,
            gid_e: num(w, 3, "gidE")?,
        }),
        "gc-diff" => C::GcDiff(ar::GcDiff { vol: vol(1)? }),
        "cat" => C::Cat(ar::Cat {
            vol: vol(1)?,
            gid: gid(2)?,
            path: at(w, 3, "path")?.into(),
        }),
        "bhash" => C::Bhash(ar::Bhash {
            vol: vol(1)?,
            gid: gid(2)?,
            bulk: opt_num(w, 3, "bulk bytes", 0)?,
        }),
        "verify" => C::Verify(ar::Verify {
            vol: vol(1)?,
            deep: choice(w, 2, &["deep"], "verify")? == 1,
        }),
        "resize" => {
            choice(w, 3, &["zeroclear"], "resize")?;
            C::Resize(ar::Resize {
                vol: vol(1)?,
                size_lb: num(w, 2, "size in LB")?,
            })
        }
        "device-hash" => C::DeviceHash(ar::DeviceHash {
            vol: vol(1)?,
            gid: gid(2)?,
            bulk: num(w, 3, "bulk bytes")?,
            digest: at(w, 4, "digest")?.into(),
        }),
        "bind-storage" => C::BindStorage(ar::BindStorage {
            vol: vol(1)?,
            storage: w.get(2).unwrap_or(&"").to_string(),
        }),
        cmd @ ("disable-snapshot" | "enable-snapshot") => {
            let gids = (2..w.len().max(3))
                .map(|i| num(w, i, "gid"))
                .collect::<Result<Vec<u64>, CallError>>()?;
            C::SetSnapshots(ar::SetSnapshots {
                vol: vol(1)?,
                gids,
                explicit: cmd == "enable-snapshot",
            })
        }
        "retention" => C::Retention(ar::Retention {
            vol: vol(1)?,
            dry_run: choice(w, 2, &["dry-run"], "retention")? == 1,
        }),
        cmd => return Err(bad(format!("unknown command {cmd:?}"))),
    })
}

/// The request `w` means for a server of `host_type`.
pub fn parse(host_type: &str, w: Words) -> Result<Request, CallError> {
    if let Some(c) = common(w) {
        return c.map(Request::Control);
    }
    match host_type {
        "storage" => storage(w).map(Request::Storage),
        "proxy" => proxy(w).map(Request::Proxy),
        "archive" => archive(w).map(Request::Archive),
        other => Err(bad(format!("unknown host type {other:?}"))),
    }
}

/// Host types by address, asked once per process.
static HOST_TYPES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// The host type of the server at `addr`.
pub async fn host_type(addr: &str) -> Result<String, CallError> {
    if let Some(t) = HOST_TYPES.lock().expect("host types").get(addr) {
        return Ok(t.clone());
    }
    let h = call(addr, cr::Hello {}).await?;
    HOST_TYPES
        .lock()
        .expect("host types")
        .insert(addr.to_string(), h.host_type.clone());
    Ok(h.host_type)
}

/// A reply to a `Request`.
#[derive(Debug)]
pub enum Reply {
    Control(ControlReply),
    Storage(StorageReply),
    Proxy(ProxyReply),
    Archive(ArchiveReply),
}

/// Sends `req` over `ch` with `md` as its metadata.
pub async fn send(ch: Channel, req: Request, md: MetadataMap) -> Result<Reply, tonic::Status> {
    Ok(match req {
        Request::Control(c) => Reply::Control(ControlRequest { cmd: Some(c) }.send(ch, md).await?),
        Request::Storage(c) => Reply::Storage(StorageRequest { cmd: Some(c) }.send(ch, md).await?),
        Request::Proxy(c) => Reply::Proxy(ProxyRequest { cmd: Some(c) }.send(ch, md).await?),
        Request::Archive(c) => Reply::Archive(ArchiveRequest { cmd: Some(c) }.send(ch, md).await?),
    })
}

/// Sends the words to the server at `addr` and returns the reply as walb's tools print it.
pub async fn call_words(addr: &str, w: Words<'_>) -> Result<String, CallError> {
    let req = match common(w) {
        Some(c) => Request::Control(c?),
        None => parse(&host_type(addr).await?, w)?,
    };
    let reply = match req {
        Request::Control(c) => Reply::Control(call(addr, ControlRequest { cmd: Some(c) }).await?),
        Request::Storage(c) => Reply::Storage(call(addr, StorageRequest { cmd: Some(c) }).await?),
        Request::Proxy(c) => Reply::Proxy(call(addr, ProxyRequest { cmd: Some(c) }).await?),
        Request::Archive(c) => Reply::Archive(call(addr, ArchiveRequest { cmd: Some(c) }).await?),
    };
    render(reply, w).map_err(|m| CallError {
        server: addr.into(),
        ..bad(m)
    })
}

/// The words sent over `ch` (the server's host type asked first), the reply as walb's tools
/// print it; tests walk the role table with it.
pub async fn words_over(
    ch: &Channel,
    w: Words<'_>,
    md: MetadataMap,
) -> Result<String, tonic::Status> {
    let req = match common(w) {
        Some(c) => Request::Control(c.map_err(|e| tonic::Status::new(e.code, e.message))?),
        None => {
            let h = cr::Hello {}.send(ch.clone(), md.clone()).await?;
            parse(&h.host_type, w).map_err(|e| tonic::Status::new(e.code, e.message))?
        }
    };
    let reply = send(ch.clone(), req, md).await?;
    render(reply, w).map_err(tonic::Status::internal)
}

/// The reply as walb's tools print it (an error when it lacks what the words asked for).
pub fn render(reply: Reply, w: Words) -> Result<String, String> {
    let lines = |v: Vec<String>| v.join("\n");
    Ok(match reply {
        Reply::Control(r) => match r.reply {
            Some(crp::Reply::Hello(h)) => match w {
                ["get", "host-type"] => h.host_type,
                ["get", "pid"] => h.pid.to_string(),
                _ => {
                    let insecure = if h.insecure { " insecure" } else { "" };
                    format!("{} {}{insecure}", h.host_type, h.version)
                }
            },
            Some(crp::Reply::Shutdown(_)) => "ok".into(),
            Some(crp::Reply::RotateCerts(r)) => r.summary,
            None => String::new(),
        },
        Reply::Storage(r) => match r.reply {
            Some(r) => show_storage(r, w)?,
            None => String::new(),
        },
        Reply::Proxy(r) => match r.reply {
            Some(
                prp::Reply::ArchiveInfoList(n) | prp::Reply::ListVols(n) | prp::Reply::HeldDiffs(n),
            ) => lines(n.names),
            Some(prp::Reply::ArchiveInfoGet(i)) => format!("{} {} {}", i.addr, i.cmpr, i.delay_s),
            Some(prp::Reply::GetState(s)) => state_word(s.state().as_str_name()),
            Some(prp::Reply::SendError(e)) => match w.get(1) {
                Some(&"is-wdiff-send-error") => u8::from(e.stopped).to_string(),
                _ => e.last_failure,
            },
            Some(prp::Reply::Status(t)) => t.text,
            Some(_) => "ok".into(),
            None => String::new(),
        },
        Reply::Archive(r) => match r.reply {
            Some(r) => show_archive(r, w),
            None => String::new(),
        },
    })
}

/// A state as walb names it: `STORAGE_SYNC_READY` → `SyncReady`.
pub fn state_word(name: &str) -> String {
    name.split('_')
        .skip(1)
        .map(|p| {
            let mut c = p.chars();
            c.next().map_or(String::new(), |f| {
                f.to_string() + &c.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}

/// `idle` or `KIND DONE TOTAL RATE ETA` (bytes, bytes per second, seconds).
pub fn progress_line(p: &walb_proto::ProgressReply) -> String {
    if p.idle {
        "idle".into()
    } else {
        format!("{} {} {} {} {}", p.kind, p.done, p.total, p.rate, p.eta_s)
    }
}

fn show_storage(r: srp::Reply, w: Words) -> Result<String, String> {
    Ok(match r {
        srp::Reply::Snapshot(s) if s.digest.is_empty() => s.gid.to_string(),
        srp::Reply::Snapshot(s) => format!("{} {} {}", s.gid, s.hash_bulk, s.digest),
        srp::Reply::FullBkp(g) | srp::Reply::HashBkp(g) => g.gid.to_string(),
        srp::Reply::Resize(s) => s.size_lb.to_string(),
        srp::Reply::Status(t) => t.text,
        srp::Reply::ListVols(n) => n.names.join("\n"),
        srp::Reply::GetProgress(p) => progress_line(&p),
        srp::Reply::Get(g) => {
            let dev = || g.device.clone().ok_or_else(|| g.device_error.clone());
            match w.get(1).copied().unwrap_or_default() {
                "state" => state_word(g.state().as_str_name()),
                "latest-snap" => g.latest_snap.to_string(),
                "done" => format!("{} {}", g.done_lsid, g.done_gid),
                "is-overflow" => u8::from(dev()?.overflow).to_string(),
                "log-usage" => {
                    let d = dev()?;
                    format!("{} {}", d.log_usage_pb, d.log_capacity_pb)
                }
                "uuid" => dev()?.uuid,
                // `BYTES_PER_S OVERFLOW_IN_S`, `-` while unknown.
                _ => {
                    let d = dev()?;
                    let dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                    match d.write_rate_bps {
                        None => "- -".into(),
                        r => format!("{} {}", dash(r), dash(d.overflow_in_s)),
                    }
                }
            }
        }
        _ => "ok".into(),
    })
}

fn snap_of(s: Option<walb_proto::Snap>) -> MetaSnap {
    let s = s.unwrap_or_default();
    MetaSnap {
        gid_b: Gid(s.gid_b),
        gid_e: Gid(s.gid_e),
    }
}

/// One line of `get restorable`: gid, UTC time, and 1 explicit, 0 implicit, ? the newest
/// point, whose kind the next diff will tell.
pub fn restorable_line(p: &walb_proto::RestorablePoint) -> String {
    let kind = match (p.settled, p.explicit) {
        (false, _) => "?",
        (true, true) => "1",
        (true, false) => "0",
    };
    format!("{} {} {kind}", p.gid, iso_utc(p.time))
}

/// The retention plan, one line a point: `GID TIME keep REASONS` or `GID TIME drop`.
pub fn retention_text(r: &arp::Retention) -> String {
    if r.off {
        return format!("retention is off on {}: no keep rule is set", r.archive);
    }
    r.points
        .iter()
        .map(|p| {
            let t = iso_utc(p.time);
            if p.reasons.is_empty() {
                format!("{} {t} drop", p.gid)
            } else {
                format!("{} {t} keep {}", p.gid, p.reasons.join(","))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn show_archive(r: arp::Reply, w: Words) -> String {
    let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join("\n");
    match r {
        arp::Reply::ListVols(n) | arp::Reply::Diffs(n) => n.names.join("\n"),
        arp::Reply::Capacity(c) => format!("{} {}", c.free, c.floor),
        arp::Reply::GetProgress(p) => progress_line(&p),
        arp::Reply::GetState(s) => state_word(s.state().as_str_name()),
        arp::Reply::Restorable(r) => r
            .points
            .iter()
            .map(restorable_line)
            .collect::<Vec<_>>()
            .join("\n"),
        arp::Reply::Base(b) => MetaState {
            is_applying: b.applying,
            timestamp: b.timestamp,
            snap_b: snap_of(b.snap_b),
            snap_e: snap_of(b.snap_e),
        }
        .to_string(),
        arp::Reply::LatestSnap(s) => format!("{} {}", s.gid_b, s.gid_e),
        arp::Reply::Replicate(r) => {
            let s = r.latest.unwrap_or_default();
            format!("{} {}", s.gid_b, s.gid_e)
        }
        arp::Reply::Uuids(u) if w.get(1) == Some(&"archive-uuid") => u.archive_uuid,
        arp::Reply::Uuids(u) => u.uuid,
        arp::Reply::HasImage(f) => u8::from(f.on).to_string(),
        arp::Reply::Health(h) if w.get(1) == Some(&"verify") => h.verify,
        arp::Reply::Health(h) => h.broken,
        arp::Reply::Restored(r) => join(&r.gids),
        // `URL LAG_S BYTES_UP DEDUP_PERMILLE [ERROR]`, or `none`.
        arp::Reply::RepoStatus(r) if r.url.is_empty() => "none".into(),
        arp::Reply::RepoStatus(r) => format!(
            "{} {} {} {} {}",
            r.url, r.lag_s, r.bytes_up, r.dedup_permille, r.error
        )
        .trim_end()
        .to_string(),
        arp::Reply::Status(t) => t.text,
        arp::Reply::Restore(r) => r.path,
        arp::Reply::GcDiff(c) | arp::Reply::SetSnapshots(c) => c.n.to_string(),
        arp::Reply::Bhash(b) => b.digest,
        arp::Reply::Verify(v) => format!(
            "ok {} files {} bytes {} snapshots matching the device",
            v.files, v.bytes, v.deep
        ),
        arp::Reply::Resize(s) => s.size_lb.to_string(),
        arp::Reply::Retention(r) => retention_text(&r),
        _ => "ok".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_sizes() {
        assert_eq!(parse_bulk("256k").unwrap(), 512);
        assert_eq!(parse_bulk("512").unwrap(), 1);
        assert_eq!(parse_bulk("4m").unwrap(), 8192);
        for b in ["0", "100", "8m", "x", "1000"] {
            assert!(parse_bulk(b).is_err(), "{b}");
        }
    }

    #[test]
    fn words_become_typed_requests() {
        assert!(matches!(
            parse("archive", &["restore", "vol0", "7", "force"]).unwrap(),
            Request::Archive(ar::Cmd::Restore(ar::Restore {
                gid: 7,
                force: true,
                ..
            }))
        ));
        assert!(matches!(
            parse("proxy", &["version"]).unwrap(),
            Request::Control(cr::Cmd::Hello(_))
        ));
        for (host, w) in [
            ("storage", &["start", "vol0", "sideways"][..]),
            ("archive", &["restore", "vol0", "x"][..]),
            ("proxy", &["stop", "vol0", "later"][..]),
            ("archive", &["no-such-word"][..]),
        ] {
            assert!(parse(host, w).is_err(), "{w:?}");
        }
        assert_eq!(state_word("STORAGE_SYNC_READY"), "SyncReady");
        assert_eq!(state_word("PROXY_WAIT_FOR_EMPTY"), "WaitForEmpty");
        assert_eq!(state_word("ARCHIVE_WDIFF_RECV"), "WdiffRecv");
    }
}
