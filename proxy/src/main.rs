//! walb-proxy: serves the Control commands and the wlog receive service over one data dir,
//! and runs a sender per (volume, archive).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use walb_daemon::metrics::Metrics;
use walb_daemon::serve::{run, Shutdown};
use walb_proto::proxy_server::ProxyServer;

use walb_proto::proxy_control_server::ProxyControlServer;
use walb_proxy::commands::ProxyControlSvc;
use walb_proxy::proxy::{self, Proxy};
use walb_proxy::recv::Service;

#[derive(Parser, Debug)]
#[command(name = "walb-proxy", version, about = "walb-rs proxy daemon")]
struct Args {
    #[command(flatten)]
    common: walb_daemon::args::CommonArgs,
    /// Give up sending to an archive after this many seconds without a new wlog.
    #[arg(long, default_value_t = 1800)]
    retry_timeout: u64,
    /// Largest merged send, in MiB of stored diffs.
    #[arg(long, default_value_t = 128)]
    max_merge_mb: u64,
    /// Most diffs merged into one send.
    #[arg(long, default_value_t = 1000)]
    max_merge_files: usize,
    #[command(flatten)]
    transfers: walb_daemon::transfers::TransferArgs,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Args = walb_daemon::config::parse();
    let serve_opts = args.common.init("proxy")?;
    let metrics = Arc::new(Metrics::new());
    let opts = proxy::Opts {
        retry_timeout: Duration::from_secs(args.retry_timeout),
        max_merge_bytes: args.max_merge_mb << 20,
        max_merge_files: args.max_merge_files.max(1),
        transfers: args.transfers.clone(),
    };
    let data_dir = args.common.data_dir.clone();
    let m = metrics.clone();
    let proxy = tokio::task::spawn_blocking(move || Proxy::open(data_dir, opts, m))
        .await
        .context("startup")?
        .with_context(|| format!("open data dir {}", args.common.data_dir.display()))?;
    let proxy = Arc::new(proxy);
    proxy.boot().context("resume started volumes")?;
    let svc = walb_proto::sized!(ProxyServer::new(Service(proxy.clone())));
    let shutdown = Shutdown::new();
    run(serve_opts, metrics, shutdown.clone(), |r, guard| {
        let control = walb_proto::sized!(ProxyControlServer::new(ProxyControlSvc {
            proxy: proxy.clone(),
            guard,
        }));
        r.add_service(control).add_service(svc)
    })
    .await?;
    proxy.shutdown(shutdown.is_forced()).await;
    Ok(())
}
