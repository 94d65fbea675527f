//! Operations across servers, each waiting for its result (walblib's Controller).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tonic::Code;

use super::client::{call, call_when_ready, wait_for, CallError};
use super::layout::{Layout, Server};

pub struct Ctl {
    pub layout: Layout,
    /// How long a wait (restorable snapshot, state change) may take.
    pub timeout: Duration,
    /// walbc's record of consistent snapshots (`quiesce::record_path` of the layout file).
    pub record: std::path::PathBuf,
}

/// One line of an archive's `get restorable`: gid, UTC time, explicit (1), implicit (0) or
/// not known yet (`?`: the newest point, until the next diff arrives).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Restorable {
    pub gid: u64,
    pub time: String,
    pub explicit: Option<bool>,
}

pub fn parse_restorable(text: &str) -> Vec<Restorable> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Restorable {
                gid: f.first()?.parse().ok()?,
                time: f.get(1)?.to_string(),
                explicit: match *f.get(2)? {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                },
            })
        })
        .collect()
}

impl Ctl {
    pub async fn call(&self, s: &Server, args: &[&str]) -> Result<String> {
        call_when_ready(&s.addr, args, self.timeout)
            .await
            .map_err(|e| named(s, e))
            .map(|t| t.trim_end().to_string())
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
        self.call(self.storage(sid)?, &["init-vol", vol, wdev])
            .await
            .map(drop)
    }

