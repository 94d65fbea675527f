//! TLS with client certificates between every process: the pipeline works end to end, and a
//! client without a certificate, or with one from another CA, reaches nothing. Needs root and
//! /dev/fuse (the pipeline runs on a wdev loop device).

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
