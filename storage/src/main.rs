//! `walb-storage`: the storage daemon.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use walb_daemon::metrics::Metrics;
use walb_daemon::serve::{self, Shutdown};
use walb_proto::storage_control_server::StorageControlServer;
use walb_proto::storage_server::StorageServer;
use walb_storage::commands::StorageControlSvc;
use walb_storage::metrics::StorageMetrics;
use walb_storage::storage::Storage;
use walb_storage::wdevd::Wdevd;

#[derive(Parser)]
#[command(name = "walb-storage", version, about = "walb-rs storage daemon")]
struct Args {
    #[command(flatten)]
    common: walb_daemon::args::CommonArgs,
    /// Proxies in priority order (host:port,…).
    #[arg(long, value_delimiter = ',', required = true)]
    proxy: Vec<String>,
    /// The primary archive (host:port) for full and hash backup.
    #[arg(long)]
    archive: String,
    /// wdevd's control socket.
    #[arg(long, default_value = "/run/walb/wdevd.sock")]
    wdevd: PathBuf,
    /// Largest wlog sent at once, in MiB (also the gid reservation unit).
    #[arg(long, default_value_t = 128)]
    max_wlog_send_mb: u64,
    /// Seconds between implicit snapshots while logs arrive.
    #[arg(long, default_value_t = 10)]
    snapshot_interval: u64,
    /// Full and hash backup scan rate limit in bytes/s (0: none); `set-full-scan-bps`
    /// changes it at run time.
    #[arg(long, default_value_t = 0)]
    full_scan_bps: u64,
    /// Milliseconds between polls of wdevd for every device's state (one request for all);
    /// the volumes whose device moved are shipped.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    #[command(flatten)]
    bulk: walb_daemon::args::BulkArgs,
    #[command(flatten)]
    transfers: walb_daemon::transfers::TransferArgs,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a: Args = walb_daemon::config::parse();
    let opts = a.common.init("storage")?;
    let metrics = Arc::new(Metrics::new());
    let shutdown = Shutdown::new();
    let st = Arc::new(Storage {
        id: a.common.id,
        data_dir: a.common.data_dir,
        wdevd: Wdevd::new(&a.wdevd),
        proxies: a.proxy,
        archive: a.archive,
        max_wlog_send_mb: a.max_wlog_send_mb.max(1),
        snapshot_interval: Duration::from_secs(a.snapshot_interval),
        poll: Duration::from_millis(a.poll_ms.max(10)),
        transfers: a.transfers.slots(),
        metrics: StorageMetrics::register(metrics.clone()),
        shutdown: shutdown.clone(),
        vols: Default::default(),
        down: Default::default(),
        scan_bps: Arc::new(std::sync::atomic::AtomicU64::new(a.full_scan_bps)),
        bulk: a.bulk,
    });
    st.load().await?;
    let svc = walb_proto::sized!(StorageServer::new(walb_storage::failback::Service(
        st.clone()
    )));
    serve::run(opts, metrics, shutdown, |r, guard| {
        let control =
            walb_proto::sized!(StorageControlServer::new(StorageControlSvc { st, guard }));
        r.add_service(control).add_service(svc)
    })
    .await
}
