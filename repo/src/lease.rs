//! One writer per volume (docs/repository.md, "Lease"): `vols/VOL/lease` names the archive
//! that uploads the volume and until when; it is taken when absent, expired or already
//! ours, by a conditional write where the store supports one, and renewed while uploading.

use std::time::Duration;

use bytes::Bytes;
use object_store::{PutMode, PutOptions, PutPayload, UpdateVersion};
use walb_core::meta::unix_now;

use crate::error::{Error, Result};
use crate::layout;
use crate::store::Repo;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    /// Unix seconds.
    pub expires: u64,
}

impl Lease {
    fn encode(&self) -> Bytes {
        Bytes::from(format!(
            "holder {}\nexpires {}\n",
            self.holder, self.expires
        ))
    }

    fn decode(key: &str, b: &[u8]) -> Result<Lease> {
        let s = std::str::from_utf8(b).map_err(|_| Error::corrupt(key, "not UTF-8"))?;
        let mut holder = None;
        let mut expires = None;
        for line in s.lines() {
            match line.split_once(' ') {
                Some(("holder", h)) => holder = Some(h.to_string()),
                Some(("expires", e)) => expires = e.parse().ok(),
                _ => {}
            }
        }
        match (holder, expires) {
            (Some(holder), Some(expires)) => Ok(Lease { holder, expires }),
            _ => Err(Error::corrupt(
                key,
                "a lease needs `holder` and `expires` lines",
            )),
        }
    }
}

/// The volume's lease as it is now, if any.
pub async fn read(repo: &Repo, vol: &str) -> Result<Option<Lease>> {
    let key = layout::lease(vol);
    match repo.get_opt(&key).await? {
        Some(b) => Ok(Some(Lease::decode(key.as_ref(), &b)?)),
        None => Ok(None),
    }
}

/// Takes or renews `vol`'s lease for `holder` for `ttl`; `Error::Leased` while another
/// holder's lease runs.
pub async fn acquire(repo: &Repo, vol: &str, holder: &str, ttl: Duration) -> Result<Lease> {
    layout::check_vol(vol)?;
    let key = layout::lease(vol);
    let mine = Lease {
        holder: holder.to_string(),
        expires: unix_now() + ttl.as_secs().max(1),
    };
    let mode = match repo.store.get(&key).await {
        Err(object_store::Error::NotFound { .. }) => PutMode::Create,
        Err(e) => return Err(e.into()),
        Ok(r) => {
            let meta = r.meta.clone();
            let cur = Lease::decode(key.as_ref(), &r.bytes().await?)?;
            if cur.holder != holder && cur.expires > unix_now() {
                return Err(Error::Leased {
                    vol: vol.to_string(),
                    holder: cur.holder,
                    expires: cur.expires,
                });
            }
            PutMode::Update(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            })
        }
    };
    let put = |mode| {
        repo.store.put_opts(
            &key,
            PutPayload::from(mine.encode()),
            PutOptions {
                mode,
                ..Default::default()
            },
        )
    };
    match put(mode).await {
        Ok(_) => Ok(mine),
        // Someone else took or renewed it between our read and write.
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            let cur = read(repo, vol).await?;
            match cur {
                Some(c) if c.holder == holder => Ok(c),
                Some(c) => Err(Error::Leased {
                    vol: vol.to_string(),
                    holder: c.holder,
                    expires: c.expires,
                }),
                None => Err(Error::Invalid(format!("lease of {vol} changed; try again"))),
            }
        }
        // A store without conditional updates (a local path): one writer per host anyway.
        Err(object_store::Error::NotImplemented) => {
            put(PutMode::Overwrite).await?;
            Ok(mine)
        }
        Err(e) => Err(e.into()),
    }
}

/// Lets another archive take the volume at once (only our own lease is removed).
pub async fn release(repo: &Repo, vol: &str, holder: &str) -> Result<()> {
    if let Some(l) = read(repo, vol).await? {
        if l.holder == holder {
            repo.delete(&layout::lease(vol)).await?;
        }
    }
    Ok(())
}
