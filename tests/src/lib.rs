//! walb-tests: multi-process acceptance tests. Real binaries as child processes, real files,
//! loop devices where root allows. It must not mock a server. The workspace's one harness that
//! starts daemons (`daemon`, and `cluster` on top of it); the daemon crates have no
//! integration tests of their own.

pub mod certs;
pub mod cluster;
pub mod daemon;
pub mod db;
pub mod flows;
pub mod mariadb;
pub mod netns;
pub mod pg;
pub mod relay;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of a workspace binary. `scripts/test.sh` builds them before the tests run;
/// `WALB_BIN_DIR` points elsewhere (e.g. a release build).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("WALB_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh (it builds the binaries first) or set WALB_BIN_DIR",
        p.display()
    );
    p
}

/// Runs a command to completion and returns its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a command that must fail; returns its stderr.
pub fn run_err(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// True when this process can mount FUSE and attach loop devices. When it cannot, says so
/// loudly; the caller fails unless `WALB_ALLOW_NO_ROOT=1` asks to skip such tests.
pub fn have_root_and_fuse(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let fuse = std::path::Path::new("/dev/fuse").exists();
    if root && fuse {
        return true;
    }
    let why =
        format!("{test}: NEEDS ROOT AND /dev/fuse (root: {root}, /dev/fuse: {fuse}) — NOT RUN");
    eprintln!("\n!!!!!!!! {why} !!!!!!!!\n");
    assert!(
        std::env::var_os("WALB_ALLOW_NO_ROOT").is_some(),
        "{why}; set WALB_ALLOW_NO_ROOT=1 to skip knowingly"
    );
    false
}

/// The answer (head and body) to `GET /metrics` at `addr`.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Runs `cmd` with `sh -c` in `dir`; it must succeed; returns stdout.
pub fn sh(cmd: &str, dir: &Path) -> String {
    run_ok(Command::new("sh").arg("-c").arg(cmd).current_dir(dir))
}

/// (name, BLAKE3 hex) of every regular file directly in `root`, sorted by name.
pub fn file_hashes(root: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            let h = blake3::hash(&std::fs::read(e.path()).unwrap())
                .to_hex()
                .to_string();
            (e.file_name().to_string_lossy().into_owned(), h)
        })
        .collect();
    v.sort();
    v
}
