//! The fault-injection relay (`walb_tests::relay::Relay`) on real sockets, in front of a small
//! echo server: it forwards data unchanged both ways, cuts and restores the link, paces
//! traffic, and counts it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use walb_tests::relay::Relay;

/// Echoes every connection back to its sender, one thread per connection; passes a
/// half-close on once all is echoed.
struct Echo {
    addr: String,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, st) = (Arc::clone(&accepted), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                acc.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) => {
                                let _ = conn.shutdown(Shutdown::Write);
                                return;
                            }
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        Echo {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Sends `data` over `s` from a second thread while reading the echo here, so that neither
/// side blocks on full buffers; returns what came back (exactly `data.len()` bytes).
fn echo_over(s: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = s.try_clone().unwrap();
    let mut reader = s.try_clone().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| writer.write_all(data).unwrap());
        let mut back = vec![0; data.len()];
        reader.read_exact(&mut back).unwrap();
        back
    })
}

/// A whole exchange on a new connection: send, half-close, read the echo to its end.
fn round_trip(addr: &str, data: &[u8]) -> Vec<u8> {
    let s = connect(addr);
    let mut writer = s.try_clone().unwrap();
    let mut reader = s;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            writer.write_all(data).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::with_capacity(data.len());
        reader.read_to_end(&mut back).unwrap();
        back
    })
}

/// The peer closed `s` (end of stream or reset) within a second, without sending anything.
fn assert_closed_soon(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("read {n} bytes from a connection that should be closed"),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "connection still open after {:?}",
            t.elapsed()
        ),
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

/// The relay's count is updated just after its write returns, so the client may see the
/// bytes a moment before the count does.
fn wait_for_count(relay: &Relay, want: u64) {
    let t = Instant::now();
    while relay.bytes_forwarded() != want && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(relay.bytes_forwarded(), want);
}

