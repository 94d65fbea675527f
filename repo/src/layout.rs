//! Object names (docs/repository.md, "Layout"). Volume names follow the daemons' rule (no
//! '/'), checked here so a name never escapes its folder.

use object_store::path::Path;
use walb_core::meta::{self, MetaDiff, MetaSnap};
use walb_core::Gid;

use crate::error::{Error, Result};

pub const CHUNKS: &str = "chunks";
pub const VOLS: &str = "vols";
pub const PENDING: &str = "pending";

pub fn check_vol(vol: &str) -> Result<()> {
    if vol.is_empty()
        || vol.len() > 64
        || vol.starts_with('.')
        || !vol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Error::Invalid(format!(
            "volume name {vol:?}: 1-64 of A-Z a-z 0-9 - _ . and not starting with '.'"
        )));
    }
    Ok(())
}

pub fn chunk(hash: &[u8; 32]) -> Path {
    Path::from(format!("{CHUNKS}/{}", hex::encode(hash)))
}

/// The hash a chunk's name holds.
pub fn parse_chunk(p: &Path) -> Option<[u8; 32]> {
    let name = p.filename()?;
    let mut h = [0u8; 32];
    hex::decode_to_slice(name, &mut h).ok()?;
    Some(h)
}

pub fn vol_dir(vol: &str) -> Path {
    Path::from(format!("{VOLS}/{vol}"))
}

pub fn images_dir(vol: &str) -> Path {
    Path::from(format!("{VOLS}/{vol}/images"))
}

pub fn wdiffs_dir(vol: &str) -> Path {
    Path::from(format!("{VOLS}/{vol}/wdiffs"))
}

/// `vols/VOL/images/<gidB>-<gidE>.index`, zero-padded so names sort by gid.
pub fn index(vol: &str, snap: &MetaSnap) -> Path {
    Path::from(format!(
        "{VOLS}/{vol}/images/{:020}-{:020}.index",
        snap.gid_b.0, snap.gid_e.0
    ))
}

pub fn parse_index(p: &Path) -> Option<MetaSnap> {
    let name = p.filename()?.strip_suffix(".index")?;
    let (b, e) = name.split_once('-')?;
    MetaSnap::new(Gid(b.parse().ok()?), Gid(e.parse().ok()?)).ok()
}

pub fn wdiff(vol: &str, d: &MetaDiff) -> Path {
    Path::from(format!("{VOLS}/{vol}/wdiffs/{}", meta::format_name(d)))
}

pub fn volume(vol: &str) -> Path {
    Path::from(format!("{VOLS}/{vol}/volume"))
}

pub fn lease(vol: &str) -> Path {
    Path::from(format!("{VOLS}/{vol}/lease"))
}

/// The marker an image upload keeps while its chunks are not yet referenced by an index.
pub fn pending(vol: &str, snap: &MetaSnap) -> Path {
    Path::from(format!(
        "{PENDING}/{vol}.{:020}-{:020}",
        snap.gid_b.0, snap.gid_e.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_volumes_are_refused() {
        let s = MetaSnap::new(Gid(3), Gid(7)).unwrap();
        assert_eq!(parse_index(&index("v0", &s)), Some(s));
        let h = [0xabu8; 32];
        assert_eq!(parse_chunk(&chunk(&h)), Some(h));
        for bad in ["", "a/b", "..", ".x", "a b"] {
            assert!(check_vol(bad).is_err(), "{bad:?}");
        }
        check_vol("vol-0_a.b").unwrap();
    }
}
