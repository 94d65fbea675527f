//! TLS with client certificates between every process (made by walbc gen-certs: each daemon
//! its own, walbc controller.crt): the pipeline works end to end, and a client without a
//! certificate, or with one from another CA, reaches nothing (needs root and /dev/fuse: the
//! pipeline runs on a wdev loop device). Without root: no plain TCP off loopback unless
//! --insecure, gen-certs' files, the audit log, roles on every command and data flow of every
//! daemon, expired certificates, protected archives (docs/security.md). With root: certificate
//! rotation during a transfer, and a flooding peer cut off while a volume ships.

use std::path::Path;

use tonic::transport::Channel;
use tonic::Code;
use walb_controller::walbc::certs::{write_pair, Ca, Validity};
use walb_daemon::access::FLOWS;
use walb_proto::archive_client::ArchiveClient;
use walb_proto::proxy_client::ProxyClient;
use walb_proto::storage_client::StorageClient;
use walb_proto::{frame, Frame, Open};
use walb_tests::certs::Certs;
use walb_tests::cluster::{file_hash, Cluster, Spec};
use walb_tests::daemon::{free_addr, Daemon};
use walb_tests::{bin, run};

#[test]
fn tls_pipeline_requires_client_certificates() {
    let spec = Spec {
        tls: true,
        ..Spec::default()
    };
    let Some(c) = Cluster::backed_up("tls_pipeline_requires_client_certificates", spec, 2 << 20)
    else {
        return;
    };
    c.write_random("wdev0", 4 << 20, 1 << 20, 2);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    let img = c.walbc(&["restore", "vol0", &gid]);
    assert_eq!(file_hash(Path::new(&img)), c.device_hash("wdev0"));

    let other = walb_tests::certs::make(&c.dir, "intruder");
    for id in ["s0", "p0", "a0"] {
        let plain = run(std::process::Command::new(bin("walbc")).args([
            "call",
            c.addr(id),
            "get",
            "state",
            "vol0",
        ]));
        assert!(!plain.status.success(), "{id} answered a plain client");
        // It trusts the servers' CA but shows a certificate the servers' CA did not sign.
        let ca = &c.certs.as_ref().unwrap().ca;
        let mut cmd = std::process::Command::new(bin("walbc"));
        cmd.arg("--tls-cert")
            .arg(&other.cert)
            .arg("--tls-key")
            .arg(&other.key)
            .arg("--tls-ca")
            .arg(ca)
            .args(["call", c.addr(id), "clear-vol", "vol0"]);
        let foreign = run(&mut cmd);
        assert!(
            !foreign.status.success(),
            "{id} answered a client with a foreign certificate"
        );
    }
    assert_eq!(c.walbc(&["call", "a0", "get", "state", "vol0"]), "Archived");
}

/// `walb-archive` on `listen` with `extra` flags, its data in `dir/a0`, its log in
/// `dir/a0.log` (made anew); not started.
fn archive_cmd(dir: &Path, listen: &str, extra: &[String]) -> Daemon {
    daemon_cmd("archive", "a0", dir, listen, extra)
}

/// `walb-KIND --id ID` on `listen` with `extra` flags, its data in `dir/ID`, its log in
/// `dir/ID.log` (made anew); not started. A storage is pointed at no proxy, archive or wdevd
/// that runs.
fn daemon_cmd(kind: &'static str, id: &str, dir: &Path, listen: &str, extra: &[String]) -> Daemon {
    let log = dir.join(format!("{id}.log"));
    let _ = std::fs::remove_file(&log);
    let mut extra = extra.to_vec();
    if kind == "storage" {
        let no_wdevd = dir.join("no-wdevd.sock").display().to_string();
        for f in [
            "--proxy",
            "127.0.0.1:1",
            "--archive",
            "127.0.0.1:1",
            "--wdevd",
            &no_wdevd,
        ] {
            extra.push(f.to_string());
        }
    }
    Daemon::new(kind, id, listen, &dir.join(id), &log, extra)
}

/// `walbc [tls] call addr args…`.
fn call(tls: &[String], addr: &str, args: &[&str]) -> std::process::Output {
    run(std::process::Command::new(bin("walbc"))
        .args(tls)
        .arg("call")
        .arg(addr)
        .args(args))
}

/// Starts `d` (killed when dropped), waits until it answers `walbc [tls] call`, and returns
/// its reply to `version`.
fn start(mut d: Daemon, tls: &[String]) -> (Daemon, String) {
    d.walbc_flags = tls.to_vec();
    d.spawn();
    let out = call(tls, &d.addr, &["version"]);
    assert!(out.status.success(), "{}: version: {out:?}", d.id);
    let reply = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (d, reply)
}

