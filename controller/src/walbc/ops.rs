//! Operations across servers, each waiting for its result (walblib's Controller).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tonic::Code;

use walb_proto::{archive_request as ar, proxy_request as pr, storage_request as sr};
use walb_proto::{ArchiveState, ProgressReply, ProxyState, StorageState};

use super::client::{call, call_when_ready, wait_for, CallError, Cmd};
use super::layout::{Layout, Server};
use super::words::state_word;

pub struct Ctl {
    pub layout: Layout,
    /// How long a wait (restorable snapshot, state change) may take.
    pub timeout: Duration,
    /// walbc's record of consistent snapshots (`quiesce::record_path` of the layout file).
    pub record: std::path::PathBuf,
}

/// A restorable point as walbc shows it: gid, UTC time, explicit, implicit or not known yet
/// (None: the newest point, until the next diff arrives).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Restorable {
    pub gid: u64,
    pub time: String,
    /// Unix seconds.
    #[serde(skip)]
    pub unix: u64,
    pub explicit: Option<bool>,
}

impl From<&walb_proto::RestorablePoint> for Restorable {
    fn from(p: &walb_proto::RestorablePoint) -> Restorable {
        Restorable {
            gid: p.gid,
            time: walb_core::meta::iso_utc(p.time),
            unix: p.time,
            explicit: p.settled.then_some(p.explicit),
        }
    }
}

impl Ctl {
    /// One command to `s`, waiting while it is still starting; errors name the server.
    pub async fn call<C: Cmd + Clone>(&self, s: &Server, cmd: C) -> Result<C::Reply> {
        call_when_ready(&s.addr, cmd, self.timeout)
            .await
            .map_err(|e| named(s, e))
    }

    /// Every restorable point of `vol` on archive `a` (implicit ones too).
    pub async fn restorable(&self, a: &Server, vol: &str) -> Result<Vec<Restorable>> {
        let r = self
            .call(
                a,
                ar::Restorable {
                    vol: vol.into(),
                    explicit_only: false,
                },
            )
            .await?;
        Ok(r.points.iter().map(Restorable::from).collect())
    }

    /// A storage server by id (the only one when `id` is None and there is one).
    pub fn storage(&self, id: &str) -> Result<&Server> {
        self.layout
            .storage
            .iter()
            .find(|s| s.id == id)
            .with_context(|| format!("no storage {id:?} in the layout"))
    }

    pub async fn init_storage(&self, sid: &str, vol: &str, wdev: &str) -> Result<()> {
        let init = sr::InitVol {
            vol: vol.into(),
            wdev: wdev.into(),
        };
        self.call(self.storage(sid)?, init).await.map(drop)
    }

