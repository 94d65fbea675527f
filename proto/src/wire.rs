//! Transport settings shared by every client and server, and the framing helpers of data flows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server};

use crate::{event, frame, Chunk, Event, Frame};

/// Largest message either side accepts: a 4 MiB data message plus its framing, or a control
/// reply listing many diffs.
pub const MAX_MESSAGE: usize = 16 << 20;

/// A generated gRPC client or server with the message-size limits every endpoint shares
/// (`MAX_MESSAGE` both ways): `sized!(ArchiveClient::new(ch))`.
#[macro_export]
macro_rules! sized {
    ($e:expr) => {
        $e.max_decoding_message_size($crate::wire::MAX_MESSAGE)
            .max_encoding_message_size($crate::wire::MAX_MESSAGE)
    };
}
/// Data flows send their payload in messages of this size.
pub const CHUNK: usize = 1 << 20;
const STREAM_WINDOW: u32 = 8 << 20;
const CONN_WINDOW: u32 = 16 << 20;
/// The largest HTTP/2 frame a peer may send us: a data flow's chunk travels in a few frames
/// instead of 64 of the protocol's default 16 KiB, each a wakeup and a copy on both ends.
const MAX_FRAME: u32 = 1 << 20;

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

/// The configurations made from the files: replaced whole by `reload_tls`, so a connection
/// keeps the one it started with and the next one takes the new one.
struct Tls {
    files: TlsFiles,
    client: ClientTlsConfig,
    server: Arc<ServerConfig>,
    /// The certificate's serial (hex) and end of validity, for logs and replies.
    summary: String,
}

/// None: plain TCP; set once by `init_tls`.
static TLS: OnceLock<Option<RwLock<Arc<Tls>>>> = OnceLock::new();

fn read(p: &Path) -> Result<Vec<u8>, WireError> {
    std::fs::read(p).map_err(|e| WireError::Tls(format!("read {}: {e}", p.display())))
}

fn pem_certs(p: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, WireError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WireError::Tls(format!("{}: {e}", p.display())))?;
    if certs.is_empty() {
        return Err(WireError::Tls(format!("{}: no certificate", p.display())));
    }
    Ok(certs)
}

/// Reads and checks every file, and builds both sides' configurations from them.
fn load(files: &TlsFiles) -> Result<Tls, WireError> {
    let tls_err =
        |what: &Path, e: &dyn std::fmt::Display| WireError::Tls(format!("{}: {e}", what.display()));
    let (cert_pem, key_pem, ca_pem) = (read(&files.cert)?, read(&files.key)?, read(&files.ca)?);
    let certs = pem_certs(&files.cert, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| tls_err(&files.key, &e))?;
    let mut roots = RootCertStore::empty();
    for ca in pem_certs(&files.ca, &ca_pem)? {
        roots.add(ca).map_err(|e| tls_err(&files.ca, &e))?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err(&files.ca, &e))?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WireError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key)
        .map_err(|e| tls_err(&files.key, &e))?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let summary = cert_summary(&certs[0]);
    Ok(Tls {
        files: files.clone(),
        client: ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(cert_pem, key_pem)),
        server: Arc::new(server),
        summary,
    })
}

/// "serial 1a2b… valid until Nov 27 03:40:00 2027 +00:00" of a DER certificate.
fn cert_summary(der: &CertificateDer<'_>) -> String {
    match x509_serial_and_end(der) {
        Some((serial, end)) => format!("serial {serial} valid until {end}"),
        None => "an unreadable certificate".into(),
    }
}

