//! The storage daemon's commands (what walbc can ask it); the server state they act on is in
//! `storage`.

use std::path::PathBuf;
use std::sync::Arc;

use walb_daemon::error::invalid;
use walb_daemon::serve::Guard;
use walb_daemon::{volfile, CmdError, CmdResult};
use walb_proto::storage_control_server::StorageControl;
use walb_proto::storage_reply::{self, Reply};
use walb_proto::storage_request::Cmd;
use walb_proto::{Done, GidReply, Names, SizeReply, StartMode, StorageReply, StorageRequest, Text};

use crate::storage::Storage;
use crate::vol::{require, save, State, Vol};

const DEFAULT_BULK_LB: u32 = 512;

/// The commands' side of the server state (the rest is in `storage`).
impl Storage {
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
        tokio::spawn(crate::ship::watch(self.clone(), self.shutdown.clone()));
        Ok(())
    }

    fn spawn(self: &Arc<Self>, vol: Arc<Vol>) {
        tokio::spawn(crate::ship::run(self.clone(), vol, self.shutdown.clone()));
    }

    async fn init_vol(self: &Arc<Self>, name: &str, wdev: &str) -> CmdResult<Done> {
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
        Ok(Done {})
    }

    async fn clear_vol(&self, name: &str) -> CmdResult<Done> {
        let vol = self.vol(name).await?;
        require(&*vol.meta.lock().await, &[State::SyncReady], "clear-vol")?;
        self.vols.write().await.remove(name);
        std::fs::remove_dir_all(&vol.dir)?;
        self.metrics.all.forget(&[("vol", name)]);
        Ok(Done {})
    }

    async fn start(&self, name: &str, mode: StartMode) -> CmdResult<Done> {
        let vol = self.vol(name).await?;
        let mut m = vol.meta.lock().await;
        match mode {
            StartMode::StartTarget => {
                require(&m, &[State::Stopped], "start target")?;
                if self.wdevd.status(&m.wdev).await?.overflow {
                    return Err(CmdError::State(
                        "start target: the log overflowed; run a hash backup".into(),
                    ));
                }
                m.state = State::Target;
            }
            StartMode::StartStandby => {
                require(&m, &[State::SyncReady], "start standby")?;
                m.state = State::Standby;
            }
        }
        save(&vol.dir, &m)?;
        vol.kick.notify_one();
        Ok(Done {})
    }

    async fn status(&self, only: Option<&str>) -> CmdResult<Text> {
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
        Ok(Text { text: out })
    }

    /// One volume's facts; the device's while wdevd answers.
    async fn get(&self, name: &str) -> CmdResult<storage_reply::Get> {
        let vol = self.vol(name).await?;
        let m = vol.meta.lock().await.clone();
        let (device, device_error) = match self.wdevd.status(&m.wdev).await {
            Ok(d) => {
                let rate = vol.writes.pb_per_sec();
                let free = d.log_capacity.saturating_sub(d.log_usage);
                let dev = storage_reply::Device {
                    log_usage_pb: d.log_usage,
                    log_capacity_pb: d.log_capacity,
                    overflow: d.overflow,
                    uuid: d.uuid,
                    write_rate_bps: rate.map(|r| (r * d.pbs as f64) as u64),
                    overflow_in_s: rate.and_then(|r| crate::rate::overflow_in(free, r)),
                };
                (Some(dev), String::new())
            }
            Err(e) => (None, e.to_string()),
        };
        Ok(storage_reply::Get {
            state: m.state.typed() as i32,
            latest_snap: m.queue.last().unwrap_or(&m.done).gid.0,
            done_lsid: m.done.lsid.0,
            done_gid: m.done.gid.0,
            device,
            device_error,
        })
    }
}

/// The storage's control service: each command through the daemon's `Guard`.
pub struct StorageControlSvc {
    pub st: Arc<Storage>,
    pub guard: Arc<Guard>,
}

#[tonic::async_trait]
impl StorageControl for StorageControlSvc {
    async fn call(
        &self,
        req: tonic::Request<StorageRequest>,
    ) -> Result<tonic::Response<StorageReply>, tonic::Status> {
        let st = &self.st;
        self.guard
            .serve(
                req,
                |r| r.cmd,
                |c| async move {
                    Ok(StorageReply {
                        reply: Some(handle(st, c).await?),
                    })
                },
            )
            .await
    }
}

