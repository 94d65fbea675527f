//! A real S3 server process for the repository tests (moto's server, which scripts/setup.sh
//! installs): one per test binary on a free 127.0.0.1 port, killed when the binary exits;
//! each test makes a bucket of its own. The AWS variables the daemons and walbc read
//! (endpoint, plain HTTP, credentials, region) are set in this process, which every child
//! inherits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct S3 {
    pub addr: String,
}

static SERVER: OnceLock<S3> = OnceLock::new();

/// The binary's server, started on first use.
pub fn server() -> &'static S3 {
    SERVER.get_or_init(start)
}

fn start() -> S3 {
    let addr = crate::cluster::free_addr();
    let (host, port) = addr.split_once(':').expect("host:port");
    let (tx, rx) = std::sync::mpsc::channel();
    let (h, p) = (host.to_string(), port.to_string());
    // The server is spawned from a thread that lives as long as the test binary: its parent
    // death signal then ends it with the binary, never earlier.
    std::thread::spawn(move || {
        let spawn = |prog: &str, pre: &[&str]| {
            let mut cmd = Command::new(prog);
            cmd.args(pre)
                .args(["-H", &h, "-p", &p])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            cmd.spawn()
        };
        // The script pip installs, else the module through python3.
        let child = spawn("moto_server", &[]).or_else(|_| spawn("python3", &["-m", "moto.server"]));
        let ok = child.is_ok();
        tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()))
            .expect("send");
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    if let Err(e) = rx.recv().expect("spawn result") {
        panic!("cannot start moto_server (scripts/setup.sh installs it): {e}");
    }
    let t = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "moto_server did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (k, v) in [
        ("AWS_ENDPOINT_URL", format!("http://{addr}")),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "walb-test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "walb-test-secret".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ] {
        std::env::set_var(k, v);
    }
    S3 { addr }
}

impl S3 {
    /// Creates bucket `name` (3–63 of a-z 0-9 -) and returns `s3://name/walb`.
    pub fn bucket(&self, name: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).expect("connect to the S3 server");
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "create bucket {name}: {reply}"
        );
        format!("s3://{name}/walb")
    }
}