    /// Every proxy sends to the primary archive (other archives only once synchronizing) and
    /// is started.
    pub async fn prepare_proxies(&self, vol: &str) -> Result<()> {
        let a = self.layout.primary_archive()?.clone();
        for p in &self.layout.proxy {
            let have = self.archive_infos(p, vol).await?;
            if !have.contains(&a.id) {
                if self.proxy_started(p, vol).await? {
                    self.call(p, proxy_stop(vol, false)).await?;
                }
                self.call(p, archive_info_add(vol, &a)).await?;
            }
            if !self.proxy_started(p, vol).await? {
                self.call(p, pr::Start { vol: vol.into() }).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn archive_infos(&self, p: &Server, vol: &str) -> Result<Vec<String>> {
        match call(&p.addr, pr::ArchiveInfoList { vol: vol.into() }).await {
            Ok(n) => Ok(n.names),
            Err(e) if e.code == Code::NotFound => Ok(Vec::new()),
            Err(e) => Err(named(p, e)),
        }
    }

    /// Copies `vol` from archive `src` to archive `dst` up to `src`'s latest snapshot;
    /// returns `dst`'s latest snapshot ("B E"). `src` reaches `dst` at `via` when given (another
    /// network than walbc's), else at `dst`'s layout address.
    pub async fn replicate(
        &self,
        vol: &str,
        src: &str,
        dst: &str,
        via: Option<&str>,
        resync: bool,
    ) -> Result<walb_proto::Snap> {
        let (s, d) = (
            self.layout.archive(Some(src))?,
            self.layout.archive(Some(dst))?,
        );
        let r = ar::Replicate {
            vol: vol.into(),
            dst: via.unwrap_or(&d.addr).into(),
            resync,
        };
        Ok(self.call(s, r).await?.latest.unwrap_or_default())
    }

    /// Makes archive `dst` receive `vol`'s diffs from the proxies too: the proxies drain
    /// (stop empty), learn `dst`, the primary replicates to it once, the proxies start.
    pub async fn start_synchronizing(&self, vol: &str, dst: &str) -> Result<()> {
        let a = self.layout.archive(Some(dst))?.clone();
        let primary = self.layout.primary_archive()?.id.clone();
        for p in &self.layout.proxy {
            if self.proxy_started(p, vol).await? {
                self.call(p, proxy_stop(vol, true)).await?;
            }
        }
        self.replicate(vol, &primary, dst, None, false).await?;
        for p in &self.layout.proxy {
            if !self.archive_infos(p, vol).await?.contains(&a.id) {
                self.call(p, archive_info_add(vol, &a)).await?;
            }
            self.call(p, pr::Start { vol: vol.into() }).await?;
        }
        Ok(())
    }

    /// Stops the proxies sending `vol` to archive `dst`.
    pub async fn stop_synchronizing(&self, vol: &str, dst: &str) -> Result<()> {
        for p in &self.layout.proxy {
            if !self.archive_infos(p, vol).await?.contains(&dst.to_string()) {
                continue;
            }
            if self.proxy_started(p, vol).await? {
                self.call(p, proxy_stop(vol, false)).await?;
            }
            let delete = pr::ArchiveInfoDelete {
                vol: vol.into(),
                archive: dst.into(),
            };
            self.call(p, delete).await?;
            if self.proxy_state(p, vol).await? == ProxyState::ProxyStopped {
                self.call(p, pr::Start { vol: vol.into() }).await?;
            }
        }
        Ok(())
    }

    /// Whether the proxy runs `vol`: Started, or WlogRecv (Started while one wlog comes in; a
    /// stop waits for it, a start is refused).
    pub(super) async fn proxy_started(&self, p: &Server, vol: &str) -> Result<bool> {
        Ok(proxy_runs(self.proxy_state(p, vol).await?))
    }

    /// A proxy's state for `vol`; Clear when it does not know the volume.
    pub async fn proxy_state(&self, p: &Server, vol: &str) -> Result<ProxyState> {
        match call(&p.addr, pr::GetState { vol: vol.into() }).await {
            Ok(r) => Ok(r.state()),
            Err(e) if e.code == Code::NotFound => Ok(ProxyState::ProxyClear),
            Err(e) => Err(named(p, e)),
        }
    }

    /// An archive's state for `vol` (Clear when it does not hold it).
    pub async fn archive_state(&self, a: &Server, vol: &str) -> Result<ArchiveState> {
        Ok(self
            .call(a, ar::GetState { vol: vol.into() })
            .await?
            .state())
    }

    /// A storage's state for `vol`; None when it does not know the volume.
    pub async fn storage_state_or_none(
        &self,
        s: &Server,
        vol: &str,
    ) -> Result<Option<StorageState>> {
        match call(&s.addr, sr::Get { vol: vol.into() }).await {
            Ok(r) => Ok(Some(r.state())),
            Err(e) if e.code == Code::NotFound => Ok(None),
            Err(e) => Err(named(s, e)),
        }
    }

    /// Calls `s` until `done` accepts the reply (or walbc's timeout); returns that reply.
    pub(super) async fn wait_until<C: Cmd + Clone>(
        &self,
        s: &Server,
        cmd: C,
        done: impl Fn(&C::Reply) -> bool,
    ) -> Result<C::Reply> {
        wait_for(&s.addr, cmd, self.timeout, done)
            .await
            .map_err(|e| named(s, e))
    }

    /// Full backup of `vol` from storage `sid` to the primary archive; returns the gid once
    /// it is restorable there.
    pub async fn full_backup(&self, sid: &str, vol: &str, bulk: Option<&str>) -> Result<u64> {
        let s = self.storage(sid)?;
        let a = self.layout.primary_archive()?;
        match self.archive_state(a, vol).await? {
            ArchiveState::ArchiveClear => {
                self.call(a, ar::InitVol { vol: vol.into() }).await?;
            }
            ArchiveState::ArchiveSyncReady => {}
            other => bail!(
                "{}: volume {vol} is {}; a full backup needs it SyncReady (reset-vol first, which discards its backups)",
                a.id,
                state_word(other.as_str_name())
            ),
        }
        self.storage_to_sync_ready(s, vol).await?;
        self.prepare_proxies(vol).await?;
        // With TLS the archive takes the volume's backups from this storage alone.
        self.call(a, bind_storage(vol, sid)).await?;
        let full = sr::FullBkp {
            vol: vol.into(),
            bulk_lb: bulk_lb(bulk)?,
        };
        let gid = self.with_progress(s, vol, self.call(s, full)).await?.gid;
        self.wait_restorable(a, vol, gid).await?;
        Ok(gid)
    }

    /// The storage's state for `vol`.
    pub async fn storage_state(&self, s: &Server, vol: &str) -> Result<StorageState> {
        Ok(self.call(s, sr::Get { vol: vol.into() }).await?.state())
    }

    /// Brings the storage's volume to SyncReady: stops it (Target → Stopped, Standby →
    /// SyncReady) and resets it (Stopped → SyncReady: the WAL is dropped).
    pub(super) async fn storage_to_sync_ready(&self, s: &Server, vol: &str) -> Result<()> {
        let mut state = self.storage_state(s, vol).await?;
        if matches!(
            state,
            StorageState::StorageTarget | StorageState::StorageStandby
        ) {
            // The storage may have stopped on its own meanwhile (a log overflow).
            match call(&s.addr, sr::Stop { vol: vol.into() }).await {
                Ok(_) => {}
                Err(e) if e.code == Code::FailedPrecondition => {}
                Err(e) => return Err(named(s, e)),
            }
            state = self.storage_state(s, vol).await?;
        }
        if state == StorageState::StorageStopped {
            let reset = sr::ResetVol {
                vol: vol.into(),
                gid: 0,
            };
            self.call(s, reset).await?;
            state = self.storage_state(s, vol).await?;
        }
        if state != StorageState::StorageSyncReady {
            bail!(
                "{}: volume {vol} is {}, not SyncReady",
                s.id,
                state_word(state.as_str_name())
            );
        }
        Ok(())
    }

    /// Hash backup of `vol` from storage `sid` against the primary archive's latest snapshot
    /// (stops and resets the storage's volume first); returns the gid once restorable.
    pub async fn hash_backup(&self, sid: &str, vol: &str, bulk: Option<&str>) -> Result<u64> {
        let s = self.storage(sid)?;
        let a = self.layout.primary_archive()?;
        let mut st = self.archive_state(a, vol).await?;
        if st == ArchiveState::ArchiveWdiffRecv {
            // A proxy is handing over a diff (the storage has just stopped shipping): it ends
            // in Archived within moments.
            let get = ar::GetState { vol: vol.into() };
            st = self
                .wait_until(a, get, |r| r.state() != ArchiveState::ArchiveWdiffRecv)
                .await?
                .state();
        }
        if st != ArchiveState::ArchiveArchived {
            bail!(
                "{}: volume {vol} is {}; a hash backup needs it Archived (a full backup otherwise)",
                a.id,
                state_word(st.as_str_name())
            );
        }
        self.storage_to_sync_ready(s, vol).await?;
        self.prepare_proxies(vol).await?;
        self.call(a, bind_storage(vol, sid)).await?;
        let hash = sr::HashBkp {
            vol: vol.into(),
            bulk_lb: bulk_lb(bulk)?,
        };
        let gid = self.with_progress(s, vol, self.call(s, hash)).await?.gid;
        self.wait_restorable(a, vol, gid).await?;
        Ok(gid)
    }

    /// Runs `work` (a long action on `s`: a backup, device hash, restore, apply, merge,
    /// verify) while showing the action's progress: a bar on a terminal, else a line on
    /// stderr every few seconds.
    pub(super) async fn with_progress<T>(
        &self,
        s: &Server,
        vol: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::hidden();
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            b.set_prefix(s.id.clone());
            b
        });
        tokio::pin!(work);
        let period = Duration::from_millis(if bar.is_some() { 250 } else { 3000 });
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        let r = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tick.tick() => {
                    let Ok(p) = self.progress(s, vol).await else { continue };
                    match (&bar, p.idle) {
                        (Some(b), false) => {
                            if b.is_hidden() {
                                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                            }
                            b.set_message(p.kind.clone());
                            b.set_length(p.total);
                            b.set_position(p.done);
                        }
                        (None, false) => eprintln!("{}: {}", s.id, progress_line(&p)),
                        (_, true) => {}
                    }
                }
            }
        };
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        r
    }

    /// The running action on `s` (a storage or an archive) for `vol`.
    pub async fn progress(&self, s: &Server, vol: &str) -> Result<ProgressReply> {
        let p = match self.layout.find(&s.id)?.0 {
            super::layout::Kind::Storage => {
                call(&s.addr, sr::GetProgress { vol: vol.into() }).await
            }
            _ => call(&s.addr, ar::GetProgress { vol: vol.into() }).await,
        };
        p.map_err(|e| named(s, e))
    }

    /// Grows `vol` to `size_lb` everywhere: the archives first (so diffs of the larger size
    /// are accepted), then the storages (their wdev devices, whose data devices must have
    /// grown already); then the proxies retry (a send refused as smaller-lv-size resumes).
    pub async fn resize(&self, vol: &str, size_lb: u64) -> Result<()> {
        for a in &self.layout.archive {
            if self.archive_state(a, vol).await? == ArchiveState::ArchiveClear {
                continue;
            }
            let r = ar::Resize {
                vol: vol.into(),
                size_lb,
            };
            self.call(a, r).await?;
        }
        for s in &self.layout.storage {
            let r = sr::Resize {
                vol: vol.into(),
                size_lb,
            };
            match call(&s.addr, r).await {
                Ok(_) => {}
                Err(e) if e.code == Code::NotFound => {}
                Err(e) => return Err(named(s, e)),
            }
        }
        for p in &self.layout.proxy {
            let archives = match call(&p.addr, pr::ArchiveInfoList { vol: vol.into() }).await {
                Ok(n) => n.names,
                Err(e) if e.code == Code::NotFound => continue,
                Err(e) => return Err(named(p, e)),
            };
            for a in archives {
                let kick = pr::Kick {
                    vol: vol.into(),
                    archive: a,
                };
                self.call(p, kick).await?;
            }
        }
        Ok(())
    }

    /// Makes storage `sid` a standby for `vol`: its logs are dropped, not shipped.
    pub async fn go_standby(&self, sid: &str, vol: &str) -> Result<()> {
        let s = self.storage(sid)?;
        self.storage_to_sync_ready(s, vol).await?;
        let start = sr::Start {
            vol: vol.into(),
            mode: walb_proto::StartMode::StartStandby as i32,
        };
        self.call(s, start).await.map(drop)
    }

    /// Takes an explicit snapshot; with `wait`, returns once it is restorable on the primary.
    pub async fn snapshot(&self, sid: &str, vol: &str, wait: bool) -> Result<u64> {
        let mark = self.mark(sid, vol, false).await?;
        self.finish_snapshot(vol, mark, wait).await
    }

    /// The storage's mark of an explicit snapshot; with `hash`, the storage also hashes the
    /// device at it (progress on stderr).
    pub async fn mark(&self, sid: &str, vol: &str, hash: bool) -> Result<Mark> {
        let s = self.storage(sid)?;
        let snap = sr::Snapshot {
            vol: vol.into(),
            // The device hashed in bulks of 256 KiB.
            hash_bulk_lb: if hash { 512 } else { 0 },
        };
        let r = if hash {
            self.with_progress(s, vol, self.call(s, snap)).await?
        } else {
            self.call(s, snap).await?
        };
        Ok(Mark {
            gid: r.gid,
            hash: hash.then_some((r.hash_bulk, r.digest)),
        })
    }

    /// Gives the mark's device hash to every archive holding `vol`, then with `wait` waits
    /// until the snapshot is restorable on the primary; returns its gid.
    pub async fn finish_snapshot(&self, vol: &str, mark: Mark, wait: bool) -> Result<u64> {
        let gid = mark.gid;
        if let Some((bulk, digest)) = &mark.hash {
            for a in &self.layout.archive {
                if self.archive_state(a, vol).await? == ArchiveState::ArchiveClear {
                    continue;
                }
                let h = ar::DeviceHash {
                    vol: vol.into(),
                    gid,
                    bulk: *bulk,
                    digest: digest.clone(),
                };
                self.call(a, h)
                    .await
                    .with_context(|| format!("snapshot {gid} taken, its device hash not kept"))?;
            }
        }
        if wait {
            self.wait_restorable(self.layout.primary_archive()?, vol, gid)
                .await?;
        }
        Ok(gid)
    }

    pub async fn wait_restorable(&self, a: &Server, vol: &str, gid: u64) -> Result<()> {
        let cmd = ar::Restorable {
            vol: vol.into(),
            explicit_only: false,
        };
        self.wait_until(a, cmd, |r| r.points.iter().any(|p| p.gid == gid))
            .await
            .map(drop)
            .with_context(|| {
                format!(
                    "snapshot {gid} of {vol} did not become restorable on {}",
                    a.id
                )
            })
    }

    /// Restores `gid` to an image on the archive (`force`: replacing an earlier restore).
    pub async fn restore(
        &self,
        vol: &str,
        gid: u64,
        archive: Option<&str>,
        force: bool,
    ) -> Result<String> {
        let a = self.layout.archive(archive)?;
        let r = ar::Restore {
            vol: vol.into(),
            gid,
            force,
        };
        Ok(self.with_progress(a, vol, self.call(a, r)).await?.path)
    }

    /// Makes clean snapshots `gids` of `vol` explicit (`enable`) or implicit on an archive
    /// (default the primary).
    pub async fn set_snapshots(
        &self,
        vol: &str,
        gids: &[u64],
        enable: bool,
        archive: Option<&str>,
    ) -> Result<()> {
        let a = self.layout.archive(archive)?;
        let set = ar::SetSnapshots {
            vol: vol.into(),
            gids: gids.to_vec(),
            explicit: enable,
        };
        self.call(a, set).await.map(drop)
    }

    /// Status of every server (or the servers' view of one volume).
    pub async fn status(&self, vol: Option<&str>) -> Result<String> {
        let mut out = String::new();
        for (kind, s) in self.layout.all() {
            let v = vol.unwrap_or_default().to_string();
            let text = match kind {
                super::layout::Kind::Storage => self.call(s, sr::Status { vol: v }).await,
                super::layout::Kind::Proxy => self.call(s, pr::Status { vol: v }).await,
                super::layout::Kind::Archive => self.call(s, ar::Status { vol: v }).await,
            };
            match text.map(|t| t.text.trim_end().to_string()) {
                Ok(t) => out.push_str(&format!("== {} ({})\n{t}\n", s.id, s.addr)),
                Err(e) => out.push_str(&format!("== {} ({}) unreachable: {e:#}\n", s.id, s.addr)),
            }
        }
        Ok(out)
    }

    /// One volume's summary as JSON: newest restorable snapshot and its age, log usage on
    /// each storage, and each archive's lag behind the storage's newest snapshot.
    pub async fn status_json(&self, vol: &str) -> Result<serde_json::Value> {
        let mut storages = Vec::new();
        let mut newest_gid = 0;
        // A storage that does not answer leaves the newest gid, and so every lag, unknown.
        let mut newest_known = true;
        for s in &self.layout.storage {
            let got = self.call(s, sr::Get { vol: vol.into() }).await.ok();
            let latest = got.as_ref().map(|g| g.latest_snap);
            newest_gid = newest_gid.max(latest.unwrap_or(0));
            newest_known &= latest.is_some();
            let dev = got.as_ref().and_then(|g| g.device.clone());
            // A running full or hash backup: kind, bytes done of total, rate, ETA.
            let action = self
                .progress(s, vol)
                .await
                .ok()
                .and_then(|p| progress_json(&p));
            storages.push(serde_json::json!({
                "id": s.id, "reachable": got.is_some(),
                "state": got.as_ref().map(|g| state_word(g.state().as_str_name())),
                "latest_gid": latest,
                "log_usage_pb": dev.as_ref().map(|d| d.log_usage_pb),
                "log_capacity_pb": dev.as_ref().map(|d| d.log_capacity_pb),
                "action": action,
                // The write rate, and the time until the log is full at it if shipping
                // stopped.
                "write_rate_bps": dev.as_ref().and_then(|d| d.write_rate_bps),
                "overflow_in_s": dev.as_ref().and_then(|d| d.overflow_in_s),
            }));
        }
        let mut proxies = Vec::new();
        for p in &self.layout.proxy {
            let state = self.call(p, pr::GetState { vol: vol.into() }).await.ok();
            let held = self
                .call(
                    p,
                    pr::HeldDiffs {
                        vol: vol.into(),
                        archive: String::new(),
                    },
                )
                .await
                .ok()
                .map(|n| n.names.len());
            proxies.push(serde_json::json!({
                "id": p.id, "reachable": state.is_some(),
                "state": state.map(|s| state_word(s.state().as_str_name())),
                "held_diffs": held,
            }));
        }
        let consistent = super::quiesce::consistent_gids(&self.record, vol)?;
        let mut archives = Vec::new();
        for a in &self.layout.archive {
            let rs = self.restorable(a, vol).await.unwrap_or_default();
            let newest = rs.last().cloned();
            // The newest point walbc recorded as taken quiesced (docs/snapshots.md).
            let newest_consistent = rs.iter().rev().find(|r| consistent.contains(&r.gid));
            let latest = rs.last().map(|r| r.gid);
            let age = newest
                .as_ref()
                .map(|r| walb_core::meta::unix_now().saturating_sub(r.unix));
            // Why the proxies cannot hand this archive its diffs, if they cannot.
            let mut send_errors = Vec::new();
            for p in &self.layout.proxy {
                let q = pr::SendError {
                    vol: vol.into(),
                    archive: a.id.clone(),
                };
                if let Ok(e) = self.call(p, q).await {
                    if !e.last_failure.is_empty() {
                        send_errors
                            .push(serde_json::json!({"proxy": p.id, "error": e.last_failure}));
                    }
                }
            }
            // Free space against the floor under which the archive refuses data; `low` warns
            // before that happens (less than twice the floor left).
            let capacity = self.call(a, ar::Capacity {}).await.ok().map(|c| {
                serde_json::json!({
                    "free_bytes": c.free, "min_free_bytes": c.floor,
                    "low": c.free < c.floor.saturating_mul(2),
                })
            });
            let lag_gids = latest
                .filter(|_| newest_known)
                .map(|l| newest_gid.saturating_sub(l));
            // Behind by the age of its newest point while the storage has newer gids.
            let lag_seconds = lag_gids.map(|g| if g > 0 { age.unwrap_or(0) } else { 0 });
            let verify = self
                .call(a, ar::Health { vol: vol.into() })
                .await
                .ok()
                .map(|h| h.verify)
                .filter(|v| !v.is_empty());
            // A running restore, apply, merge, verify, …: kind, bytes done of total, rate, ETA.
            let action = self
                .progress(a, vol)
                .await
                .ok()
                .and_then(|p| progress_json(&p));
            let state = self.archive_state(a, vol).await.ok();
            // Its copy in the repository on object storage, if it ships to one.
            let repository = self
                .call(a, ar::RepoStatus { vol: vol.into() })
                .await
                .ok()
                .filter(|r| !r.url.is_empty())
                .map(|r| {
                    serde_json::json!({
                        "url": r.url, "lag_seconds": r.lag_s, "bytes_up": r.bytes_up,
                        "dedup_ratio": r.dedup_permille as f64 / 1000.0,
                        "error": Some(r.error).filter(|e| !e.is_empty()),
                    })
                });
            archives.push(serde_json::json!({
                "id": a.id,
                "repository": repository,
                "action": action,
                "verify": verify,
                "lag_seconds": lag_seconds,
                "capacity": capacity,
                "send_errors": send_errors,
                "state": state.map(|s| state_word(s.as_str_name())),
                "newest_restorable": newest,
                "newest_restorable_age_s": age,
                "newest_restorable_consistent": newest.as_ref().map(|r| consistent.contains(&r.gid)),
                "newest_consistent": newest_consistent,
                "latest_gid": latest,
                "lag_gids": lag_gids,
            }));
        }
        Ok(serde_json::json!({
            "vol": vol, "storages": storages, "proxies": proxies, "archives": archives,
        }))
    }
}

