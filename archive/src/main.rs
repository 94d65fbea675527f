//! walb-archive: serves the Control commands and the Archive data services over one data dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use walb_core::apply::DiscardMode;
use walb_daemon::metrics::Metrics;
use walb_daemon::serve::{init_logging, run, Opts, Shutdown};
use walb_proto::archive_server::ArchiveServer;
use walb_proto::wire::MAX_MESSAGE;

use walb_archive::archive::Archive;
use walb_archive::commands::ArchiveCommands;
use walb_archive::service::Service;

#[derive(Parser, Debug)]
#[command(name = "walb-archive", version, about = "walb-rs archive daemon")]
struct Args {
    /// This server's id (for logs and walbc layouts).
    #[arg(long)]
    id: String,
    /// gRPC address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Holds vols/<vol>/ and restored/<vol>/.
    #[arg(long)]
    data_dir: PathBuf,
    /// Serve Prometheus /metrics here.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// How DISCARD records are applied to images: zero or ignore.
    #[arg(long, default_value = "zero", value_parser = ["zero", "ignore"])]
    discard: String,
    #[command(flatten)]
    tls: walb_daemon::tls::TlsArgs,
    /// TOML file with any of these flags.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Args = walb_daemon::config::parse();
    init_logging();
    args.tls.init()?;
    let discard: DiscardMode = args.discard.parse().context("--discard")?;
    let metrics = Arc::new(Metrics::new());
    let data_dir = args.data_dir.clone();
    let archive = tokio::task::spawn_blocking(move || Archive::open(data_dir, discard, metrics))
        .await
        .context("startup recovery")?
        .with_context(|| format!("open data dir {}", args.data_dir.display()))?;
    let archive = Arc::new(archive);
    tracing::info!(id = %args.id, "archive data dir {}", args.data_dir.display());
    let svc = ArchiveServer::new(Service(archive.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    run(
        Opts {
            host_type: "archive",
            listen: args.listen,
            metrics: args.metrics,
        },
        Arc::new(ArchiveCommands(archive.clone())),
        archive.metrics.clone(),
        Shutdown::new(),
        |r| r.add_service(svc),
    )
    .await
}
