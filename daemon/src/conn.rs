//! Accepting connections: at most `--max-connections` at once (the others are closed as soon
//! as they are accepted), TLS handshakes run beside the accept loop with a deadline and with
//! the TLS configuration of the moment (`walb_proto::wire::server_tls`), so a certificate
//! reload reaches every new connection while open ones keep theirs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted TCP connection holding one of the `--max-connections` slots until closed.
pub struct Conn {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.tcp.local_addr().ok(),
            remote_addr: self.tcp.peer_addr().ok(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The connections `listener` accepts, at most `max` open at once, each passed through
/// `handshake` (None: dropped) in a task of its own.
pub fn incoming<IO, F, Fut>(
    listener: TcpListener,
    max: usize,
    handshake: F,
) -> ReceiverStream<io::Result<IO>>
where
    IO: Send + 'static,
    F: Fn(Conn) -> Fut + Send + 'static,
    Fut: Future<Output = Option<IO>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(max.max(1)));
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors (EMFILE) and the like: wait for some to close.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%addr, "connection closed: {max} open (--max-connections)");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let conn = Conn { tcp, _slot: slot };
            let (tx, hs) = (tx.clone(), handshake(conn));
            tokio::spawn(async move {
                if let Some(io) = hs.await {
                    let _ = tx.send(Ok(io)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The TLS side of `conn` under the server configuration of the moment, or None (logged) when
/// the handshake fails or takes longer than `timeout`.
pub async fn tls_handshake(conn: Conn, timeout: Duration) -> Option<TlsStream<Conn>> {
    let addr = conn.tcp.peer_addr().ok();
    let config = walb_proto::wire::server_tls()?;
    match tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(conn)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::info!(?addr, "TLS handshake refused: {e}");
            None
        }
        Err(_) => {
            tracing::info!(?addr, "TLS handshake took over {timeout:?}: closed");
            None
        }
    }
}