    /// Every proxy sends to the primary archive (other archives only once synchronizing) and
    /// is started.
    pub async fn prepare_proxies(&self, vol: &str) -> Result<()> {
        let a = self.layout.primary_archive()?.clone();
        for p in &self.layout.proxy {
            let have = self.archive_infos(p, vol).await?;
            if !have.contains(&a.id) {
                if self.proxy_started(p, vol).await? {
                    self.call(p, &["stop", vol]).await?;
                }
                self.call(p, &["archive-info", "add", vol, &a.id, &a.addr])
                    .await?;
            }
            if !self.proxy_started(p, vol).await? {
                self.call(p, &["start", vol]).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn archive_infos(&self, p: &Server, vol: &str) -> Result<Vec<String>> {
        match call(&p.addr, &["archive-info", "list", vol]).await {
            Ok(t) => Ok(t.lines().map(str::to_string).collect()),
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
    ) -> Result<String> {
        let (s, d) = (
            self.layout.archive(Some(src))?,
            self.layout.archive(Some(dst))?,
        );
        let mut args = vec!["replicate", vol, via.unwrap_or(&d.addr)];
        if resync {
            args.push("resync");
        }
        self.call(s, &args).await
    }

    /// Makes archive `dst` receive `vol`'s diffs from the proxies too: the proxies drain
    /// (stop empty), learn `dst`, the primary replicates to it once, the proxies start.
    pub async fn start_synchronizing(&self, vol: &str, dst: &str) -> Result<()> {
        let a = self.layout.archive(Some(dst))?.clone();
        let primary = self.layout.primary_archive()?.id.clone();
        for p in &self.layout.proxy {
            if self.proxy_started(p, vol).await? {
                self.call(p, &["stop", vol, "empty"]).await?;
            }
        }
        self.replicate(vol, &primary, dst, None, false).await?;
        for p in &self.layout.proxy {
            if !self.archive_infos(p, vol).await?.contains(&a.id) {
                self.call(p, &["archive-info", "add", vol, &a.id, &a.addr])
                    .await?;
            }
            self.call(p, &["start", vol]).await?;
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
                self.call(p, &["stop", vol]).await?;
            }
            self.call(p, &["archive-info", "delete", vol, dst]).await?;
            if self.state_or_clear(p, vol).await? == "Stopped" {
                self.call(p, &["start", vol]).await?;
            }
        }
        Ok(())
    }

    /// Whether the proxy runs `vol`: Started, or WlogRecv (Started while one wlog comes in; a
    /// stop waits for it, a start is refused).
    pub(super) async fn proxy_started(&self, p: &Server, vol: &str) -> Result<bool> {
        Ok(proxy_runs(&self.state_or_clear(p, vol).await?))
    }

    /// A server's state for `vol`, "Clear" when it does not know the volume (a proxy or
    /// storage answers NotFound then).
    pub async fn state_or_clear(&self, s: &Server, vol: &str) -> Result<String> {
        match call(&s.addr, &["get", "state", vol]).await {
            Ok(t) => Ok(t.trim().to_string()),
            Err(e) if e.code == Code::NotFound => Ok("Clear".into()),
            Err(e) => Err(named(s, e)),
        }
    }

    /// Polls `s`'s state for `vol` until `done` accepts it (or walbc's timeout); returns it.
    pub(super) async fn wait_state(
        &self,
        s: &Server,
        vol: &str,
        done: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let t = wait_for(&s.addr, &["get", "state", vol], self.timeout, |t| {
            done(t.trim())
        })
        .await
        .map_err(|e| named(s, e))?;
        Ok(t.trim().to_string())
    }

    /// Full backup of `vol` from storage `sid` to the primary archive; returns the gid once
    /// it is restorable there.
    pub async fn full_backup(&self, sid: &str, vol: &str, bulk: Option<&str>) -> Result<u64> {
        let s = self.storage(sid)?;
        let a = self.layout.primary_archive()?;
        match self.state_or_clear(a, vol).await?.as_str() {
            "Clear" => {
                self.call(a, &["init-vol", vol]).await?;
            }
            "SyncReady" => {}
            other => bail!(
                "{}: volume {vol} is {other}; a full backup needs it SyncReady (reset-vol first, which discards its backups)",
                a.id
            ),
        }
        self.storage_to_sync_ready(s, vol).await?;
        self.prepare_proxies(vol).await?;
        // With TLS the archive takes the volume's backups from this storage alone.
        self.call(a, &["bind-storage", vol, sid]).await?;
        let mut args = vec!["full-bkp", vol];
        if let Some(b) = bulk {
            args.push(b);
        }
        let gid: u64 = self
            .with_progress(s, vol, self.call(s, &args))
            .await?
            .parse()
            .context("full-bkp reply is not a gid")?;
        self.wait_restorable(a, vol, gid).await?;
        Ok(gid)
    }

    /// The storage's state for `vol`.
    pub async fn storage_state(&self, s: &Server, vol: &str) -> Result<String> {
        self.call(s, &["get", "state", vol]).await
    }

    /// Brings the storage's volume to SyncReady: stops it (Target → Stopped, Standby →
    /// SyncReady) and resets it (Stopped → SyncReady: the WAL is dropped).
    pub(super) async fn storage_to_sync_ready(&self, s: &Server, vol: &str) -> Result<()> {
        let mut state = self.storage_state(s, vol).await?;
        if state == "Target" || state == "Standby" {
            // The storage may have stopped on its own meanwhile (a log overflow).
            match call(&s.addr, &["stop", vol]).await {
                Ok(_) => {}
                Err(e) if e.code == Code::FailedPrecondition => {}
                Err(e) => return Err(named(s, e)),
            }
            state = self.storage_state(s, vol).await?;
        }
        if state == "Stopped" {
            self.call(s, &["reset-vol", vol]).await?;
            state = self.storage_state(s, vol).await?;
        }
        if state != "SyncReady" {
            bail!("{}: volume {vol} is {state}, not SyncReady", s.id);
        }
        Ok(())
    }

    /// Hash backup of `vol` from storage `sid` against the primary archive's latest snapshot
    /// (stops and resets the storage's volume first); returns the gid once restorable.
    pub async fn hash_backup(&self, sid: &str, vol: &str, bulk: Option<&str>) -> Result<u64> {
        let s = self.storage(sid)?;
        let a = self.layout.primary_archive()?;
        let mut st = self.state_or_clear(a, vol).await?;
        if st == "WdiffRecv" {
            // A proxy is handing over a diff (the storage has just stopped shipping): it ends
            // in Archived within moments.
            st = self.wait_state(a, vol, |t| t != "WdiffRecv").await?;
        }
        if st != "Archived" {
            bail!(
                "{}: volume {vol} is {st}; a hash backup needs it Archived (a full backup otherwise)",
                a.id
            );
        }
        self.storage_to_sync_ready(s, vol).await?;
        self.prepare_proxies(vol).await?;
        self.call(a, &["bind-storage", vol, sid]).await?;
        let mut args = vec!["hash-bkp", vol];
        args.extend(bulk);
        let gid: u64 = self
            .with_progress(s, vol, self.call(s, &args))
            .await?
            .parse()
            .context("hash-bkp reply is not a gid")?;
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
                    let Ok(p) = call(&s.addr, &["get", "progress", vol]).await else { continue };
                    match (&bar, Progress::parse(&p)) {
                        (Some(b), Some(p)) => {
                            if b.is_hidden() {
                                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                            }
                            b.set_message(p.kind.to_string());
                            b.set_length(p.total);
                            b.set_position(p.done);
                        }
                        (None, Some(_)) => eprintln!("{}: {}", s.id, progress_line(&p).unwrap_or(p)),
                        (_, None) => {}
                    }
                }
            }
        };
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        r
    }

