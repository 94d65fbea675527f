//! The storage daemon's commands (what walbc can ask it) and its shared context.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::RwLock;
use walb_core::meta::MetaLsidGid;
use walb_daemon::error::{arg, invalid, num_arg};
use walb_daemon::serve::{Commands, Shutdown};
use walb_daemon::{volfile, CmdError, CmdResult};

use crate::metrics::StorageMetrics;
use crate::vol::{require, save, zero_done, State, Vol};
use crate::wdevd::Wdevd;

pub struct Storage {
    pub id: String,
    pub data_dir: PathBuf,
    pub wdevd: Wdevd,
    /// Proxy addresses in priority order.
    pub proxies: Vec<String>,
    /// The primary archive (full and hash backup).
    pub archive: String,
    pub max_wlog_send_mb: u64,
    pub snapshot_interval: Duration,
    pub poll: Duration,
    pub metrics: StorageMetrics,
    pub shutdown: Shutdown,
    pub vols: RwLock<BTreeMap<String, Arc<Vol>>>,
    /// Full and hash backup scan rate limit in bytes/s (0: none); `set-full-scan-bps`.
    pub scan_bps: Arc<std::sync::atomic::AtomicU64>,
    /// Proxies that failed lately, with when: tried after the others for a while.
    pub down: std::sync::Mutex<BTreeMap<String, std::time::Instant>>,
    /// Full backup bulks: compression and encoding threads.
    pub bulk: walb_daemon::args::BulkArgs,
}

/// How long a proxy that failed is tried only after the others.
const PROXY_DOWN_FOR: Duration = Duration::from_secs(10);

const DEFAULT_BULK_LB: u32 = 512;

impl Storage {
    pub fn max_wlog_send_pb(&self, pbs: u32) -> u64 {
        (self.max_wlog_send_mb << 20) / pbs.max(512) as u64
    }

    /// Proxies in priority order, those that failed within `PROXY_DOWN_FOR` last.
    pub fn proxy_order(&self) -> Vec<String> {
        let down = self.down.lock().expect("proxy lock");
        let is_down = |p: &String| down.get(p).is_some_and(|t| t.elapsed() < PROXY_DOWN_FOR);
        let (mut up, dn): (Vec<String>, Vec<String>) =
            self.proxies.iter().cloned().partition(|p| !is_down(p));
        up.extend(dn);
        up
    }

    pub fn proxy_down(&self, p: &str) {
        tracing::warn!(
            proxy = p,
            "proxy failed; trying the others first for a while"
        );
        self.down
            .lock()
            .expect("proxy lock")
            .insert(p.to_string(), std::time::Instant::now());
    }

    pub fn proxy_up(&self, p: &str) {
        self.down.lock().expect("proxy lock").remove(p);
    }

    fn vols_dir(&self) -> PathBuf {
        self.data_dir.join("vols")
    }

    /// Loads every volume under the data dir and starts their shipping tasks.
    pub async fn load(self: &Arc<Self>) -> CmdResult<()> {
        for name in volfile::volumes(&self.vols_dir())? {
            let vol = Arc::new(Vol::load(&self.vols_dir().join(&name), &name)?);
            self.spawn(vol.clone());
            self.vols.write().await.insert(name, vol);
        }
        Ok(())
    }

    fn spawn(self: &Arc<Self>, vol: Arc<Vol>) {
        tokio::spawn(crate::ship::run(self.clone(), vol, self.shutdown.clone()));
    }

    pub(crate) async fn vol(&self, name: &str) -> CmdResult<Arc<Vol>> {
        self.vols
            .read()
            .await
            .get(name)
            .cloned()
            .ok_or_else(|| CmdError::NotFound(format!("volume {name} not found")))
    }

    async fn init_vol(self: &Arc<Self>, name: &str, wdev: &str) -> CmdResult<String> {
        volfile::check_vol_name(name)?;
        let mut vols = self.vols.write().await;
        if vols.contains_key(name) {
            return Err(CmdError::State(format!("init-vol: volume {name} exists")));
        }
        for v in vols.values() {
            if v.meta.lock().await.wdev == wdev {
                return Err(invalid(format!(
                    "init-vol: device {wdev} is already used by volume {}",
                    v.name
                )));
            }
        }
        // The device must exist in wdevd.
        self.wdevd.status(wdev).await?;
        let vol = Arc::new(Vol::create(&self.vols_dir().join(name), name, wdev)?);
        self.spawn(vol.clone());
        vols.insert(name.to_string(), vol);
        Ok("ok".into())
    }

