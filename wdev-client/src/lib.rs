//! wdev-client: what crosses wdevd's control socket (`RUN_DIR/wdevd.sock`), as types.
//! One connection carries one request and one reply, each a line of JSON: a [`Request`]
//! (tagged by `cmd`), then a [`Reply`] (`{"ok": Answer}` or `{"err": "message"}`).
//! A missing field is an error, never a zero, and device names are checked ([`DevName`]).
//!
//! It owns the wire types, the blocking client ([`request`], [`Client`]) and the loop
//! devices attached to the served files ([`loopdev`]); wdevd, wdevc and walb-storage all
//! use it. It must not depend on the device code (`walb-wdev`: FUSE, the write path) nor
//! know about backups: walb-storage depends on this crate alone to reach wdevd.

pub mod loopdev;

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The socket's file name in wdevd's run directory.
pub const SOCKET: &str = "wdevd.sock";
/// The folder of wdevd's run directory where the FUSE mount serves one file per device.
pub const DEVICES: &str = "devices";

/// A served device's name: 1 to 31 bytes, no '/', no control character, not `.` or `..`
/// (it names a file of the FUSE mount and is written to the superblock).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DevName(String);

impl DevName {
    pub fn new(name: impl Into<String>) -> Result<DevName, Error> {
        let name = name.into();
        let bad = name.is_empty()
            || name.len() > 31
            || name == "."
            || name == ".."
            || name.chars().any(|c| c == '/' || c.is_control());
        if bad {
            return Err(Error::BadName(name));
        }
        Ok(DevName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DevName {
    type Error = Error;
    fn try_from(s: String) -> Result<DevName, Error> {
        DevName::new(s)
    }
}

impl From<DevName> for String {
    fn from(n: DevName) -> String {
        n.0
    }
}

impl fmt::Display for DevName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client asks wdevd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// The served devices' names.
    List,
    /// The serving process ([`DaemonStatus`]).
    DaemonStatus,
    /// Hand the devices over to the wdevd binary at `binary` (docs/wdev.md, "Restarts").
    Upgrade {
        binary: PathBuf,
    },
    GetCheckpointInterval,
    /// Milliseconds between superblock checkpoints (0: none; at most one day).
    SetCheckpointInterval {
        ms: u64,
    },
    /// Serve a device from its log and data devices (absolute paths).
    Create {
        name: DevName,
        ldev: PathBuf,
        ddev: PathBuf,
    },
    Delete {
        name: DevName,
    },
    GetOldestLsid {
        name: DevName,
    },
    GetWrittenLsid {
        name: DevName,
    },
    GetPermanentLsid {
        name: DevName,
    },
    GetCompletedLsid {
        name: DevName,
    },
    GetLogUsage {
        name: DevName,
    },
    GetLogCapacity {
        name: DevName,
    },
    IsLogOverflow {
        name: DevName,
    },
    /// Free the logs below `lsid`.
    SetOldestLsid {
        name: DevName,
        lsid: u64,
    },
    ForceCheckpoint {
        name: DevName,
    },
    ResetWal {
        name: DevName,
    },
    /// Grow to `size_lb` logical blocks (0: the whole data device).
    Resize {
        name: DevName,
        size_lb: u64,
    },
    /// Hold writes; melt by itself after `timeout_secs` (0: never).
    Freeze {
        name: DevName,
        timeout_secs: u64,
    },
    Melt {
        name: DevName,
    },
    IsFrozen {
        name: DevName,
    },
    GetLdevPath {
        name: DevName,
    },
    GetDdevPath {
        name: DevName,
    },
    /// The device's state ([`DevStatus`]).
    Status {
        name: DevName,
    },
    /// Every served device's state, in one answer (what a storage polls).
    StatusAll,
}

/// What a request got: the value, or the daemon's error message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(Answer),
    Err(String),
}

/// The value of a successful request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Done; nothing to tell.
    Done,
    Names(Vec<DevName>),
    Number(u64),
    Flag(bool),
    Path(PathBuf),
    Device(DevStatus),
    Devices(Vec<DevStatus>),
    Daemon(DaemonStatus),
}

/// One device's state, as `Request::Status` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevStatus {
    pub name: DevName,
    pub uuid: String,
    pub pbs: u32,
    pub size_lb: u64,
    pub latest: u64,
    pub completed: u64,
    pub permanent: u64,
    pub written: u64,
    pub prev_written: u64,
    pub oldest: u64,
    pub log_usage: u64,
    pub log_capacity: u64,
    pub overflow: bool,
}

