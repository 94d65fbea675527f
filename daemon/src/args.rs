//! The flags every daemon takes (flattened into each daemon's own).

use std::net::SocketAddr;
use std::path::PathBuf;

use walb_proto::wire::TlsArgs;

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
    #[command(flatten)]
    pub limits: crate::limits::LimitArgs,
    /// Serve plain TCP on a non-loopback --listen address (docs/security.md); without TLS a
    /// daemon otherwise refuses to start there.
    #[arg(long)]
    pub insecure: bool,
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
        walb_core::malloc::tune();
        let insecure = self.plaintext_off_loopback()?;
        self.tls.init()?;
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| anyhow::anyhow!("create data dir {}: {e}", self.data_dir.display()))?;
        tracing::info!(id = %self.id, "{host_type} data dir {}", self.data_dir.display());
        Ok(crate::serve::Opts {
            host_type,
            listen: self.listen,
            metrics: self.metrics,
            transfer_summary: std::time::Duration::from_secs(self.transfer_summary_secs.max(1)),
            insecure,
            data_dir: self.data_dir.clone(),
            limits: self.limits.clone(),
            protect: false,
        })
    }

    /// Whether this daemon serves plain TCP off loopback (only with `--insecure`, with a WARN);
    /// an error naming the address and the two ways out when it would without `--insecure`.
    fn plaintext_off_loopback(&self) -> anyhow::Result<bool> {
        if self.tls.is_set() || self.listen.ip().is_loopback() {
            return Ok(false);
        }
        if !self.insecure {
            anyhow::bail!(
                "refusing plain TCP on non-loopback address {}: configure TLS (--tls-cert, \
                 --tls-key, --tls-ca) or start with --insecure",
                self.listen
            );
        }
        tracing::warn!(
            "--insecure: serving plain TCP on non-loopback address {} (no TLS: anyone who \
             reaches it can run every command)",
            self.listen
        );
        Ok(true)
    }
}

/// How a daemon that sends full syncs (a storage's full backup, an archive's full
/// replication) encodes bulks.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct BulkArgs {
    /// Bulk compression of full syncs: none, lz4 or zstd:LEVEL (1–19). none or lz4 for links
    /// faster than the cores compress; a bulk that does not shrink travels raw anyway.
    #[arg(long, default_value = "zstd:1")]
    pub bulk_cmpr: walb_proto::bulk::BulkCmpr,
    /// Threads encoding bulks in parallel (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub bulk_workers: usize,
}

impl BulkArgs {
    /// The encoding threads to run.
    pub fn workers(&self) -> usize {
        match self.bulk_workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}
