//! walb-archive: serves the Control commands and the Archive data services over one data dir.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use walb_core::apply::DiscardMode;
use walb_daemon::metrics::Metrics;
use walb_daemon::serve::{run, Shutdown};
use walb_proto::archive_server::ArchiveServer;

use walb_archive::archive::Archive;
use walb_archive::commands::ArchiveControlSvc;
use walb_archive::service::Service;
use walb_proto::archive_control_server::ArchiveControlServer;

#[derive(Parser, Debug)]
#[command(name = "walb-archive", version, about = "walb-rs archive daemon")]
struct Args {
    #[command(flatten)]
    common: walb_daemon::args::CommonArgs,
    /// How DISCARD records are applied to images: zero or ignore.
    #[arg(long, default_value = "zero", value_parser = ["zero", "ignore"])]
    discard: String,
    /// Grow a volume's image when a diff or hash backup brings a larger device (otherwise
    /// refused as smaller-lv-size until `resize`).
    #[arg(long)]
    autoresize: bool,
    /// How many wdiff files restore, apply, merge and cat read at once; a longer chain is
    /// merged in rounds through temporary files. Bounds their memory (about 1 MiB a file).
    #[arg(long, default_value_t = walb_archive::volume::DEFAULT_MAX_OPEN_DIFFS as u64,
          value_parser = clap::value_parser!(u64).range(2..))]
    max_open_diffs: u64,
    /// Refuse data flows (`archive-full`) that would leave less than this many MiB free in the
    /// data dir's file system, so a full disk never cuts a transfer and apply has room.
    #[arg(long, default_value_t = 256)]
    min_free_mb: u64,
    /// Verify every volume (every wdiff's checksums, the base read through) this often, in
    /// hours (0: only when asked, `walbc verify`).
    #[arg(long, default_value_t = 24)]
    verify_every_hours: u64,
    /// Retention: keep the newest N explicit snapshots (0: no such rule). Retention is off
    /// while every keep rule is 0; the newest restorable point is always kept.
    #[arg(long, default_value_t = 0)]
    keep_last: usize,
    /// Keep the newest explicit snapshot of each of the last N hours that have one.
    #[arg(long, default_value_t = 0)]
    keep_hourly: usize,
    /// … of each of the last N days.
    #[arg(long, default_value_t = 0)]
    keep_daily: usize,
    /// … of each of the last N weeks (from Monday, UTC).
    #[arg(long, default_value_t = 0)]
    keep_weekly: usize,
    /// … of each of the last N months (UTC).
    #[arg(long, default_value_t = 0)]
    keep_monthly: usize,
    /// Keep every point (explicit or implicit) younger than this many seconds.
    #[arg(long, default_value_t = 0)]
    keep_within_secs: u64,
    /// How often retention runs on every volume, in seconds.
    #[arg(long, default_value_t = 600)]
    retention_every_secs: u64,
    /// Implicit restore points younger than this many seconds are all kept.
    #[arg(long, default_value_t = 300)]
    keep_implicit_secs: u64,
    /// Older implicit points are thinned to one per period of this many seconds (0: never).
    #[arg(long, default_value_t = 60)]
    implicit_period_secs: u64,
    /// Commands that delete backups (clear-vol, reset-vol, del-restored, apply, merge,
    /// retention without dry-run, disable-snapshot) run only when walbc confirms the volume
    /// (`walbc --confirm VOL`; docs/security.md). Scheduled retention and thinning still run.
    #[arg(long)]
    protect: bool,
    #[command(flatten)]
    bulk: walb_daemon::args::BulkArgs,
    /// Ship every volume to this repository on object storage: `s3://BUCKET/PREFIX`
    /// (endpoint and credentials from the AWS variables) or `file:///PATH`
    /// (docs/repository.md).
    #[arg(long)]
    repo: Option<String>,
    /// How often the repository uploader looks for new diffs and images, in seconds.
    #[arg(long, default_value_t = 2)]
    repo_every_secs: u64,
    /// How long the volume lease this archive takes in the repository lasts, in seconds (it is
    /// renewed every round).
    #[arg(long, default_value_t = 60)]
    repo_lease_secs: u64,
    /// Requests to the repository in flight (bounds memory: about that many 1 MiB chunks).
    #[arg(long, default_value_t = 8)]
    repo_parallel: usize,
    /// Limit uploads to the repository to this many MB/s (0: no limit).
    #[arg(long, default_value_t = 0)]
    repo_rate_mbps: u64,
    /// Keep this many images per volume in the repository (each apply point uploads one);
    /// older ones and the wdiffs before the oldest kept are deleted, their chunks by
    /// `walbc repo gc` (0: keep all).
    #[arg(long, default_value_t = 0)]
    repo_keep_images: usize,
    /// Before serving, make volume VOL (which this archive must not hold) from the repository
    /// (`--repo`): the newest image and the diffs after it. Repeatable.
    #[arg(long, value_name = "VOL", requires = "repo")]
    rebuild: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Args = walb_daemon::config::parse();
    let mut opts = args.common.init("archive")?;
    opts.protect = args.protect;
    let discard: DiscardMode = args.discard.parse().context("--discard")?;
    let metrics = Arc::new(Metrics::new());
    let mut archive = Archive::open(
        args.common.id.clone(),
        args.common.data_dir.clone(),
        discard,
        metrics,
    )
    .with_context(|| format!("open data dir {}", args.common.data_dir.display()))?;
    archive.autoresize = args.autoresize;
    archive.max_open_diffs = args.max_open_diffs as usize;
    archive.min_free = args.min_free_mb << 20;
    archive.bulk = args.bulk;
    archive.retention = walb_archive::retention::Rules {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        within_secs: args.keep_within_secs,
    };
    let archive = Arc::new(archive);
    if args.implicit_period_secs > 0 {
        let policy = walb_archive::thin::Policy {
            keep_all_secs: args.keep_implicit_secs,
            period_secs: args.implicit_period_secs,
            ..Default::default()
        };
        let every = Duration::from_secs(args.implicit_period_secs.clamp(1, 10));
        tokio::spawn(walb_archive::thin::run(archive.clone(), policy, every));
    }
    if !archive.retention.is_off() {
        let every = Duration::from_secs(args.retention_every_secs.max(1));
        tokio::spawn(walb_archive::upkeep::retention_scheduled(
            archive.clone(),
            every,
        ));
    }
    if args.verify_every_hours > 0 {
        let every = args.verify_every_hours * 3600;
        tokio::spawn(walb_archive::upkeep::verify_scheduled(
            archive.clone(),
            every,
        ));
    }
    if let Some(url) = &args.repo {
        let repo = walb_repo::Repo::open(url)?;
        for vol in &args.rebuild {
            let done = walb_archive::rebuild::rebuild(&archive, &repo, vol, args.repo_parallel)
                .await
                .with_context(|| format!("--rebuild {vol}"))?;
            tracing::info!("{done}");
        }
        let cfg = walb_archive::repo::Config {
            repo,
            every: Duration::from_secs(args.repo_every_secs.max(1)),
            lease: Duration::from_secs(args.repo_lease_secs.max(1)),
            opts: walb_repo::upload::Opts {
                parallel: args.repo_parallel.max(1),
                rate: Arc::new(walb_repo::rate::Rate::new(args.repo_rate_mbps * 1_000_000)),
                ..Default::default()
            },
            keep_images: args.repo_keep_images,
        };
        tokio::spawn(walb_archive::repo::run(archive.clone(), cfg));
    }
    // Served while it runs: commands and flows are answered "starting" until it is done.
    let recovering = archive.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = recovering.recover() {
            tracing::error!("startup recovery: {e}");
            std::process::exit(1);
        }
    });
    let svc = walb_proto::sized!(ArchiveServer::new(Service(archive.clone())));
    run(
        opts,
        archive.metrics.all.clone(),
        Shutdown::new(),
        |r, guard| {
            let control = walb_proto::sized!(ArchiveControlServer::new(ArchiveControlSvc {
                archive: archive.clone(),
                guard,
            }));
            r.add_service(control).add_service(svc)
        },
    )
    .await
}
