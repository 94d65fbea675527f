//! The done record and the snapshot queue (docs/formats.md §6.4), as one text line per record:
//! `MERGEABLE TIMESTAMP LSID GID`.

use walb_core::meta::MetaLsidGid;
use walb_core::{Gid, Lsid};

/// A line that is not a record.
#[derive(Debug, thiserror::Error)]
#[error("bad record line {0:?}")]
pub struct BadRecord(pub String);

pub fn format(r: &MetaLsidGid) -> String {
    format!(
        "{} {} {} {}",
        r.is_mergeable as u8, r.timestamp, r.lsid.0, r.gid.0
    )
}

pub fn parse(line: &str) -> Result<MetaLsidGid, BadRecord> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| -> Result<u64, BadRecord> {
        f.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| BadRecord(line.to_string()))
    };
    if f.len() != 4 {
        return Err(BadRecord(line.to_string()));
    }
    Ok(MetaLsidGid {
        is_mergeable: num(0)? != 0,
        timestamp: num(1)?,
        lsid: Lsid(num(2)?),
        gid: Gid(num(3)?),
    })
}

pub fn format_all(rs: &[MetaLsidGid]) -> String {
    rs.iter().map(|r| format(r) + "\n").collect()
}

pub fn parse_all(text: &str) -> Result<Vec<MetaLsidGid>, BadRecord> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse)
        .collect()
}

pub use walb_core::meta::unix_now as now;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let rs = vec![
            MetaLsidGid {
                is_mergeable: true,
                timestamp: 5,
                lsid: Lsid(10),
                gid: Gid(3),
            },
            MetaLsidGid {
                is_mergeable: false,
                timestamp: 6,
                lsid: Lsid(20),
                gid: Gid(4),
            },
        ];
        assert_eq!(parse_all(&format_all(&rs)).unwrap(), rs);
        assert!(parse("1 2 3").is_err());
    }
}
