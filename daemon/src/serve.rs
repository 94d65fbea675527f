//! Running a daemon: logging, the Control service over a `Commands` implementation, extra gRPC
//! services, `/metrics`, connections accepted under the limits (TLS with the configuration of
//! the moment, so a certificate reload reaches new connections), and shutdown on
//! SIGTERM/SIGINT or the `shutdown` command.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};
use walb_proto::control_server::{Control, ControlServer};
use walb_proto::wire::MAX_MESSAGE;
use walb_proto::{Command, Reply};

use crate::audit::Audit;
use crate::error::CmdResult;
use crate::metrics::Metrics;
use crate::peer::Peer;

/// A daemon's command set (everything walbc can ask it).
#[tonic::async_trait]
pub trait Commands: Send + Sync + 'static {
    async fn call(&self, args: Vec<String>) -> CmdResult<String>;
}

/// Tells background tasks to stop: `stopping()` resolves once shutdown began; `force` says
/// whether running transfers should be cut rather than finished.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<Option<bool>>>,
    rx: watch::Receiver<Option<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, rx) = watch::channel(None);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Starts shutdown (`force`: cut running work).
    pub fn begin(&self, force: bool) {
        self.tx.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(force);
                true
            } else {
                false
            }
        });
    }

    pub fn is_stopping(&self) -> bool {
        self.rx.borrow().is_some()
    }

    pub fn is_forced(&self) -> bool {
        *self.rx.borrow() == Some(true)
    }

    /// Resolves once shutdown began.
    pub async fn stopping(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

struct ControlSvc {
    host_type: &'static str,
    insecure: bool,
    /// `--protect`: commands that delete backups need `walbc --confirm VOL`.
    protect: bool,
    audit: Audit,
    commands: Arc<dyn Commands>,
    shutdown: Shutdown,
}

impl ControlSvc {
    async fn dispatch(&self, args: Vec<String>) -> Result<String, Status> {
        Ok(
            match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["get", "host-type"] => self.host_type.to_string(),
                ["get", "pid"] => std::process::id().to_string(),
                ["version"] => {
                    let insecure = if self.insecure { " insecure" } else { "" };
                    format!("{} {}{insecure}", self.host_type, env!("CARGO_PKG_VERSION"))
                }
                ["shutdown"] | ["shutdown", "graceful"] => {
                    self.shutdown.begin(false);
                    "ok".into()
                }
                ["shutdown", "force"] => {
                    self.shutdown.begin(true);
                    "ok".into()
                }
                ["rotate-certs"] => crate::tls::rotate("rotate-certs")?,
                _ => match self.commands.call(args.clone()).await {
                    Ok(t) => t,
                    Err(e) => {
                        if e.is_server_fault() {
                            tracing::error!(?args, "command failed: {e}");
                        } else {
                            tracing::info!(?args, "command refused: {e}");
                        }
                        return Err(e.into());
                    }
                },
            },
        )
    }
}

#[tonic::async_trait]
impl Control for ControlSvc {
    async fn call(&self, req: Request<Command>) -> Result<Response<Reply>, Status> {
        let peer = Peer::of(&req);
        let confirm = req
            .metadata()
            .get(walb_proto::control::CONFIRM_KEY)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let args = req.into_inner().args;
        tracing::debug!(?args, %peer, "command");
        let rule = crate::access::rule(&args);
        let vol = crate::access::volume(&rule, &args);
        let result = if peer.tls && !rule.allows(peer.role()) {
            tracing::warn!(?args, %peer, "command denied by role");
            Err(Status::permission_denied(format!(
                "{peer}: role {} may not run {:?} (docs/security.md)",
                peer.role().unwrap_or("(none)"),
                args.first().map_or("", String::as_str)
            )))
        } else if self.protect && rule.destroys(&args) && confirm.as_deref() != vol {
            tracing::warn!(?args, %peer, "command refused: protected, not confirmed");
            let vol = vol.unwrap_or("VOL");
            Err(Status::failed_precondition(format!(
                "{} is protected (--protect): {:?} deletes backups of {vol}; confirm with \
                 walbc --confirm {vol} (no confirmation{} given)",
                self.host_type,
                rule.word,
                confirm.map_or(String::new(), |c| format!(" for {vol}: {c:?} was"))
            )))
        } else {
            self.dispatch(args.clone()).await
        };
        self.audit.record(&rule, &peer, &args, &result);
        result.map(|text| Response::new(Reply { text }))
    }
}

/// What `run` needs besides the services.
pub struct Opts {
    pub host_type: &'static str,
    pub listen: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// How often transfers are summed up at INFO (`transfers`).
    pub transfer_summary: std::time::Duration,
    /// Plain TCP off loopback by `--insecure` (said in the `version` reply).
    pub insecure: bool,
    /// The daemon's data dir (the audit log lives there).
    pub data_dir: std::path::PathBuf,
    pub limits: crate::limits::LimitArgs,
    /// Commands that delete backups need `walbc --confirm VOL` (the archive's `--protect`).
    pub protect: bool,
}

/// Serves Control plus whatever `add` adds until SIGTERM/SIGINT (graceful) or the `shutdown`
/// command; then returns so the caller can finish its own shutdown.
pub async fn run(
    opts: Opts,
    commands: Arc<dyn Commands>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    add: impl FnOnce(Router) -> Router,
) -> Result<()> {
    let control = ControlServer::new(ControlSvc {
        host_type: opts.host_type,
        insecure: opts.insecure,
        protect: opts.protect,
        audit: Audit::new(&opts.data_dir),
        commands,
        shutdown: shutdown.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    crate::limits::set_flow_limits(&opts.limits);
    let router = add(walb_proto::wire::server(opts.limits.server()).add_service(control));
    if let Some(addr) = opts.metrics {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind metrics {addr}"))?;
        tokio::spawn(crate::metrics::serve(l, metrics));
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("bind {}", opts.listen))?;
    tracing::info!("{} listening on {}", opts.host_type, opts.listen);
    crate::notify::notify("READY=1");
    crate::transfers::spawn_summaries(opts.transfer_summary);
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            shutdown.begin(false);
        });
    }
    tokio::spawn(async {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("no SIGHUP handler: certificates reload by rotate-certs only");
            return;
        };
        while hup.recv().await.is_some() {
            // Logged either way by `rotate`.
            let _ = crate::tls::rotate("SIGHUP");
        }
    });
    let stop = shutdown.clone();
    let stop = async move { stop.stopping().await };
    let (conns, handshake) = (opts.limits.max_connections, opts.limits.handshake_timeout());
    let served = if walb_proto::wire::is_tls() {
        let tls = move |c: crate::conn::Conn| crate::conn::tls_handshake(c, handshake);
        router
            .serve_with_incoming_shutdown(crate::conn::incoming(listener, conns, tls), stop)
            .await
    } else {
        let plain = |c: crate::conn::Conn| async move { Some(c) };
        router
            .serve_with_incoming_shutdown(crate::conn::incoming(listener, conns, plain), stop)
            .await
    };
    served.context("gRPC server")?;
    crate::transfers::summarize();
    crate::notify::notify("STOPPING=1");
    tracing::info!("{} stopped", opts.host_type);
    Ok(())
}