/// The serial (hex) and not-after of a DER certificate.
pub fn x509_serial_and_end(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let serial = hex_of(cert.raw_serial());
    Some((serial, cert.validity().not_after.to_string()))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sets the process's transport once, before any connection: TLS with `files`, or plain TCP.
pub fn init_tls(files: Option<&TlsFiles>) -> Result<(), WireError> {
    let tls = files
        .map(|f| load(f).map(|t| RwLock::new(Arc::new(t))))
        .transpose()?;
    TLS.set(tls)
        .map_err(|_| WireError::Tls("transport already initialised".into()))
}

fn tls() -> Option<Arc<Tls>> {
    TLS.get()
        .and_then(Option::as_ref)
        .map(|t| t.read().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Whether the process runs TLS.
pub fn is_tls() -> bool {
    tls().is_some()
}

/// Reads the certificate, key and CA again from the paths `init_tls` had; when all of them
/// load, new connections (served and opened) use them, and the reply names the new
/// certificate. Connections already open keep theirs. On any error the old ones stay.
pub fn reload_tls() -> Result<String, WireError> {
    let Some(lock) = TLS.get().and_then(Option::as_ref) else {
        return Err(WireError::Tls("this process runs without TLS".into()));
    };
    let files = lock.read().unwrap_or_else(|e| e.into_inner()).files.clone();
    let new = Arc::new(load(&files)?);
    let summary = new.summary.clone();
    *lock.write().unwrap_or_else(|e| e.into_inner()) = new;
    Ok(summary)
}

/// The configuration a server accepts its next TLS connection with (None: plain TCP).
pub fn server_tls() -> Option<Arc<ServerConfig>> {
    tls().map(|t| t.server.clone())
}

/// The current certificate's serial and validity, when TLS is on.
pub fn tls_summary() -> Option<String> {
    tls().map(|t| t.summary.clone())
}

/// The TLS flags of every walb-rs process (all three, or none for plain TCP): a daemon's, and
/// walbc's client identity.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// This process's certificate (PEM): a server's, or walbc's client certificate. With
    /// --tls-key and --tls-ca it turns on TLS for every connection in and out; peers then
    /// show a certificate signed by the CA.
    #[arg(long, global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, global = true)]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs every server's and client's certificate.
    #[arg(long, global = true)]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// True when any TLS file is given (`init` then insists on all three).
    pub fn is_set(&self) -> bool {
        self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_ca.is_some()
    }

    /// The three files, or none; one or two of them is an error.
    pub fn files(&self) -> Result<Option<TlsFiles>, WireError> {
        match (
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.tls_ca.clone(),
        ) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
            _ => Err(WireError::Tls(
                "--tls-cert, --tls-key and --tls-ca go together".into(),
            )),
        }
    }

    /// Sets the process's transport; call once before serving or connecting.
    pub fn init(&self) -> Result<(), WireError> {
        init_tls(self.files()?.as_ref())
    }
}

/// Channels kept per address once `keep_connections` was called.
static KEPT: OnceLock<Mutex<HashMap<String, Channel>>> = OnceLock::new();

/// From now on `connect` keeps one channel per address and hands it out again, so a process
/// that calls the same servers several times pays the TCP and TLS handshakes (a round trip or
/// two across a long link) once per server. A channel reconnects by itself after its
/// connection ends. For short-lived clients such as walbc, whose certificates do not change
/// while they run; daemons connect per transfer.
pub fn keep_connections() {
    let _ = KEPT.set(Mutex::new(HashMap::new()));
}

/// A channel to `addr` (host:port) with the large HTTP/2 windows data flows need.
pub async fn connect(addr: &str) -> Result<Channel, WireError> {
    if let Some(ch) = kept().and_then(|k| k.get(addr).cloned()) {
        return Ok(ch);
    }
    let ch = endpoint(addr)?
        .connect()
        .await
        .map_err(|e| WireError::Connect(addr.to_string(), source_chain(&e)))?;
    if let Some(mut k) = kept() {
        k.insert(addr.to_string(), ch.clone());
    }
    Ok(ch)
}

fn kept() -> Option<MutexGuard<'static, HashMap<String, Channel>>> {
    KEPT.get()
        .map(|k| k.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The endpoint for `addr`; `connect_lazy` on it gives a channel that connects on first use.
pub fn endpoint(addr: &str) -> Result<Endpoint, WireError> {
    let tls = tls();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut e = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| WireError::Address(addr.to_string(), e.to_string()))?;
    if let Some(t) = tls {
        e = e
            .tls_config(t.client.clone())
            .map_err(|e| WireError::Tls(source_chain(&e)))?;
    }
    Ok(e.connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME))
}

/// How a server bounds what one peer can take (docs/security.md, "Limits").
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// HTTP/2 streams one connection may have open at once.
    pub max_streams: u32,
    /// A connection with no answer to a keepalive ping for this long is closed.
    pub keepalive_timeout: Duration,
}

/// A server builder with the same windows and the limits. TLS is not set here: the daemon
/// accepts TLS connections itself with `server_tls()`, so a reload reaches new connections.
pub fn server(limits: ServerLimits) -> Server {
    Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(limits.max_streams)
        .http2_max_pending_accept_reset_streams(Some(limits.max_streams as usize))
        .http2_max_header_list_size(64u32 << 10)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
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