    /// Grows `vol` to `size_lb` everywhere: the archives first (so diffs of the larger size
    /// are accepted), then the storages (their wdev devices, whose data devices must have
    /// grown already); then the proxies retry (a send refused as smaller-lv-size resumes).
    pub async fn resize(&self, vol: &str, size_lb: u64, zero: bool) -> Result<()> {
        let size = size_lb.to_string();
        for a in &self.layout.archive {
            if self.state_or_clear(a, vol).await? == "Clear" {
                continue;
            }
            let mut args = vec!["resize", vol, &size];
            if zero {
                args.push("zeroclear");
            }
            self.call(a, &args).await?;
        }
        for s in &self.layout.storage {
            match call(&s.addr, &["resize", vol, &size]).await {
                Ok(_) => {}
                Err(e) if e.code == Code::NotFound => {}
                Err(e) => return Err(named(s, e)),
            }
        }
        for p in &self.layout.proxy {
            let archives = match call(&p.addr, &["archive-info", "list", vol]).await {
                Ok(t) => t,
                Err(e) if e.code == Code::NotFound => continue,
                Err(e) => return Err(named(p, e)),
            };
            for a in archives.lines() {
                self.call(p, &["kick", vol, a]).await?;
            }
        }
        Ok(())
    }

    /// Makes storage `sid` a standby for `vol`: its logs are dropped, not shipped.
    pub async fn go_standby(&self, sid: &str, vol: &str) -> Result<()> {
        let s = self.storage(sid)?;
        self.storage_to_sync_ready(s, vol).await?;
        self.call(s, &["start", vol, "standby"]).await.map(drop)
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
        if !hash {
            let gid = self.call(s, &["snapshot", vol]).await?;
            return Ok(Mark {
                gid: gid.parse().context("snapshot reply is not a gid")?,
                hash: None,
            });
        }
        let reply = self
            .with_progress(s, vol, self.call(s, &["snapshot", vol, "hash"]))
            .await?;
        let f: Vec<&str> = reply.split_whitespace().collect();
        match f[..] {
            [gid, bulk, digest] => Ok(Mark {
                gid: gid.parse().context("snapshot reply: gid")?,
                hash: Some((bulk.to_string(), digest.to_string())),
            }),
            _ => bail!("snapshot reply {reply:?}: not GID BULK DIGEST"),
        }
    }

