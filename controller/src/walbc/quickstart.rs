//! `walbc quickstart`: a whole system on localhost in one directory — wdevd with one wdev on a
//! loop device, one storage, one proxy, one archive — then a write, a full backup, a write, a
//! snapshot and a restore whose hash is checked against the device. Everything is left running
//! (`walbc quickstart --stop` ends it) and the commands to poke at it are printed.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::layout::{Layout, Server};
use super::ops::Ctl;

/// The default device and log sizes (`--size`, `--log-size`).
pub const DEV_SIZE: &str = "256M";
pub const LOG_SIZE: &str = "64M";
const MIB: u64 = 1 << 20;
/// The smallest device: room for both writes below and a restore worth checking.
const MIN_DEV: u64 = 16 * MIB;

pub struct Quickstart {
    pub dir: PathBuf,
    /// Device size in bytes.
    pub size: u64,
    /// Log device size in bytes.
    pub log_size: u64,
}

/// What the quickstart writes: `first` bytes at 0 before the full backup, then `second` bytes
/// in the middle of the device before the snapshot (whole MiB each).
#[derive(Debug)]
struct Writes {
    first: u64,
    second: u64,
    second_at: u64,
}

impl Writes {
    fn for_device(size: u64) -> Writes {
        let mib = |b: u64| b / MIB * MIB;
        Writes {
            first: mib(size / 8).min(32 * MIB),
            second: mib(size / 16).min(16 * MIB),
            second_at: mib(size / 2),
        }
    }
}

/// Checks the sizes: a device of whole MiB, at least `MIN_DEV`, and a log that holds what is
/// written between the full backup and the snapshot twice over (at least 8 MiB).
fn check_sizes(size: u64, log_size: u64) -> Result<Writes> {
    if size < MIN_DEV || !size.is_multiple_of(MIB) {
        bail!(
            "--size {size}: the device must be whole MiB, at least {} MiB",
            MIN_DEV / MIB
        );
    }
    let w = Writes::for_device(size);
    let need = (2 * w.second).max(8 * MIB);
    if log_size < need || !log_size.is_multiple_of(MIB) {
        bail!(
            "--log-size {log_size}: too small for a {} MiB device; the log must be whole MiB and \
             hold at least {} MiB (twice the {} MiB written between the full backup and the \
             snapshot)",
            size / MIB,
            need / MIB,
            w.second / MIB
        );
    }
    Ok(w)
}

fn step(msg: &str) {
    println!("==> {msg}");
    let _ = std::io::stdout().flush();
}

/// A workspace binary next to this one.
fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().context("locate walbc")?;
    let p = me.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} is missing (build the workspace: cargo build --workspace --bins)",
            p.display()
        );
    }
    Ok(p)
}

fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_addr() -> Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string())
}

fn hash(p: &Path) -> Result<String> {
    let mut f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().to_hex().to_string())
}

impl Quickstart {
    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn wdevc(&self) -> Result<Command> {
        let mut c = Command::new(sibling("wdevc")?);
        c.current_dir(&self.dir)
            .arg("--run-dir")
            .arg(self.run_dir());
        Ok(c)
    }

    /// Starts `bin args` detached (own process group, log file), recording its pid.
    fn spawn(&self, name: &str, bin: &str, args: &[String]) -> Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = Command::new(sibling(bin)?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {bin}"))?;
        let mut pids = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pids"))?;
        writeln!(pids, "{} {name}", child.id())?;
        Ok(())
    }

