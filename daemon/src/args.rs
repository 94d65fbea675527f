//! The flags every daemon takes (flattened into each daemon's own).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::tls::TlsArgs;

#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// This server's id (as in walbc's layout; in logs).
    #[arg(long)]
    pub id: String,
    /// gRPC address to listen on (host:port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Where the daemon keeps its volumes.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Serve Prometheus /metrics here (host:port).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// TOML file with any of these flags (same names).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seconds between the INFO summaries of transfers (tests shorten it).
    #[arg(long, hide = true, default_value_t = crate::transfers::DEFAULT_SUMMARY_SECS)]
    pub transfer_summary_secs: u64,
}

impl CommonArgs {
    /// Logging and transport set up; the serve options for `host_type`.
    pub fn init(&self, host_type: &'static str) -> anyhow::Result<crate::serve::Opts> {
        walb_core::logging::init();
        self.tls.init()?;
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| anyhow::anyhow!("create data dir {}: {e}", self.data_dir.display()))?;
        tracing::info!(id = %self.id, "{host_type} data dir {}", self.data_dir.display());
        Ok(crate::serve::Opts {
            host_type,
            listen: self.listen,
            metrics: self.metrics,
            transfer_summary: std::time::Duration::from_secs(self.transfer_summary_secs.max(1)),
        })
    }
}
