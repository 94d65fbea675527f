//! The devices a daemon serves, by name; each behind its own lock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use walb_core::blockio::FileIo;

use crate::dev::{sync_data_device, Done, GroupCommit, Io, Outcome, Wdev, WdevError};

pub struct Served {
    /// FUSE inode of the device's file.
    pub ino: u64,
    /// The log and data devices as given at create (walb-storage reads logs from the first,
    /// and scans the second for full and hash backups).
    pub ldev: std::path::PathBuf,
    pub ddev: std::path::PathBuf,
    pub dev: Mutex<Wdev>,
    writes: GroupCommit,
    /// `Some(deadline)` while frozen (`None` inside: no timeout).
    frozen: Mutex<Option<Option<Instant>>>,
    melted: Condvar,
}

impl Served {
    fn new(ino: u64, ldev: &Path, ddev: &Path, dev: Wdev) -> Served {
        Served {
            ino,
            ldev: ldev.to_path_buf(),
            ddev: ddev.to_path_buf(),
            dev: Mutex::new(dev),
            writes: GroupCommit::new(),
            frozen: Mutex::new(None),
            melted: Condvar::new(),
        }
    }

    /// Stops writes (they wait) once the ones in flight are done and checkpointed; melts by
    /// itself after `timeout` when given. Freezing a frozen device resets the timer.
    pub fn freeze(&self, timeout: Option<Duration>) -> Result<(), WdevError> {
        *self.frozen.lock().expect("freeze lock") = Some(timeout.map(|t| Instant::now() + t));
        // Writes hold the device lock, so taking it waits for the one in flight.
        self.dev.lock().expect("device lock").checkpoint()
    }

    /// Waits while frozen, then logs `io` grouped with the writes that arrive meanwhile.
    pub fn submit(&self, io: Io, fua: bool) -> Outcome {
        self.wait_melted();
        self.writes.submit(&self.dev, io, fua)
    }

    /// Like `submit`, but `done` gets the outcome, on whichever thread logs `io`; this one may
    /// return before.
    pub fn submit_then(&self, io: Io, fua: bool, done: Done) {
        self.wait_melted();
        self.writes.submit_then(&self.dev, io, fua, done)
    }

    /// Makes every acknowledged write durable in the log (fsync). The log device syncs
    /// without the device lock: writers go on logging meanwhile, and fsyncs that arrive
    /// together share one sync (`dev::LogSync`).
    pub fn flush(&self) -> Result<(), WdevError> {
        let (sync, lsid) = self.dev.lock().expect("device lock").flush_target()?;
        sync.sync_to(lsid)
            .map_err(|e| walb_core::Error::io("sync log device", e))?;
        self.dev.lock().expect("device lock").flushed();
        Ok(())
    }

    /// The periodic checkpoint (`Wdev::checkpoint_nowait`), with the log and data device
    /// syncs made without the device lock, so writers are not held up by them.
    pub fn checkpoint_nowait(&self) -> Result<(), WdevError> {
        self.flush()?;
        let due = {
            let mut dev = self.dev.lock().expect("device lock");
            dev.hand_off_if_idle()?;
            dev.super_due()
        };
        let Some(due) = due else {
            return Ok(());
        };
        sync_data_device(&due.ddev)?;
        self.dev.lock().expect("device lock").record_written(&due)
    }

    pub fn melt(&self) {
        *self.frozen.lock().expect("freeze lock") = None;
        self.melted.notify_all();
    }

    pub fn is_frozen(&self) -> bool {
        let mut f = self.frozen.lock().expect("freeze lock");
        if matches!(*f, Some(Some(t)) if Instant::now() >= t) {
            *f = None;
        }
        f.is_some()
    }

    /// Blocks a writer while the device is frozen.
    pub fn wait_melted(&self) {
        let mut f = self.frozen.lock().expect("freeze lock");
        while let Some(deadline) = *f {
            let wait = match deadline {
                Some(t) if Instant::now() >= t => {
                    *f = None;
                    break;
                }
                Some(t) => t - Instant::now(),
                None => Duration::from_secs(3600),
            };
            f = self.melted.wait_timeout(f, wait).expect("freeze lock").0;
        }
    }
}

/// The process serving the devices, for `wdevc status` (docs/wdev.md, "Restarts").
#[derive(Default)]
pub struct Serving {
    pub pid: u32,
    pub supervisor_pid: u32,
    /// Unix time in milliseconds when this worker started.
    pub started_ms: u64,
    /// Workers started before this one on the same FUSE connection.
    pub restarts: u32,
    /// How FUSE requests reach this worker (`wdev_client::TRANSPORT_DEV_FUSE`).
    pub transport: &'static str,
    /// Unix time in milliseconds of this worker's first answered FUSE request (0: none yet).
    pub first_answer_ms: std::sync::atomic::AtomicU64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Default)]
pub struct Registry {
    devs: RwLock<BTreeMap<String, Arc<Served>>>,
    next_ino: std::sync::atomic::AtomicU64,
    /// Milliseconds between checkpoints (0: none); walb's default is 10 000.
    pub checkpoint_ms: std::sync::atomic::AtomicU64,
    /// Where the served devices are listed (name, inode, ldev, ddev), so that a restarted
    /// worker serves the same files under the same inodes.
    list: Option<std::path::PathBuf>,
    pub serving: std::sync::OnceLock<Serving>,
    /// Hands the connection to a new binary (`wdevc upgrade PATH`); set by a supervised worker.
    pub upgrade: std::sync::OnceLock<UpgradeHook>,
}