    pub async fn start(&self) -> Result<()> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/fuse").exists() {
            bail!("quickstart needs root and /dev/fuse for the wdev loop device");
        }
        let writes = check_sizes(self.size, self.log_size)?;
        if self.dir.join("pids").exists() {
            bail!(
                "{} holds a running quickstart; `walbc quickstart --stop --dir {}` first",
                self.dir.display(),
                self.dir.display()
            );
        }
        std::fs::create_dir_all(self.run_dir())?;
        step(&format!("directory {}", self.dir.display()));
        for (f, bytes) in [("wdev0.ldev", self.log_size), ("wdev0.ddev", self.size)] {
            std::fs::File::create(self.dir.join(f))?.set_len(bytes)?;
        }
        sh(self
            .wdevc()?
            .args(["format-ldev", "wdev0.ldev", "wdev0.ddev", "--name", "wdev0"]))?;
        self.spawn(
            "wdevd",
            "wdevd",
            &["--run-dir".into(), self.run_dir().display().to_string()],
        )?;
        let sock = self.run_dir().join("wdevd.sock");
        let t = Instant::now();
        while !sock.exists() {
            if t.elapsed() > Duration::from_secs(10) {
                bail!(
                    "wdevd did not start; see {}",
                    self.dir.join("wdevd.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let lp = sh(self
            .wdevc()?
            .args(["create-wdev", "wdev0", "wdev0.ldev", "wdev0.ddev"]))?;
        step(&format!(
            "wdev0: {} MiB device on {lp} (log {} MiB)",
            self.size / MIB,
            self.log_size / MIB
        ));
        let layout = Layout {
            storage: vec![Server {
                id: "s0".into(),
                addr: free_addr()?,
                ..Server::default()
            }],
            proxy: vec![Server {
                id: "p0".into(),
                addr: free_addr()?,
                ..Server::default()
            }],
            archive: vec![Server {
                id: "a0".into(),
                addr: free_addr()?,
                ..Server::default()
            }],
        };
        let base = |s: &Server| {
            vec![
                "--id".to_string(),
                s.id.clone(),
                "--listen".into(),
                s.addr.clone(),
                "--data-dir".into(),
                self.dir.join(&s.id).display().to_string(),
            ]
        };
        self.spawn("a0", "walb-archive", &base(&layout.archive[0]))?;
        self.spawn("p0", "walb-proxy", &base(&layout.proxy[0]))?;
        let mut s_args = base(&layout.storage[0]);
        s_args.extend([
            "--proxy".into(),
            layout.proxy[0].addr.clone(),
            "--archive".into(),
            layout.archive[0].addr.clone(),
            "--wdevd".into(),
            sock.display().to_string(),
        ]);
        self.spawn("s0", "walb-storage", &s_args)?;
        let layout_path = self.dir.join("walb-layout.toml");
        std::fs::write(&layout_path, layout.to_toml())?;
        let ctl = Ctl {
            layout,
            timeout: Duration::from_secs(120),
            record: super::quiesce::record_path(&layout_path),
        };
        for (_, s) in ctl.layout.all() {
            let hello = walb_proto::control_request::Hello {};
            super::client::wait_for(&s.addr, hello, Duration::from_secs(20), |_| true)
                .await
                .with_context(|| format!("{} did not start; see {}.log", s.id, s.id))?;
        }
        step("storage s0, proxy p0 and archive a0 are up");
        ctl.init_storage("s0", "vol0", "wdev0").await?;
        write_random(&lp, 0, writes.first, 1)?;
        step(&format!(
            "wrote {} MiB; full backup of vol0 …",
            writes.first / MIB
        ));
        let t = Instant::now();
        let g0 = ctl.full_backup("s0", "vol0", None).await?;
        step(&format!(
            "full backup done in {:.1} s: gid {g0}",
            t.elapsed().as_secs_f64()
        ));
        write_random(&lp, writes.second_at, writes.second, 2)?;
        let t = Instant::now();
        let g1 = ctl.snapshot("s0", "vol0", true).await?;
        let dev_hash = hash(Path::new(&lp))?;
        step(&format!(
            "wrote {} MiB more; snapshot gid {g1} restorable after {:.1} s",
            writes.second / MIB,
            t.elapsed().as_secs_f64()
        ));
        let img = ctl.restore("vol0", g1, None, true).await?;
        let img_hash = hash(Path::new(&img))?;
        if img_hash != dev_hash {
            bail!("restored image {img} hash {img_hash} differs from the device's {dev_hash}");
        }
        step(&format!(
            "restored gid {g1} to {img}: BLAKE3 {img_hash} equals the device's"
        ));
        let l = layout_path.display();
        let walbc = std::env::current_exe()?.display().to_string();
        println!(
            "\nEverything is still running. Try:\n  \
             {walbc} --layout {l} status\n  \
             {walbc} --layout {l} status vol0 --json\n  \
             dd if=/dev/urandom of={lp} bs=1M count=8 oflag=direct && {walbc} --layout {l} snapshot s0 vol0\n  \
             {walbc} --layout {l} call a0 get restorable vol0\n  \
             {walbc} --layout {l} restore vol0 GID\n  \
             {walbc} quickstart --stop --dir {}",
            self.dir.display()
        );
        Ok(())
    }

    /// Kills what `start` started (daemons, then the loop device and wdevd).
    pub fn stop(&self) -> Result<()> {
        let pids = std::fs::read_to_string(self.dir.join("pids"))
            .with_context(|| format!("no quickstart in {}", self.dir.display()))?;
        let mut wdevd = None;
        for line in pids.lines() {
            let Some((pid, name)) = line.split_once(' ') else {
                continue;
            };
            let pid: i32 = pid.parse().context("pids file")?;
            if name == "wdevd" {
                wdevd = Some(pid);
                continue;
            }
            // SAFETY: kill takes a pid and a signal number.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self
            .wdevc()
            .map(|mut c| c.args(["delete-wdev", "wdev0"]).status());
        if let Some(pid) = wdevd {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        std::fs::remove_file(self.dir.join("pids"))?;
        step(&format!("stopped the quickstart in {}", self.dir.display()));
        Ok(())
    }
}

fn write_random(dev: &str, offset: u64, len: u64, seed: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(dev)?;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        for w in buf.chunks_exact_mut(8) {
            // xorshift: incompressible bytes without another dependency.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = buf.len().min((len - at) as usize);
        f.write_all_at(&buf[..n], offset + at)?;
        at += n as u64;
    }
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_and_writes_fit() {
        let w = check_sizes(256 * MIB, 64 * MIB).unwrap();
        assert_eq!(
            (w.first, w.second, w.second_at),
            (32 * MIB, 16 * MIB, 128 * MIB)
        );
        let w = check_sizes(96 * MIB, 48 * MIB).unwrap();
        assert!(w.second_at + w.second <= 96 * MIB && w.first <= w.second_at);
        let e = check_sizes(1 << 30, 4 * MIB).unwrap_err().to_string();
        assert!(e.contains("too small for a 1024 MiB device"), "{e}");
        assert!(check_sizes(8 * MIB, 64 * MIB).is_err());
        assert!(check_sizes(96 * MIB + 512, 64 * MIB).is_err());
    }
}