#[test]
fn tls_plaintext_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = walb_tests::db::free_port();
    let any = format!("0.0.0.0:{port}");
    let local = format!("127.0.0.1:{port}");

    let out = run(&mut archive_cmd(dir.path(), &any, &[]).command());
    assert!(!out.status.success(), "started plain TCP on {any}");
    let err = std::fs::read_to_string(dir.path().join("a0.log")).unwrap();
    for word in [any.as_str(), "--tls-cert", "--insecure"] {
        assert!(err.contains(word), "error does not name {word}: {err}");
    }

    // --insecure, as a flag or as a config key, lets it start and says so.
    let config = dir.path().join("archive.toml");
    std::fs::write(&config, "insecure = true\n").unwrap();
    for insecure in [
        vec!["--insecure".to_string()],
        vec!["--config".to_string(), config.display().to_string()],
    ] {
        let (lone, reply) = start(archive_cmd(dir.path(), &any, &insecure), &[]);
        assert!(reply.ends_with(" insecure"), "{insecure:?}: {reply}");
        drop(lone);
        let log = std::fs::read_to_string(dir.path().join("a0.log")).unwrap();
        let warn = log.lines().find(|l| l.contains("WARN"));
        assert!(
            warn.is_some_and(|l| l.contains("--insecure") && l.contains(&any)),
            "{insecure:?}: no WARN line in the log:\n{log}"
        );
    }

    let (_lone, reply) = start(archive_cmd(dir.path(), &local, &[]), &[]);
    assert!(
        reply.starts_with("archive ") && !reply.contains("insecure"),
        "{reply}"
    );
    // Without TLS the audit log names the caller by its address.
    assert!(call(&[], &local, &["init-vol", "v1"]).status.success());
    let lines = audit_lines(dir.path());
    assert_eq!(lines.len(), 1, "{lines:?}");
    let caller = lines[0]["caller"].as_str().unwrap();
    assert!(caller.starts_with("127.0.0.1:"), "{caller}");
}

/// The JSON lines of archive a0's audit log.
fn audit_lines(dir: &Path) -> Vec<serde_json::Value> {
    audit_of(dir, "a0")
}

/// The JSON lines of server `id`'s audit log (its data dir is `dir/id`).
fn audit_of(dir: &Path, id: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(id).join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A layout with s0, p0 and archive a0 on 127.0.0.1:`port`, in `dir`.
fn write_layout(dir: &Path, port: u16) -> std::path::PathBuf {
    let layout = dir.join("layout.toml");
    std::fs::write(
        &layout,
        format!(
            "[[storage]]\nid = \"s0\"\naddr = \"localhost:1\"\n\
             [[proxy]]\nid = \"p0\"\naddr = \"[::1]:2\"\n\
             [[archive]]\nid = \"a0\"\naddr = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    layout
}

/// `walbc --layout LAYOUT gen-certs CERTS [--force]`.
fn gen_certs(layout: &Path, certs: &Path, force: bool) -> std::process::Output {
    let mut cmd = std::process::Command::new(bin("walbc"));
    cmd.arg("--layout")
        .arg(layout)
        .arg("gen-certs")
        .arg(certs)
        .args(force.then_some("--force"));
    run(&mut cmd)
}

/// The walbc flags for `name`'s certificate in `certs`.
fn tls_flags(certs: &Path, name: &str) -> Vec<String> {
    walb_tests::certs::Certs::generated(certs, name).flags()
}

/// a0 serving TLS on 0.0.0.0:`port` with its certificate from `certs` (TLS needs no
/// --insecure), answering walbc with controller.crt.
fn tls_archive(dir: &Path, certs: &Path, port: u16) -> Daemon {
    let d = archive_cmd(dir, &format!("0.0.0.0:{port}"), &tls_flags(certs, "a0"));
    let (lone, reply) = start(d, &tls_flags(certs, "controller"));
    assert!(!reply.contains("insecure"), "{reply}");
    lone
}

#[test]
fn tls_gen_certs_serve_and_audit_names_the_caller() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let port = walb_tests::db::free_port();
    let layout = write_layout(dir.path(), port);
    let certs = dir.path().join("certs");
    assert!(gen_certs(&layout, &certs, false).status.success());
    for name in ["ca", "s0", "p0", "a0", "controller", "monitor"] {
        let crt = std::fs::metadata(certs.join(format!("{name}.crt"))).unwrap();
        assert!(crt.len() > 0, "{name}.crt is empty");
        let key = std::fs::metadata(certs.join(format!("{name}.key"))).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600, "{name}.key");
    }
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    let again = gen_certs(&layout, &certs, false);
    assert!(!again.status.success(), "gen-certs overwrote its CA");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(certs.join("ca.crt")).unwrap(), ca);
    assert!(gen_certs(&layout, &certs, true).status.success());
    assert_ne!(std::fs::read(certs.join("ca.crt")).unwrap(), ca);

    // a0 serves with its certificate; walbc reaches it with controller.crt and the audit
    // log names that role.
    let _a0 = tls_archive(dir.path(), &certs, port);
    let local = format!("127.0.0.1:{port}");
    let ctl = tls_flags(&certs, "controller");
    assert!(call(&ctl, &local, &["init-vol", "vol0"]).status.success());
    assert!(!call(&ctl, &local, &["init-vol", "vol0"]).status.success());
    assert!(call(&ctl, &local, &["get", "state", "vol0"])
        .status
        .success());
    assert!(call(&ctl, &local, &["clear-vol", "vol0"]).status.success());

    let lines = audit_lines(dir.path());
    assert_eq!(lines.len(), 3, "only state changes are recorded: {lines:?}");
    for (l, argv) in lines.iter().zip(["init-vol", "init-vol", "clear-vol"]) {
        assert_eq!(l["caller"], "controller/walbc", "{l}");
        assert_eq!(l["command"], argv, "{l}");
        assert_eq!(l["volume"], "vol0", "{l}");
        assert!(l["time"].as_f64().unwrap() > 1.7e9, "{l}");
    }
    assert_eq!(lines[0]["result"], "ok");
    assert_eq!(lines[1]["result"]["code"], "FailedPrecondition");
    assert!(lines[1]["result"]["message"]
        .as_str()
        .unwrap()
        .contains("init-vol needs Clear"));
    assert_eq!(lines[2]["result"], "ok");
}

