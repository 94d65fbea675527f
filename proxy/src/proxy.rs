//! The proxy: its volumes, their state transitions (docs/scenarios.md §7.3) and sender tasks, and
//! the metrics. Volume state is not persisted except the `started` marker, so a restart resumes the
//! volumes that were running.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use walb_daemon::error::bad_state;
use walb_daemon::metrics::Metrics;
use walb_daemon::{volfile, CmdError, CmdResult};

use crate::archive_info::{check_name, ArchiveInfo};
use crate::layout::VolDir;
use crate::metrics::ProxyMetrics;
use crate::sender::Sender;
use crate::volume::{Archive, SendCtl, State, Vol, VolSt};

#[derive(Clone, Debug)]
pub struct Opts {
    /// Give up retrying an archive after this long without a new wlog, kick or start.
    pub retry_timeout: Duration,
    /// Limits of one merged send.
    pub max_merge_bytes: u64,
    pub max_merge_files: usize,
    pub transfers: walb_daemon::transfers::TransferArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    Graceful,
    Force,
    Empty,
}

pub struct Proxy {
    pub vols_dir: PathBuf,
    pub opts: Opts,
    pub metrics: Arc<ProxyMetrics>,
    /// One per diff send allowed at once (`--max-transfers`), shared with every sender.
    pub transfers: Arc<tokio::sync::Semaphore>,
    vols: Mutex<BTreeMap<String, Arc<Vol>>>,
}

fn wrong_state(vol: &str, cmd: &str, s: State) -> CmdError {
    bad_state(format!("{vol}: {cmd} is not allowed in state {s}"))
}

impl Proxy {
    /// Loads every volume (Stopped) from `data_dir`, removing leftovers of interrupted work.
    pub fn open(data_dir: PathBuf, opts: Opts, metrics: Arc<Metrics>) -> CmdResult<Proxy> {
        let vols_dir = data_dir.join("vols");
        std::fs::create_dir_all(&vols_dir)
            .map_err(|e| CmdError::Internal(format!("create {}: {e}", vols_dir.display())))?;
        let p = Proxy {
            vols_dir,
            transfers: Arc::new(opts.transfers.slots()),
            opts,
            metrics: Arc::new(ProxyMetrics::register(metrics)),
            vols: Mutex::new(BTreeMap::new()),
        };
        for name in volfile::volumes(&p.vols_dir)? {
            let dir = VolDir::new(&p.vols_dir, &name);
            let archives = dir.archives()?;
            if archives.is_empty() {
                // An interrupted `archive-info delete` of the last archive or `clear-vol`.
                tracing::info!(vol = %name, "removing a volume without archive-info");
                dir.remove()?;
                continue;
            }
            dir.sweep()?;
            let vol = Arc::new(Vol::new(&name, dir, State::Stopped));
            {
                let mut st = vol.lock();
                for (a, info) in archives {
                    st.archives.insert(a, new_archive(info));
                }
            }
            p.vols.lock().expect("vols lock").insert(name, vol);
        }
        Ok(p)
    }

    /// Starts the volumes that were Started before the restart (with `autostart`).
    pub fn boot(self: &Arc<Self>) -> CmdResult<()> {
        for vol in self.all_vols() {
            for a in vol.lock().archives.keys() {
                self.metrics.update_waiting(&vol, a);
                self.metrics.set_send_error(&vol.name, a, false);
            }
            if vol.dir.is_started() {
                tracing::info!(vol = %vol.name, "resuming (was started before the restart)");
                self.start(&vol.name)?;
            }
        }
        Ok(())
    }

