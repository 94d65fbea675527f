//! Taking a volume back to a blank state on one server, whatever state it is in: `reset`
//! (SyncReady again, its data discarded) and `clear` (the server forgets the volume); and
//! copying a proxy's archive list to another proxy. These are the steps of replacing a
//! server (docs/recovery.md).

use anyhow::{bail, Result};

use super::layout::{Kind, Server};
use super::ops::{proxy_runs, Ctl};

impl Ctl {
    /// A storage's volume back to SyncReady (stopped, WAL dropped) or an archive's (stopped,
    /// every backup of it discarded).
    pub async fn reset(&self, id: &str, vol: &str) -> Result<()> {
        let (kind, s) = self.layout.find(id)?;
        match kind {
            Kind::Storage => self.storage_to_sync_ready(s, vol).await,
            Kind::Archive => {
                if self.archive_to_stopped(s, vol).await? == "Clear" {
                    bail!("{id}: volume {vol} is Clear; init it with a full backup");
                }
                self.call(s, &["reset-vol", vol]).await.map(drop)
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
                if self.state_or_clear(s, vol).await? == "Clear" {
                    return Ok(());
                }
                self.storage_to_sync_ready(s, vol).await?;
            }
            Kind::Proxy => {
                if !self.proxy_to_stopped(s, vol).await? {
                    return Ok(());
                }
            }
            Kind::Archive => {
                if self.archive_to_stopped(s, vol).await? == "Clear" {
                    return Ok(());
                }
            }
        }
        self.call(s, &["clear-vol", vol]).await.map(drop)
    }

    /// Stops an archive's volume (cutting a running wdiff transfer); returns the state it is
    /// in then: Stopped, SyncReady or Clear. A full or hash sync running is an error.
    async fn archive_to_stopped(&self, a: &Server, vol: &str) -> Result<String> {
        let state = self.state_or_clear(a, vol).await?;
        match state.as_str() {
            "Clear" | "SyncReady" | "Stopped" => Ok(state),
            "Archived" | "WdiffRecv" => {
                self.call(a, &["stop", vol, "force"]).await?;
                Ok("Stopped".into())
            }
            other => bail!(
                "{}: volume {vol} is in {other}; wait for it or cancel it on the storage",
                a.id
            ),
        }
    }

    /// Lets a proxy send every diff it holds, then stops it; false when it does not know
    /// the volume.
    async fn proxy_to_stopped(&self, p: &Server, vol: &str) -> Result<bool> {
        match self.state_or_clear(p, vol).await?.as_str() {
            "Clear" => return Ok(false),
            "Stopped" => return Ok(true),
            st if proxy_runs(st) => {
                self.call(p, &["stop", vol, "empty"]).await?;
            }
            _ => {}
        }
        self.wait_state(p, vol, |t| t == "Stopped").await?;
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
            let info = self.call(src, &["archive-info", "get", vol, name]).await?;
            let mut args = vec!["archive-info", "add", vol, name];
            args.extend(info.split_whitespace());
            self.call(dst, &args).await?;
        }
        if !self.proxy_started(dst, vol).await? {
            self.call(dst, &["start", vol]).await?;
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