/// The serving process (docs/wdev.md, "Restarts").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub supervisor_pid: u32,
    /// Unix time in milliseconds when this worker started.
    pub started_ms: u64,
    /// Workers started before this one on the same FUSE connection.
    pub restarts: u32,
    /// Unix time in milliseconds of the worker's first answered FUSE request (0: none yet).
    pub first_answer_ms: u64,
    /// How many devices it serves.
    pub devices: u64,
    /// How the worker gets the kernel's FUSE requests: `/dev/fuse` (read and write on the
    /// connection; docs/wdev.md, "Transport"). Workers from before this field served over
    /// `/dev/fuse` only, so that is what a status without it means.
    #[serde(default = "dev_fuse")]
    pub transport: String,
}

fn dev_fuse() -> String {
    TRANSPORT_DEV_FUSE.to_string()
}

/// The FUSE transport of reading and writing the connection's descriptor.
pub const TRANSPORT_DEV_FUSE: &str = "/dev/fuse";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("device name {0:?}: 1 to 31 bytes, no '/' or control character, not . or ..")]
    BadName(String),
    #[error("connect {path}: {source} (is wdevd running?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("send: {0}")]
    Send(std::io::Error),
    #[error("receive: {0}")]
    Receive(std::io::Error),
    /// The connection closed before a reply (the worker may exit right after an upgrade).
    #[error("receive: wdevd closed the connection without a reply")]
    Closed,
    #[error("bad reply {line:?}: {why}")]
    BadReply { line: String, why: String },
    /// A wdevd from before this crate (one text line each way) answered `line`.
    #[error("wdevd speaks the older text protocol (answered {0:?}): `wdevc upgrade` hands its devices to the new wdevd")]
    OldDaemon(String),
    /// A well-formed reply of another kind than the request has.
    #[error("unexpected reply {0:?}")]
    Unexpected(Box<Answer>),
    /// wdevd's own error message.
    #[error("{0}")]
    Daemon(String),
    #[error("{0}")]
    Loop(String),
}

/// Sends `req` to the socket at `sock` and returns the answer, or the daemon's error.
pub fn request(sock: &Path, req: &Request) -> Result<Answer, Error> {
    let line = serde_json::to_string(req).expect("a request serializes");
    match parse_reply(&exchange(sock, &line)?)? {
        Reply::Ok(a) => Ok(a),
        Reply::Err(m) => Err(Error::Daemon(m)),
    }
}

/// One request line out, one reply line back.
fn exchange(sock: &Path, line: &str) -> Result<String, Error> {
    let mut s = UnixStream::connect(sock).map_err(|source| Error::Connect {
        path: sock.to_path_buf(),
        source,
    })?;
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(Error::Send)?;
    let mut ans = String::new();
    let n = BufReader::new(s)
        .read_line(&mut ans)
        .map_err(Error::Receive)?;
    if n == 0 {
        return Err(Error::Closed);
    }
    Ok(ans)
}

/// A request in the text protocol of a wdevd from before this crate (`ok VALUE` or
/// `err MESSAGE` back): only for `wdevc upgrade`, which hands such a wdevd's devices to a new
/// binary.
pub fn legacy_request(sock: &Path, line: &str) -> Result<String, Error> {
    let ans = exchange(sock, line)?;
    let ans = ans.trim_end();
    match ans.split_once(' ').unwrap_or((ans, "")) {
        ("ok", v) => Ok(v.to_string()),
        ("err", m) => Err(Error::Daemon(m.to_string())),
        _ => Err(Error::BadReply {
            line: ans.to_string(),
            why: "neither ok nor err".into(),
        }),
    }
}

/// A reply line as the client reads it.
pub fn parse_reply(line: &str) -> Result<Reply, Error> {
    let line = line.trim_end();
    serde_json::from_str(line).map_err(|e| {
        if line.starts_with("err ") || line.starts_with("ok ") || line == "ok" {
            Error::OldDaemon(line.to_string())
        } else {
            Error::BadReply {
                line: line.to_string(),
                why: e.to_string(),
            }
        }
    })
}

/// A request line as the server reads it.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim_end()).map_err(|e| format!("bad request: {e}"))
}

