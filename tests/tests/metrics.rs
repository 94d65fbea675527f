//! The daemons' `/metrics` (OpenMetrics text) scraped after transfers: every family typed and
//! with HELP text, every `*_total` sample a counter's, and the counters and histograms of a
//! transfer moved. Needs root and /dev/fuse.

use std::collections::BTreeMap;

use walb_tests::cluster::{free_addr, Cluster, Spec};

fn scrape(addr: &str) -> String {
    let r = walb_tests::scrape(addr);
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    body.to_string()
}

/// Checks the exposition's declarations; returns every sample's value by its name and labels.
fn check(text: &str) -> BTreeMap<String, f64> {
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            helps.insert(name.to_string(), help.trim().to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            samples.insert(series.to_string(), value.parse::<f64>().expect("a number"));
        }
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    for (name, kind) in &types {
        assert!(
            helps.get(name).is_some_and(|h| !h.is_empty() && h != "."),
            "{name} ({kind}) has no HELP text:\n{text}"
        );
    }
    for series in samples.keys() {
        let name = series.split('{').next().unwrap();
        if let Some(family) = name.strip_suffix("_total") {
            assert_eq!(
                types.get(family).map(String::as_str),
                Some("counter"),
                "{name} is not declared # TYPE {family} counter:\n{text}"
            );
        }
        let declared = types.contains_key(name)
            || ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|f| types.contains_key(f)));
        assert!(declared, "{name} has no # TYPE:\n{text}");
    }
    samples
}

fn get(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[test]
fn metrics_are_typed_with_help_and_move_with_transfers() {
    let test = "metrics_are_typed_with_help_and_move_with_transfers";
    let (s_addr, a_addr): (&'static str, &'static str) = (
        Box::leak(free_addr().into_boxed_str()),
        Box::leak(free_addr().into_boxed_str()),
    );
    let spec = Spec {
        storage_flags: vec!["--metrics", s_addr],
        archive_flags: vec!["--metrics", a_addr],
        ..Spec::default()
    };
    let Some(c) = Cluster::backed_up(test, spec, 2 << 20) else {
        return;
    };
    let s0 = check(&scrape(s_addr));
    let a0 = check(&scrape(a_addr));
    assert!(
        get(&s0, "walb_transfer_seconds_count{flow=\"full-sync\"}") >= 1.0,
        "{s0:?}"
    );

    // Logs shipped by the storage, sent on by the proxy, registered by the archive.
    c.write_random("wdev0", 4 << 20, 1 << 20, 2);
    c.walbc(&["snapshot", "s0", "vol0"]);
    let s1 = check(&scrape(s_addr));
    let a1 = check(&scrape(a_addr));
    for (m0, m1, series) in [
        (&s0, &s1, "walb_storage_bytes_shipped_total{vol=\"vol0\"}"),
        (
            &s0,
            &s1,
            "walb_transfer_seconds_count{flow=\"wlog-transfer\"}",
        ),
        (&a0, &a1, "walb_archive_bytes_received_total{vol=\"vol0\"}"),
        (
            &a0,
            &a1,
            "walb_archive_write_to_restorable_seconds_count{vol=\"vol0\"}",
        ),
    ] {
        assert!(
            get(m1, series) > get(m0, series),
            "{series} did not move: {} → {}",
            get(m0, series),
            get(m1, series)
        );
    }
    assert!(get(&s1, "walb_storage_log_capacity_pb{vol=\"vol0\"}") > 0.0);
    assert!(get(&s1, "walb_storage_done_gid{vol=\"vol0\"}") > 0.0);
}