#[test]
fn tls_roles_decide_what_a_caller_may_run() {
    let dir = tempfile::tempdir().unwrap();
    let port = walb_tests::db::free_port();
    let certs = dir.path().join("certs");
    assert!(gen_certs(&write_layout(dir.path(), port), &certs, false)
        .status
        .success());
    let _a0 = tls_archive(dir.path(), &certs, port);
    let local = format!("127.0.0.1:{port}");
    // (certificate: controller, monitor, storage s0, proxy p0, archive a0; command; allowed),
    // in order: each allowed one changes what follows.
    let cases: &[(&str, &[&str], bool)] = &[
        ("monitor", &["init-vol", "vol0"], false),
        ("s0", &["init-vol", "vol0"], false),
        ("monitor", &["get", "state", "vol0"], true),
        ("s0", &["version"], true),
        ("controller", &["init-vol", "vol0"], true),
        ("monitor", &["clear-vol", "vol0"], false),
        ("s0", &["clear-vol", "vol0"], false),
        ("p0", &["shutdown"], false),
        ("monitor", &["status"], true),
        ("a0", &["reset-vol", "vol0"], false),
        ("controller", &["clear-vol", "vol0"], true),
    ];
    for (who, cmd, allowed) in cases {
        let out = call(&tls_flags(&certs, who), &local, cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), *allowed, "{who}: {cmd:?}: {err}");
        if !allowed {
            assert!(err.contains("may not run"), "{who}: {cmd:?}: {err}");
        }
    }
    // The refusals changed nothing: vol0 was made and cleared by the controller only.
    let ctl = tls_flags(&certs, "controller");
    let state = call(&ctl, &local, &["get", "state", "vol0"]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "Clear");
    let lines = audit_lines(dir.path());
    let denied = lines
        .iter()
        .filter(|l| l["result"]["code"] == "PermissionDenied")
        .count();
    assert_eq!(denied, 6, "{lines:?}");
}

// ---- roles on every command and flow, protection, rotation, limits ----

/// The certificates callers show: (role, file name in the certs dir).
const CALLERS: [(&str, &str); 5] = [
    ("controller", "controller"),
    ("monitor", "monitor"),
    ("storage", "s0"),
    ("proxy", "p0"),
    ("archive", "a0"),
];

/// s0, p0 and a0 started alone with TLS on 127.0.0.1 (gen-certs' files in `dir/certs`), a0
/// with `archive_extra` flags too; killed when dropped.
struct Trio {
    dir: tempfile::TempDir,
    certs: std::path::PathBuf,
    addrs: std::collections::BTreeMap<&'static str, String>,
    _daemons: Vec<Daemon>,
}

const TRIO: [(&str, &str); 3] = [("storage", "s0"), ("proxy", "p0"), ("archive", "a0")];

fn trio(archive_extra: &[&str]) -> Trio {
    let dir = tempfile::tempdir().unwrap();
    let addrs: std::collections::BTreeMap<_, _> =
        TRIO.iter().map(|(_, id)| (*id, free_addr())).collect();
    let layout = dir.path().join("layout.toml");
    let text: String = TRIO
        .iter()
        .map(|(kind, id)| format!("[[{kind}]]\nid = \"{id}\"\naddr = \"{}\"\n", addrs[id]))
        .collect();
    std::fs::write(&layout, text).unwrap();
    let certs = dir.path().join("certs");
    assert!(gen_certs(&layout, &certs, false).status.success());
    let ctl = tls_flags(&certs, "controller");
    let daemons = TRIO
        .iter()
        .map(|(kind, id)| {
            let mut extra = tls_flags(&certs, id);
            if *kind == "archive" {
                extra.extend(archive_extra.iter().map(|s| s.to_string()));
            }
            start(daemon_cmd(kind, id, dir.path(), &addrs[id], &extra), &ctl).0
        })
        .collect();
    Trio {
        dir,
        certs,
        addrs,
        _daemons: daemons,
    }
}

impl Trio {
    /// The certificates in the certs dir named `name`.
    fn certs(&self, name: &str) -> Certs {
        Certs::generated(&self.certs, name)
    }

    /// A channel to server `id` showing certificate `name`.
    async fn channel(&self, id: &str, name: &str) -> Channel {
        walb_tests::certs::channel(&self.addrs[id], &self.certs(name)).await
    }

