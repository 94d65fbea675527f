//! Prometheus metrics through `prometheus-client`: typed families (counters, gauges,
//! histograms), each registered once with its HELP text, rendered as OpenMetrics text on
//! `GET /metrics`.
//!
//! A daemon registers its families at startup and keeps the handles:
//! `let sent = metrics.counter("walb_x_bytes_sent_total", "Bytes sent");` then
//! `sent.inc_by(&[("vol", vol)], n)`. A counter's name ends in `_total`: the exposition
//! declares the family without it (`# TYPE walb_x_bytes_sent counter`) and names the sample
//! with it, as OpenMetrics wants. Every daemon has `walb_transfer_seconds` ([`Metrics::transfer`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A series' labels, in the order given.
pub type Labels = Vec<(String, String)>;

/// What `GET /metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A family and the label sets it has seen, so that a deleted volume's series can go.
struct Tracked<M, C> {
    family: Family<Labels, M, C>,
    seen: Mutex<BTreeSet<Labels>>,
}

trait Forget: Send + Sync {
    fn forget(&self, l: &[(&str, &str)]);
}

impl<M: Send + Sync, C: MetricConstructor<M> + Send + Sync> Forget for Tracked<M, C> {
    fn forget(&self, l: &[(&str, &str)]) {
        self.seen.lock().expect("metrics lock").retain(|have| {
            let hit = l
                .iter()
                .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v));
            if hit {
                self.family.remove(have);
            }
            !hit
        });
    }
}

/// The handle of one registered family; cheap to clone.
pub struct Series<M, C = fn() -> M>(Arc<Tracked<M, C>>);

impl<M, C> Clone for Series<M, C> {
    fn clone(&self) -> Self {
        Series(self.0.clone())
    }
}

impl<M, C: MetricConstructor<M>> Series<M, C> {
    fn with(&self, l: &[(&str, &str)], f: impl FnOnce(&M)) {
        let l = labels(l);
        f(&self.0.family.get_or_create(&l));
        let mut seen = self.0.seen.lock().expect("metrics lock");
        if !seen.contains(&l) {
            seen.insert(l);
        }
    }
}

/// Counts that only go up (bytes moved, errors).
pub type Counters = Series<Counter>;
/// Values that go up and down (a queue's length, a gid, free bytes), as integers.
pub type Gauges = Series<Gauge>;
/// Distributions of observed values (durations, delays).
pub type Histograms = Series<Histogram, Buckets>;

impl Counters {
    pub fn inc_by(&self, l: &[(&str, &str)], v: u64) {
        self.with(l, |c| {
            c.inc_by(v);
        });
    }
}

impl Gauges {
    /// Sets a count, size, gid or time (saturating at `i64::MAX`).
    pub fn set(&self, l: &[(&str, &str)], v: u64) {
        self.with(l, |g| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        });
    }
}

impl Histograms {
    pub fn observe(&self, l: &[(&str, &str)], v: f64) {
        self.with(l, |h| h.observe(v));
    }
}

/// A histogram family's bucket bounds (upper, inclusive).
#[derive(Clone, Debug)]
pub struct Buckets(Arc<[f64]>);