    /// Gives the mark's device hash to every archive holding `vol`, then with `wait` waits
    /// until the snapshot is restorable on the primary; returns its gid.
    pub async fn finish_snapshot(&self, vol: &str, mark: Mark, wait: bool) -> Result<u64> {
        let gid = mark.gid;
        if let Some((bulk, digest)) = &mark.hash {
            for a in &self.layout.archive {
                if self.state_or_clear(a, vol).await? == "Clear" {
                    continue;
                }
                self.call(a, &["device-hash", vol, &gid.to_string(), bulk, digest])
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
        wait_for(&a.addr, &["get", "restorable", vol], self.timeout, |t| {
            parse_restorable(t).iter().any(|r| r.gid == gid)
        })
        .await
        .map(drop)
        .map_err(|e| named(a, e))
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
        let gid = gid.to_string();
        let mut args = vec!["restore", vol, &gid];
        if force {
            args.push("force");
        }
        self.with_progress(a, vol, self.call(a, &args)).await
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
        let cmd = if enable {
            "enable-snapshot"
        } else {
            "disable-snapshot"
        };
        let gids: Vec<String> = gids.iter().map(u64::to_string).collect();
        let mut args = vec![cmd, vol];
        args.extend(gids.iter().map(String::as_str));
        self.call(a, &args).await.map(drop)
    }

    /// Status of every server (or the servers' view of one volume).
    pub async fn status(&self, vol: Option<&str>) -> Result<String> {
        let mut out = String::new();
        for (_, s) in self.layout.all() {
            let mut args = vec!["status"];
            args.extend(vol);
            match self.call(s, &args).await {
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
            let state = self.call(s, &["get", "state", vol]).await.ok();
            let usage = self.call(s, &["get", "log-usage", vol]).await.ok();
            let latest: Option<u64> = self
                .call(s, &["get", "latest-snap", vol])
                .await
                .ok()
                .and_then(|t| t.parse().ok());
            newest_gid = newest_gid.max(latest.unwrap_or(0));
            newest_known &= latest.is_some();
            let (used, cap) = usage
                .as_deref()
                .and_then(|u| u.split_once(' '))
                .map(|(a, b)| (a.parse::<u64>().ok(), b.parse::<u64>().ok()))
                .unwrap_or((None, None));
            // A running full or hash backup: kind, bytes done of total, rate, ETA.
            let action = self
                .call(s, &["get", "progress", vol])
                .await
                .ok()
                .and_then(|p| progress_json(&p));
            // The write rate, and the time until the log is full at it if shipping stopped.
            let rate = self.call(s, &["get", "write-rate", vol]).await.ok();
            let rate: Vec<Option<u64>> = rate
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect();
            let field = |i: usize| rate.get(i).copied().flatten();
            storages.push(serde_json::json!({
                "id": s.id, "reachable": state.is_some(), "state": state, "latest_gid": latest,
                "log_usage_pb": used, "log_capacity_pb": cap, "action": action,
                "write_rate_bps": field(0), "overflow_in_s": field(1),
            }));
        }
        let mut proxies = Vec::new();
        for p in &self.layout.proxy {
            let state = self.call(p, &["get", "state", vol]).await.ok();
            let held = self
                .call(p, &["get", "proxy-diff", vol])
                .await
                .ok()
                .map(|t| t.lines().count());
            proxies.push(serde_json::json!({
                "id": p.id, "reachable": state.is_some(), "state": state, "held_diffs": held,
            }));
        }
        let consistent = super::quiesce::consistent_gids(&self.record, vol)?;
        let mut archives = Vec::new();
        for a in &self.layout.archive {
            let rs = self
                .call(a, &["get", "restorable", vol, "all"])
                .await
                .map(|t| parse_restorable(&t))
                .unwrap_or_default();
            let newest = rs.last().cloned();
            // The newest point walbc recorded as taken quiesced (docs/snapshots.md).
            let newest_consistent = rs.iter().rev().find(|r| consistent.contains(&r.gid));
            let latest = rs.last().map(|r| r.gid);
            let age = newest
                .as_ref()
                .and_then(|r| walb_core::meta::parse_iso_utc(&r.time))
                .map(|t| walb_core::meta::unix_now().saturating_sub(t));
            // Why the proxies cannot hand this archive its diffs, if they cannot.
            let mut send_errors = Vec::new();
            for p in &self.layout.proxy {
                if let Ok(why) = self.call(p, &["get", "last-send-error", vol, &a.id]).await {
                    if !why.is_empty() {
                        send_errors.push(serde_json::json!({"proxy": p.id, "error": why}));
                    }
                }
            }
            // Free space against the floor under which the archive refuses data; `low` warns
            // before that happens (less than twice the floor left).
            let capacity = self.call(a, &["get", "capacity"]).await.ok().and_then(|t| {
                let (free, floor) = t.split_once(' ')?;
                let (free, floor): (u64, u64) = (free.parse().ok()?, floor.parse().ok()?);
                Some(serde_json::json!({
                    "free_bytes": free, "min_free_bytes": floor,
                    "low": free < floor.saturating_mul(2),
                }))
            });
            let lag_gids = latest
                .filter(|_| newest_known)
                .map(|l| newest_gid.saturating_sub(l));
            // Behind by the age of its newest point while the storage has newer gids.
            let lag_seconds = lag_gids.map(|g| if g > 0 { age.unwrap_or(0) } else { 0 });
            let verify = self
                .call(a, &["get", "verify", vol])
                .await
                .ok()
                .filter(|v| !v.is_empty());
            // A running restore, apply, merge, verify, …: kind, bytes done of total, rate, ETA.
            let action = self
                .call(a, &["get", "progress", vol])
                .await
                .ok()
                .and_then(|p| progress_json(&p));
            archives.push(serde_json::json!({
                "id": a.id,
                "action": action,
                "verify": verify,
                "lag_seconds": lag_seconds,
                "capacity": capacity,
                "send_errors": send_errors,
                "state": self.state_or_clear(a, vol).await.ok(),
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
    pub hash: Option<(String, String)>,
}

/// Whether a proxy's state is Started, or WlogRecv (Started while one wlog comes in).
pub(super) fn proxy_runs(state: &str) -> bool {
    matches!(state, "Started" | "WlogRecv")
}

/// A `get progress` answer: `KIND DONE TOTAL RATE ETA` (bytes, bytes/s, seconds), or `idle`.
pub struct Progress<'a> {
    pub kind: &'a str,
    pub done: u64,
    pub total: u64,
    pub rate: u64,
    pub eta: u64,
}

impl Progress<'_> {
    /// None when idle (or not a progress line).
    pub fn parse(p: &str) -> Option<Progress<'_>> {
        let f: Vec<&str> = p.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        Some(Progress {
            kind: f.first()?,
            done: n(1)?,
            total: n(2)?,
            rate: n(3)?,
            eta: n(4)?,
        })
    }
}

/// A `get progress` answer as JSON; None when idle.
fn progress_json(p: &str) -> Option<serde_json::Value> {
    let p = Progress::parse(p)?;
    Some(serde_json::json!({
        "kind": p.kind, "done_bytes": p.done, "total_bytes": p.total,
        "rate_bps": p.rate, "eta_s": p.eta,
    }))
}

/// A `get progress` answer for people; None when idle.
pub fn progress_line(p: &str) -> Option<String> {
    let p = Progress::parse(p)?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    Some(format!(
        "{} {:.1}/{:.1} MiB ({:.0}%), {:.1} MB/s, ETA {} s",
        p.kind,
        mib(p.done),
        mib(p.total),
        100.0 * p.done as f64 / p.total.max(1) as f64,
        p.rate as f64 / 1e6,
        p.eta
    ))
}

pub(super) fn named(s: &Server, e: CallError) -> anyhow::Error {
    anyhow::anyhow!("{} ({}): {} [{:?}]", s.id, s.addr, e.message, e.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(progress_line("idle"), None);
        assert_eq!(
            progress_line("hash-backup 1048576 4194304 2000000 2").unwrap(),
            "hash-backup 1.0/4.0 MiB (25%), 2.0 MB/s, ETA 2 s"
        );
    }

    #[test]
    fn restorable_lines() {
        let r = parse_restorable(
            "5 2026-01-01T00:00:00 1\n7 2026-01-01T00:00:10 0\n8 2026-01-01T00:00:11 ?\n",
        );
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].explicit, Some(true));
        assert_eq!(r[1].explicit, Some(false));
        assert_eq!(r[2].explicit, None);
        assert_eq!(r[1].gid, 7);
    }
}
