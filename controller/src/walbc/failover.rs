//! Disaster failover (docs/recovery.md): the newest restorable point of a volume, explicit or
//! implicit, restored to an image file or written onto a block device, ready to mount.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use walb_proto::archive_request as ar;

use super::ops::Ctl;

/// The point a failover restored.
pub struct Failover {
    pub gid: u64,
    /// UTC, as `get restorable` lists it.
    pub time: String,
    /// Seconds between that time and now.
    pub age_s: u64,
}

impl Ctl {
    /// Restores the newest restorable point of `vol` on `archive` (default the primary) to
    /// `to`: an existing block device is written in place, a path that does not exist becomes
    /// an image file. The archive runs on this host: its restored image is read from the path
    /// it replies (then deleted there).
    pub async fn failover(&self, vol: &str, archive: Option<&str>, to: &Path) -> Result<Failover> {
        let block = match std::fs::metadata(to) {
            Ok(m) if m.file_type().is_block_device() => true,
            Ok(_) => bail!(
                "{} exists and is not a block device: name a block device or a new path",
                to.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e).with_context(|| format!("stat {}", to.display())),
        };
        let a = self.layout.archive(archive)?;
        let Some(newest) = self.restorable(a, vol).await?.pop() else {
            bail!("{} holds no restorable point of {vol}", a.id);
        };
        let gid = newest.gid;
        let restore = ar::Restore {
            vol: vol.into(),
            gid,
            force: true,
        };
        let img = PathBuf::from(self.call(a, restore).await?.path);
        let (from, dst) = (img.clone(), to.to_path_buf());
        tokio::task::spawn_blocking(move || copy_image(&from, &dst, block))
            .await
            .context("copy thread")??;
        self.call(
            a,
            ar::DelRestored {
                vol: vol.into(),
                gid,
            },
        )
        .await?;
        Ok(Failover {
            gid,
            age_s: walb_core::meta::unix_now().saturating_sub(newest.unix),
            time: newest.time,
        })
    }
}

/// Copies image `img` to `to` through `atomic::Output` (a device in place, a new file
/// atomically); a device must hold the whole image.
fn copy_image(img: &Path, to: &Path, block: bool) -> Result<()> {
    let mut src = std::fs::File::open(img).with_context(|| format!("open {}", img.display()))?;
    let len = src.metadata()?.len();
    if block {
        let mut dev = std::fs::File::open(to).with_context(|| format!("open {}", to.display()))?;
        let cap = std::io::Seek::seek(&mut dev, std::io::SeekFrom::End(0))?;
        if cap < len {
            bail!(
                "{} holds {cap} bytes, the image {len}: too small",
                to.display()
            );
        }
    }
    let mut out = walb_core::atomic::Output::create(to)?;
    std::io::copy(&mut src, &mut out)
        .with_context(|| format!("copy {} to {}", img.display(), to.display()))?;
    out.commit()?;
    Ok(())
}