#[test]
fn data_passes_unchanged_both_ways() {
    let echo = Echo::start();
    let relay = Relay::start(&echo.addr);
    let a = random(8 << 20, 1);
    let b = random(8 << 20, 2);
    // Two connections at once, each a separate forward.
    let (back_a, back_b) = std::thread::scope(|scope| {
        let ta = scope.spawn(|| round_trip(&relay.addr(), &a));
        let tb = scope.spawn(|| round_trip(&relay.addr(), &b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_eq!(back_a.len(), a.len());
    assert_eq!(blake3::hash(&back_a), blake3::hash(&a));
    assert_eq!(blake3::hash(&back_b), blake3::hash(&b));
    assert_eq!(echo.accepted(), 2);
    wait_for_count(&relay, 4 * (8 << 20));
}

#[test]
fn cut_closes_open_connections_and_refuses_new_ones_until_restore() {
    let echo = Echo::start();
    let relay = Relay::start(&echo.addr);
    let mut open = connect(&relay.addr());
    assert_eq!(echo_over(&open, b"before the cut"), b"before the cut");
    assert_eq!(relay.open_connections(), 1);
    assert!(!relay.is_cut());

    relay.cut();
    assert!(relay.is_cut());
    assert_eq!(relay.open_connections(), 0);
    assert_closed_soon(&mut open);

    // A new client gets in (the listener is still there) but is closed at once, and the
    // target never sees it.
    let mut refused = connect(&relay.addr());
    assert_closed_soon(&mut refused);
    assert_eq!(echo.accepted(), 1);

    relay.restore();
    assert!(!relay.is_cut());
    let again = connect(&relay.addr());
    assert_eq!(echo_over(&again, b"after restore"), b"after restore");
    assert_eq!(echo.accepted(), 2);

    // A cut straight after a restore still closes what was open.
    relay.cut();
    relay.restore();
    let mut again = again;
    assert_closed_soon(&mut again);
    assert_eq!(
        round_trip(&relay.addr(), b"third time"),
        b"third time".to_vec()
    );
}

#[test]
fn rate_limit_paces_open_connections() {
    let echo = Echo::start();
    let relay = Relay::start(&echo.addr);
    let s = connect(&relay.addr());
    assert_eq!(echo_over(&s, b"unlimited"), b"unlimited");

    // Set on an open connection: 2 MiB each way at 1 MiB/s takes about 2 s.
    relay.set_rate(Some(1 << 20));
    let data = random(2 << 20, 3);
    let t = Instant::now();
    let back = echo_over(&s, &data);
    let took = t.elapsed();
    assert_eq!(blake3::hash(&back), blake3::hash(&data));
    assert!(
        took >= Duration::from_millis(1500),
        "2 MiB at 1 MiB/s took {took:?}"
    );

    relay.set_rate(None);
    assert_eq!(echo_over(&s, &data).len(), data.len());
}

#[test]
fn lifting_the_rate_frees_a_transfer_in_progress() {
    let echo = Echo::start();
    let relay = Relay::start(&echo.addr);
    // At 64 KiB/s this would take 32 s.
    relay.set_rate(Some(64 << 10));
    let data = random(2 << 20, 4);
    let t = Instant::now();
    let back = std::thread::scope(|scope| {
        let transfer = scope.spawn(|| round_trip(&relay.addr(), &data));
        std::thread::sleep(Duration::from_millis(300));
        assert!(relay.bytes_forwarded() < 1 << 20, "not throttled");
        relay.set_rate(None);
        transfer.join().unwrap()
    });
    assert_eq!(blake3::hash(&back), blake3::hash(&data));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn zero_rate_stalls_until_changed() {
    let echo = Echo::start();
    let relay = Relay::start(&echo.addr);
    let s = connect(&relay.addr());
    assert_eq!(echo_over(&s, b"x"), b"x");
    relay.set_rate(Some(0));
    let mut w = s.try_clone().unwrap();
    w.write_all(b"stalled").unwrap();
    let mut r = s.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 7];
    let err = r.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    relay.set_rate(None);
    r.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    r.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"stalled");
}

#[test]
fn bytes_forwarded_counts_both_directions() {
    let echo = Echo::start();
    let relay = Relay::start(&echo.addr);
    assert_eq!(relay.bytes_forwarded(), 0);
    let data = random(100_000, 5);
    assert_eq!(round_trip(&relay.addr(), &data), data);
    wait_for_count(&relay, 200_000);
    assert_eq!(round_trip(&relay.addr(), b"z"), b"z".to_vec());
    wait_for_count(&relay, 200_002);

    // Refused connections carry nothing.
    relay.cut();
    let mut refused = connect(&relay.addr());
    let _ = refused.write_all(b"lost");
    assert_closed_soon(&mut refused);
    assert_eq!(relay.bytes_forwarded(), 200_002);
}

#[test]
fn drop_closes_connections_and_the_listener() {
    let echo = Echo::start();
    let relay = Relay::start(&echo.addr);
    let addr = relay.addr();
    let mut s = connect(&addr);
    assert_eq!(echo_over(&s, b"hello"), b"hello");
    drop(relay);
    assert_closed_soon(&mut s);
    let err = TcpStream::connect(&addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn unreachable_target_closes_the_client_only() {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let relay = Relay::start(&dead_addr);
    for _ in 0..3 {
        let mut s = connect(&relay.addr());
        assert_closed_soon(&mut s);
    }
    // The relay itself carries on. (The count drops just after the socket closes.)
    let t = Instant::now();
    while relay.open_connections() > 0 && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(relay.open_connections(), 0);
    assert!(TcpStream::connect(relay.addr()).is_ok());
}

#[test]
fn delay_and_rate_shape_a_long_fat_link() {
    let echo = Echo::start();
    let relay = Relay::start(&echo.addr);
    let (delay, rate) = (Duration::from_millis(25), 25_000_000u64);
    relay.set_delay(delay);
    relay.set_rate(Some(rate));
    let s = connect(&relay.addr());
    // A small message crosses the relay twice (there and back): a round trip of 2 × delay.
    let mut rtts: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(echo_over(&s, b"ping"), b"ping");
            t.elapsed()
        })
        .collect();
    rtts.sort();
    let rtt = rtts[2];
    assert!(
        rtt >= 2 * delay && rtt.as_secs_f64() <= 2.0 * delay.as_secs_f64() * 1.15,
        "round trip {rtt:?} for a one-way delay of {delay:?}"
    );
    // 48 MiB each way at 25 MB/s: about 2 s, with many chunks in flight at once (a chunk per
    // delay would be 64 KiB per 25 ms, a tenth of the rate).
    let data = random(48 << 20, 6);
    let t = Instant::now();
    let back = echo_over(&s, &data);
    let took = t.elapsed() - 2 * delay;
    assert_eq!(blake3::hash(&back), blake3::hash(&data));
    let got = data.len() as f64 / took.as_secs_f64();
    assert!(
        (got / rate as f64 - 1.0).abs() <= 0.15,
        "{:.1} MB/s through a {:.1} MB/s link",
        got / 1e6,
        rate as f64 / 1e6
    );
}