/// A reply as the one line the server writes (newline included).
pub fn reply_line(r: &Reply) -> String {
    let mut s = serde_json::to_string(r).expect("a reply serializes");
    s.push('\n');
    s
}

impl Answer {
    pub fn done(self) -> Result<(), Error> {
        match self {
            Answer::Done => Ok(()),
            a => Err(Error::Unexpected(Box::new(a))),
        }
    }

    pub fn number(self) -> Result<u64, Error> {
        match self {
            Answer::Number(n) => Ok(n),
            a => Err(Error::Unexpected(Box::new(a))),
        }
    }

    pub fn path(self) -> Result<PathBuf, Error> {
        match self {
            Answer::Path(p) => Ok(p),
            a => Err(Error::Unexpected(Box::new(a))),
        }
    }

    pub fn device(self) -> Result<DevStatus, Error> {
        match self {
            Answer::Device(d) => Ok(d),
            a => Err(Error::Unexpected(Box::new(a))),
        }
    }

    pub fn devices(self) -> Result<Vec<DevStatus>, Error> {
        match self {
            Answer::Devices(d) => Ok(d),
            a => Err(Error::Unexpected(Box::new(a))),
        }
    }

    pub fn daemon(self) -> Result<DaemonStatus, Error> {
        match self {
            Answer::Daemon(d) => Ok(d),
            a => Err(Error::Unexpected(Box::new(a))),
        }
    }
}

/// wdevd's socket in a run directory.
#[derive(Clone, Debug)]
pub struct Client {
    pub run_dir: PathBuf,
}

impl Client {
    pub fn new(run_dir: &Path) -> Client {
        Client {
            run_dir: run_dir.to_path_buf(),
        }
    }

    /// The client of the socket at `sock` (its run directory is the socket's directory).
    pub fn at_socket(sock: &Path) -> Client {
        Client::new(sock.parent().unwrap_or(Path::new("/")))
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join(SOCKET)
    }

    /// The served file of device `name` (what a loop device is attached to).
    pub fn device_file(&self, name: &DevName) -> PathBuf {
        self.run_dir.join(DEVICES).join(name.as_str())
    }

    pub fn call(&self, req: &Request) -> Result<Answer, Error> {
        request(&self.socket(), req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DevName {
        DevName::new(s).unwrap()
    }

    #[test]
    fn requests_and_replies_round_trip_as_lines() {
        let reqs = [
            Request::List,
            Request::SetOldestLsid {
                name: name("v 0\"x"),
                lsid: 7,
            },
            Request::Create {
                name: name("v0"),
                ldev: "/a b".into(),
                ddev: "/c".into(),
            },
        ];
        for r in reqs {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(parse_request(&line).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&Request::Status { name: name("v0") }).unwrap(),
            r#"{"cmd":"status","name":"v0"}"#
        );
        let r = Reply::Ok(Answer::Number(5));
        assert_eq!(parse_reply(&reply_line(&r)).unwrap(), r);
        let r = Reply::Err("no device v1\nsecond line".into());
        let line = reply_line(&r);
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(parse_reply(&line).unwrap(), r);
    }

    #[test]
    fn missing_fields_and_bad_names_are_errors() {
        assert!(parse_request(r#"{"cmd":"set-oldest-lsid","name":"v0"}"#).is_err());
        assert!(parse_request(r#"{"cmd":"status","name":"a/b"}"#).is_err());
        assert!(parse_request(r#"{"cmd":"status","name":""}"#).is_err());
        assert!(parse_request(r#"{"cmd":"nope"}"#).is_err());
        // A device status without a field is refused, not read as zero.
        let line = r#"{"ok":{"device":{"name":"v0","uuid":"u","pbs":512}}}"#;
        assert!(parse_reply(line).is_err());
        for bad in ["", ".", "..", "a/b", "tab\there", &"x".repeat(32)] {
            assert!(DevName::new(bad).is_err(), "{bad:?}");
        }
        assert!(DevName::new("x".repeat(31)).is_ok());
        // A wdevd of the older text protocol is told apart from a broken reply.
        assert!(matches!(
            parse_reply("err unknown command \"{\\\"cmd\\\":1}\""),
            Err(Error::OldDaemon(_))
        ));
        assert!(matches!(
            parse_reply("{\"ok\""),
            Err(Error::BadReply { .. })
        ));
    }
}
