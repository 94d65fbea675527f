//! Device hashes (docs/archive.md, "Deep verification"): the BLAKE3 image digest the storage
//! took of the device at a snapshot (`walbc snapshot --hash`), kept in the volume's
//! `device-hashes` file, one `GID BULK_BYTES DIGEST` line each, so a deep verify can compare
//! the restored snapshot with what the device held.

use walb_core::bhash::check_bulk;
use walb_daemon::error::invalid;
use walb_daemon::{volfile, CmdResult};

use crate::volume::Vol;

const FILE: &str = "device-hashes";

/// One recorded digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceHash {
    pub gid: u64,
    pub bulk: usize,
    /// 64 lower-case hex digits.
    pub digest: String,
}

impl DeviceHash {
    /// Checks what a caller sends: the bulk size (core's rule) and the digest's hex digits.
    pub fn new(gid: u64, bulk: usize, digest: &str) -> CmdResult<DeviceHash> {
        check_bulk(bulk)?;
        if blake3::Hash::from_hex(digest).is_err() {
            return Err(invalid(format!(
                "device hash {digest:?}: not a BLAKE3 digest (64 hex digits)"
            )));
        }
        Ok(DeviceHash {
            gid,
            bulk,
            digest: digest.to_ascii_lowercase(),
        })
    }

    fn parse(line: &str) -> Option<DeviceHash> {
        let mut f = line.split_whitespace();
        let (gid, bulk, digest) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?);
        DeviceHash::new(gid, bulk, digest).ok()
    }
}

/// The recorded digests of `vol`, by gid.
pub fn list(vol: &Vol) -> CmdResult<Vec<DeviceHash>> {
    let text = volfile::read(&vol.dir.join(FILE))?.unwrap_or_default();
    let mut v: Vec<DeviceHash> = text.lines().filter_map(DeviceHash::parse).collect();
    v.sort_by_key(|h| h.gid);
    Ok(v)
}

/// Records `h` (replacing an earlier digest of its gid) and forgets digests of gids older
/// than `oldest`, which can no longer be restored.
pub fn record(vol: &Vol, h: DeviceHash, oldest: u64) -> CmdResult<()> {
    let mut v = list(vol)?;
    v.retain(|o| o.gid != h.gid && o.gid >= oldest);
    v.push(h);
    v.sort_by_key(|h| h.gid);
    let text: String = v
        .iter()
        .map(|h| format!("{} {} {}\n", h.gid, h.bulk, h.digest))
        .collect();
    Ok(volfile::write(&vol.dir.join(FILE), &text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_digests_and_bulks_are_refused() {
        let d = blake3::hash(b"x").to_hex().to_string();
        assert!(DeviceHash::new(5, 262144, &d).is_ok());
        assert!(DeviceHash::new(5, 100, &d).is_err());
        assert!(DeviceHash::new(5, 262144, "zz").is_err());
        assert_eq!(
            DeviceHash::parse(&format!("5 262144 {d}")).unwrap().digest,
            d
        );
        assert!(DeviceHash::parse("5 262144").is_none());
    }
}
