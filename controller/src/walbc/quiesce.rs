//! Application-consistent snapshots (docs/snapshots.md): a `--pre` hook, fsfreeze of a file
//! system, the mark, thaw, a `--post` hook; and walbc's record of the snapshots taken that
//! way, which `status --json` reads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::ops::{Ctl, Mark};

/// What to quiesce around a snapshot.
#[derive(Default)]
pub struct Quiesce {
    /// Run with `sh -c` before the freeze; the snapshot is not taken if it fails.
    pub pre: Option<String>,
    /// Run with `sh -c` after the thaw whenever `pre` ran (or there is no `pre`), also when
    /// the snapshot failed.
    pub post: Option<String>,
    /// A mount point frozen (`fsfreeze -f`) while the mark is taken, always thawed.
    pub freeze: Option<PathBuf>,
    /// How long the mark may take while the file system is frozen.
    pub timeout: Duration,
    /// Hash the device at the mark (docs/archive.md, "Deep verification").
    pub hash: bool,
}

impl Quiesce {
    pub fn is_empty(&self) -> bool {
        self.pre.is_none() && self.post.is_none() && self.freeze.is_none()
    }
}

/// Runs a hook with `sh -c`; its output goes to walbc's stderr (stdout carries the gid).
fn hook(what: &str, cmd: &str) -> Result<()> {
    let st = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("run the {what} hook"))?;
    if !st.success() {
        bail!("{what} hook `{cmd}` failed: {st}");
    }
    Ok(())
}

fn fsfreeze(flag: &str, mount: &Path) -> Result<()> {
    let out = Command::new("fsfreeze")
        .arg(flag)
        .arg(mount)
        .output()
        .context("run fsfreeze")?;
    if !out.status.success() {
        bail!(
            "fsfreeze {flag} {}: {}",
            mount.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A frozen file system; thawed by `thaw`, or by drop on any other way out (error, timeout,
/// panic).
struct Frozen {
    mount: PathBuf,
    thawed: bool,
}

impl Frozen {
    fn freeze(mount: &Path) -> Result<Frozen> {
        fsfreeze("-f", mount)?;
        Ok(Frozen {
            mount: mount.to_path_buf(),
            thawed: false,
        })
    }

    fn thaw(mut self) -> Result<()> {
        self.thawed = true;
        fsfreeze("-u", &self.mount)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            if let Err(e) = fsfreeze("-u", &self.mount) {
                tracing::error!("{e:#}: thaw it by hand (fsfreeze -u)");
            }
        }
    }
}

/// One line of the record: a snapshot taken quiesced.
#[derive(serde::Serialize, serde::Deserialize)]
struct Consistent {
    vol: String,
    gid: u64,
    storage: String,
    time: String,
    freeze: Option<PathBuf>,
    pre: Option<String>,
    post: Option<String>,
}

/// The record of consistent snapshots kept next to a layout file: `NAME.snapshots.jsonl` for
/// `NAME.toml`.
pub fn record_path(layout: &Path) -> PathBuf {
    layout.with_extension("snapshots.jsonl")
}

/// The gids of `vol` the record at `path` lists (none when there is no record).
pub fn consistent_gids(path: &Path, vol: &str) -> Result<Vec<u64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Consistent>(l).with_context(|| path.display().to_string()))
        .filter(|c| c.as_ref().map_or(true, |c| c.vol == vol))
        .map(|c| c.map(|c| c.gid))
        .collect()
}

impl Ctl {
    /// An explicit snapshot of `vol` on storage `sid` inside `q`'s hooks and freeze; recorded
    /// as consistent when every step succeeded. With `wait`, returns once restorable.
    pub async fn snapshot_quiesced(
        &self,
        sid: &str,
        vol: &str,
        q: &Quiesce,
        wait: bool,
    ) -> Result<u64> {
        if q.is_empty() {
            let mark = self.mark(sid, vol, q.hash).await?;
            return self.finish_snapshot(vol, mark, wait).await;
        }
        if let Some(pre) = &q.pre {
            hook("pre", pre)?;
        }
        let mark = self.mark_frozen(sid, vol, q).await;
        let post = q.post.as_deref().map(|p| hook("post", p)).transpose();
        let mark = mark?;
        let gid = mark.gid;
        post.with_context(|| format!("snapshot {gid} taken, but not recorded as consistent"))?;
        self.record(&Consistent {
            vol: vol.to_string(),
            gid,
            storage: sid.to_string(),
            time: walb_core::meta::iso_utc(walb_core::meta::unix_now()),
            freeze: q.freeze.clone(),
            pre: q.pre.clone(),
            post: q.post.clone(),
        })?;
        self.finish_snapshot(vol, mark, wait).await
    }

    /// The mark (not waited for) with the file system frozen, if one is named; thawed on every
    /// way out, after `q.timeout` and on Ctrl-C too.
    async fn mark_frozen(&self, sid: &str, vol: &str, q: &Quiesce) -> Result<Mark> {
        let frozen = q.freeze.as_deref().map(Frozen::freeze).transpose()?;
        let mark = tokio::select! {
            r = tokio::time::timeout(q.timeout, self.mark(sid, vol, q.hash)) => r
                .map_err(|_| anyhow!("no snapshot after {:?} with the file system frozen", q.timeout))
                .and_then(|r| r),
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        let thaw = frozen.map(Frozen::thaw).transpose();
        let mark = mark?;
        thaw.with_context(|| format!("snapshot {} taken", mark.gid))?;
        Ok(mark)
    }

    fn record(&self, c: &Consistent) -> Result<()> {
        let mut line = serde_json::to_string(c)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.record)
            .with_context(|| format!("open {}", self.record.display()))?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("append to {}", self.record.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_next_to_the_layout() {
        assert_eq!(
            record_path(Path::new("/etc/walb/walb-layout.toml")),
            PathBuf::from("/etc/walb/walb-layout.snapshots.jsonl")
        );
    }
}
