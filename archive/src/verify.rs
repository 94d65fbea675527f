//! Verification (docs/archive.md, "Verification"): every stored wdiff of a volume read back
//! with every checksum walb defines, and the base image read through, so damage at rest is
//! found before a restore needs the data. The outcome is kept in the volume's `verify` file
//! (time, files, bytes, then one line per failure naming the file and offset).

use std::os::unix::fs::FileExt;
use std::path::Path;

use walb_core::meta::{iso_utc, unix_now};
use walb_core::LBS;
use walb_daemon::progress::Progress;
use walb_daemon::{volfile, CmdError, CmdResult};

use crate::image::open_diff;
use crate::store_error::{StoreError, StoreResult};
use crate::volume::Vol;

const READ_BUF: usize = 1 << 20;

/// What one verification found.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Unix seconds when it ran.
    pub time: u64,
    pub files: usize,
    pub bytes: u64,
    /// Snapshots whose restored image was compared with the device's hash.
    pub deep: usize,
    /// Each failure: the file and what was wrong there.
    pub failures: Vec<String>,
}

impl Report {
    /// One line for status: when, and ok or how many failures.
    pub fn summary(&self) -> String {
        let deep = match self.deep {
            0 => String::new(),
            n => format!(", {n} matching the device"),
        };
        match self.failures.len() {
            0 => format!("{} ok{deep}", iso_utc(self.time)),
            n => format!("{} FAILED ({n}: {})", iso_utc(self.time), self.failures[0]),
        }
    }

    fn to_text(&self) -> String {
        let mut s = format!(
            "{} {} {} {}\n",
            self.time, self.files, self.bytes, self.deep
        );
        for f in &self.failures {
            s.push_str(&f.replace('\n', " "));
            s.push('\n');
        }
        s
    }

    fn from_text(t: &str) -> Option<Report> {
        let mut lines = t.lines();
        let mut head = lines.next()?.split_whitespace().map(str::parse::<u64>);
        let (time, files, bytes) = (head.next()?.ok()?, head.next()?.ok()?, head.next()?.ok()?);
        // Reports written before deep checks existed have three numbers.
        let deep = head.next().and_then(Result::ok).unwrap_or(0);
        Some(Report {
            time,
            files: files as usize,
            bytes,
            deep: deep as usize,
            failures: lines.map(str::to_string).collect(),
        })
    }
}

/// Which snapshots a verification restores (virtually) and compares with the device's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deep {
    /// None: checksums only.
    Off,
    /// The newest restorable snapshot with a recorded hash (the scheduled check).
    Newest,
    /// Every restorable snapshot with a recorded hash (`walbc verify --deep`).
    All,
}

/// Reads every wdiff and the base image of `vol`, and compares the snapshots `deep` names
/// with the device's hash; keeps and returns the report.
pub fn verify(vol: &Vol, deep: Deep) -> CmdResult<Report> {
    let mut r = Report {
        time: unix_now(),
        files: 0,
        bytes: 0,
        deep: 0,
        failures: Vec::new(),
    };
    let diffs = vol.diffs()?;
    let image = if vol.has_image() {
        vol.size_lb()? * LBS as u64
    } else {
        0
    };
    let total = diffs.iter().map(|d| d.data_size).sum::<u64>() + image;
    let (p, _shown) = vol.running.begin(Progress::new("verify", total));
    for d in diffs {
        p.add(d.data_size);
        let path = vol.diff_path(&d);
        r.files += 1;
        r.bytes += d.data_size;
        let outcome = open_diff(&path).and_then(|recs| {
            recs.into_iter()
                .try_for_each(|rec| rec.map(drop).map_err(StoreError::from))
        });
        if let Err(e) = outcome {
            tracing::error!(vol = %vol.name, "verify: {e}");
            r.failures.push(e.to_string());
        }
    }
    if vol.has_image() {
        r.files += 1;
        match read_through(&vol.image(), &p) {
            Ok(n) => r.bytes += n,
            Err(e) => {
                let msg = format!("{}: {e}", vol.image().display());
                tracing::error!(vol = %vol.name, "verify: {msg}");
                r.failures.push(msg);
            }
        }
    }
    if deep != Deep::Off {
        compare_with_device(vol, deep, &mut r)?;
    }
    volfile::write(&vol.dir.join("verify"), &r.to_text())?;
    Ok(r)
}

/// Restores (virtually) the restorable snapshots with a device hash, as `deep` says, and
/// compares each digest with the device's. A difference no checksum caught is damage to the
/// base image (walb's formats give it no checksum) or a diff that was wrong when written.
fn compare_with_device(vol: &Vol, deep: Deep, r: &mut Report) -> CmdResult<()> {
    let restorable: Vec<u64> = vol.restorable()?.iter().map(|p| p.gid.0).collect();
    let mut hashes: Vec<_> = crate::devhash::list(vol)?
        .into_iter()
        .filter(|h| restorable.contains(&h.gid))
        .collect();
    if deep == Deep::Newest {
        hashes = hashes.pop().into_iter().collect();
    }
    for h in hashes {
        match crate::ops::bhash(vol, h.gid, h.bulk) {
            Ok(d) if d == h.digest => r.deep += 1,
            Ok(d) => {
                let msg = format!(
                    "gid {}: the restored image's digest {d} differs from the device's {} \
                     (taken at the snapshot): the base image or a diff up to it is damaged",
                    h.gid, h.digest
                );
                tracing::error!(vol = %vol.name, "verify: {msg}");
                r.failures.push(msg);
            }
            // A file that cannot be read is named by the checksum pass already.
            Err(CmdError::DataLoss(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The volume's last verification, if one ran.
pub fn last(vol: &Vol) -> StoreResult<Option<Report>> {
    Ok(volfile::read(&vol.dir.join("verify"))?.and_then(|t| Report::from_text(&t)))
}

/// Reads a whole file (an I/O error names the offset); returns its size.
fn read_through(path: &Path, p: &Progress) -> std::io::Result<u64> {
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut buf = vec![0u8; READ_BUF];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(READ_BUF as u64) as usize;
        f.read_exact_at(&mut buf[..n], off)
            .map_err(|e| std::io::Error::new(e.kind(), format!("read at offset {off}: {e}")))?;
        off += n as u64;
        p.add(n as u64);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let r = Report {
            time: 1_700_000_000,
            files: 3,
            bytes: 4096,
            deep: 1,
            failures: vec!["x.wdiff: pack at offset 512: checksum".into()],
        };
        assert_eq!(Report::from_text(&r.to_text()).unwrap(), r);
        assert!(r.summary().contains("FAILED (1: x.wdiff"));
    }
}
