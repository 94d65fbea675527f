//! Prometheus text metrics: gauges and counters with labels, rendered on `GET /metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Labels = Vec<(String, String)>;

struct Family {
    kind: &'static str,
    help: &'static str,
    values: BTreeMap<Labels, f64>,
}

#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Declares a metric; `kind` is "gauge" or "counter".
    pub fn describe(&self, name: &'static str, kind: &'static str, help: &'static str) {
        self.families
            .lock()
            .expect("metrics lock")
            .entry(name)
            .or_insert(Family {
                kind,
                help,
                values: BTreeMap::new(),
            });
    }

    fn with(&self, name: &'static str, f: impl FnOnce(&mut BTreeMap<Labels, f64>)) {
        let mut fams = self.families.lock().expect("metrics lock");
        let fam = fams.entry(name).or_insert(Family {
            kind: "gauge",
            help: "",
            values: BTreeMap::new(),
        });
        f(&mut fam.values);
    }

    pub fn set(&self, name: &'static str, l: &[(&str, &str)], v: f64) {
        self.with(name, |m| {
            m.insert(labels(l), v);
        });
    }

    pub fn add(&self, name: &'static str, l: &[(&str, &str)], v: f64) {
        self.with(name, |m| *m.entry(labels(l)).or_insert(0.0) += v);
    }

    /// Drops every series of `name` whose labels include `label = value` (a deleted volume).
    pub fn forget(&self, label: &str, value: &str) {
        for fam in self.families.lock().expect("metrics lock").values_mut() {
            fam.values
                .retain(|l, _| !l.iter().any(|(k, v)| k == label && v == value));
        }
    }

    /// The exposition text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, fam) in self.families.lock().expect("metrics lock").iter() {
            out.push_str(&format!(
                "# HELP {name} {}\n# TYPE {name} {}\n",
                fam.help, fam.kind
            ));
            for (l, v) in &fam.values {
                let l: Vec<String> = l
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\"")))
                    .collect();
                if l.is_empty() {
                    out.push_str(&format!("{name} {v}\n"));
                } else {
                    out.push_str(&format!("{name}{{{}}} {v}\n", l.join(",")));
                }
            }
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_and_labels() {
        let m = Metrics::new();
        m.describe("walb_log_usage_pb", "gauge", "Log usage in physical blocks");
        m.set("walb_log_usage_pb", &[("vol", "v0")], 12.0);
        m.add("walb_bytes_shipped_total", &[], 5.0);
        m.add("walb_bytes_shipped_total", &[], 5.0);
        let t = m.render();
        assert!(t.contains("# TYPE walb_log_usage_pb gauge"));
        assert!(t.contains("walb_log_usage_pb{vol=\"v0\"} 12"));
        assert!(t.contains("walb_bytes_shipped_total 10"));
        m.forget("vol", "v0");
        assert!(!m.render().contains("v0"));
    }
}