    pub fn all_vols(&self) -> Vec<Arc<Vol>> {
        self.vols
            .lock()
            .expect("vols lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn vol_names(&self) -> Vec<String> {
        self.vols
            .lock()
            .expect("vols lock")
            .keys()
            .cloned()
            .collect()
    }

    /// A known volume, or NotFound.
    pub fn vol(&self, name: &str) -> CmdResult<Arc<Vol>> {
        known(&self.vols.lock().expect("vols lock"), name)
    }

    /// `archive-info add`: Clear|Stopped → Stopped.
    pub fn archive_add(&self, vol: &str, name: &str, info: ArchiveInfo) -> CmdResult<()> {
        volfile::check_vol_name(vol)?;
        check_name(name)?;
        let mut vols = self.vols.lock().expect("vols lock");
        let v = vols
            .entry(vol.to_string())
            .or_insert_with(|| {
                Arc::new(Vol::new(
                    vol,
                    VolDir::new(&self.vols_dir, vol),
                    State::Clear,
                ))
            })
            .clone();
        let mut st = v.lock();
        if !matches!(st.state, State::Clear | State::Stopped) {
            return Err(wrong_state(vol, "archive-info add", st.state));
        }
        if st.archives.contains_key(name) {
            return Err(CmdError::Invalid(format!(
                "{vol}: archive-info {name} already exists (use archive-info update)"
            )));
        }
        let res = v.dir.add_archive(name, &info);
        if let Err(e) = res {
            if st.archives.is_empty() {
                drop(st);
                vols.remove(vol);
                let _ = v.dir.remove();
            }
            return Err(e.into());
        }
        st.archives.insert(name.to_string(), new_archive(info));
        st.state = State::Stopped;
        drop(st);
        drop(vols);
        self.metrics.update_waiting(&v, name);
        self.metrics.set_send_error(vol, name, false);
        Ok(())
    }

    /// `archive-info update` (Stopped).
    pub fn archive_update(&self, vol: &str, name: &str, info: ArchiveInfo) -> CmdResult<()> {
        let v = self.vol(vol)?;
        let mut st = v.lock();
        if st.state != State::Stopped {
            return Err(wrong_state(vol, "archive-info update", st.state));
        }
        let Some(a) = st.archives.get_mut(name) else {
            return Err(not_found_archive(vol, name));
        };
        v.dir.write_info(name, &info)?;
        a.info = info;
        Ok(())
    }

    /// `archive-info delete` (Stopped); the last one makes the volume Clear.
    pub fn archive_delete(&self, vol: &str, name: &str) -> CmdResult<()> {
        let mut vols = self.vols.lock().expect("vols lock");
        let v = known(&vols, vol)?;
        let mut st = v.lock();
        if st.state != State::Stopped {
            return Err(wrong_state(vol, "archive-info delete", st.state));
        }
        if !st.archives.contains_key(name) {
            return Err(not_found_archive(vol, name));
        }
        if st.archives.len() == 1 {
            v.dir.remove()?;
            st.archives.clear();
            st.state = State::Clear;
            vols.remove(vol);
            self.metrics.all.forget(&[("vol", vol)]);
        } else {
            v.dir.delete_archive(name)?;
            st.archives.remove(name);
            self.metrics.all.forget(&[("vol", vol), ("archive", name)]);
        }
        Ok(())
    }

    pub fn archive_list(&self, vol: &str) -> CmdResult<Vec<String>> {
        Ok(self.vol(vol)?.lock().archives.keys().cloned().collect())
    }

    pub fn archive_get(&self, vol: &str, name: &str) -> CmdResult<ArchiveInfo> {
        let v = self.vol(vol)?;
        let st = v.lock();
        st.archives
            .get(name)
            .map(|a| a.info.clone())
            .ok_or_else(|| not_found_archive(vol, name))
    }

    /// `start`: Stopped → Started; clears send errors and sends what waits.
    pub fn start(self: &Arc<Self>, vol: &str) -> CmdResult<()> {
        let v = self.vol(vol)?;
        let mut st = v.lock();
        if st.state != State::Stopped {
            return Err(wrong_state(vol, "start", st.state));
        }
        v.dir.set_started(true)?;
        // The next storage to ship the volume is its storage from now on (a replaced one).
        v.dir.set_storage(None)?;
        st.state = State::Started;
        let now = Instant::now();
        for (name, a) in st.archives.iter_mut() {
            {
                let mut s = a.ctl.lock();
                s.stop = false;
                s.error = false;
                s.backoff.reset();
                s.due = Some(now);
                s.armed = Some(now);
            }
            self.metrics.set_send_error(vol, name, false);
            a.task = Some(
                Sender {
                    metrics: self.metrics.clone(),
                    retry_timeout: self.opts.retry_timeout,
                    max_merge: (self.opts.max_merge_bytes, self.opts.max_merge_files),
                    transfers: self.transfers.clone(),
                    vol: v.clone(),
                    archive: name.clone(),
                    info: a.info.clone(),
                    ctl: a.ctl.clone(),
                }
                .spawn(),
            );
        }
        Ok(())
    }

    /// `stop`: Started → Stopped. A running wlog receive is waited for (`force` aborts it);
    /// `graceful` lets running sends finish, `force` cuts them; `empty` first waits
    /// (WaitForEmpty) until every queue is empty.
    pub async fn stop(&self, vol: &str, mode: StopMode) -> CmdResult<()> {
        let v = self.vol(vol)?;
        loop {
            let tasks = {
                let mut st = v.lock();
                match (st.state, mode) {
                    (State::WlogRecv, _) => {
                        if mode == StopMode::Force {
                            if let Some(a) = &st.abort_recv {
                                a.notify_one();
                            }
                        }
                        None
                    }
                    (State::Started, StopMode::Empty) => {
                        st.state = State::WaitForEmpty;
                        st.kick_all(false);
                        break;
                    }
                    (
                        State::Started | State::WaitForEmpty,
                        StopMode::Graceful | StopMode::Force,
                    ) => {
                        st.state = State::Stopped;
                        Some(take_tasks(&mut st))
                    }
                    (s, _) => return Err(wrong_state(vol, "stop", s)),
                }
            };
            if let Some(tasks) = tasks {
                v.dir.set_started(false)?;
                finish_tasks(tasks, mode == StopMode::Force).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            vol,
            "stop empty: waiting until every archive got every diff"
        );
        loop {
            let empty = {
                let v = v.clone();
                tokio::task::spawn_blocking(move || queues_empty(&v))
                    .await
                    .map_err(|e| CmdError::Internal(e.to_string()))??
            };
            let tasks = {
                let mut st = v.lock();
                if st.state != State::WaitForEmpty {
                    return Err(bad_state(format!(
                        "{vol}: stop empty was overtaken by another stop; the volume is {}",
                        st.state
                    )));
                }
                if empty {
                    st.state = State::Stopped;
                    Some(take_tasks(&mut st))
                } else {
                    None
                }
            };
            if let Some(tasks) = tasks {
                v.dir.set_started(false)?;
                finish_tasks(tasks, false).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `clear-vol`: Stopped → Clear, deleting everything the proxy holds for it.
    pub fn clear_vol(&self, vol: &str) -> CmdResult<()> {
        let mut vols = self.vols.lock().expect("vols lock");
        let v = known(&vols, vol)?;
        let mut st = v.lock();
        if st.state != State::Stopped {
            return Err(wrong_state(vol, "clear-vol", st.state));
        }
        v.dir.remove()?;
        st.archives.clear();
        st.state = State::Clear;
        vols.remove(vol);
        self.metrics.all.forget(&[("vol", vol)]);
        Ok(())
    }

    /// `kick [VOL [NAME]]`: run every waiting send now; NAME also clears its send error.
    pub fn kick(&self, vol: Option<&str>, archive: Option<&str>) -> CmdResult<()> {
        let vols = match vol {
            Some(v) => vec![self.vol(v)?],
            None => self.all_vols(),
        };
        for v in vols {
            let st = v.lock();
            match archive {
                None => st.kick_all(false),
                Some(name) => {
                    let a = st
                        .archives
                        .get(name)
                        .ok_or_else(|| not_found_archive(&v.name, name))?;
                    a.ctl.trigger(Instant::now(), true);
                    self.metrics.set_send_error(&v.name, name, false);
                }
            }
        }
        Ok(())
    }

    /// `f` of the sender state of `vol` to `archive`.
    fn sender_state<T>(
        &self,
        vol: &str,
        archive: &str,
        f: impl FnOnce(&crate::volume::SendSt) -> T,
    ) -> CmdResult<T> {
        let v = self.vol(vol)?;
        let st = v.lock();
        let a = st
            .archives
            .get(archive)
            .ok_or_else(|| not_found_archive(vol, archive))?;
        let r = f(&a.ctl.lock());
        Ok(r)
    }

    pub fn is_send_error(&self, vol: &str, archive: &str) -> CmdResult<bool> {
        self.sender_state(vol, archive, |c| c.error)
    }

    /// Why the last send of `vol` to `archive` failed ("" after a send went through).
    pub fn last_send_failure(&self, vol: &str, archive: &str) -> CmdResult<String> {
        self.sender_state(vol, archive, |c| c.last_failure.clone().unwrap_or_default())
    }

    /// Daemon shutdown: senders stop (graceful: after their current send); the `started`
    /// markers stay so the next boot resumes.
    pub async fn shutdown(&self, force: bool) {
        let mut all = Vec::new();
        for v in self.all_vols() {
            let mut st = v.lock();
            if let Some(a) = &st.abort_recv {
                if force {
                    a.notify_one();
                }
            }
            all.extend(take_tasks(&mut st));
        }
        finish_tasks(all, force).await;
    }

    /// A diff was registered: clear send errors (re-arming the give-up clock), schedule sends.
    pub fn on_received(&self, v: &Vol, bytes: u64) {
        self.metrics
            .bytes_received
            .inc_by(&[("vol", &v.name)], bytes);
        let names: Vec<String> = {
            let st = v.lock();
            let now = Instant::now();
            for a in st.archives.values() {
                a.ctl.trigger(now + Duration::from_secs(a.info.delay), true);
            }
            st.archives.keys().cloned().collect()
        };
        for a in names {
            self.metrics.update_waiting(v, &a);
            self.metrics.set_send_error(&v.name, &a, false);
        }
    }
}

fn new_archive(info: ArchiveInfo) -> Archive {
    Archive {
        info,
        ctl: Arc::new(SendCtl::default()),
        task: None,
    }
}

fn not_found_archive(vol: &str, name: &str) -> CmdError {
    CmdError::NotFound(format!("{vol}: archive-info {name} not found"))
}

/// Takes the sender tasks out of a volume, telling them to stop.
fn take_tasks(st: &mut VolSt) -> Vec<(Arc<SendCtl>, JoinHandle<()>)> {
    let mut out = Vec::new();
    for a in st.archives.values_mut() {
        if let Some(t) = a.task.take() {
            a.ctl.lock().stop = true;
            a.ctl.notify.notify_one();
            out.push((a.ctl.clone(), t));
        }
    }
    out
}

/// Waits for stopped sender tasks; `force` cuts running sends (nothing is deleted before an
/// Ack, so a cut send is simply repeated later).
async fn finish_tasks(tasks: Vec<(Arc<SendCtl>, JoinHandle<()>)>, force: bool) {
    for (ctl, t) in tasks {
        if force {
            t.abort();
        }
        let _ = t.await;
        ctl.lock().busy = false;
    }
}

fn queues_empty(v: &Vol) -> CmdResult<bool> {
    let names: Vec<String> = v.lock().archives.keys().cloned().collect();
    for a in names {
        if !v.dir.waiting(&a)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Volume `name` of the map (held locked by the caller), or NotFound.
fn known(vols: &BTreeMap<String, Arc<Vol>>, name: &str) -> CmdResult<Arc<Vol>> {
    vols.get(name)
        .cloned()
        .ok_or_else(|| CmdError::NotFound(format!("volume {name} not found")))
}
