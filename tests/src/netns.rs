//! Network namespaces as hosts: each [`Host`] is a network namespace joined to the root
//! namespace by a veth pair on a /30 of its own (10.96.0.0/12: `.1` the root side, `.2` the
//! host side, which routes everything through `.1`). The root namespace reaches every host,
//! and every host reaches every root-side address, where the test's relays listen.
//!
//! A host's number is claimed by creating its namespace (`ip netns add walb-N` fails when
//! another test, in this process or another, holds N), so concurrent tests never share
//! names or addresses. Dropping a `Host` deletes the namespace, which removes its veth pair,
//! also when the test panicked.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{run, run_ok};

/// Host numbers are /30s of 10.96.0.0/12.
const HOSTS: u32 = 1 << 18;

/// Where this process starts looking for free host numbers (then the next ones).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace joined to the root namespace; see the module documentation.
pub struct Host {
    /// The namespace's name (`walb-N`), under /run/netns.
    pub name: String,
    /// The root side of the veth pair: the host reaches the root namespace (and the relays
    /// listening there) at this address.
    pub root_ip: String,
    /// The host's own address: its daemons listen here.
    pub ip: String,
}

impl Host {
    /// A new host; panics (with the `ip` error) when it cannot be made.
    pub fn create() -> Host {
        let start = NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id() * 16;
        let n = (0..64)
            .map(|i| (start + i) % HOSTS)
            .find(|n| {
                run(Command::new("ip").args(["netns", "add", &format!("walb-{n}")]))
                    .status
                    .success()
            })
            .expect("no free network namespace name walb-N (ip netns add failed 64 times)");
        let base = (10 << 24) | (96 << 16) | (n << 2);
        let ip = |i: u32| std::net::Ipv4Addr::from(base + i).to_string();
        let host = Host {
            name: format!("walb-{n}"),
            root_ip: ip(1),
            ip: ip(2),
        };
        let veth = format!("wb{n}");
        let ns = host.name.as_str();
        for args in [
            vec![
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
            vec!["addr", "add", &format!("{}/30", host.root_ip), "dev", &veth],
            vec!["link", "set", &veth, "up"],
            vec![
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/30", host.ip),
                "dev",
                "eth0",
            ],
            vec!["-n", ns, "link", "set", "eth0", "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
            vec!["-n", ns, "route", "add", "default", "via", &host.root_ip],
        ] {
            run_ok(Command::new("ip").args(args));
        }
        host
    }

    /// `program` to run in this host's network namespace (and nothing else of it: the mount
    /// namespace stays the test's, so wdevd's socket, FUSE mount and loop devices are seen).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg(program);
        c
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Its end of the veth pair goes with the namespace, and the root end with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// True when this process can make hosts (`ip netns add`, veth pairs, nsenter); when it
/// cannot, says so loudly and, unless `WALB_ALLOW_NO_ROOT=1` asks to skip knowingly, fails.
pub fn can_make_hosts(test: &str) -> bool {
    let probe = std::panic::catch_unwind(Host::create);
    let nsenter = Command::new("nsenter")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if probe.is_ok() && nsenter {
        return true;
    }
    let why = format!(
        "{test}: NEEDS NETWORK NAMESPACES (ip netns, veth, nsenter; root) — NOT RUN \
         (namespace: {}, nsenter: {nsenter})",
        if probe.is_ok() { "ok" } else { "failed" }
    );
    eprintln!("\n!!!!!!!! {why} !!!!!!!!\n");
    assert!(
        std::env::var_os("WALB_ALLOW_NO_ROOT").is_some(),
        "{why}; set WALB_ALLOW_NO_ROOT=1 to skip knowingly"
    );
    false
}