impl Buckets {
    /// `n` buckets from `start`, each `factor` times the one before.
    pub fn exponential(start: f64, factor: f64, n: u16) -> Buckets {
        Buckets(exponential_buckets(start, factor, n).collect())
    }
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// One daemon's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    families: Mutex<Vec<Arc<dyn Forget>>>,
    transfer: Histograms,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Mutex::new(Registry::default());
        let families = Mutex::new(Vec::new());
        let transfer = Self::add(
            &registry,
            &families,
            "walb_transfer_seconds",
            "Time from a data flow's Open to its Ack on the sending side, by flow",
            Family::new_with_constructor(Buckets::exponential(0.01, 2.0, 16)),
        );
        Metrics {
            registry,
            families,
            transfer,
        }
    }

    fn add<M, C>(
        registry: &Mutex<Registry>,
        families: &Mutex<Vec<Arc<dyn Forget>>>,
        name: &str,
        help: &str,
        family: Family<Labels, M, C>,
    ) -> Series<M, C>
    where
        Family<Labels, M, C>: prometheus_client::registry::Metric + Clone,
        M: Send + Sync + 'static,
        C: MetricConstructor<M> + Send + Sync + 'static,
    {
        assert!(!help.is_empty(), "metric {name} needs a HELP text");
        registry
            .lock()
            .expect("metrics lock")
            .register(name, help, family.clone());
        let t = Arc::new(Tracked {
            family,
            seen: Mutex::new(BTreeSet::new()),
        });
        families.lock().expect("metrics lock").push(t.clone());
        Series(t)
    }

    /// Registers a counter family; `name` ends in `_total`.
    pub fn counter(&self, name: &str, help: &str) -> Counters {
        let family = name
            .strip_suffix("_total")
            .unwrap_or_else(|| panic!("counter {name} must end in _total"));
        Self::add(
            &self.registry,
            &self.families,
            family,
            help,
            Family::default(),
        )
    }

    pub fn gauge(&self, name: &str, help: &str) -> Gauges {
        Self::add(
            &self.registry,
            &self.families,
            name,
            help,
            Family::default(),
        )
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: Buckets) -> Histograms {
        Self::add(
            &self.registry,
            &self.families,
            name,
            help,
            Family::new_with_constructor(buckets),
        )
    }

    /// Records one finished data flow of kind `flow` (the RPC: "wlog-transfer", "full-sync",
    /// "hash-sync", "wdiff-transfer") that took `took` from Open to Ack.
    pub fn transfer(&self, flow: &str, took: Duration) {
        self.transfer.observe(&[("flow", flow)], took.as_secs_f64());
    }

    /// Drops every series whose labels include all of `l` (a deleted volume: `[("vol", v)]`).
    pub fn forget(&self, l: &[(&str, &str)]) {
        for f in self.families.lock().expect("metrics lock").iter() {
            f.forget(l);
        }
    }

    /// The OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &self.registry.lock().expect("metrics lock"),
        )
        .expect("writing to a String cannot fail");
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
            let (status, ctype, body) = if req.starts_with("GET /metrics") {
                ("200 OK", CONTENT_TYPE, metrics.render())
            } else {
                ("404 Not Found", "text/plain", "try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
    fn typed_families_with_help_and_labels() {
        let m = Metrics::new();
        let usage = m.gauge("walb_log_usage_pb", "Log usage in physical blocks");
        let shipped = m.counter("walb_bytes_shipped_total", "Bytes shipped");
        let delay = m.histogram(
            "walb_delay_seconds",
            "A delay",
            Buckets::exponential(1.0, 2.0, 4),
        );
        usage.set(&[("vol", "v0")], 12);
        shipped.inc_by(&[("vol", "v0")], 5);
        shipped.inc_by(&[("vol", "v0")], 5);
        shipped.inc_by(&[("vol", "v1")], 1);
        delay.observe(&[("vol", "v0")], 3.0);
        m.transfer("wlog", Duration::from_millis(30));
        let t = m.render();
        assert!(
            t.contains("# HELP walb_log_usage_pb Log usage in physical blocks."),
            "{t}"
        );
        assert!(t.contains("# TYPE walb_log_usage_pb gauge"), "{t}");
        assert!(t.contains("walb_log_usage_pb{vol=\"v0\"} 12"), "{t}");
        assert!(t.contains("# TYPE walb_bytes_shipped counter"), "{t}");
        assert!(t.contains("walb_bytes_shipped_total{vol=\"v0\"} 10"), "{t}");
        assert!(t.contains("# TYPE walb_delay_seconds histogram"), "{t}");
        assert!(
            t.contains("walb_delay_seconds_bucket{le=\"4.0\",vol=\"v0\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("walb_transfer_seconds_count{flow=\"wlog\"} 1"),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"));
        m.forget(&[("vol", "v0")]);
        let t = m.render();
        assert!(!t.contains("v0"), "{t}");
        assert!(t.contains("walb_bytes_shipped_total{vol=\"v1\"} 1"), "{t}");
    }
}
