//! wdiff file names (docs/formats.md §6.3): `YYYYMMDDhhmmss-MC-B-E.wdiff` for clean diffs and
//! `…-Bb-Be-Eb-Ee.wdiff` for dirty ones; UTC; decimal gids; `M` mergeable, `C` compared.

use crate::error::{Error, Result};
use crate::meta::diff::MetaDiff;
use crate::meta::snap::MetaSnap;
use crate::types::Gid;

/// Unix seconds → (year, month, day, hour, minute, second) in UTC.
fn civil(ts: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (ts / 86_400) as i64;
    let rem = ts % 86_400;
    // Days-to-civil conversion over 400-year eras (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// Unix seconds now: the clock snapshot and diff timestamps are taken from.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDThh:mm:ss` in UTC: how walb lists snapshot times.
pub fn iso_utc(ts: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(ts);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}")
}

/// Unix seconds of a UTC `YYYY-MM-DDThh:mm:ss`.
pub fn parse_iso_utc(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<u32>().ok();
    unix(
        i64::from(n(0..4)?),
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    )
}

/// (year, month, day, hour, minute, second) in UTC → unix seconds.
fn unix(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> Option<u64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + (hh * 3600 + mm * 60 + ss) as i64).ok()
}

pub fn format_name(d: &MetaDiff) -> String {
    let (y, mo, da, h, mi, s) = civil(d.timestamp);
    let flags = format!(
        "{}{}",
        if d.is_mergeable { 'M' } else { '-' },
        if d.is_comp_diff { 'C' } else { '-' }
    );
    let gids = if d.is_clean() {
        format!("{}-{}", d.snap_b.gid_b, d.snap_e.gid_b)
    } else {
        format!(
            "{}-{}-{}-{}",
            d.snap_b.gid_b, d.snap_b.gid_e, d.snap_e.gid_b, d.snap_e.gid_e
        )
    };
    format!("{y:04}{mo:02}{da:02}{h:02}{mi:02}{s:02}-{flags}-{gids}.wdiff")
}

/// Parses a wdiff file name; `data_size` comes from the file's size.
pub fn parse_name(name: &str, data_size: u64) -> Result<MetaDiff> {
    let bad = |why: &str| Error::Invalid(format!("wdiff name {name:?}: {why}"));
    let b = name.as_bytes();
    if b.len() < 27 || !name.is_ascii() {
        return Err(bad("too short or not ASCII"));
    }
    if b[14] != b'-' || b[17] != b'-' {
        return Err(bad("expected '-' at positions 14 and 17"));
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32> {
        name[r].parse().map_err(|_| bad("bad timestamp"))
    };
    let y: i64 = name[0..4].parse().map_err(|_| bad("bad timestamp"))?;
    let ts = unix(
        y,
        num(4..6)?,
        num(6..8)?,
        num(8..10)?,
        num(10..12)?,
        num(12..14)?,
    )
    .ok_or_else(|| bad("bad timestamp"))?;
    let is_mergeable = match b[15] {
        b'M' => true,
        b'-' => false,
        _ => return Err(bad("flag at 15 must be 'M' or '-'")),
    };
    let is_comp_diff = match b[16] {
        b'C' => true,
        b'-' => false,
        _ => return Err(bad("flag at 16 must be 'C' or '-'")),
    };
    let gids = name[18..]
        .strip_suffix(".wdiff")
        .ok_or_else(|| bad("must end with .wdiff"))?;
    let g: Vec<u64> = gids
        .split('-')
        .map(|x| x.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("gids must be decimal"))?;
    let (snap_b, snap_e) = match g[..] {
        [b, e] => (MetaSnap::clean(Gid(b)), MetaSnap::clean(Gid(e))),
        [bb, be, eb, ee] => (
            MetaSnap::new(Gid(bb), Gid(be))?,
            MetaSnap::new(Gid(eb), Gid(ee))?,
        ),
        _ => return Err(bad("expected 2 or 4 gids")),
    };
    let d = MetaDiff {
        snap_b,
        snap_e,
        is_mergeable,
        is_comp_diff,
        timestamp: ts,
        data_size,
    };
    d.check().map_err(|e| bad(&e.to_string()))?;
    Ok(d)
}
