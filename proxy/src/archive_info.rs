//! Archive-info: where a volume's diffs go (host:port), with which compression, after which
//! delay. Stored per archive as `<vol dir>/<name>.archive`, one line `ADDR CMPR DELAY`.

use std::fmt;
use std::str::FromStr;

use walb_core::wdiff::{Cmpr, Codec};
use walb_daemon::error::invalid;
use walb_daemon::CmdResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression(pub Cmpr);

impl Default for Compression {
    fn default() -> Self {
        Compression(Cmpr::new(Codec::Zstd, 1))
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.codec == Codec::None {
            f.write_str("none")
        } else {
            write!(f, "{}:{}", self.0.codec.name(), self.0.level)
        }
    }
}

impl FromStr for Compression {
    type Err = walb_daemon::CmdError;
    /// `none` or `TYPE:LEVEL` (walb's `TYPE:LEVEL:NCPU` is accepted; NCPU is ignored).
    fn from_str(s: &str) -> CmdResult<Compression> {
        let c: Cmpr = s
            .parse()
            .map_err(|e| invalid(format!("compression {s:?}: {e}")))?;
        if c.codec == Codec::Zstd && c.level == 0 {
            // "zstd" alone means walb's default level.
            return Ok(Compression::default());
        }
        Ok(Compression(c))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// host:port of the archive's gRPC endpoint.
    pub addr: String,
    pub cmpr: Compression,
    /// Seconds a new diff waits before it is sent (to merge more of them).
    pub delay: u64,
}

impl ArchiveInfo {
    /// From the command arguments `ADDR [CMPR [DELAY]]`.
    pub fn from_args(args: &[String]) -> CmdResult<ArchiveInfo> {
        let addr = args
            .first()
            .ok_or_else(|| invalid("missing argument: archive address HOST:PORT"))?;
        check_addr(addr)?;
        let cmpr = match args.get(1) {
            Some(c) => c.parse()?,
            None => Compression::default(),
        };
        let delay = match args.get(2) {
            Some(d) => d
                .parse()
                .map_err(|_| invalid(format!("delay {d:?} is not a number of seconds")))?,
            None => 0,
        };
        if args.len() > 3 {
            return Err(invalid(format!("unexpected arguments: {:?}", &args[3..])));
        }
        Ok(ArchiveInfo {
            addr: addr.clone(),
            cmpr,
            delay,
        })
    }

    /// From a control request; an empty compression means the default.
    pub fn from_typed(t: &walb_proto::ArchiveInfo) -> CmdResult<ArchiveInfo> {
        check_addr(&t.addr)?;
        Ok(ArchiveInfo {
            addr: t.addr.clone(),
            cmpr: match t.cmpr.as_str() {
                "" => Compression::default(),
                c => c.parse()?,
            },
            delay: t.delay_s,
        })
    }

    pub fn typed(&self) -> walb_proto::ArchiveInfo {
        walb_proto::ArchiveInfo {
            addr: self.addr.clone(),
            cmpr: self.cmpr.to_string(),
            delay_s: self.delay,
        }
    }

    /// The stored line (also shown by `status`).
    pub fn line(&self) -> String {
        format!("{} {} {}", self.addr, self.cmpr, self.delay)
    }

    pub fn parse_line(s: &str) -> CmdResult<ArchiveInfo> {
        let args: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        if args.len() != 3 {
            return Err(invalid(format!(
                "archive-info {s:?}: expected ADDR CMPR DELAY"
            )));
        }
        ArchiveInfo::from_args(&args)
    }
}

fn check_addr(addr: &str) -> CmdResult<()> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "archive address {addr:?}: expected HOST:PORT"
        )))
    }
}

/// Checks an archive name: it becomes a file and directory name.
pub fn check_name(name: &str) -> CmdResult<()> {
    walb_daemon::volfile::check_vol_name(name).map_err(|_| {
        invalid(format!(
            "archive name {name:?}: 1 to 64 of A-Z a-z 0-9 _ . -, not starting with '.'"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn defaults_and_round_trip() {
        let a = ArchiveInfo::from_args(&args("h:1")).unwrap();
        assert_eq!(a.line(), "h:1 zstd:1 0");
        let b = ArchiveInfo::from_args(&args("127.0.0.1:5000 none 7")).unwrap();
        assert_eq!(b.line(), "127.0.0.1:5000 none 7");
        assert_eq!(ArchiveInfo::parse_line(&b.line()).unwrap(), b);
        let c = ArchiveInfo::from_args(&args("h:2 zstd:3:1")).unwrap();
        assert_eq!(c.line(), "h:2 zstd:3 0");
    }

    #[test]
    fn bad_input_is_named() {
        for (a, want) in [
            ("h", "HOST:PORT"),
            ("h:0", "HOST:PORT"),
            ("h:1 foo", "compression"),
            ("h:1 none x", "delay"),
        ] {
            let e = ArchiveInfo::from_args(&args(a)).unwrap_err().to_string();
            assert!(e.contains(want), "{a}: {e}");
        }
    }
}