/// Starts handing over to the binary at the given path; answers before the handover ends.
pub type UpgradeHook = Box<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;

impl Registry {
    pub fn new() -> Registry {
        Registry {
            next_ino: std::sync::atomic::AtomicU64::new(2),
            checkpoint_ms: std::sync::atomic::AtomicU64::new(10_000),
            ..Default::default()
        }
    }

    /// A registry that keeps its device list in `list` (rewritten at every create and delete).
    pub fn persisted(list: &Path) -> Registry {
        Registry {
            list: Some(list.to_path_buf()),
            ..Registry::new()
        }
    }

    /// Serves again every device of the list file (a worker taking over a connection); redo
    /// runs for each. Returns the names served; a device that fails to open is reported and
    /// left out (its file then answers ENOENT).
    pub fn load(&self) -> Result<Vec<String>, WdevError> {
        let Some(list) = &self.list else {
            return Ok(Vec::new());
        };
        let text = match std::fs::read_to_string(list) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(walb_core::Error::io(format!("read {}", list.display()), e).into())
            }
        };
        let mut devs = self.devs.write().expect("registry lock");
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let [name, ino, ldev, ddev] = f[..] else {
                tracing::error!("{}: bad line {line:?}", list.display());
                continue;
            };
            let Ok(ino) = ino.parse::<u64>() else {
                tracing::error!("{}: bad inode in {line:?}", list.display());
                continue;
            };
            self.next_ino
                .fetch_max(ino + 1, std::sync::atomic::Ordering::Relaxed);
            match open_served(ino, Path::new(ldev), Path::new(ddev)) {
                Ok(s) => {
                    devs.insert(name.to_string(), Arc::new(s));
                }
                Err(e) => tracing::error!(device = name, "cannot serve again: {e}"),
            }
        }
        Ok(devs.keys().cloned().collect())
    }

    fn save(&self, devs: &BTreeMap<String, Arc<Served>>) -> Result<(), WdevError> {
        let Some(list) = &self.list else {
            return Ok(());
        };
        let text: String = devs
            .iter()
            .map(|(n, s)| {
                format!(
                    "{n}\t{}\t{}\t{}\n",
                    s.ino,
                    s.ldev.display(),
                    s.ddev.display()
                )
            })
            .collect();
        walb_core::atomic::write_atomic(list, text.as_bytes())?;
        Ok(())
    }

    /// Opens (and redoes) the device and serves it as `name`.
    pub fn create(&self, name: &str, ldev: &Path, ddev: &Path) -> Result<(), WdevError> {
        wdev_client::DevName::new(name).map_err(|e| WdevError::Invalid(e.to_string()))?;
        let mut devs = self.devs.write().expect("registry lock");
        if devs.contains_key(name) {
            return Err(WdevError::Invalid(format!("device {name} exists")));
        }
        let ino = self
            .next_ino
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        devs.insert(name.to_string(), Arc::new(open_served(ino, ldev, ddev)?));
        if let Err(e) = self.save(&devs) {
            devs.remove(name);
            return Err(e);
        }
        Ok(())
    }
    /// Stops serving `name` after a final checkpoint.
    pub fn delete(&self, name: &str) -> Result<(), WdevError> {
        let s = {
            let mut devs = self.devs.write().expect("registry lock");
            let s = devs
                .remove(name)
                .ok_or_else(|| WdevError::Invalid(format!("no device {name}")))?;
            self.save(&devs)?;
            s
        };
        let mut dev = s.dev.lock().expect("device lock");
        dev.checkpoint()
    }

    pub fn get(&self, name: &str) -> Result<Arc<Served>, WdevError> {
        self.devs
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
            .ok_or_else(|| WdevError::Invalid(format!("no device {name}")))
    }

    pub fn by_ino(&self, ino: u64) -> Option<(String, Arc<Served>)> {
        self.devs
            .read()
            .expect("registry lock")
            .iter()
            .find(|(_, s)| s.ino == ino)
            .map(|(n, s)| (n.clone(), s.clone()))
    }

    pub fn names(&self) -> Vec<(String, Arc<Served>)> {
        self.devs
            .read()
            .expect("registry lock")
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }

    /// Checkpoints every device: the periodic superblock sync does not wait for data being
    /// written back; at shutdown (`wait`) everything reaches the data device.
    pub fn checkpoint_all(&self, wait: bool) {
        for (name, s) in self.names() {
            let r = if wait {
                s.dev.lock().expect("device lock").checkpoint()
            } else {
                s.checkpoint_nowait()
            };
            if let Err(e) = r {
                tracing::error!(device = name, "checkpoint failed: {e}");
            }
        }
    }
}

/// Opens (and redoes) a device's log and data devices.
fn open_served(ino: u64, ldev: &Path, ddev: &Path) -> Result<Served, WdevError> {
    let open = |p: &Path| {
        FileIo::open(p, true).map_err(|e| walb_core::Error::io(format!("open {}", p.display()), e))
    };
    let lio = open(ldev)?;
    let pbs = lio
        .physical_block_size()
        .map_err(|e| walb_core::Error::io("block size", e))?
        .and_then(walb_core::Pbs::new);
    let dev = Wdev::open(Box::new(lio), Box::new(open(ddev)?), pbs)?;
    Ok(Served::new(ino, ldev, ddev, dev))
}
