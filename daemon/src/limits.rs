//! What one peer can take from a daemon (docs/security.md, "Limits"): connections, HTTP/2
//! streams per connection, data flows per peer, how long a TLS handshake, a data flow's Open
//! and an unanswered keepalive may take; and the admission of a data flow: its sender's role
//! by `access::FLOWS`, the peer's count of running flows, then its Open.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tonic::{Request, Status, Streaming};
use walb_proto::flow::next_frame;
use walb_proto::{frame, Frame, Open};

use crate::access::{flow_rule, FlowRule};
use crate::peer::Peer;

const DEFAULT_MAX_PEER_FLOWS: usize = 64;
const DEFAULT_OPEN_TIMEOUT_SECS: u64 = 30;

#[derive(clap::Args, Clone, Debug)]
pub struct LimitArgs {
    /// Connections served at once; more are closed as soon as they are accepted.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// HTTP/2 streams (calls and data flows) one connection may have open at once.
    #[arg(long, default_value_t = 256)]
    pub max_streams: u32,
    /// Data flows one peer (a certificate's role and id, without TLS an IP address) may run
    /// at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_MAX_PEER_FLOWS)]
    pub max_peer_flows: usize,
    /// Seconds a data flow may take to send its first frame (Open); then it is ended with
    /// DEADLINE_EXCEEDED and stops counting against its peer.
    #[arg(long, default_value_t = DEFAULT_OPEN_TIMEOUT_SECS)]
    pub open_timeout_secs: u64,
    /// Seconds a TLS handshake may take before the connection is closed.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout_secs: u64,
    /// Seconds a peer may leave a keepalive ping (sent every 10 s) unanswered before its
    /// connection is closed.
    #[arg(long, default_value_t = 20)]
    pub keepalive_timeout_secs: u64,
}

impl LimitArgs {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs.max(1))
    }

    pub fn server(&self) -> walb_proto::wire::ServerLimits {
        walb_proto::wire::ServerLimits {
            max_streams: self.max_streams.max(1),
            keepalive_timeout: Duration::from_secs(self.keepalive_timeout_secs.max(1)),
        }
    }
}

/// The most data flows one peer may run at once, and how long a flow's Open may take (set by
/// `serve::run`).
static FLOW_LIMITS: OnceLock<(usize, Duration)> = OnceLock::new();
/// Running data flows by peer key.
static RUNNING: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

pub(crate) fn set_flow_limits(l: &LimitArgs) {
    let _ = FLOW_LIMITS.set((
        l.max_peer_flows.max(1),
        Duration::from_secs(l.open_timeout_secs.max(1)),
    ));
}

/// After an acknowledged transfer, for flows that carry several one after the other: the next
/// transfer's Open on the same stream (within the Open timeout), or `None` when the sender
/// ended the stream.
pub async fn next_open(input: &mut Streaming<Frame>) -> Result<Option<Open>, Status> {
    let (_, limit) = flow_limits();
    let next = tokio::time::timeout(limit, input.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no Open or end of stream within {limit:?} after an Ack (--open-timeout-secs)"
            ))
        })??;
    match next {
        None => Ok(None),
        Some(Frame {
            kind: Some(frame::Kind::Open(open)),
        }) => Ok(Some(open)),
        Some(_) => Err(Status::invalid_argument(
            "after an Ack the next frame must be Open, or the stream must end",
        )),
    }
}

fn flow_limits() -> (usize, Duration) {
    *FLOW_LIMITS.get_or_init(|| {
        (
            DEFAULT_MAX_PEER_FLOWS,
            Duration::from_secs(DEFAULT_OPEN_TIMEOUT_SECS),
        )
    })
}

fn running() -> std::sync::MutexGuard<'static, Option<HashMap<String, usize>>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// An admitted data flow: counted against its peer until dropped.
#[derive(Debug)]
pub struct FlowGuard {
    pub peer: Peer,
    rule: FlowRule,
    key: String,
}