    async fn clear_vol(&self, name: &str) -> CmdResult<String> {
        let vol = self.vol(name).await?;
        require(&*vol.meta.lock().await, &[State::SyncReady], "clear-vol")?;
        self.vols.write().await.remove(name);
        std::fs::remove_dir_all(&vol.dir)?;
        self.metrics.all.forget(&[("vol", name)]);
        Ok("ok".into())
    }

    pub(crate) async fn reset_vol(&self, name: &str, gid: u64) -> CmdResult<String> {
        let vol = self.vol(name).await?;
        let mut m = vol.meta.lock().await;
        require(&m, &[State::Stopped, State::SyncReady], "reset-vol")?;
        self.wdevd.reset_wal(&m.wdev).await?;
        m.done = MetaLsidGid {
            gid: walb_core::Gid(gid),
            ..zero_done()
        };
        m.queue.clear();
        m.state = State::SyncReady;
        save(&vol.dir, &m)?;
        Ok("ok".into())
    }

    async fn start(&self, name: &str, mode: &str) -> CmdResult<String> {
        let vol = self.vol(name).await?;
        let mut m = vol.meta.lock().await;
        match mode {
            "target" => {
                require(&m, &[State::Stopped], "start target")?;
                if self.wdevd.status(&m.wdev).await?.overflow {
                    return Err(CmdError::State(
                        "start target: the log overflowed; run a hash backup".into(),
                    ));
                }
                m.state = State::Target;
            }
            "standby" => {
                require(&m, &[State::SyncReady], "start standby")?;
                m.state = State::Standby;
            }
            other => return Err(invalid(format!("start: mode {other:?}: target or standby"))),
        }
        save(&vol.dir, &m)?;
        vol.kick.notify_one();
        Ok("ok".into())
    }

    pub(crate) async fn stop(&self, name: &str) -> CmdResult<String> {
        let vol = self.vol(name).await?;
        let mut m = vol.meta.lock().await;
        require(&m, &[State::Target, State::Standby], "stop")?;
        m.state = if m.state == State::Target {
            State::Stopped
        } else {
            State::SyncReady
        };
        save(&vol.dir, &m).map(|_| "ok".into())
    }

    /// An explicit snapshot: the logs written so far are made permanent and the snapshot's
    /// gid returned.
    pub async fn snapshot(&self, vol: &Vol) -> CmdResult<MetaLsidGid> {
        let m = vol.meta.lock().await;
        require(&m, &[State::Target, State::Stopped], "snapshot")?;
        if self.wdevd.status(&m.wdev).await?.overflow {
            return Err(CmdError::State(
                "snapshot: the log overflowed; run a hash backup".into(),
            ));
        }
        drop(m);
        let mark = self.explicit_snapshot(vol).await?;
        vol.kick.notify_one();
        Ok(mark)
    }

    /// Makes every acknowledged write permanent (a checkpoint) and queues an explicit
    /// snapshot at the log's end; returns its lsid and gid.
    pub async fn explicit_snapshot(&self, vol: &Vol) -> CmdResult<MetaLsidGid> {
        let mut m = vol.meta.lock().await;
        self.wdevd.checkpoint(&m.wdev).await?;
        let dev = self.wdevd.status(&m.wdev).await?;
        m.queue_snapshot(dev.latest, false, self.max_wlog_send_pb(dev.pbs));
        save(&vol.dir, &m)?;
        Ok(*m.queue.last().expect("just queued"))
    }

