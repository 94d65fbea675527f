//! `vols/VOL/volume` (docs/repository.md, "Layout"): the volume's uuid (of its storage's
//! current lineage, which every diff it sends carries) and the archive's lineage uuid, so an
//! archive rebuilt from the repository accepts the next diff.

use bytes::Bytes;
use walb_core::Uuid;

use crate::error::{Error, Result};
use crate::layout;
use crate::store::Repo;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolInfo {
    pub uuid: Uuid,
    pub archive_uuid: Uuid,
}

impl VolInfo {
    pub fn encode(&self) -> Bytes {
        Bytes::from(format!(
            "uuid {}\narchive_uuid {}\n",
            self.uuid, self.archive_uuid
        ))
    }

    pub fn decode(key: &str, b: &[u8]) -> Result<VolInfo> {
        let s = std::str::from_utf8(b).map_err(|_| Error::corrupt(key, "not UTF-8"))?;
        let field = |name: &str| -> Result<Uuid> {
            let v = s
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .ok_or_else(|| Error::corrupt(key, format!("no `{name}` line")))?;
            v.parse()
                .map_err(|e: String| Error::corrupt(key, format!("{name}: {e}")))
        };
        Ok(VolInfo {
            uuid: field("uuid")?,
            archive_uuid: field("archive_uuid")?,
        })
    }
}

pub async fn read(repo: &Repo, vol: &str) -> Result<Option<VolInfo>> {
    let key = layout::volume(vol);
    match repo.get_opt(&key).await? {
        Some(b) => Ok(Some(VolInfo::decode(key.as_ref(), &b)?)),
        None => Ok(None),
    }
}

pub async fn write(repo: &Repo, vol: &str, info: &VolInfo) -> Result<()> {
    repo.put(&layout::volume(vol), info.encode()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_info_round_trips() {
        let i = VolInfo {
            uuid: "0123456789abcdef0123456789abcdef".parse().unwrap(),
            archive_uuid: Uuid::default(),
        };
        assert_eq!(VolInfo::decode("k", &i.encode()).unwrap(), i);
        assert!(VolInfo::decode("k", b"uuid x\n").is_err());
    }
}
