//! `walbc repo …`: the repository on object storage, without any daemon (docs/repository.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use walb_core::atomic::Output;
use walb_core::meta::{iso_utc, unix_now, MetaSnap, MetaState};
use walb_core::Gid;
use walb_repo::Repo;

#[derive(Subcommand)]
pub enum RepoCmd {
    /// List the restorable snapshots of every volume in the repository, or of VOL:
    /// `VOL GID TIME explicit|implicit IMAGE`.
    Snapshots { url: String, vol: Option<String> },
    /// Restore VOL at GID from the repository into IMAGE (a file, replaced atomically) or a
    /// device (written in place); `-` for stdout.
    Restore {
        url: String,
        vol: String,
        gid: u64,
        #[arg(short, long)]
        output: PathBuf,
        /// Chunk requests in flight.
        #[arg(long, default_value_t = 16)]
        parallel: usize,
    },
    /// Upload the image file IMAGE as VOL's clean snapshot GID (an import, or a benchmark):
    /// its chunks deduplicated, then its index.
    PutImage {
        url: String,
        vol: String,
        image: PathBuf,
        #[arg(long)]
        gid: u64,
        /// Chunk requests in flight.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
    },
    /// Check every object's frame and checksum and that every index's chunks exist; --deep
    /// also decompresses every chunk and hashes it against its name and reads every wdiff
    /// through. Exits non-zero on any damage.
    Verify {
        url: String,
        #[arg(long)]
        deep: bool,
        #[arg(long, default_value_t = 16)]
        parallel: usize,
    },
    /// Delete all but VOL's newest KEEP images and the wdiffs older than the oldest kept
    /// (their chunks go at the next gc).
    Prune {
        url: String,
        vol: String,
        #[arg(long)]
        keep: usize,
    },
    /// Delete the chunks no image refers to and older than the grace period.
    Gc {
        url: String,
        /// Unreferenced chunks younger than this are kept (an upload may be about to refer
        /// to them).
        #[arg(long, default_value_t = 3600)]
        grace_secs: u64,
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(cmd: RepoCmd) -> Result<()> {
    match cmd {
        RepoCmd::Snapshots { url, vol } => {
            let repo = Repo::open(&url)?;
            let vols = match vol {
                Some(v) => vec![v],
                None => walb_repo::list::volumes(&repo).await?,
            };
            for v in vols {
                for s in walb_repo::list::snapshots(&repo, &v).await? {
                    println!(
                        "{v} {} {} {} {}",
                        s.gid.0,
                        iso_utc(s.timestamp),
                        if s.is_explicit {
                            "explicit"
                        } else {
                            "implicit"
                        },
                        s.image
                    );
                }
            }
        }
        RepoCmd::Restore {
            url,
            vol,
            gid,
            output,
            parallel,
        } => {
            let repo = Repo::open(&url)?;
            let out = if output.as_os_str() == "-" {
                Output::stdout()
            } else {
                Output::create(&output).with_context(|| format!("{}", output.display()))?
            };
            let work = tempfile::tempdir().context("a work directory for the wdiffs")?;
            let t = std::time::Instant::now();
            let r = walb_repo::restore::restore(&repo, &vol, Gid(gid), out, work.path(), parallel)
                .await
                .with_context(|| format!("restore {vol} at gid {gid} from {url}"))?;
            let secs = t.elapsed().as_secs_f64();
            eprintln!(
                "restored {vol} gid {gid}: {} bytes ({} chunks, {} wdiffs, {} bytes fetched) in {secs:.2} s, {:.1} MB/s",
                r.size,
                r.chunks,
                r.wdiffs,
                r.bytes_down,
                r.size as f64 / secs.max(1e-9) / 1e6
            );
        }
        RepoCmd::PutImage {
            url,
            vol,
            image,
            gid,
            parallel,
        } => {
            let repo = Repo::open(&url)?;
            let state = MetaState::new(MetaSnap::clean(Gid(gid)), unix_now());
            let opts = walb_repo::upload::Opts {
                parallel,
                ..Default::default()
            };
            let stats = walb_repo::upload::Stats::default();
            let t = std::time::Instant::now();
            let r =
                walb_repo::upload::upload_image(&repo, &vol, &state, &image, &opts, &stats).await?;
            let secs = t.elapsed().as_secs_f64();
            let size = std::fs::metadata(&image)?.len();
            if !r.written {
                anyhow::bail!("{vol} already has an image at gid {gid} in {url}");
            }
            eprintln!(
                "uploaded {}: {size} bytes ({} chunks, {} new, {} zero; {} bytes up) in {secs:.2} s, {:.1} MB/s",
                image.display(),
                r.chunks,
                r.new_chunks,
                r.zero_chunks,
                r.bytes_up,
                size as f64 / secs.max(1e-9) / 1e6
            );
        }
        RepoCmd::Verify {
            url,
            deep,
            parallel,
        } => {
            let repo = Repo::open(&url)?;
            let r = walb_repo::verify::verify(&repo, deep, parallel).await?;
            println!(
                "{} chunks, {} indexes, {} wdiffs, {} bytes checked{}",
                r.chunks,
                r.indexes,
                r.wdiffs,
                r.bytes,
                if deep { " (deep)" } else { "" }
            );
            for p in &r.problems {
                println!("damaged: {p}");
            }
            if !r.problems.is_empty() {
                anyhow::bail!("{} damaged or missing objects in {url}", r.problems.len());
            }
        }
        RepoCmd::Prune { url, vol, keep } => {
            let repo = Repo::open(&url)?;
            let r = walb_repo::prune::prune(&repo, &vol, keep).await?;
            println!("{} images, {} wdiffs removed", r.images.len(), r.wdiffs);
        }
        RepoCmd::Gc {
            url,
            grace_secs,
            dry_run,
        } => {
            let repo = Repo::open(&url)?;
            let r = walb_repo::gc::gc(&repo, Duration::from_secs(grace_secs), dry_run).await?;
            println!(
                "{} indexes, {} chunks ({} referenced); {} swept ({} bytes){}, {} young kept, {} uploads in flight, {} stale markers",
                r.indexes,
                r.chunks,
                r.referenced,
                r.swept,
                r.swept_bytes,
                if dry_run { " [dry run]" } else { "" },
                r.young,
                r.uploads_in_flight,
                r.stale_markers
            );
        }
    }
    Ok(())
}
