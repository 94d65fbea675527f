//! A TCP relay for fault-injection tests: it forwards, delays, cuts and drops a link on demand.
//!
//! A test starts a [`Relay`] in front of a daemon's address and gives the relay's address to
//! the client instead, so that every byte between the two passes through it. The test can
//! then cut the link (open connections are closed, new ones are refused) and restore it,
//! throttle it, delay it, and see how much traffic went through. It is a real forwarder on
//! real sockets (127.0.0.1, or any local address: `Relay::listen`): the daemons cannot tell
//! it from the network.
//!
//! The relay is a link of one rate and one delay each way, shared by all its connections: each
//! direction has one token bucket (`set_rate`), and what passes it is held in a delay line
//! (`set_delay`) — each chunk stamped with the time it left the bucket and written out at
//! that time plus the delay, with as many chunks in flight as the delay holds — so a long fat
//! link carries its full rate, as a real one does, rather than a chunk per delay.
//!
//! The relay runs on its own thread with its own single-threaded tokio runtime, so it works
//! the same from plain synchronous tests and from async ones; dropping it joins that thread.

use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Largest piece read and written at once, whatever the rate.
const MAX_CHUNK: usize = 64 * 1024;

/// Chunks a direction holds in its delay line at most (up to 64 MiB): room for far more than
/// a rate-limited link's delay holds, so only an unlimited rate meets the bound.
const IN_FLIGHT: usize = 1024;

/// How long `cut` waits for the connection tasks to close their sockets. They do so at once;
/// the bound only keeps a test from hanging if something is badly wrong.
const CUT_WAIT: Duration = Duration::from_secs(5);

/// What the test asked for, seen by the accept loop and every connection.
#[derive(Clone, Copy, Default)]
struct Control {
    cut: bool,
    /// Bumped by every `cut`; a connection lives only as long as the epoch it started in,
    /// so a cut followed at once by a restore still closes it.
    epoch: u64,
    stop: bool,
}

struct Shared {
    bytes: AtomicU64,
    /// When each direction's link (client → target, target → client) is free again at the
    /// current rate: one token bucket per direction for all connections.
    free_at: [Mutex<Instant>; 2],
    open: Mutex<usize>,
    all_closed: Condvar,
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, usize> {
        // Nothing panics while holding the lock, but a poisoned count is still right.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a forwarded connection as open until its task ends (or is dropped).
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        *self.0.open() -= 1;
        self.0.all_closed.notify_all();
    }
}

/// A TCP forwarder from `addr()` to a target address; see the module documentation.
pub struct Relay {
    addr: String,
    control: watch::Sender<Control>,
    link: watch::Sender<Link>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The link's shape: rate (bytes/s each way; None unlimited) and one-way delay.
#[derive(Clone, Copy, Default)]
struct Link {
    rate: Option<u64>,
    delay: Duration,
}

impl Relay {
    /// Listens on 127.0.0.1 (a free port) and forwards every accepted connection to
    /// `target` ("host:port"), connecting to it once per client. Returns at once; clients
    /// that connect before the relay thread runs wait in the listen backlog.
    pub fn start(target: &str) -> Relay {
        Relay::listen("127.0.0.1", target)
    }

