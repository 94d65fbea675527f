//! Taking a volume back to a blank state on one server, whatever state it is in: `reset`
//! (SyncReady again, its data discarded) and `clear` (the server forgets the volume); and
//! copying a proxy's archive list to another proxy. These are the steps of replacing a
//! server (docs/recovery.md).

use anyhow::{bail, Result};

use walb_proto::{archive_request as ar, proxy_request as pr, storage_request as sr};
use walb_proto::{ArchiveState, ProxyState};

use super::layout::{Kind, Server};
use super::ops::{proxy_runs, proxy_stop, Ctl};
use super::words::state_word;

impl Ctl {
    /// A storage's volume back to SyncReady (stopped, WAL dropped) or an archive's (stopped,
    /// every backup of it discarded).
    pub async fn reset(&self, id: &str, vol: &str) -> Result<()> {
        let (kind, s) = self.layout.find(id)?;
        match kind {
            Kind::Storage => self.storage_to_sync_ready(s, vol).await,
            Kind::Archive => {
                if self.archive_to_stopped(s, vol).await? == ArchiveState::ArchiveClear {
                    bail!("{id}: volume {vol} is Clear; init it with a full backup");
                }
                self.call(s, ar::ResetVol { vol: vol.into() })
                    .await
                    .map(drop)
            }
            Kind::Proxy => {
                bail!("{id} is a proxy: it has nothing to reset (walbc clear {id} {vol} drops the volume)")
            }
        }
    }

    /// Makes server `id` forget `vol`: a storage is stopped and reset first, a proxy first
    /// sends every diff it holds (stop empty), an archive's backups are deleted. A volume
    /// the server does not know is fine.
    pub async fn clear(&self, id: &str, vol: &str) -> Result<()> {
        let (kind, s) = self.layout.find(id)?;
        match kind {
            Kind::Storage => {
                if self.storage_state_or_none(s, vol).await?.is_none() {
                    return Ok(());
                }
                self.storage_to_sync_ready(s, vol).await?;
                self.call(s, sr::ClearVol { vol: vol.into() }).await?;
            }
            Kind::Proxy => {
                if self.proxy_to_stopped(s, vol).await? {
                    self.call(s, pr::ClearVol { vol: vol.into() }).await?;
                }
            }
            Kind::Archive => {
                if self.archive_to_stopped(s, vol).await? != ArchiveState::ArchiveClear {
                    self.call(s, ar::ClearVol { vol: vol.into() }).await?;
                }
            }
        }
        Ok(())
    }

    /// Stops an archive's volume (cutting a running wdiff transfer); returns the state it is
    /// in then: Stopped, SyncReady or Clear. A full or hash sync running is an error.
    async fn archive_to_stopped(&self, a: &Server, vol: &str) -> Result<ArchiveState> {
        use ArchiveState as A;
        let state = self.archive_state(a, vol).await?;
        match state {
            A::ArchiveClear | A::ArchiveSyncReady | A::ArchiveStopped => Ok(state),
            A::ArchiveArchived | A::ArchiveWdiffRecv => {
                let stop = ar::Stop {
                    vol: vol.into(),
                    mode: walb_proto::StopMode::StopForce as i32,
                };
                self.call(a, stop).await?;
                Ok(A::ArchiveStopped)
            }
            other => bail!(
                "{}: volume {vol} is in {}; wait for it or cancel it on the storage",
                a.id,
                state_word(other.as_str_name())
            ),
        }
    }

    /// Lets a proxy send every diff it holds, then stops it; false when it does not know
    /// the volume.
    async fn proxy_to_stopped(&self, p: &Server, vol: &str) -> Result<bool> {
        match self.proxy_state(p, vol).await? {
            ProxyState::ProxyClear => return Ok(false),
            ProxyState::ProxyStopped => return Ok(true),
            st if proxy_runs(st) => {
                self.call(p, proxy_stop(vol, true)).await?;
            }
            _ => {}
        }
        let get = pr::GetState { vol: vol.into() };
        self.wait_until(p, get, |r| r.state() == ProxyState::ProxyStopped)
            .await?;
        Ok(true)
    }

    /// Gives proxy `to` the archives proxy `from` sends `vol` to (a proxy taking another's
    /// place); `to` is started.
    pub async fn copy_archive_info(&self, vol: &str, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.proxy(from)?, self.proxy(to)?);
        let names = self.archive_infos(src, vol).await?;
        if names.is_empty() {
            bail!("{from} sends {vol} to no archive");
        }
        let have = self.archive_infos(dst, vol).await?;
        for name in names.iter().filter(|n| !have.contains(n)) {
            let get = pr::ArchiveInfoGet {
                vol: vol.into(),
                archive: name.clone(),
            };
            let info = self.call(src, get).await?;
            let add = pr::ArchiveInfoSet {
                vol: vol.into(),
                archive: name.clone(),
                info: Some(info),
                add: true,
            };
            self.call(dst, add).await?;
        }
        if !self.proxy_started(dst, vol).await? {
            self.call(dst, pr::Start { vol: vol.into() }).await?;
        }
        Ok(())
    }

    fn proxy(&self, id: &str) -> Result<&Server> {
        match self.layout.find(id)? {
            (Kind::Proxy, s) => Ok(s),
            _ => bail!("{id} is not a proxy"),
        }
    }
}