/// One command (docs/scenarios.md §7.1).
async fn handle(st: &Arc<Storage>, cmd: Cmd) -> CmdResult<Reply> {
    Ok(match cmd {
        Cmd::InitVol(r) => Reply::InitVol(st.init_vol(&r.vol, &r.wdev).await?),
        Cmd::ClearVol(r) => Reply::ClearVol(st.clear_vol(&r.vol).await?),
        Cmd::ResetVol(r) => Reply::ResetVol(st.reset_vol(&r.vol, r.gid).await?),
        Cmd::Start(r) => Reply::Start(st.start(&r.vol, r.mode()).await?),
        Cmd::Stop(r) => Reply::Stop(st.stop(&r.vol).await?),
        // The gid, with the device's hash at it when asked.
        Cmd::Snapshot(r) => {
            let vol = st.vol(&r.vol).await?;
            Reply::Snapshot(if r.hash_bulk_lb == 0 {
                storage_reply::Snapshot {
                    gid: st.snapshot(&vol).await?.gid.0,
                    ..Default::default()
                }
            } else {
                let bulk_lb = check_bulk(r.hash_bulk_lb)?;
                let h = crate::devhash::snapshot_with_hash(st, &vol, bulk_lb).await?;
                storage_reply::Snapshot {
                    gid: h.gid,
                    hash_bulk: h.bulk as u64,
                    digest: h.digest.to_hex().to_string(),
                }
            })
        }
        Cmd::FullBkp(r) => {
            let vol = st.vol(&r.vol).await?;
            let gid = crate::full::full_backup(st, &vol, check_bulk(r.bulk_lb)?).await?;
            Reply::FullBkp(GidReply { gid })
        }
        Cmd::HashBkp(r) => {
            let vol = st.vol(&r.vol).await?;
            let gid = crate::hash::hash_backup(st, &vol, check_bulk(r.bulk_lb)?).await?;
            Reply::HashBkp(GidReply { gid })
        }
        Cmd::Resize(r) => {
            let vol = st.vol(&r.vol).await?;
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
            st.wdevd.resize(&m.wdev, r.size_lb).await?;
            Reply::Resize(SizeReply {
                size_lb: st.wdevd.status(&m.wdev).await?.size_lb,
            })
        }
        Cmd::SetFullScanBps(r) => {
            st.scan_bps
                .store(r.bps, std::sync::atomic::Ordering::Relaxed);
            Reply::SetFullScanBps(Done {})
        }
        Cmd::Cancel(r) => {
            let vol = st.vol(&r.vol).await?;
            let Some(s) = vol.scan.current() else {
                return Err(CmdError::State(format!(
                    "cancel: no full or hash backup runs on {}",
                    vol.name
                )));
            };
            s.cancelled
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Reply::Cancel(Done {})
        }
        Cmd::Kick(_) => {
            st.down.lock().expect("proxy lock").clear();
            for v in st.vols.read().await.values() {
                v.kick.notify_one();
            }
            Reply::Kick(Done {})
        }
        Cmd::Status(r) => Reply::Status(
            st.status(Some(r.vol.as_str()).filter(|v| !v.is_empty()))
                .await?,
        ),
        Cmd::ListVols(_) => Reply::ListVols(Names {
            names: st.vols.read().await.keys().cloned().collect(),
        }),
        Cmd::Get(r) => Reply::Get(st.get(&r.vol).await?),
        Cmd::GetProgress(r) => Reply::GetProgress(st.vol(&r.vol).await?.scan.reply()),
    })
}

/// A bulk size in LB from a request (0: the default), checked: 512 B to 4 MiB.
fn check_bulk(lb: u32) -> CmdResult<u32> {
    match lb {
        0 => Ok(DEFAULT_BULK_LB),
        1..=8192 => Ok(lb),
        _ => Err(invalid(format!(
            "bulk size {lb} LB: must be from 1 LB (512 B) to 8192 LB (4 MiB)"
        ))),
    }
}