    /// `start`, listening on a free port of local address `ip` instead of 127.0.0.1.
    pub fn listen(ip: &str, target: &str) -> Relay {
        let listener = StdTcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("relay: bind {ip}, a free port: {e}"));
        listener
            .set_nonblocking(true)
            .expect("relay: non-blocking listener");
        let addr = listener
            .local_addr()
            .expect("relay: local address")
            .to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("relay: tokio runtime");
        let (control, control_rx) = watch::channel(Control::default());
        let (link, link_rx) = watch::channel(Link::default());
        let shared = Arc::new(Shared {
            bytes: AtomicU64::new(0),
            free_at: [Mutex::new(Instant::now()), Mutex::new(Instant::now())],
            open: Mutex::new(0),
            all_closed: Condvar::new(),
        });
        let target = target.to_owned();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("relay {addr}"))
            .spawn(move || {
                rt.block_on(accept_loop(
                    listener,
                    target,
                    control_rx,
                    link_rx,
                    thread_shared,
                ));
                // Dropping the runtime drops every connection task, which closes its sockets.
                drop(rt);
            })
            .expect("relay: spawn thread");
        Relay {
            addr,
            control,
            link,
            shared,
            thread: Some(thread),
        }
    }

    /// "IP:PORT": the address to give the client in place of the target.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Closes every open forwarded connection (both sockets) and refuses new ones (accepted
    /// and closed at once) until `restore`. When this returns, the sockets are closed.
    pub fn cut(&self) {
        self.control.send_modify(|c| {
            c.cut = true;
            c.epoch += 1;
        });
        let open = self.shared.open();
        let _ = self
            .shared
            .all_closed
            .wait_timeout_while(open, CUT_WAIT, |n| *n > 0);
    }

    /// Forwards new connections again after `cut`. Connections closed by the cut stay closed.
    pub fn restore(&self) {
        self.control.send_modify(|c| c.cut = false);
    }

    /// True between `cut` and `restore`.
    pub fn is_cut(&self) -> bool {
        self.control.borrow().cut
    }

    /// Limits each direction of the link to `bytes_per_sec`, all connections (open ones
    /// included) together; `None` lifts the limit. `Some(0)` stalls all traffic (sockets stay
    /// open) until the rate is changed again.
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        self.link.send_modify(|l| l.rate = bytes_per_sec);
    }

    /// Delays each direction by `one_way` (a round trip by twice that): from the next byte
    /// read on, open connections included. Zero (the default) forwards at once.
    pub fn set_delay(&self, one_way: Duration) {
        self.link.send_modify(|l| l.delay = one_way);
    }

    /// Bytes written to the other side so far, both directions and all connections together.
    /// A byte counts once the relay's write to the receiving socket has returned.
    pub fn bytes_forwarded(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Forwarded connections open now (connecting to the target counts as open).
    pub fn open_connections(&self) -> usize {
        *self.shared.open()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.control.send_modify(|c| c.stop = true);
        if let Some(thread) = self.thread.take() {
            // The thread only ends by returning; a panic there is not worth a double panic.
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: StdTcpListener,
    target: String,
    mut control: watch::Receiver<Control>,
    link: watch::Receiver<Link>,
    shared: Arc<Shared>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            _ = control.wait_for(|c| c.stop) => return,
            accepted = listener.accept() => accepted,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                // E.g. out of file descriptors: wait a little rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Check and count under the lock `cut` waits on, so that a connection is either
        // refused here or counted before `cut` starts waiting for the count to reach zero.
        let mut open = shared.open();
        let now = *control.borrow();
        if now.cut {
            drop(client);
            continue;
        }
        *open += 1;
        drop(open);
        let guard = OpenGuard(Arc::clone(&shared));
        tokio::spawn(forward(
            client,
            target.clone(),
            now.epoch,
            control.clone(),
            link.clone(),
            guard,
        ));
    }
}

/// Forwards one client until both directions are done, one fails, or a cut (or the relay's
/// end) comes; then drops both sockets, which closes them.
async fn forward(
    client: TcpStream,
    target: String,
    epoch: u64,
    mut control: watch::Receiver<Control>,
    link: watch::Receiver<Link>,
    guard: OpenGuard,
) {
    let shared = Arc::clone(&guard.0);
    let relay = async move {
        let server = TcpStream::connect(&target).await?;
        // The relay must not add Nagle delays the daemons did not ask for.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_rd, client_wr) = client.into_split();
        let (server_rd, server_wr) = server.into_split();
        let (up_tx, up_rx) = mpsc::channel(IN_FLIGHT);
        let (down_tx, down_rx) = mpsc::channel(IN_FLIGHT);
        tokio::try_join!(
            take_in(client_rd, up_tx, link.clone(), &shared.free_at[0]),
            give_out(up_rx, server_wr, &shared.bytes),
            take_in(server_rd, down_tx, link, &shared.free_at[1]),
            give_out(down_rx, client_wr, &shared.bytes),
        )
        .map(drop)
    };
    tokio::select! {
        _ = relay => {}
        _ = control.wait_for(|c| c.epoch != epoch || c.stop) => {}
    }
    // The sockets went with `relay`; only now does the connection stop counting as open.
    drop(guard);
}

/// A piece of one direction in the delay line, and when to write it out.
type InFlight = (Instant, Vec<u8>);

/// Reads one direction into its delay line: each chunk once the direction's bucket lets it
/// pass, stamped with that time plus the delay. At end of input it closes the line (the
/// writer then passes the half-close on), leaving the other direction running, as TCP would.
async fn take_in(
    mut from: OwnedReadHalf,
    line: mpsc::Sender<InFlight>,
    mut link: watch::Receiver<Link>,
    free_at: &Mutex<Instant>,
) -> io::Result<()> {
    loop {
        let mut buf = vec![0; chunk_len(link.borrow().rate)];
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        pace(n, free_at, &mut link).await;
        let due = Instant::now() + link.borrow().delay;
        if line.send((due, buf)).await.is_err() {
            // The writer failed; its error ends the connection.
            return Ok(());
        }
    }
}

/// Writes one direction out of its delay line, each chunk at its time; passes the half-close
/// on once the line is closed and empty.
async fn give_out(
    mut line: mpsc::Receiver<InFlight>,
    mut to: OwnedWriteHalf,
    bytes: &AtomicU64,
) -> io::Result<()> {
    while let Some((due, buf)) = line.recv().await {
        tokio::time::sleep_until(due).await;
        to.write_all(&buf).await?;
        bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    }
    to.shutdown().await
}

/// Chunks of at most a tenth of a second's worth, so slow rates do not come in big bursts.
fn chunk_len(rate: Option<u64>) -> usize {
    match rate {
        None => MAX_CHUNK,
        Some(bps) => (bps / 10).clamp(1, MAX_CHUNK as u64) as usize,
    }
}

/// Waits until the direction's link, at the current rate, has carried `n` more bytes.
/// `free_at` is when it finishes carrying what was booked before (by any connection); an
/// idle link earns back at most one chunk of credit (a token bucket one chunk deep), so time
/// spent reading and writing is not lost but a pause is not followed by an unlimited burst.
/// A rate change mid-wait gives the booking back and books the chunk again at the new rate.
async fn pace(n: usize, free_at: &Mutex<Instant>, link: &mut watch::Receiver<Link>) {
    loop {
        let Some(bps) = link.borrow_and_update().rate else {
            return;
        };
        let booked = (bps > 0).then(|| {
            let credit = Duration::from_secs_f64(chunk_len(Some(bps)) as f64 / bps as f64);
            let now = Instant::now();
            let mut free = free_at.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*free).max(now.checked_sub(credit).unwrap_or(now));
            let end = start + Duration::from_secs_f64(n as f64 / bps as f64);
            *free = end;
            (start, end)
        });
        let wait = async {
            match booked {
                Some((_, end)) => tokio::time::sleep_until(end).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wait => return,
            changed = link.changed() => {
                if changed.is_err() {
                    // The relay is going away and will drop this task.
                    std::future::pending::<()>().await;
                }
                let mut free = free_at.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((start, _)) = booked.filter(|&(_, end)| *free == end) {
                    *free = start;
                }
            }
        }
    }
}