/// A snapshot's mark on the storage: its gid, and with `snapshot --hash` the device's digest
/// at it (bulk bytes and hex digest, as the archive's `device-hash` takes them).
pub struct Mark {
    pub gid: u64,
    pub hash: Option<(u64, String)>,
}

/// Whether a proxy's state is Started, or WlogRecv (Started while one wlog comes in).
pub(super) fn proxy_runs(state: ProxyState) -> bool {
    matches!(state, ProxyState::ProxyStarted | ProxyState::ProxyWlogRecv)
}

/// A proxy's stop: graceful, or `empty` (every held diff sent first).
pub(super) fn proxy_stop(vol: &str, empty: bool) -> pr::Stop {
    let mode = if empty {
        walb_proto::StopMode::StopEmpty
    } else {
        walb_proto::StopMode::StopGraceful
    };
    pr::Stop {
        vol: vol.into(),
        mode: mode as i32,
    }
}

/// The proxy sends `vol`'s diffs to archive `a` too (default compression, no delay).
fn archive_info_add(vol: &str, a: &Server) -> pr::ArchiveInfoSet {
    pr::ArchiveInfoSet {
        vol: vol.into(),
        archive: a.id.clone(),
        info: Some(walb_proto::ArchiveInfo {
            addr: a.addr.clone(),
            ..Default::default()
        }),
        add: true,
    }
}

