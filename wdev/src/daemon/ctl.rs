//! The control socket: one request line, one reply line, both JSON of the types in
//! `wdev_client` (the client side, used by `wdevc` and walb-storage).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use wdev_client::{Answer, DaemonStatus, DevName, DevStatus, Reply, Request};

use crate::daemon::registry::Registry;
use crate::dev::{Wdev, WdevError};

/// A request thread's stack: wdevd locks its memory (`mlockall`), so each connection's
/// thread makes its whole stack resident (the default is 2 MiB). Creating a device (its redo)
/// runs here too.
const STACK_BYTES: usize = 512 << 10;

/// Serves requests until the listener fails: a thread per connection.
pub fn serve(listener: UnixListener, reg: Arc<Registry>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let reg = reg.clone();
        let spawned = std::thread::Builder::new()
            .name("wdevd-ctl".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let mut line = String::new();
                let mut r = BufReader::new(&conn);
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let reply = match wdev_client::parse_request(&line).and_then(|q| handle(&reg, q)) {
                    Ok(a) => Reply::Ok(a),
                    Err(e) => Reply::Err(e),
                };
                let _ = (&conn).write_all(wdev_client::reply_line(&reply).as_bytes());
            });
        if let Err(e) = spawned {
            tracing::error!("control connection dropped: no thread for it: {e}");
        }
    }
}

fn with_dev(
    reg: &Registry,
    name: &DevName,
    f: impl FnOnce(&mut Wdev) -> Result<Answer, WdevError>,
) -> Result<Answer, String> {
    let s = reg.get(name.as_str()).map_err(|e| e.to_string())?;
    let mut dev = s.dev.lock().expect("device lock");
    f(&mut dev).map_err(|e| e.to_string())
}

/// The serving process: pid, start time, restarts, transport (docs/wdev.md, "Restarts").
fn daemon_status(reg: &Registry) -> Result<Answer, String> {
    let s = reg.serving.get().ok_or("no serving process recorded")?;
    Ok(Answer::Daemon(DaemonStatus {
        pid: s.pid,
        supervisor_pid: s.supervisor_pid,
        started_ms: s.started_ms,
        restarts: s.restarts,
        first_answer_ms: s.first_answer_ms.load(Ordering::Relaxed),
        devices: reg.names().len() as u64,
        transport: s.transport.to_string(),
    }))
}

fn dev_status(name: &DevName, d: &Wdev) -> DevStatus {
    let l = d.lsids();
    DevStatus {
        name: name.clone(),
        uuid: d.uuid().to_string(),
        pbs: d.pbs().get(),
        size_lb: d.size_lb(),
        latest: l.latest,
        completed: l.completed,
        permanent: l.permanent,
        written: l.written,
        prev_written: l.prev_written,
        oldest: l.oldest,
        log_usage: d.log_usage(),
        log_capacity: d.log_capacity(),
        overflow: d.is_overflow(),
    }
}

fn handle(reg: &Registry, req: Request) -> Result<Answer, String> {
    let done = |r: Result<(), WdevError>| r.map(|_| Answer::Done);
    let num = |n: u64| Ok(Answer::Number(n));
    match req {
        Request::List => Ok(Answer::Names(
            reg.names()
                .into_iter()
                .filter_map(|(n, _)| DevName::new(n).ok())
                .collect(),
        )),
        Request::DaemonStatus => daemon_status(reg),
        Request::Upgrade { binary } => {
            let hook = reg
                .upgrade
                .get()
                .ok_or("this wdevd runs without a supervisor")?;
            hook(&binary).map(|_| Answer::Done)
        }
        Request::GetCheckpointInterval => {
            Ok(Answer::Number(reg.checkpoint_ms.load(Ordering::Relaxed)))
        }
        Request::SetCheckpointInterval { ms } => {
            // walb's bound: 0 (off) to one day, in milliseconds.
            if ms > 86_400_000 {
                return Err("checkpoint interval must be 0 to 86400000 ms".into());
            }
            reg.checkpoint_ms.store(ms, Ordering::Relaxed);
            Ok(Answer::Done)
        }
        Request::Create { name, ldev, ddev } => reg
            .create(name.as_str(), &ldev, &ddev)
            .map(|_| Answer::Done)
            .map_err(|e| e.to_string()),
        Request::Delete { name } => reg
            .delete(name.as_str())
            .map(|_| Answer::Done)
            .map_err(|e| e.to_string()),
        Request::GetOldestLsid { name } => with_dev(reg, &name, |d| num(d.lsids().oldest)),
        Request::GetWrittenLsid { name } => with_dev(reg, &name, |d| num(d.lsids().written)),
        Request::GetPermanentLsid { name } => with_dev(reg, &name, |d| num(d.lsids().permanent)),
        Request::GetCompletedLsid { name } => with_dev(reg, &name, |d| num(d.lsids().completed)),
        Request::GetLogUsage { name } => with_dev(reg, &name, |d| num(d.log_usage())),
        Request::GetLogCapacity { name } => with_dev(reg, &name, |d| num(d.log_capacity())),
        Request::IsLogOverflow { name } => {
            with_dev(reg, &name, |d| Ok(Answer::Flag(d.is_overflow())))
        }
        Request::SetOldestLsid { name, lsid } => {
            with_dev(reg, &name, |d| done(d.set_oldest_lsid(lsid)))
        }
        Request::ForceCheckpoint { name } => with_dev(reg, &name, |d| done(d.checkpoint())),
        Request::ResetWal { name } => with_dev(reg, &name, |d| done(d.reset_wal())),
        Request::Resize { name, size_lb } => with_dev(reg, &name, |d| done(d.resize(size_lb))),
        Request::Freeze { name, timeout_secs } => {
            let timeout = Some(timeout_secs)
                .filter(|&t| t > 0)
                .map(|t| std::time::Duration::from_secs(t.min(86_400)));
            let s = reg.get(name.as_str()).map_err(|e| e.to_string())?;
            s.freeze(timeout)
                .map(|_| Answer::Done)
                .map_err(|e| e.to_string())
        }
        Request::Melt { name } => {
            reg.get(name.as_str()).map_err(|e| e.to_string())?.melt();
            Ok(Answer::Done)
        }
        Request::IsFrozen { name } => Ok(Answer::Flag(
            reg.get(name.as_str())
                .map_err(|e| e.to_string())?
                .is_frozen(),
        )),
        Request::GetLdevPath { name } => served_path(reg, &name, true),
        Request::GetDdevPath { name } => served_path(reg, &name, false),
        Request::Status { name } => {
            with_dev(reg, &name, |d| Ok(Answer::Device(dev_status(&name, d))))
        }
        Request::StatusAll => Ok(Answer::Devices(
            reg.names()
                .into_iter()
                .filter_map(|(n, s)| {
                    let name = DevName::new(n).ok()?;
                    let dev = s.dev.lock().expect("device lock");
                    Some(dev_status(&name, &dev))
                })
                .collect(),
        )),
    }
}

/// The log (`ldev`) or data device's path of a served device, as wdevd opened it.
fn served_path(reg: &Registry, name: &DevName, ldev: bool) -> Result<Answer, String> {
    let s = reg.get(name.as_str()).map_err(|e| e.to_string())?;
    let p = if ldev { &s.ldev } else { &s.ddev };
    std::fs::canonicalize(p)
        .map(Answer::Path)
        .map_err(|e| format!("{}: {e}", p.display()))
}