/// Admits a data flow `flow` (`Service.Method`, a name of `access::FLOWS`): with TLS the
/// caller's role must be one of its senders (else PERMISSION_DENIED), and the peer may not run
/// more than `--max-peer-flows` at once (else RESOURCE_EXHAUSTED).
pub fn admit_flow<T>(flow: &str, req: &Request<T>) -> Result<FlowGuard, Status> {
    let peer = Peer::of(req);
    let rule = flow_rule(flow);
    if peer.tls && !peer.role().is_some_and(|r| rule.senders.contains(&r)) {
        tracing::warn!(%peer, flow, "data flow denied by role");
        return Err(Status::permission_denied(format!(
            "{peer}: role {} may not send {flow} (docs/security.md)",
            peer.role().unwrap_or("(none)")
        )));
    }
    let (max, _) = flow_limits();
    let key = peer.key();
    let mut running = running();
    let n = running
        .get_or_insert_with(HashMap::new)
        .entry(key.clone())
        .or_default();
    if *n >= max {
        tracing::warn!(%peer, flow, "data flow refused: {n} running (--max-peer-flows)");
        return Err(Status::resource_exhausted(format!(
            "{peer}: {n} data flows running, the most one peer may (--max-peer-flows {max})"
        )));
    }
    *n += 1;
    Ok(FlowGuard { peer, rule, key })
}

impl FlowGuard {
    /// With TLS, a volume whose writer is bound in `file` (a proxy's volume to its storage, an
    /// archive's to the storage of its backups) takes this flow only from the certificate id
    /// kept there; an unbound volume is bound to this sender now. Returns the other sender the
    /// volume is bound to, if it is not this one. Without TLS nothing is checked or kept.
    pub fn other_owner(&self, file: &std::path::Path) -> crate::CmdResult<Option<String>> {
        let Some((_, id)) = self.peer.role.as_ref().filter(|_| self.peer.tls) else {
            return Ok(None);
        };
        let owner = tokio::task::block_in_place(|| match crate::volfile::read(file)? {
            Some(owner) if owner == *id => Ok(None),
            Some(owner) => Ok(Some(owner)),
            None => crate::volfile::write(file, id).map(|()| None),
        })?;
        Ok(owner)
    }

    /// The flow's first frame, which must be an Open and come within `--open-timeout-secs`,
    /// with its host type checked (`check_open`).
    pub async fn read_open(&self, input: &mut Streaming<Frame>) -> Result<Open, Status> {
        let (_, limit) = flow_limits();
        let first = tokio::time::timeout(limit, next_frame(input, "Open"))
            .await
            .map_err(|_| self.no_open(limit))??;
        let frame::Kind::Open(open) = first else {
            return Err(Status::invalid_argument("the first frame must be Open"));
        };
        self.check_open(&open.host_type)?;
        Ok(open)
    }

    /// `next_open`, with the Open's host type checked as the first's was.
    pub async fn read_next_open(
        &self,
        input: &mut Streaming<Frame>,
    ) -> Result<Option<Open>, Status> {
        let open = next_open(input).await?;
        if let Some(o) = &open {
            self.check_open(&o.host_type)?;
        }
        Ok(open)
    }

    fn no_open(&self, limit: Duration) -> Status {
        Status::deadline_exceeded(format!(
            "{}: no Open within {limit:?} (--open-timeout-secs)",
            self.peer
        ))
    }

    /// Checks the host type the flow's Open announces: one of the flow's senders, and with
    /// TLS the caller's own role (a storage certificate cannot replicate as an archive).
    pub fn check_open(&self, host_type: &str) -> Result<(), Status> {
        let flow = self.rule.flow;
        if !self.rule.senders.contains(&host_type) {
            return Err(Status::invalid_argument(format!(
                "host_type {host_type:?}: {flow} takes {}",
                self.rule.senders.join(" or ")
            )));
        }
        if self.peer.tls && self.peer.role() != Some(host_type) {
            tracing::warn!(peer = %self.peer, flow, host_type, "data flow denied: host type is not the role");
            return Err(Status::permission_denied(format!(
                "{}: role {} may not send {flow} as {host_type}",
                self.peer,
                self.peer.role().unwrap_or("(none)")
            )));
        }
        Ok(())
    }
}

impl Drop for FlowGuard {
    fn drop(&mut self) {
        let mut running = running();
        if let Some(m) = running.as_mut() {
            if let Some(n) = m.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.key);
                }
            }
        }
    }
}