fn bind_storage(vol: &str, sid: &str) -> ar::BindStorage {
    ar::BindStorage {
        vol: vol.into(),
        storage: sid.into(),
    }
}

/// A `--bulk` size (`256k`, …) in LB; 0 (the storage's default) when none is given.
fn bulk_lb(bulk: Option<&str>) -> Result<u32> {
    bulk.map_or(Ok(0), |b| {
        super::words::parse_bulk(b).map_err(|e| anyhow::anyhow!(e.message))
    })
}

/// A running action as JSON; None when idle.
fn progress_json(p: &ProgressReply) -> Option<serde_json::Value> {
    (!p.idle).then(|| {
        serde_json::json!({
            "kind": p.kind, "done_bytes": p.done, "total_bytes": p.total,
            "rate_bps": p.rate, "eta_s": p.eta_s,
        })
    })
}

/// A running action for people (`idle` when none runs).
pub fn progress_line(p: &ProgressReply) -> String {
    if p.idle {
        return "idle".into();
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    format!(
        "{} {:.1}/{:.1} MiB ({:.0}%), {:.1} MB/s, ETA {} s",
        p.kind,
        mib(p.done),
        mib(p.total),
        100.0 * p.done as f64 / p.total.max(1) as f64,
        p.rate as f64 / 1e6,
        p.eta_s
    )
}

pub(super) fn named(s: &Server, e: CallError) -> anyhow::Error {
    anyhow::anyhow!("{} ({}): {} [{:?}]", s.id, s.addr, e.message, e.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        let idle = ProgressReply {
            idle: true,
            ..Default::default()
        };
        assert_eq!(progress_line(&idle), "idle");
        let p = ProgressReply {
            idle: false,
            kind: "hash-backup".into(),
            done: 1 << 20,
            total: 4 << 20,
            rate: 2_000_000,
            eta_s: 2,
        };
        assert_eq!(
            progress_line(&p),
            "hash-backup 1.0/4.0 MiB (25%), 2.0 MB/s, ETA 2 s"
        );
    }

    #[test]
    fn restorable_points() {
        let p = |settled, explicit| walb_proto::RestorablePoint {
            gid: 7,
            time: 10,
            explicit,
            settled,
        };
        assert_eq!(Restorable::from(&p(true, true)).explicit, Some(true));
        assert_eq!(Restorable::from(&p(true, false)).explicit, Some(false));
        assert_eq!(Restorable::from(&p(false, true)).explicit, None);
        assert_eq!(Restorable::from(&p(true, true)).time, "1970-01-01T00:00:10");
    }
}
