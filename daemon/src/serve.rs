//! Running a daemon: logging, the control services (the `Guard` every one goes through, and the
//! `Control` every daemon answers), extra gRPC services, `/metrics`, connections accepted under the limits (TLS with the configuration of
//! the moment, so a certificate reload reaches new connections), and shutdown on
//! SIGTERM/SIGINT or the `shutdown` command.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};
use walb_proto::control_server::{Control, ControlServer};
use walb_proto::{control_reply, control_request, ControlReply, ControlRequest};

use crate::access::Access;
use crate::audit::Audit;
use crate::error::CmdResult;
use crate::metrics::Metrics;
use crate::peer::Peer;

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

/// What every control service shares: the table of who may do what (`access`), `--protect`'s
/// confirmation, the audit log, and the commands every daemon answers (`Control`).
pub struct Guard {
    host_type: &'static str,
    insecure: bool,
    /// `--protect`: commands that delete backups need `walbc --confirm VOL`.
    protect: bool,
    audit: Audit,
    shutdown: Shutdown,
}

impl Guard {
    /// Serves one command: `cmd` takes the command out of the request; it runs by `run` if the
    /// caller's role may run it (with TLS) and, on a protected server, a command that deletes
    /// backups was confirmed for its volume. A state-changing command is audited either way.
    pub async fn serve<Req, C, Rep, Fut>(
        &self,
        req: Request<Req>,
        cmd: impl FnOnce(Req) -> Option<C>,
        run: impl FnOnce(C) -> Fut,
    ) -> Result<Response<Rep>, Status>
    where
        C: Access + Clone + std::fmt::Debug,
        Fut: std::future::Future<Output = CmdResult<Rep>>,
    {
        let peer = Peer::of(&req);
        let confirm = req
            .metadata()
            .get(walb_proto::control::CONFIRM_KEY)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let Some(cmd) = cmd(req.into_inner()) else {
            return Err(Status::invalid_argument(format!(
                "{}: the request names no command (a client newer than this server?)",
                self.host_type
            )));
        };
        let kept = cmd.clone();
        let rule = kept.rule();
        tracing::debug!(?cmd, %peer, "command");
        let result = if peer.tls && !rule.allows(peer.role()) {
            tracing::warn!(?cmd, %peer, "command denied by role");
            Err(Status::permission_denied(format!(
                "{peer}: role {} may not run {:?} (docs/security.md)",
                peer.role().unwrap_or("(none)"),
                rule.word
            )))
        } else if self.protect && rule.destroys && confirm.as_deref() != rule.vol {
            tracing::warn!(?cmd, %peer, "command refused: protected, not confirmed");
            let vol = rule.vol.unwrap_or("VOL");
            Err(Status::failed_precondition(format!(
                "{} is protected (--protect): {:?} deletes backups of {vol}; confirm with \
                 walbc --confirm {vol} (no confirmation{} given)",
                self.host_type,
                rule.word,
                confirm.map_or(String::new(), |c| format!(" for {vol}: {c:?} was"))
            )))
        } else {
            run(cmd).await.map_err(|e| {
                if e.is_server_fault() {
                    tracing::error!(?kept, "command failed: {e}");
                } else {
                    tracing::info!(?kept, "command refused: {e}");
                }
                Status::from(e)
            })
        };
        if rule.changes {
            self.audit
                .record(&rule, &peer, &format!("{kept:?}"), &result);
        }
        result.map(Response::new)
    }

    fn common(&self, cmd: control_request::Cmd) -> CmdResult<control_reply::Reply> {
        use control_reply::Reply;
        Ok(match cmd {
            control_request::Cmd::Hello(_) => Reply::Hello(control_reply::Hello {
                host_type: self.host_type.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                insecure: self.insecure,
                pid: std::process::id(),
            }),
            control_request::Cmd::Shutdown(s) => {
                self.shutdown.begin(s.force);
                Reply::Shutdown(walb_proto::Done {})
            }
            control_request::Cmd::RotateCerts(_) => {
                Reply::RotateCerts(control_reply::RotateCerts {
                    summary: crate::tls::rotate("rotate-certs")?,
                })
            }
        })
    }
}

/// The commands every daemon answers.
struct ControlSvc(Arc<Guard>);

#[tonic::async_trait]
impl Control for ControlSvc {
    async fn call(&self, req: Request<ControlRequest>) -> Result<Response<ControlReply>, Status> {
        let g = &self.0;
        g.serve(
            req,
            |r| r.cmd,
            |c| async move { g.common(c).map(|r| ControlReply { reply: Some(r) }) },
        )
        .await
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

/// Serves Control plus whatever `add` adds (the daemon's own control service, through the
/// `Guard` it is given, and its data flows) until SIGTERM/SIGINT (graceful) or the `shutdown`
/// command; then returns so the caller can finish its own shutdown.
pub async fn run(
    opts: Opts,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    add: impl FnOnce(Router, Arc<Guard>) -> Router,
) -> Result<()> {
    let guard = Arc::new(Guard {
        host_type: opts.host_type,
        insecure: opts.insecure,
        protect: opts.protect,
        audit: Audit::new(&opts.data_dir),
        shutdown: shutdown.clone(),
    });
    let control = walb_proto::sized!(ControlServer::new(ControlSvc(guard.clone())));
    crate::limits::set_flow_limits(&opts.limits);
    let router = add(
        walb_proto::wire::server(opts.limits.server()).add_service(control),
        guard,
    );
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
