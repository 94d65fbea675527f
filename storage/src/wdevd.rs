//! The wdevd control socket as this daemon uses it: typed requests (`wdev_client`) run off
//! the async threads.

use std::path::{Path, PathBuf};

use walb_daemon::{CmdError, CmdResult};
use wdev_client::{Answer, Client, DevName, Request};

pub use wdev_client::{DaemonStatus, DevStatus};

#[derive(Clone)]
pub struct Wdevd {
    client: Client,
}

fn name_of(name: &str) -> CmdResult<DevName> {
    DevName::new(name).map_err(|e| CmdError::Invalid(e.to_string()))
}

/// A failure of wdevd (or of reaching it) as a command error.
fn internal(e: wdev_client::Error) -> CmdError {
    CmdError::Internal(format!("wdevd: {e}"))
}

impl Wdevd {
    pub fn new(sock: &Path) -> Wdevd {
        Wdevd {
            client: Client::at_socket(sock),
        }
    }

    pub async fn request(&self, req: Request) -> CmdResult<Answer> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || client.call(&req))
            .await
            .map_err(|e| CmdError::Internal(format!("wdevd request task: {e}")))?
            .map_err(internal)
    }

    pub async fn status(&self, name: &str) -> CmdResult<DevStatus> {
        let name = name_of(name)?;
        self.request(Request::Status { name })
            .await?
            .device()
            .map_err(internal)
    }

    /// Every served device's state, in one request.
    pub async fn status_all(&self) -> CmdResult<Vec<DevStatus>> {
        self.request(Request::StatusAll)
            .await?
            .devices()
            .map_err(internal)
    }

    /// The process serving the devices: pid, start time, restarts, FUSE transport.
    pub async fn daemon(&self) -> CmdResult<DaemonStatus> {
        self.request(Request::DaemonStatus)
            .await?
            .daemon()
            .map_err(internal)
    }

    pub async fn ldev_path(&self, name: &str) -> CmdResult<PathBuf> {
        let name = name_of(name)?;
        self.request(Request::GetLdevPath { name })
            .await?
            .path()
            .map_err(internal)
    }

    /// The data device: what full and hash backups scan, right after the WAL reset that
    /// checkpoints everything older onto it (anything newer is in the logs that follow).
    pub async fn ddev_path(&self, name: &str) -> CmdResult<PathBuf> {
        let name = name_of(name)?;
        self.request(Request::GetDdevPath { name })
            .await?
            .path()
            .map_err(internal)
    }

    /// wdevd's file of device `name` (under its run dir): writes to it are logged.
    pub fn device_file(&self, name: &str) -> CmdResult<PathBuf> {
        Ok(self.client.device_file(&name_of(name)?))
    }

    /// Grows the device to `size_lb` (0: the whole data device) and its loop device with it.
    pub async fn resize(&self, name: &str, size_lb: u64) -> CmdResult<()> {
        let name = name_of(name)?;
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || wdev_client::loopdev::resize(&client, &name, size_lb))
            .await
            .map_err(|e| CmdError::Internal(format!("resize task: {e}")))?
            .map_err(|e| CmdError::Invalid(format!("resize: {e}")))
    }

    pub async fn checkpoint(&self, name: &str) -> CmdResult<()> {
        let name = name_of(name)?;
        self.done(Request::ForceCheckpoint { name }).await
    }

    pub async fn reset_wal(&self, name: &str) -> CmdResult<()> {
        let name = name_of(name)?;
        self.done(Request::ResetWal { name }).await
    }

    pub async fn set_oldest(&self, name: &str, lsid: u64) -> CmdResult<()> {
        let name = name_of(name)?;
        self.done(Request::SetOldestLsid { name, lsid }).await
    }

    async fn done(&self, req: Request) -> CmdResult<()> {
        self.request(req).await?.done().map_err(internal)
    }
}
