//! The control socket: one request line, one answer line (`ok VALUE` or `err MESSAGE`).
//! `request` is the client side, used by `wdevc` and by walb-storage.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::daemon::registry::Registry;
use crate::dev::{Wdev, WdevError};

/// Sends one request and returns the answer's value, or the daemon's error.
pub fn request(sock: &Path, line: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(sock)
        .map_err(|e| format!("connect {}: {e} (is wdevd running?)", sock.display()))?;
    writeln!(s, "{line}").map_err(|e| format!("send: {e}"))?;
    let mut ans = String::new();
    BufReader::new(s)
        .read_line(&mut ans)
        .map_err(|e| format!("receive: {e}"))?;
    let ans = ans.trim_end();
    match ans.split_once(' ').unwrap_or((ans, "")) {
        ("ok", v) => Ok(v.to_string()),
        ("err", m) => Err(m.to_string()),
        _ => Err(format!("bad answer {ans:?}")),
    }
}

/// Serves requests until the listener fails.
pub fn serve(listener: UnixListener, reg: Arc<Registry>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let reg = reg.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut r = BufReader::new(&conn);
            if r.read_line(&mut line).is_err() {
                return;
            }
            let ans = match handle(&reg, line.trim()) {
                Ok(v) => format!("ok {v}\n"),
                Err(e) => format!("err {}\n", e.replace('\n', " ")),
            };
            let _ = (&conn).write_all(ans.as_bytes());
        });
    }
}

fn arg<'a>(args: &[&'a str], i: usize, what: &str) -> Result<&'a str, String> {
    args.get(i)
        .copied()
        .ok_or_else(|| format!("missing {what}"))
}

fn num(args: &[&str], i: usize, what: &str) -> Result<u64, String> {
    arg(args, i, what)?
        .parse()
        .map_err(|_| format!("{what} must be a number"))
}

fn with_dev<T: ToString>(
    reg: &Registry,
    name: &str,
    f: impl FnOnce(&mut Wdev) -> Result<T, WdevError>,
) -> Result<String, String> {
    let s = reg.get(name).map_err(|e| e.to_string())?;
    let mut dev = s.dev.lock().expect("device lock");
    f(&mut dev)
        .map(|v| v.to_string())
        .map_err(|e| e.to_string())
}

/// The serving process as JSON: pid, start time, restarts (docs/wdev.md, "Restarts").
fn daemon_status(reg: &Registry) -> Result<String, String> {
    let s = reg.serving.get().ok_or("no serving process recorded")?;
    Ok(format!(
        "{{\"pid\":{},\"supervisor_pid\":{},\"started_ms\":{},\"restarts\":{},\"first_answer_ms\":{},\"devices\":{}}}",
        s.pid,
        s.supervisor_pid,
        s.started_ms,
        s.restarts,
        s.first_answer_ms.load(Ordering::Relaxed),
        reg.names().len()
    ))
}

fn handle(reg: &Registry, line: &str) -> Result<String, String> {
    let args: Vec<&str> = line.split_whitespace().collect();
    let cmd = arg(&args, 0, "command")?;
    if cmd == "list" {
        return Ok(reg
            .names()
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
            .join(" "));
    }
    if cmd == "daemon-status" {
        return daemon_status(reg);
    }
    if cmd == "upgrade" {
        let hook = reg
            .upgrade
            .get()
            .ok_or("this wdevd runs without a supervisor")?;
        return hook(arg(&args, 1, "BINARY")?).map(|_| String::new());
    }
    if cmd == "get-checkpoint-interval" {
        return Ok(reg.checkpoint_ms.load(Ordering::Relaxed).to_string());
    }
    if cmd == "set-checkpoint-interval" {
        // walb's bound: 0 (off) to one day, in milliseconds.
        let ms = num(&args, 1, "MILLISECONDS")?;
        if ms > 86_400_000 {
            return Err("checkpoint interval must be 0 to 86400000 ms".into());
        }
        reg.checkpoint_ms.store(ms, Ordering::Relaxed);
        return Ok(String::new());
    }
    let name = arg(&args, 1, "device name")?;
    match cmd {
        "create" => {
            let (l, d) = (arg(&args, 2, "LDEV")?, arg(&args, 3, "DDEV")?);
            reg.create(name, Path::new(l), Path::new(d))
                .map(|_| String::new())
                .map_err(|e| e.to_string())
        }
        "delete" => reg
            .delete(name)
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
        "get-oldest-lsid" => with_dev(reg, name, |d| Ok(d.lsids().oldest)),
        "get-written-lsid" => with_dev(reg, name, |d| Ok(d.lsids().written)),
        "get-permanent-lsid" => with_dev(reg, name, |d| Ok(d.lsids().permanent)),
        "get-completed-lsid" => with_dev(reg, name, |d| Ok(d.lsids().completed)),
        "get-log-usage" => with_dev(reg, name, |d| Ok(d.log_usage())),
        "get-log-capacity" => with_dev(reg, name, |d| Ok(d.log_capacity())),
        "is-log-overflow" => with_dev(reg, name, |d| Ok(d.is_overflow() as u8)),
        "set-oldest-lsid" => {
            let v = num(&args, 2, "LSID")?;
            with_dev(reg, name, |d| d.set_oldest_lsid(v).map(|_| ""))
        }
        "force-checkpoint" => with_dev(reg, name, |d| d.checkpoint().map(|_| "")),
        "reset-wal" => with_dev(reg, name, |d| d.reset_wal().map(|_| "")),
        "resize" => {
            let v = num(&args, 2, "SIZE_LB")?;
            with_dev(reg, name, |d| d.resize(v).map(|_| ""))
        }
        "freeze" => {
            let t = args.get(2).map(|_| num(&args, 2, "TIMEOUT")).transpose()?;
            let timeout = t
                .filter(|&t| t > 0)
                .map(|t| std::time::Duration::from_secs(t.min(86_400)));
            let s = reg.get(name).map_err(|e| e.to_string())?;
            s.freeze(timeout)
                .map(|_| String::new())
                .map_err(|e| e.to_string())
        }
        "melt" => {
            reg.get(name).map_err(|e| e.to_string())?.melt();
            Ok(String::new())
        }
        "get-ldev-path" | "get-ddev-path" => {
            let s = reg.get(name).map_err(|e| e.to_string())?;
            let p = if cmd == "get-ldev-path" {
                &s.ldev
            } else {
                &s.ddev
            };
            std::fs::canonicalize(p)
                .map(|p| p.display().to_string())
                .map_err(|e| format!("{}: {e}", p.display()))
        }
        "is-frozen" => {
            Ok((reg.get(name).map_err(|e| e.to_string())?.is_frozen() as u8).to_string())
        }
        "status" => with_dev(reg, name, |d| {
            let l = d.lsids();
            Ok(format!(
                "{{\"name\":\"{name}\",\"uuid\":\"{}\",\"pbs\":{},\"size_lb\":{},\"latest\":{},\"completed\":{},\"permanent\":{},\"written\":{},\"prev_written\":{},\"oldest\":{},\"log_usage\":{},\"log_capacity\":{},\"overflow\":{}}}",
                d.uuid(), d.pbs(), d.size_lb(), l.latest, l.completed, l.permanent, l.written,
                l.prev_written, l.oldest, d.log_usage(), d.log_capacity(), d.is_overflow()
            ))
        }),
        _ => Err(format!("unknown command {cmd:?}")),
    }
}