    /// A certificate `name` signed by the trio's CA (role, id), valid over `validity`.
    fn issue(&self, name: &str, role: (&str, &str), validity: Option<Validity>) -> Certs {
        let ca = Ca::load(&self.certs).unwrap();
        let hosts = ["127.0.0.1".to_string()];
        let pair = ca.issue_valid(&hosts, Some(role), validity).unwrap();
        write_pair(&self.certs, name, pair).unwrap();
        self.certs(name)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One control call by walb's words; `confirm` as walbc --confirm sends it.
async fn control(
    ch: &Channel,
    args: &[&str],
    confirm: Option<&str>,
) -> Result<String, tonic::Status> {
    let mut md = tonic::metadata::MetadataMap::new();
    if let Some(c) = confirm {
        md.insert(walb_proto::control::CONFIRM_KEY, c.parse().unwrap());
    }
    walb_controller::walbc::words::words_over(ch, args, md).await
}

/// Every command of each daemon (VOL: the volume), by walb's words.
const COMMANDS: &[(&str, &[&[&str]])] = &[
    (
        "s0",
        &[
            &["init-vol", "VOL", "wdev9"],
            &["clear-vol", "VOL"],
            &["reset-vol", "VOL"],
            &["start", "VOL", "target"],
            &["stop", "VOL"],
            &["snapshot", "VOL"],
            &["full-bkp", "VOL"],
            &["hash-bkp", "VOL"],
            &["resize", "VOL", "1"],
            &["set-full-scan-bps", "0"],
            &["cancel", "VOL"],
            &["kick"],
            &["status", "VOL"],
            &["get", "vol"],
            &["get", "state", "VOL"],
            &["get", "progress", "VOL"],
            &["version"],
        ],
    ),
    (
        "p0",
        &[
            &["start", "VOL"],
            &["stop", "VOL"],
            &["clear-vol", "VOL"],
            &["kick", "VOL"],
            &["archive-info", "add", "VOL", "a9", "h:1"],
            &["archive-info", "delete", "VOL", "a9"],
            &["archive-info", "list", "VOL"],
            &["archive-info", "get", "VOL", "a9"],
            &["get", "vol"],
            &["get", "state", "VOL"],
            &["get", "last-send-error", "VOL", "a9"],
            &["get", "proxy-diff", "VOL"],
            &["status", "VOL"],
        ],
    ),
    (
        "a0",
        &[
            &["init-vol", "VOL"],
            &["clear-vol", "VOL"],
            &["reset-vol", "VOL"],
            &["start", "VOL"],
            &["stop", "VOL"],
            &["get", "vol"],
            &["get", "capacity"],
            &["get", "progress", "VOL"],
            &["get", "state", "VOL"],
            &["get", "restorable", "VOL"],
            &["get", "base", "VOL"],
            &["get", "latest-snap", "VOL"],
            &["get", "uuid", "VOL"],
            &["get", "diff", "VOL"],
            &["get", "exists-base-image", "VOL"],
            &["get", "broken", "VOL"],
            &["get", "restored", "VOL"],
            &["get", "repo", "VOL"],
            &["replicate", "VOL", "h:1"],
            &["status", "VOL"],
            &["restore", "VOL", "1"],
            &["del-restored", "VOL", "1"],
            &["apply", "VOL", "1"],
            &["merge", "VOL", "1", "2"],
            &["gc-diff", "VOL"],
            &["cat", "VOL", "1", "/nonexistent/x"],
            &["bhash", "VOL", "1"],
            &["verify", "VOL"],
            &["resize", "VOL", "1"],
            &["device-hash", "VOL", "1", "512", "00"],
            &["bind-storage", "VOL", "s9"],
            &["disable-snapshot", "VOL", "1"],
            &["enable-snapshot", "VOL", "1"],
            &["retention", "VOL"],
        ],
    ),
];

/// The rule the daemon applies to `words` sent to a server of `host_type`.
fn rule_of(host_type: &str, words: &[&str]) -> (Vec<&'static str>, bool) {
    use walb_controller::walbc::words::{parse, Request};
    use walb_daemon::access::Access;
    let of = |r: walb_daemon::access::Rule| (r.roles.to_vec(), r.changes);
    match parse(host_type, words).unwrap() {
        Request::Control(c) => of(c.rule()),
        Request::Storage(c) => of(c.rule()),
        Request::Proxy(c) => of(c.rule()),
        Request::Archive(c) => of(c.rule()),
    }
}

/// An Open of volume `vol` from `host_type`.
fn open_of(vol: &str, host_type: &str) -> Open {
    Open {
        vol: vol.into(),
        host_type: host_type.into(),
        uuid: vec![7u8; 16].into(),
        pbs: 512,
        size_lb: 64,
        bulk_lb: 8,
        ..Default::default()
    }
}

/// Starts data flow `flow` (`Service.Method`) with `first` as its frames and waits for the
/// receiver's first answer: Ok (Accept or Reject) or the status that ended the flow. The flow
/// is dropped afterwards (cut: the receiver keeps nothing).
async fn try_flow(ch: &Channel, flow: &str, first: Vec<Frame>) -> Result<(), tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(first.len().max(1));
    for f in first {
        tx.send(f).await.unwrap();
    }
    let frames = tokio_stream::wrappers::ReceiverStream::new(rx);
    let answered = match flow {
        "Proxy.WlogTransfer" => ProxyClient::new(ch.clone())
            .wlog_transfer(frames)
            .await?
            .into_inner()
            .message()
            .await?
            .is_some(),
        "Archive.WdiffTransfer" => ArchiveClient::new(ch.clone())
            .wdiff_transfer(frames)
            .await?
            .into_inner()
            .message()
            .await?
            .is_some(),
        "Archive.FullSync" => ArchiveClient::new(ch.clone())
            .full_sync(frames)
            .await?
            .into_inner()
            .message()
            .await?
            .is_some(),
        "Archive.HashSync" => ArchiveClient::new(ch.clone())
            .hash_sync(frames)
            .await?
            .into_inner()
            .message()
            .await?
            .is_some(),
        "Storage.Failback" => StorageClient::new(ch.clone())
            .failback(frames)
            .await?
            .into_inner()
            .message()
            .await?
            .is_some(),
        other => panic!("no flow {other}"),
    };
    drop(tx);
    assert!(answered, "{flow}: closed without an answer");
    Ok(())
}

fn open_frame(open: Open) -> Vec<Frame> {
    vec![Frame {
        kind: Some(frame::Kind::Open(open)),
    }]
}

/// Asserts `r` is refused for the role (PERMISSION_DENIED) or not, as `allowed` says.
fn assert_role<T: std::fmt::Debug>(r: &Result<T, tonic::Status>, allowed: bool, what: &str) {
    let denied = matches!(r, Err(s) if s.code() == Code::PermissionDenied);
    assert_eq!(denied, !allowed, "{what}: {r:?}");
}

#[test]
fn tls_role_table_every_command_and_flow_of_every_daemon() {
    let t = trio(&[]);
    let started = std::time::Instant::now();
    let mut denied_changes = std::collections::BTreeMap::new();
    runtime().block_on(async {
        let a0 = t.channel("a0", "controller").await;
        // The volume refused commands name, and must leave as it is.
        control(&a0, &["init-vol", "vol0"], None).await.unwrap();
        for (host_type, server) in TRIO {
            let commands = COMMANDS.iter().find(|(s, _)| *s == server).unwrap().1;
            for (role, name) in CALLERS {
                let ch = t.channel(server, name).await;
                for words in commands {
                    let (roles, changes) = rule_of(host_type, words);
                    let allowed = roles.contains(&role);
                    // An allowed command is run on a volume name it refuses, so the table's
                    // walk changes nothing either way.
                    let vol = if allowed { "bad/vol" } else { "vol0" };
                    let args: Vec<&str> = words
                        .iter()
                        .map(|w| if *w == "VOL" { vol } else { w })
                        .collect();
                    let r = control(&ch, &args, None).await;
                    assert_role(&r, allowed, &format!("{server}: {role}: {args:?}"));
                    if !allowed {
                        let msg = r.unwrap_err().message().to_string();
                        assert!(msg.contains("may not run"), "{msg}");
                        *denied_changes.entry(server).or_insert(0) += usize::from(changes);
                    }
                }
            }
        }
        for flow in FLOWS {
            let server = match flow.flow.split_once('.').map(|(svc, _)| svc) {
                Some("Proxy") => "p0",
                Some("Storage") => "s0",
                _ => "a0",
            };
            for (role, name) in CALLERS {
                let ch = t.channel(server, name).await;
                let r = try_flow(&ch, flow.flow, open_frame(open_of("novol", role))).await;
                let allowed = flow.senders.contains(&role);
                assert_role(&r, allowed, &format!("{server}: {role}: {}", flow.flow));
                // A sender may not name another sender's host type than its certificate's.
                for other in flow.senders.iter().filter(|o| **o != role) {
                    let r = try_flow(&ch, flow.flow, open_frame(open_of("novol", other))).await;
                    assert_role(&r, false, &format!("{role} as {other}: {}", flow.flow));
                }
            }
        }
        // Nothing changed: a0 holds vol0 alone, as made; p0 and s0 hold nothing.
        let get = |id: &'static str, args: &'static [&'static str]| {
            let t = &t;
            async move {
                control(&t.channel(id, "controller").await, args, None)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(get("a0", &["get", "state", "vol0"]).await, "SyncReady");
        assert_eq!(get("a0", &["get", "vol"]).await, "vol0");
        assert_eq!(get("p0", &["get", "vol"]).await, "");
    });
    for (_, id) in TRIO {
        let lines = audit_of(t.dir.path(), id);
        let denied = lines
            .iter()
            .filter(|l| l["result"]["code"] == "PermissionDenied")
            .count();
        assert_eq!(denied, denied_changes[id], "{id}: {lines:?}");
    }
    eprintln!("role table walked in {:?}", started.elapsed());
}

#[test]
fn tls_storage_proxy_and_monitor_certificates_are_confined() {
    let t = trio(&[]);
    runtime().block_on(async {
        let ctl_a0 = t.channel("a0", "controller").await;
        control(&ctl_a0, &["init-vol", "vol0"], None).await.unwrap();
        // A storage certificate cannot clear, reset or restore on the archive.
        let s0_a0 = t.channel("a0", "s0").await;
        for args in [
            &["clear-vol", "vol0"][..],
            &["reset-vol", "vol0"],
            &["restore", "vol0", "0"],
            &["del-restored", "vol0", "0"],
        ] {
            assert_role(
                &control(&s0_a0, args, None).await,
                false,
                &format!("s0: {args:?}"),
            );
        }
        // Nor replicate as an archive.
        let r = try_flow(
            &s0_a0,
            "Archive.FullSync",
            open_frame(open_of("vol0", "archive")),
        )
        .await;
        assert_role(&r, false, "s0 full sync as archive");
        // The archive's volume takes backups from one storage: the first to send one.
        let backup = |ch: Channel| async move {
            try_flow(
                &ch,
                "Archive.FullSync",
                open_frame(open_of("vol0", "storage")),
            )
            .await
        };
        backup(s0_a0.clone()).await.unwrap();
        let s8 = t.issue("s8", ("storage", "s8"), None);
        let s8_a0 = walb_tests::certs::channel(&t.addrs["a0"], &s8).await;
        let r = backup(s8_a0.clone()).await;
        assert_role(&r, false, "s8 backs up s0's volume");
        assert!(r.unwrap_err().message().contains("storage s0"));
        // Replacing the storage: walbc names the new one.
        control(&ctl_a0, &["bind-storage", "vol0", "s8"], None)
            .await
            .unwrap();
        backup(s8_a0).await.unwrap();
        assert_role(&backup(s0_a0.clone()).await, false, "s0 after s8 took over");
        assert_role(
            &control(&s0_a0, &["bind-storage", "vol0", "s0"], None).await,
            false,
            "s0 binds itself",
        );
        // A proxy certificate cannot start a full backup, on the storage or the archive.
        let p0_s0 = t.channel("s0", "p0").await;
        assert_role(
            &control(&p0_s0, &["full-bkp", "vol0"], None).await,
            false,
            "p0 full-bkp",
        );
        let p0_a0 = t.channel("a0", "p0").await;
        for as_ in ["proxy", "storage"] {
            let r = try_flow(&p0_a0, "Archive.FullSync", open_frame(open_of("vol0", as_))).await;
            assert_role(&r, false, &format!("p0 full sync as {as_}"));
        }
        // A monitor reads status, and nothing else.
        for (_, id) in TRIO {
            let m = t.channel(id, "monitor").await;
            control(&m, &["status"], None).await.unwrap();
            control(&m, &["version"], None).await.unwrap();
            let refused: [&[&str]; 3] = match id {
                "s0" => [
                    &["init-vol", "vol1", "wdev1"],
                    &["stop", "vol0"],
                    &["snapshot", "vol0"],
                ],
                "p0" => [
                    &["start", "vol1"],
                    &["stop", "vol0"],
                    &["clear-vol", "vol0"],
                ],
                _ => [
                    &["init-vol", "vol1"],
                    &["stop", "vol0"],
                    &["cat", "vol0", "0", "/x"],
                ],
            };
            for args in refused {
                assert_role(
                    &control(&m, args, None).await,
                    false,
                    &format!("monitor: {args:?}"),
                );
            }
        }
        assert_eq!(
            control(&ctl_a0, &["get", "state", "vol0"], None)
                .await
                .unwrap(),
            "SyncReady"
        );

        // A proxy's volume takes wlogs from one storage: the first to ship after start.
        let p0 = t.channel("p0", "controller").await;
        let a0_addr = t.addrs["a0"].as_str();
        control(&p0, &["archive-info", "add", "vol0", "a0", a0_addr], None)
            .await
            .unwrap();
        control(&p0, &["start", "vol0"], None).await.unwrap();
        let s0_p0 = t.channel("p0", "s0").await;
        let ship = |ch: Channel| async move {
            try_flow(
                &ch,
                "Proxy.WlogTransfer",
                open_frame(open_of("vol0", "storage")),
            )
            .await
        };
        ship(s0_p0.clone()).await.unwrap();
        let s9 = t.issue("s9", ("storage", "s9"), None);
        let s9_p0 = walb_tests::certs::channel(&t.addrs["p0"], &s9).await;
        let r = ship(s9_p0.clone()).await;
        assert_role(&r, false, "s9 ships s0's volume");
        assert!(r.unwrap_err().message().contains("storage s0"));
        ship(s0_p0.clone()).await.unwrap();
        // walbc stops and starts the proxy's volume when the storage is replaced.
        control(&p0, &["stop", "vol0"], None).await.unwrap();
        control(&p0, &["start", "vol0"], None).await.unwrap();
        ship(s9_p0).await.unwrap();
        assert_role(&ship(s0_p0).await, false, "s0 after s9 took over");
    });
}

#[test]
fn tls_expired_foreign_and_missing_certificates_are_refused() {
    let t = trio(&[]);
    let expired = t.issue(
        "expired",
        ("controller", "old"),
        Some([(2020, 1, 1), (2021, 1, 1)]),
    );
    let foreign = walb_tests::certs::make(t.dir.path(), "intruder");
    let good = t.certs("controller").flags();
    let addr = t.addrs["a0"].as_str();
    for (what, flags) in [
        ("expired", expired.flags()),
        ("foreign", foreign.flags()),
        ("none", vec![]),
        ("good", good),
    ] {
        let out = call(&flags, addr, &["get", "state", "vol0"]);
        assert_eq!(out.status.success(), what == "good", "{what}: {out:?}");
    }
    let log = std::fs::read_to_string(t.dir.path().join("a0.log")).unwrap();
    assert!(log.contains("TLS handshake refused"), "{log}");
}

#[test]
fn tls_protected_archive_needs_the_volume_confirmed() {
    let t = trio(&["--protect"]);
    let addr = t.addrs["a0"].as_str();
    let ctl = t.certs("controller").flags();
    let with_confirm = |vol: &str| {
        let mut f = ctl.clone();
        f.extend(["--confirm".to_string(), vol.to_string()]);
        f
    };
    let state = || {
        let out = call(&ctl, addr, &["get", "state", "vol0"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(call(&ctl, addr, &["init-vol", "vol0"]).status.success());
    // Reads, dry runs and commands that delete nothing need no confirmation.
    for args in [
        &["retention", "vol0", "dry-run"][..],
        &["get", "restorable", "vol0"],
        &["status", "vol0"],
    ] {
        let out = call(&ctl, addr, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    for args in [
        &["clear-vol", "vol0"][..],
        &["reset-vol", "vol0"],
        &["del-restored", "vol0", "1"],
        &["apply", "vol0", "1"],
        &["merge", "vol0", "0", "1"],
        &["retention", "vol0"],
        &["disable-snapshot", "vol0", "1"],
    ] {
        for flags in [ctl.clone(), with_confirm("vol1")] {
            let out = call(&flags, addr, args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} ran unconfirmed");
            assert!(
                err.contains("FailedPrecondition") && err.contains("--confirm vol0"),
                "{args:?}: {err}"
            );
        }
    }
    assert_eq!(state(), "SyncReady");
    // The role comes first: a storage certificate may not, confirmed or not.
    let mut s0 = t.certs("s0").flags();
    s0.extend(["--confirm".to_string(), "vol0".to_string()]);
    let out = call(&s0, addr, &["clear-vol", "vol0"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not run"),
        "{out:?}"
    );
    assert_eq!(state(), "SyncReady");
    // Confirmed, it runs.
    let out = call(&with_confirm("vol0"), addr, &["clear-vol", "vol0"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(state(), "Clear");
    let lines = audit_lines(t.dir.path());
    assert_eq!(lines.last().unwrap()["result"], "ok", "{lines:?}");
}

/// VmRSS of process `pid`, in KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Issues server `id` of cluster `c` a new certificate from the cluster's CA (same role and
/// host); returns its serial.
fn new_server_cert(c: &Cluster, kind: &str, id: &str) -> String {
    let dir = c.certs.as_ref().unwrap().ca.parent().unwrap().to_path_buf();
    let ca = Ca::load(&dir).unwrap();
    let pair = ca
        .issue(&["127.0.0.1".to_string()], Some((kind, id)))
        .unwrap();
    write_pair(&dir, id, pair).unwrap();
    walb_tests::certs::serial(&walb_tests::certs::der_of(&dir.join(format!("{id}.crt"))))
}

#[test]
fn tls_rotate_certs_during_a_transfer() {
    let spec = Spec {
        tls: true,
        devices: vec![("wdev0", 48, 16)],
        ..Spec::default()
    };
    let Some(c) = Cluster::start("tls_rotate_certs_during_a_transfer", spec) else {
        return;
    };
    let ctl = c.certs.as_ref().unwrap();
    let a0 = c.addr("a0").to_string();
    let rt = runtime();
    let served =
        || walb_tests::certs::serial(&rt.block_on(walb_tests::certs::served_cert(&a0, ctl)));
    let before = served();
    c.walbc(&["init-storage", "s0", "vol0", "wdev0"]);
    c.write_random("wdev0", 0, 8 << 20, 1);
    // A full backup paced to take about 4 s: the rotation happens in the middle of it.
    c.walbc(&["set-full-scan-bps", "s0", &(12u64 << 20).to_string()]);
    let backup = c
        .walbc_cmd()
        .args(["full-backup", "s0", "vol0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Polled by hand: walbc's full-backup makes the archive's volume meanwhile, and a
    // `get state` in the middle of init-vol can fail (the state file not yet written).
    let t = std::time::Instant::now();
    loop {
        let out = run(c.walbc_cmd().args(["call", "a0", "get", "state", "vol0"]));
        if String::from_utf8_lossy(&out.stdout).trim() == "FullSync" {
            break;
        }
        assert!(
            t.elapsed().as_secs() < 20,
            "no full sync on a0\n{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let serial = new_server_cert(&c, "archive", "a0");
    assert_ne!(serial, before);
    let reply = c.walbc(&["rotate-certs", "a0"]);
    assert!(reply.contains(&serial), "{reply}");
    assert_eq!(
        served(),
        serial,
        "a new connection sees the new certificate"
    );
    assert_eq!(c.walbc(&["call", "a0", "get", "state", "vol0"]), "FullSync");
    let out = backup.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the backup across the rotation: {out:?}\n{}",
        c.logs()
    );
    let gid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let img = c.walbc(&["restore", "vol0", &gid]);
    assert_eq!(file_hash(Path::new(&img)), c.device_hash("wdev0"));

    // A reload that fails keeps the old certificate and says so.
    let key = c.dir.join("certs").join("a0.key");
    let good_key = std::fs::read(&key).unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let err = c.walbc_err(&["rotate-certs", "a0"]);
    assert!(err.contains("old certificate stays"), "{err}");
    assert_eq!(served(), serial);
    assert!(c.log("a0").contains("certificate reload failed"));
    std::fs::write(&key, good_key).unwrap();

    // SIGHUP reloads as well.
    let serial2 = new_server_cert(&c, "archive", "a0");
    let pid = c.walbc(&["call", "a0", "get", "pid"]);
    walb_tests::run_ok(std::process::Command::new("kill").args(["-HUP", &pid]));
    let t = std::time::Instant::now();
    while served() != serial2 {
        assert!(
            t.elapsed().as_secs() < 10,
            "SIGHUP did not reload\n{}",
            c.log("a0")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(c.walbc(&["call", "a0", "get", "state", "vol0"]), "Archived");
}

#[test]
fn tls_a_flooding_peer_is_cut_off_while_a_volume_ships() {
    let spec = Spec {
        tls: true,
        archive_flags: vec!["--max-peer-flows", "16"],
        ..Spec::default()
    };
    let Some(c) = Cluster::backed_up(
        "tls_a_flooding_peer_is_cut_off_while_a_volume_ships",
        spec,
        2 << 20,
    ) else {
        return;
    };
    let dir = c.certs.as_ref().unwrap().ca.parent().unwrap().to_path_buf();
    let ca = Ca::load(&dir).unwrap();
    write_pair(
        &dir,
        "p9",
        ca.issue(&["127.0.0.1".to_string()], Some(("proxy", "p9")))
            .unwrap(),
    )
    .unwrap();
    let bad = Certs::generated(&dir, "p9");
    let pid = c.walbc(&["call", "a0", "get", "pid"]);
    let rss_before = rss_kib(&pid);
    let a0 = c.addr("a0").to_string();
    let rt = runtime();
    let ch = rt.block_on(walb_tests::certs::channel(&a0, &bad));

    // An oversized message ends its flow, and nothing is kept of it.
    let mut open = open_of("vol0", "proxy");
    open.diff = vec![0u8; 20 << 20].into();
    let r = rt.block_on(try_flow(&ch, "Archive.WdiffTransfer", open_frame(open)));
    let code = r.as_ref().map_err(|s| s.code());
    assert!(
        matches!(code, Err(Code::OutOfRange | Code::ResourceExhausted)),
        "{r:?}"
    );

    // 10 000 streams that never send their Open, while vol0 keeps shipping.
    let flood = rt.spawn({
        let ch = ch.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..10_000 {
                let ch = ch.clone();
                tasks.spawn(async move {
                    let (tx, rx) = tokio::sync::mpsc::channel::<Frame>(1);
                    let r = ArchiveClient::new(ch)
                        .wdiff_transfer(tokio_stream::wrappers::ReceiverStream::new(rx))
                        .await;
                    (r.map(|s| s.into_inner()).map_err(|s| s.code()), tx)
                });
            }
            // Admitted, refused (RESOURCE_EXHAUSTED), or refused by the server's HTTP/2 layer
            // (REFUSED_STREAM, a few: streams over --max-streams).
            let (mut held, mut refused, mut cut) = (Vec::new(), 0, 0);
            while let Some(r) = tasks.join_next().await {
                match r.unwrap() {
                    (Ok(s), tx) => held.push((s, tx)),
                    (Err(Code::ResourceExhausted), _) => refused += 1,
                    (Err(Code::Unavailable | Code::Cancelled), _) => cut += 1,
                    (Err(code), _) => panic!("flood: {code:?}"),
                }
            }
            (held, refused, cut)
        }
    });
    let t = std::time::Instant::now();
    c.write_random("wdev0", 1 << 20, 1 << 20, 5);
    let gid = c.walbc(&["snapshot", "s0", "vol0"]);
    let (held, refused, cut) = rt.block_on(flood).unwrap();
    eprintln!(
        "flood of 10 000 streams and a snapshot shipped in {:?}: {} admitted, {refused} \
         refused, {cut} refused by HTTP/2",
        t.elapsed(),
        held.len()
    );
    assert_eq!(held.len(), 16, "admitted at once: --max-peer-flows");
    assert_eq!(refused + cut, 10_000 - 16);
    let rss = rss_kib(&pid);
    assert!(
        rss < rss_before + (128 << 10),
        "a0's RSS grew from {rss_before} KiB to {rss} KiB"
    );
    drop(held);
    c.check_restore("a0", &gid, "wdev0");
    // The proxy's own flows were never refused.
    let log = c.log("a0");
    assert!(
        !log.lines()
            .any(|l| l.contains("data flow refused") && l.contains("proxy/p0")),
        "{log}"
    );
}

#[test]
fn tls_silent_flows_count_against_their_peer_until_the_open_deadline() {
    let t = trio(&["--max-peer-flows", "2", "--open-timeout-secs", "1"]);
    runtime().block_on(async {
        let p0 = t.channel("a0", "p0").await;
        // Two flows that send nothing hold p0's two slots; a third is refused, another
        // peer's is not.
        let silent = || async {
            let (tx, rx) = tokio::sync::mpsc::channel::<Frame>(1);
            let r = ArchiveClient::new(p0.clone())
                .wdiff_transfer(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            (r, tx)
        };
        let (first, _tx1) = silent().await;
        let (second, _tx2) = silent().await;
        let (third, _tx3) = silent().await;
        assert_eq!(third.unwrap_err().code(), Code::ResourceExhausted);
        let a0 = t.channel("a0", "a0").await;
        let other = try_flow(
            &a0,
            "Archive.FullSync",
            open_frame(open_of("novol", "archive")),
        );
        other.await.unwrap();
        // Without an Open within the deadline they are ended, and their slots free.
        for held in [first, second] {
            let err = held.unwrap().into_inner().message().await.unwrap_err();
            assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
            assert!(err.message().contains("--open-timeout-secs"), "{err:?}");
        }
        let (again, _tx) = silent().await;
        again.unwrap();
    });
}

#[test]
fn tls_connections_over_the_limit_are_closed() {
    use std::io::Read;

    let dir = tempfile::tempdir().unwrap();
    let local = free_addr();
    let flags = ["--max-connections".to_string(), "2".to_string()];
    let (_a0, _) = start(archive_cmd(dir.path(), &local, &flags), &[]);
    // Two connections that are served (the server's HTTP/2 SETTINGS arrive); the one walbc
    // used to see the daemon up may take a moment to be let go.
    let serve_one = || {
        let mut c = std::net::TcpStream::connect(&local).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        matches!(c.read(&mut [0u8; 64]), Ok(n) if n > 0).then_some(c)
    };
    let t = std::time::Instant::now();
    let mut held = Vec::new();
    while held.len() < 2 {
        held.extend(serve_one());
        assert!(t.elapsed().as_secs() < 10, "not served");
    }
    let mut third = std::net::TcpStream::connect(&local).unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let got = third.read(&mut [0u8; 64]);
    assert!(
        matches!(got, Ok(0) | Err(_)),
        "a third connection was kept: {got:?}"
    );
    assert!(!call(&[], &local, &["version"]).status.success());
    drop(held);
    let t = std::time::Instant::now();
    while !call(&[], &local, &["version"]).status.success() {
        assert!(
            t.elapsed().as_secs() < 10,
            "no connection after the two closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.path().join("a0.log")).unwrap();
    assert!(log.contains("--max-connections"), "{log}");
}
