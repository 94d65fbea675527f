//! TLS with client certificates between every process (made by walbc gen-certs: each daemon
//! its own, walbc controller.crt): the pipeline works end to end, and a client without a
//! certificate, or with one from another CA, reaches nothing (needs root and /dev/fuse: the
//! pipeline runs on a wdev loop device). Without root: no plain TCP off loopback unless
//! --insecure, gen-certs' files, the audit log, and roles (docs/security.md).

use std::path::Path;

use walb_tests::cluster::{file_hash, Cluster, Spec};
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
/// `dir/a0.log` (made anew).
fn archive_cmd(dir: &Path, listen: &str, extra: &[String]) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin("walb-archive"));
    cmd.args(["--id", "a0", "--listen", listen, "--data-dir"])
        .arg(dir.join("a0"))
        .args(extra)
        .stderr(std::fs::File::create(dir.join("a0.log")).unwrap());
    cmd
}

/// `walbc [tls] call addr args…`.
fn call(tls: &[String], addr: &str, args: &[&str]) -> std::process::Output {
    run(std::process::Command::new(bin("walbc"))
        .args(tls)
        .arg("call")
        .arg(addr)
        .args(args))
}

/// A daemon started for one test, killed when dropped.
struct Lone(std::process::Child);

impl Lone {
    /// Starts `cmd` and waits until `walbc [tls] call addr version` answers; returns the reply.
    fn start(cmd: &mut std::process::Command, tls: &[String], addr: &str) -> (Lone, String) {
        let mut lone = Lone(cmd.spawn().expect("start walb-archive"));
        let t = std::time::Instant::now();
        loop {
            let out = call(tls, addr, &["version"]);
            if out.status.success() {
                let reply = String::from_utf8_lossy(&out.stdout).trim().to_string();
                return (lone, reply);
            }
            assert!(
                lone.0.try_wait().unwrap().is_none(),
                "walb-archive exited: {cmd:?}"
            );
            assert!(t.elapsed().as_secs() < 20, "walb-archive did not answer");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Lone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tls_plaintext_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = walb_tests::db::free_port();
    let any = format!("0.0.0.0:{port}");
    let local = format!("127.0.0.1:{port}");

    let out = run(&mut archive_cmd(dir.path(), &any, &[]));
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
        let mut cmd = archive_cmd(dir.path(), &any, &insecure);
        let (lone, reply) = Lone::start(&mut cmd, &[], &local);
        assert!(reply.ends_with(" insecure"), "{insecure:?}: {reply}");
        drop(lone);
        let log = std::fs::read_to_string(dir.path().join("a0.log")).unwrap();
        let warn = log.lines().find(|l| l.contains("WARN"));
        assert!(
            warn.is_some_and(|l| l.contains("--insecure") && l.contains(&any)),
            "{insecure:?}: no WARN line in the log:\n{log}"
        );
    }

    let (_lone, reply) = Lone::start(&mut archive_cmd(dir.path(), &local, &[]), &[], &local);
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
    std::fs::read_to_string(dir.join("a0").join("audit.jsonl"))
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
fn tls_archive(dir: &Path, certs: &Path, port: u16) -> Lone {
    let mut cmd = archive_cmd(dir, &format!("0.0.0.0:{port}"), &tls_flags(certs, "a0"));
    let local = format!("127.0.0.1:{port}");
    let (lone, reply) = Lone::start(&mut cmd, &tls_flags(certs, "controller"), &local);
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
        assert_eq!(l["argv"], serde_json::json!([argv, "vol0"]), "{l}");
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
        ("a0", &["reset-vol", "vol0"], true),
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
    assert_eq!(denied, 5, "{lines:?}");
}
