//! The wdevd control socket as this daemon uses it: blocking requests run off the async
//! threads.

use std::path::{Path, PathBuf};

use walb_daemon::{CmdError, CmdResult};

#[derive(Clone)]
pub struct Wdevd {
    sock: PathBuf,
}

/// What one `status` request tells about a device.
#[derive(Clone, Debug, Default)]
pub struct DevStatus {
    pub uuid: String,
    pub pbs: u32,
    pub size_lb: u64,
    pub latest: u64,
    pub permanent: u64,
    pub prev_written: u64,
    pub oldest: u64,
    pub log_usage: u64,
    pub log_capacity: u64,
    pub overflow: bool,
}

impl Wdevd {
    pub fn new(sock: &Path) -> Wdevd {
        Wdevd {
            sock: sock.to_path_buf(),
        }
    }

    pub async fn request(&self, line: String) -> CmdResult<String> {
        let sock = self.sock.clone();
        tokio::task::spawn_blocking(move || walb_wdev::daemon::ctl::request(&sock, &line))
            .await
            .map_err(|e| CmdError::Internal(format!("wdevd request task: {e}")))?
            .map_err(|e| CmdError::Internal(format!("wdevd: {e}")))
    }

    pub async fn status(&self, name: &str) -> CmdResult<DevStatus> {
        let text = self.request(format!("status {name}")).await?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| CmdError::Internal(format!("wdevd status {text:?}: {e}")))?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(DevStatus {
            uuid: v["uuid"].as_str().unwrap_or("").to_string(),
            pbs: n("pbs") as u32,
            size_lb: n("size_lb"),
            latest: n("latest"),
            permanent: n("permanent"),
            prev_written: n("prev_written"),
            oldest: n("oldest"),
            log_usage: n("log_usage"),
            log_capacity: n("log_capacity"),
            overflow: v["overflow"].as_bool().unwrap_or(false),
        })
    }

    pub async fn ldev_path(&self, name: &str) -> CmdResult<PathBuf> {
        Ok(PathBuf::from(
            self.request(format!("get-ldev-path {name}")).await?,
        ))
    }

    /// The data device: what full and hash backups scan, right after the WAL reset that
    /// checkpoints everything older onto it (anything newer is in the logs that follow).
    pub async fn ddev_path(&self, name: &str) -> CmdResult<PathBuf> {
        Ok(PathBuf::from(
            self.request(format!("get-ddev-path {name}")).await?,
        ))
    }

    /// wdevd's file of device `name` (under its run dir): writes to it are logged.
    pub fn device_file(&self, name: &str) -> PathBuf {
        self.run_dir().join("devices").join(name)
    }

    fn run_dir(&self) -> PathBuf {
        self.sock.parent().unwrap_or(Path::new("/")).to_path_buf()
    }

    /// Grows the device to `size_lb` (0: the whole data device) and its loop device with it.
    pub async fn resize(&self, name: &str, size_lb: u64) -> CmdResult<()> {
        let run_dir = self.run_dir();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            walb_wdev::daemon::loopdev::resize(&run_dir, &name, size_lb)
        })
        .await
        .map_err(|e| CmdError::Internal(format!("resize task: {e}")))?
        .map_err(|e| CmdError::Invalid(format!("resize: {e}")))
    }

    pub async fn checkpoint(&self, name: &str) -> CmdResult<()> {
        self.request(format!("force-checkpoint {name}"))
            .await
            .map(drop)
    }

    pub async fn reset_wal(&self, name: &str) -> CmdResult<()> {
        self.request(format!("reset-wal {name}")).await.map(drop)
    }

    pub async fn set_oldest(&self, name: &str, lsid: u64) -> CmdResult<()> {
        self.request(format!("set-oldest-lsid {name} {lsid}"))
            .await
            .map(drop)
    }
}