    async fn status(&self, only: Option<&str>) -> CmdResult<String> {
        let mut out = format!("storage {}\n", self.id);
        // The wdevd worker serving the devices (docs/wdev.md, "Restarts").
        match self.wdevd.daemon().await {
            Ok(d) => out.push_str(&format!(
                "wdevd pid {} started_ms {} restarts {} transport {}\n",
                d.pid, d.started_ms, d.restarts, d.transport
            )),
            Err(e) => out.push_str(&format!("wdevd unreachable: {e}\n")),
        }
        for (name, vol) in self.vols.read().await.iter() {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let m = vol.meta.lock().await.clone();
            let dev = self.wdevd.status(&m.wdev).await.ok();
            out.push_str(&format!(
                "{name} state {} wdev {} done lsid {} gid {} queued {}",
                m.state.name(),
                m.wdev,
                m.done.lsid.0,
                m.done.gid.0,
                m.queue.len()
            ));
            if let Some(d) = dev {
                out.push_str(&format!(
                    " log {}/{} PB permanent {} overflow {}",
                    d.log_usage, d.log_capacity, d.permanent, d.overflow as u8
                ));
                if let Some(rate) = vol.writes.pb_per_sec().filter(|&r| r > 0.0) {
                    let free = d.log_capacity.saturating_sub(d.log_usage);
                    out.push_str(&format!(
                        " writes {:.1} MB/s full in {} s unshipped",
                        rate * d.pbs as f64 / 1e6,
                        crate::rate::overflow_in(free, rate).unwrap_or(0)
                    ));
                }
            }
            out.push('\n');
        }
        Ok(out)
    }

