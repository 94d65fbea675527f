//! Transport settings shared by every client and server, and the framing helpers of data flows.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};

use crate::{event, frame, Chunk, Event, Frame};

/// Largest message either side accepts: a 4 MiB data message plus its framing, or a control
/// reply listing many diffs.
pub const MAX_MESSAGE: usize = 16 << 20;
/// Data flows send their payload in messages of this size.
pub const CHUNK: usize = 1 << 20;
const STREAM_WINDOW: u32 = 8 << 20;
const CONN_WINDOW: u32 = 16 << 20;

/// Every certificate names its holder in a URI SAN `walb://role/<role>/<id>` (docs/security.md).
pub const ROLE_URI: &str = "walb://role/";

/// The URI SAN naming `role` `id`.
pub fn role_uri(role: &str, id: &str) -> String {
    format!("{ROLE_URI}{role}/{id}")
}

/// (role, id) of a `walb://role/<role>/<id>` URI.
pub fn parse_role_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix(ROLE_URI)?.split_once('/')
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bad address {0:?}: {1}")]
    Address(String, String),
    #[error("connect to {0}: {1}")]
    Connect(String, String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("chunk checksum mismatch: got {got:#010x}, expected {want:#010x}")]
    Checksum { got: u32, want: u32 },
}

/// The process's TLS identity: its certificate and key, and the CA that signs every peer's.
/// With TLS, servers accept only clients with a certificate from that CA, and clients check
/// servers against it.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

struct Tls {
    client: ClientTlsConfig,
    server: ServerTlsConfig,
}

static TLS: OnceLock<Option<Tls>> = OnceLock::new();

fn read(p: &Path) -> Result<Vec<u8>, WireError> {
    std::fs::read(p).map_err(|e| WireError::Tls(format!("read {}: {e}", p.display())))
}

/// Sets the process's transport once, before any connection: TLS with `files`, or plain TCP.
pub fn init_tls(files: Option<&TlsFiles>) -> Result<(), WireError> {
    let tls = match files {
        None => None,
        Some(f) => {
            let id = Identity::from_pem(read(&f.cert)?, read(&f.key)?);
            let ca = Certificate::from_pem(read(&f.ca)?);
            Some(Tls {
                client: ClientTlsConfig::new()
                    .ca_certificate(ca.clone())
                    .identity(id.clone()),
                server: ServerTlsConfig::new().identity(id).client_ca_root(ca),
            })
        }
    };
    TLS.set(tls)
        .map_err(|_| WireError::Tls("transport already initialised".into()))
}

fn tls() -> Option<&'static Tls> {
    TLS.get().and_then(Option::as_ref)
}

/// `TlsFiles` from three optional flags: all or none.
pub fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, WireError> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
        _ => Err(WireError::Tls(
            "--tls-cert, --tls-key and --tls-ca go together".into(),
        )),
    }
}

/// A channel to `addr` (host:port) with the large HTTP/2 windows data flows need.
pub async fn connect(addr: &str) -> Result<Channel, WireError> {
    endpoint(addr)?
        .connect()
        .await
        .map_err(|e| WireError::Connect(addr.to_string(), source_chain(&e)))
}

/// The endpoint for `addr`; `connect_lazy` on it gives a channel that connects on first use.
pub fn endpoint(addr: &str) -> Result<Endpoint, WireError> {
    let scheme = if tls().is_some() { "https" } else { "http" };
    let mut e = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| WireError::Address(addr.to_string(), e.to_string()))?;
    if let Some(t) = tls() {
        e = e
            .tls_config(t.client.clone())
            .map_err(|e| WireError::Tls(source_chain(&e)))?;
    }
    Ok(e.connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW))
}

/// A server builder with the same windows (and TLS requiring client certificates, when set).
pub fn server() -> Result<Server, WireError> {
    let s = Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    match tls() {
        None => Ok(s),
        Some(t) => s
            .tls_config(t.server.clone())
            .map_err(|e| WireError::Tls(source_chain(&e))),
    }
}

/// An error and its sources on one line ("transport error: connection refused").
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A data frame carrying `data` and its checksum.
pub fn chunk(data: impl Into<bytes::Bytes>) -> Frame {
    let data = data.into();
    Frame {
        kind: Some(frame::Kind::Chunk(Chunk {
            crc32: crc32fast::hash(&data),
            data,
        })),
    }
}

/// `data` as chunk frames of at most `CHUNK` bytes each.
pub fn chunks(data: bytes::Bytes) -> impl Iterator<Item = Frame> {
    (0..data.len())
        .step_by(CHUNK)
        .map(move |at| chunk(data.slice(at..(at + CHUNK).min(data.len()))))
}

/// The chunk's data, once its checksum matches.
pub fn check_chunk(c: &Chunk) -> Result<&bytes::Bytes, WireError> {
    let got = crc32fast::hash(&c.data);
    if got != c.crc32 {
        return Err(WireError::Checksum { got, want: c.crc32 });
    }
    Ok(&c.data)
}

pub fn frame(kind: frame::Kind) -> Frame {
    Frame { kind: Some(kind) }
}

pub fn accept() -> Event {
    Event {
        kind: Some(event::Kind::Accept(crate::Accept {})),
    }
}

pub fn reject(reason: impl Into<String>) -> Event {
    Event {
        kind: Some(event::Kind::Reject(reason.into())),
    }
}

pub fn ack() -> Event {
    Event {
        kind: Some(event::Kind::Ack(crate::Ack {})),
    }
}
