//! The operator's view (`walbc status VOL --json`, docs/archive.md): every field with the right
//! value in a scripted situation — an archive behind, a proxy holding diffs, a storage down.
//! Needs root and /dev/fuse.

use std::time::{Duration, Instant};

use walb_tests::cluster::{Cluster, Spec};

fn status(c: &Cluster) -> serde_json::Value {
    serde_json::from_str(&c.walbc(&["status", "vol0", "--json"])).unwrap()
}

#[test]
fn status_every_field_in_a_scripted_situation() {
    let test = "status_every_field_in_a_scripted_situation";
    let Some(mut c) = Cluster::backed_up(test, Spec::default(), 2 << 20) else {
        return;
    };
    let g = c.walbc(&["snapshot", "s0", "vol0"]);
    assert!(c.walbc(&["verify", "vol0"]).starts_with("ok "));
    let j = status(&c);
    let (s, p, a) = (&j["storages"][0], &j["proxies"][0], &j["archives"][0]);
    assert_eq!(s["reachable"], true, "{j}");
    assert!(s["log_capacity_pb"].as_u64().unwrap() > 0, "{j}");
    // The storage's own status names the wdevd worker its volumes live on.
    let wdevd = c.wdevd_status();
    let line = format!(
        "wdevd pid {} started_ms {} restarts 0 transport /dev/fuse",
        wdevd["pid"], wdevd["started_ms"]
    );
    let st = c.walbc(&["call", "s0", "status"]);
    assert!(st.lines().any(|l| l == line), "{line:?} not in {st}");
    assert!(s["action"].is_null(), "no backup runs: {j}");
    assert!(j["archives"][0]["action"].is_null(), "nothing runs: {j}");
    assert_eq!(p["reachable"], true, "{j}");
    assert_eq!(a["newest_restorable"]["gid"].to_string(), g, "{j}");
    assert!(a["newest_restorable_age_s"].as_u64().is_some(), "{j}");
    assert_eq!(a["lag_gids"], 0, "{j}");
    assert_eq!(a["lag_seconds"], 0, "{j}");
    assert!(a["verify"].as_str().unwrap().ends_with(" ok"), "{j}");
    assert!(a["capacity"]["free_bytes"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(a["send_errors"], serde_json::json!([]), "{j}");

    // The archive stops taking diffs: the proxy holds them and the archive falls behind.
    c.walbc(&["call", "a0", "stop", "vol0"]);
    c.write_random("wdev0", 8 << 20, 1 << 20, 2);
    c.walbc(&["snapshot", "s0", "vol0", "--no-wait"]);
    let t = Instant::now();
    let j = loop {
        let j = status(&c);
        let held = j["proxies"][0]["held_diffs"].as_u64().unwrap_or(0);
        // The storage saw the write: a rate, and the time to overflow at it.
        let rate = j["storages"][0]["write_rate_bps"].as_u64().unwrap_or(0);
        if held > 0
            && rate > 0
            && j["archives"][0]["send_errors"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
        {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "nothing held: {j}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        j["storages"][0]["overflow_in_s"].as_u64().unwrap() > 0,
        "{j}"
    );
    let a = &j["archives"][0];
    assert!(a["lag_gids"].as_u64().unwrap() > 0, "{j}");
    assert!(a["lag_seconds"].as_u64().is_some(), "{j}");
    assert_eq!(a["state"], "Stopped", "{j}");

    // The storage goes down: what only it knows is unknown, not zero.
    c.kill("s0");
    let j = status(&c);
    assert_eq!(j["storages"][0]["reachable"], false, "{j}");
    assert!(j["archives"][0]["lag_gids"].is_null(), "{j}");
    assert!(j["archives"][0]["lag_seconds"].is_null(), "{j}");
    eprintln!("{test}: {}", serde_json::to_string_pretty(&j).unwrap());
}
