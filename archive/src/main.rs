//! walb-archive: serves the Control commands and the Archive data services over one data dir.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use walb_core::apply::DiscardMode;
use walb_daemon::metrics::Metrics;
use walb_daemon::serve::{run, Shutdown};
use walb_proto::archive_server::ArchiveServer;
use walb_proto::wire::MAX_MESSAGE;

use walb_archive::archive::Archive;
use walb_archive::commands::ArchiveCommands;
use walb_archive::service::Service;

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
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Args = walb_daemon::config::parse();
    let opts = args.common.init("archive")?;
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
    let archive = Arc::new(archive);
    // Served while it runs: commands and flows are answered "starting" until it is done.
    let recovering = archive.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = recovering.recover() {
            tracing::error!("startup recovery: {e}");
            std::process::exit(1);
        }
    });
    let svc = ArchiveServer::new(Service(archive.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    run(
        opts,
        Arc::new(ArchiveCommands(archive.clone())),
        archive.metrics.clone(),
        Shutdown::new(),
        |r| r.add_service(svc),
    )
    .await
}