    async fn get(&self, args: &[String]) -> CmdResult<String> {
        let what = arg(args, 1, "get target")?;
        if what == "vol" {
            return Ok(self
                .vols
                .read()
                .await
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"));
        }
        let vol = self.vol(arg(args, 2, "volume")?).await?;
        let m = vol.meta.lock().await.clone();
        match what {
            "state" => Ok(m.state.name().into()),
            "is-overflow" => Ok((self.wdevd.status(&m.wdev).await?.overflow as u8).to_string()),
            "log-usage" => {
                let d = self.wdevd.status(&m.wdev).await?;
                Ok(format!("{} {}", d.log_usage, d.log_capacity))
            }
            // `BYTES_PER_S OVERFLOW_IN_S`: the write rate, and the seconds until the log
            // overflows at it if nothing more is shipped (`-` while unknown or idle).
            "write-rate" => {
                let d = self.wdevd.status(&m.wdev).await?;
                let Some(rate) = vol.writes.pb_per_sec() else {
                    return Ok("- -".into());
                };
                let free = d.log_capacity.saturating_sub(d.log_usage);
                let eta = crate::rate::overflow_in(free, rate)
                    .map_or_else(|| "-".to_string(), |s| s.to_string());
                Ok(format!("{} {eta}", (rate * d.pbs as f64) as u64))
            }
            "uuid" => Ok(self.wdevd.status(&m.wdev).await?.uuid),
            "latest-snap" => Ok(m.queue.last().unwrap_or(&m.done).gid.0.to_string()),
            "done" => Ok(format!("{} {}", m.done.lsid.0, m.done.gid.0)),
            "progress" => Ok(vol.scan.line()),
            other => Err(invalid(format!("get: unknown target {other:?}"))),
        }
    }
}

/// The Commands implementation over a shared `Storage`.
pub struct StorageCommands(pub Arc<Storage>);

#[tonic::async_trait]
impl Commands for StorageCommands {
    async fn call(&self, args: Vec<String>) -> CmdResult<String> {
        let st = &self.0;
        let cmd = arg(&args, 0, "command")?;
        match cmd {
            "init-vol" => {
                st.init_vol(arg(&args, 1, "volume")?, arg(&args, 2, "wdev name")?)
                    .await
            }
            "clear-vol" => st.clear_vol(arg(&args, 1, "volume")?).await,
            "reset-vol" => {
                let gid = if args.len() > 2 {
                    num_arg(&args, 2, "gid")?
                } else {
                    0
                };
                st.reset_vol(arg(&args, 1, "volume")?, gid).await
            }
            "start" => {
                st.start(arg(&args, 1, "volume")?, arg(&args, 2, "target|standby")?)
                    .await
            }
            "stop" => st.stop(arg(&args, 1, "volume")?).await,
            // `snapshot VOL [hash [BULK]]`: the gid, or `GID BULK_BYTES DIGEST` with the
            // device's hash at it.
            "snapshot" => {
                let vol = st.vol(arg(&args, 1, "volume")?).await?;
                match args.get(2).map(String::as_str) {
                    None => Ok(st.snapshot(&vol).await?.gid.0.to_string()),
                    Some("hash") => {
                        let bulk_lb = match args.get(3) {
                            Some(b) => parse_bulk(b)?,
                            None => DEFAULT_BULK_LB,
                        };
                        let h = crate::devhash::snapshot_with_hash(st, &vol, bulk_lb).await?;
                        Ok(format!("{} {} {}", h.gid, h.bulk, h.digest))
                    }
                    Some(o) => Err(invalid(format!("snapshot: {o:?}: only hash may follow"))),
                }
            }
            "full-bkp" => {
                let vol = st.vol(arg(&args, 1, "volume")?).await?;
                let bulk_lb = if args.len() > 2 {
                    parse_bulk(arg(&args, 2, "bulk size")?)?
                } else {
                    DEFAULT_BULK_LB
                };
                crate::full::full_backup(st, &vol, bulk_lb)
                    .await
                    .map(|g| g.to_string())
            }
            "hash-bkp" => {
                let vol = st.vol(arg(&args, 1, "volume")?).await?;
                let bulk_lb = if args.len() > 2 {
                    parse_bulk(arg(&args, 2, "bulk size")?)?
                } else {
                    DEFAULT_BULK_LB
                };
                crate::hash::hash_backup(st, &vol, bulk_lb)
                    .await
                    .map(|g| g.to_string())
            }
            "resize" => {
                let vol = st.vol(arg(&args, 1, "volume")?).await?;
                let size = if args.len() > 2 {
                    num_arg(&args, 2, "size in LB")?
                } else {
                    0
                };
                let m = vol.meta.lock().await;
                require(
                    &m,
                    &[
                        State::SyncReady,
                        State::Stopped,
                        State::Target,
                        State::Standby,
                    ],
                    "resize",
                )?;
                st.wdevd.resize(&m.wdev, size).await?;
                Ok(st.wdevd.status(&m.wdev).await?.size_lb.to_string())
            }
            "set-full-scan-bps" => {
                let bps = num_arg(&args, 1, "bytes per second")?;
                st.scan_bps.store(bps, std::sync::atomic::Ordering::Relaxed);
                Ok("ok".into())
            }
            "cancel" => {
                let vol = st.vol(arg(&args, 1, "volume")?).await?;
                match vol.scan.current() {
                    Some(s) => {
                        s.cancelled
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        Ok("ok".into())
                    }
                    None => Err(CmdError::State(format!(
                        "cancel: no full or hash backup runs on {}",
                        vol.name
                    ))),
                }
            }
            "kick" => {
                st.down.lock().expect("proxy lock").clear();
                for v in st.vols.read().await.values() {
                    v.kick.notify_one();
                }
                Ok("ok".into())
            }
            "status" => st.status(args.get(1).map(String::as_str)).await,
            "get" => st.get(&args).await,
            other => Err(invalid(format!("unknown storage command {other:?}"))),
        }
    }
}

/// A bulk size in bytes with an optional k/m suffix (512 B to 4 MiB, a multiple of 512), in LB.
pub fn parse_bulk(s: &str) -> CmdResult<u32> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    let bytes = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| invalid(format!("bulk size {s:?} is not a size")))?;
    if !(512..=4 << 20).contains(&bytes) || !bytes.is_multiple_of(512) {
        return Err(invalid(format!(
            "bulk size {s}: must be a multiple of 512 from 512 to 4m"
        )));
    }
    Ok((bytes / 512) as u32)
}

#[cfg(test)]
mod tests {
    use super::parse_bulk;

    #[test]
    fn bulk_sizes() {
        assert_eq!(parse_bulk("256k").unwrap(), 512);
        assert_eq!(parse_bulk("512").unwrap(), 1);
        assert_eq!(parse_bulk("4m").unwrap(), 8192);
        for bad in ["0", "100", "8m", "x", "1000"] {
            assert!(parse_bulk(bad).is_err(), "{bad}");
        }
    }
}
