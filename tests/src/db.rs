//! What every database test shares (tests/tests/db.rs): binaries that must be there, servers
//! run as their own user, process groups, mounts that go away with the test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::sh;

/// `path` when it exists; otherwise panics loudly: the database tests need it, and CI installs
/// `package` through scripts/setup.sh.
pub fn need_binary(path: &Path, package: &str) -> PathBuf {
    if !path.exists() {
        let why = format!(
            "{} IS MISSING: install {package} (scripts/setup.sh does) — the database tests \
             cannot run without it",
            path.display()
        );
        eprintln!("\n!!!!!!!! {why} !!!!!!!!\n");
        panic!("{why}");
    }
    path.to_path_buf()
}

/// `bin` run as system user `user` (its uid, gid and groups), from `/`.
pub fn as_user(user: &str, bin: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={user}"),
        &format!("--regid={user}"),
        "--init-groups",
        "--",
    ])
    .arg(bin)
    .current_dir("/");
    c
}

/// Creates `dir` (if missing) owned by system user `user`, reachable from `/` by others.
pub fn own_dir(dir: &Path, user: &str) {
    std::fs::create_dir_all(dir).unwrap();
    open_to_others(dir);
    crate::run_ok(Command::new("chown").arg(format!("{user}:{user}")).arg(dir));
}

/// A free TCP port number (bound and released).
pub fn free_port() -> u16 {
    let a = crate::cluster::free_addr();
    a.rsplit(':').next().unwrap().parse().unwrap()
}

/// Lets other users through every directory from `/` down to `dir` (the test's temp dir is
/// 0700): adds o+x where it is missing.
pub fn open_to_others(dir: &Path) {
    for d in dir.ancestors() {
        let Ok(m) = std::fs::metadata(d) else {
            continue;
        };
        let mode = m.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o011)).unwrap();
        }
    }
}

/// Sends `sig` to the process group `c` leads (started with `process_group(0)`).
pub fn killpg(c: &Child, sig: i32) {
    // SAFETY: killpg takes a process group id and a signal number.
    unsafe { libc::killpg(c.id() as i32, sig) };
}

/// A database server process in a process group of its own, its stderr in a log file;
/// dropping it kills the group (SIGKILL).
pub struct Server {
    child: Option<Child>,
    log: PathBuf,
    what: String,
}

impl Server {
    /// Spawns `cmd` (stderr to `log`) and waits (60 s at most) until `ready` holds; panics with
    /// the log if the server exits or does not get ready.
    pub fn start(mut cmd: Command, log: &Path, what: &str, ready: impl Fn() -> bool) -> Server {
        let f = std::fs::File::create(log).unwrap();
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let mut s = Server {
            child: Some(child),
            log: log.to_path_buf(),
            what: what.to_string(),
        };
        let t = std::time::Instant::now();
        while !ready() {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                s.child = None;
                panic!("{what} exited ({st}):\n{}", s.log());
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(60),
                "{what} did not get ready:\n{}",
                s.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        s
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` to the server (not its group) and waits; it must exit with success.
    pub fn stop(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill takes a pid and a signal number.
            unsafe { libc::kill(c.id() as i32, sig) };
            let st = c.wait().unwrap();
            assert!(
                st.success(),
                "{} stopped with {st}:\n{}",
                self.what,
                self.log()
            );
        }
    }

    /// SIGKILL of the server and every process it started, as in a host crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            killpg(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A mounted file system, unmounted when dropped (a failing test leaves no mount).
pub struct Mounted(pub PathBuf);

impl Mounted {
    /// `mount WHAT M`: `what` is a device, or options and a source (`-o ro,loop IMG`).
    pub fn new(what: &str, m: &Path) -> Mounted {
        std::fs::create_dir_all(m).unwrap();
        sh(&format!("mount {what} {}", m.display()), Path::new("/"));
        Mounted(m.to_path_buf())
    }

    /// A clean unmount (it must succeed).
    pub fn unmount(self) {
        sh(&format!("umount {}", self.0.display()), Path::new("/"));
        std::mem::forget(self);
    }
}

impl Drop for Mounted {
    /// A plain unmount, retried while processes killed a moment ago still hold files on it
    /// (a lazily detached file system would keep its loop device attached for as long as
    /// anything holds it); lazy only when it stays busy for 10 s.
    fn drop(&mut self) {
        let quiet = || {
            let mut c = Command::new("umount");
            c.arg(&self.0).stderr(std::process::Stdio::null());
            c
        };
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(10) {
            match quiet().status() {
                Ok(s) if s.success() => return,
                _ if !is_mounted(&self.0) => return,
                _ => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        eprintln!(
            "{} still busy after 10 s: unmounting lazily",
            self.0.display()
        );
        let _ = quiet().arg("-l").status();
    }
}

/// Whether `m` is a mount point now (in /proc/self/mountinfo).
fn is_mounted(m: &Path) -> bool {
    let m = m.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(m.as_str()))
}

/// A loop device on an image file, detached when dropped.
pub struct Loop(pub String);

impl Loop {
    pub fn attach(img: &Path) -> Loop {
        Loop(
            sh(
                &format!("losetup --find --show {}", img.display()),
                Path::new("/"),
            )
            .trim()
            .to_string(),
        )
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A committed marker row: its id and the database's commit-time clock (unix seconds).
#[derive(Clone, Copy, Debug)]
pub struct Marker {
    pub id: u64,
    pub t: f64,
}

/// A thread that commits a marker row every second through `insert` (which returns the
/// committed row, or None once the database is gone) and keeps those the database confirmed.
pub struct Markers {
    done: std::sync::Arc<std::sync::Mutex<Vec<Marker>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Markers {
    pub fn start(mut insert: impl FnMut() -> Option<Marker> + Send + 'static) -> Markers {
        use std::sync::atomic::Ordering;
        let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(m) = insert() else {
                    return;
                };
                d.lock().unwrap().push(m);
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        });
        Markers {
            done,
            stop,
            thread: Some(thread),
        }
    }

    /// `start` with a client command that commits one marker and prints `ID<sep>UNIX_TIME`.
    pub fn by_command(mut cmd: Command, sep: char) -> Markers {
        Markers::start(move || {
            let out = cmd.output().ok().filter(|o| o.status.success())?;
            let text = String::from_utf8_lossy(&out.stdout);
            let (id, t) = text.trim().split_once(sep)?;
            Some(Marker {
                id: id.parse().ok()?,
                t: t.parse().ok()?,
            })
        })
    }

    /// The markers committed so far.
    pub fn committed(&self) -> Vec<Marker> {
        self.done.lock().unwrap().clone()
    }

    /// Stops the thread; returns every marker committed.
    pub fn stop(mut self) -> Vec<Marker> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.committed()
    }
}

/// Every id of `want` is among the ids `got` lists (one a line, as `select id from markers`
/// prints them); the message names the first that is not. Returns how many `got` lists.
pub fn assert_markers_present(want: &[Marker], got: &str, what: &str) -> usize {
    let got: std::collections::BTreeSet<u64> = got.lines().map(|l| l.parse().unwrap()).collect();
    if let Some(m) = want.iter().find(|m| !got.contains(&m.id)) {
        panic!(
            "{what}: committed marker {} (t {:.3}) is missing; {} markers expected",
            m.id,
            m.t,
            want.len()
        );
    }
    got.len()
}
