//! One walb daemon (`walb-storage`, `walb-proxy` or `walb-archive`) as a child process: the
//! one spawner of the tests. `Cluster` starts its daemons with it; a test of one daemon alone
//! starts one with `Daemon::start` on a free port in a data dir of its own. Dropping a
//! `Daemon` kills it (SIGKILL).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};
use walb_proto::archive_client::ArchiveClient;

use crate::{bin, run};

pub struct Daemon {
    /// "storage", "proxy" or "archive": the binary is `walb-KIND`.
    pub kind: &'static str,
    pub id: String,
    /// Where it is reached: its listen address, 127.0.0.1 for a 0.0.0.0 one.
    pub addr: String,
    pub data_dir: PathBuf,
    /// Every flag it starts with (`--id`, `--listen`, `--data-dir` first); the next `spawn`
    /// takes changed ones.
    pub args: Vec<String>,
    /// Where its stderr goes (appended).
    pub log: PathBuf,
    /// walbc's flags to reach it (its TLS certificates), for the readiness probe.
    pub walbc_flags: Vec<String>,
    /// The network namespace it runs in (`cluster::Spec::hosts`).
    pub host: Option<crate::netns::Host>,
    child: Option<Child>,
    /// The temp dir holding the log of a daemon started alone.
    log_dir: Option<tempfile::TempDir>,
}

/// A free port on 127.0.0.1 (bound and released; the daemon binds it right after), one no
/// other caller in this process got.
pub fn free_addr() -> String {
    // A port is free when picked, not when its daemon binds it: never hand one out twice in
    // this process (a cluster picks all its ports before starting its daemons, and the kernel
    // may offer a port just released again).
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let a = l.local_addr().unwrap();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&a.port()) {
            given.push(a.port());
            return a.to_string();
        }
    }
}

/// Names of the temporary files (names starting with '.') in `dir`; none when it is missing.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

impl Daemon {
    /// A daemon of `kind` with id `id` listening on `addr`, data in `data_dir`, stderr to
    /// `log`, and `extra` flags; not started yet (`spawn`).
    pub fn new(
        kind: &'static str,
        id: &str,
        addr: &str,
        data_dir: &Path,
        log: &Path,
        extra: Vec<String>,
    ) -> Daemon {
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--listen".into(),
            addr.to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        args.extend(extra);
        Daemon {
            kind,
            id: id.to_string(),
            addr: addr.replace("0.0.0.0:", "127.0.0.1:"),
            data_dir: data_dir.to_path_buf(),
            args,
            log: log.to_path_buf(),
            walbc_flags: Vec::new(),
            host: None,
            child: None,
            log_dir: None,
        }
    }

    /// A daemon of `kind` alone (id a0, p0 or s0) on a free port with its data in `data_dir`
    /// and `extra` flags, started; its log is shown if it fails to start or the test panics.
    pub fn start(kind: &'static str, data_dir: &Path, extra: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let id = format!("{}0", &kind[..1]);
        let log = tmp.path().join(format!("{id}.log"));
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut d = Daemon::new(kind, &id, &free_addr(), data_dir, &log, extra);
        d.log_dir = Some(tmp);
        d.spawn();
        d
    }

    /// The command that runs it (its stderr appended to the log).
    pub fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let program = bin(&format!("walb-{}", self.kind));
        let mut c = match &self.host {
            Some(h) => h.command(&program),
            None => Command::new(program),
        };
        c.args(&self.args).stderr(log);
        c
    }

    /// Starts (or restarts) the process and waits (20 s at most) until it answers a command
    /// of its kind (`get vol`: an archive answers once its startup recovery is done).
    pub fn spawn(&mut self) {
        self.sigkill();
        let child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.id));
        self.child = Some(child);
        let t = Instant::now();
        loop {
            let out = run(Command::new(bin("walbc"))
                .args(["--timeout", "60"])
                .args(&self.walbc_flags)
                .args(["call", &self.addr, "get", "vol"]));
            if out.status.success() {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && t.elapsed() < Duration::from_secs(20),
                "{} did not start ({exited:?}): {}\nlog:\n{}",
                self.id,
                String::from_utf8_lossy(&out.stderr),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL; `spawn` starts it again.
    pub fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, and the daemon is gone.
    pub fn kill(self) {}

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn vol_dir(&self, vol: &str) -> PathBuf {
        self.data_dir.join("vols").join(vol)
    }

    /// Names of the temporary files in volume `vol`'s directory.
    pub fn temp_files(&self, vol: &str) -> Vec<String> {
        temp_files(&self.vol_dir(vol))
    }

    /// A Control command (`walbc call`'s words); Err is the status.
    pub async fn call(&self, args: &[&str]) -> Result<String, Status> {
        Daemon::call_at(&self.addr, args).await
    }

    /// A Control call to the daemon at `addr` (for calls made from another task).
    pub async fn call_at(addr: &str, args: &[&str]) -> Result<String, Status> {
        walb_controller::walbc::words::call_words(addr, args)
            .await
            .map_err(|e| Status::new(e.code, e.message))
    }

    /// The reply of a command that must succeed.
    pub async fn ok(&self, args: &[&str]) -> String {
        match self.call(args).await {
            Ok(t) => t,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    /// The status code and message of a command that must fail.
    pub async fn err(&self, args: &[&str]) -> (Code, String) {
        match self.call(args).await {
            Ok(t) => panic!("{args:?} succeeded: {t}"),
            Err(e) => (e.code(), e.message().to_string()),
        }
    }

    /// Waits (10 s at most) until `get state VOL` is `want`.
    pub async fn wait_state(&self, vol: &str, want: &str) {
        let t0 = Instant::now();
        loop {
            let s = self.ok(&["get", "state", vol]).await;
            if s == want {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "state {s}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An Archive service client (an archive daemon's data flows).
    pub async fn archive(&self) -> ArchiveClient<Channel> {
        walb_proto::sized!(ArchiveClient::new(
            walb_proto::wire::connect(&self.addr).await.unwrap()
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.sigkill();
        if self.log_dir.is_some() && std::thread::panicking() {
            eprintln!("---- {}.log\n{}", self.id, self.log_text());
        }
    }
}
