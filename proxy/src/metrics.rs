//! The proxy's metric families (registered once; `walb_daemon::metrics`).

use std::sync::Arc;

use walb_daemon::metrics::{Counters, Gauges, Metrics};

use crate::volume::Vol;

pub struct ProxyMetrics {
    pub all: Arc<Metrics>,
    pub diffs: Gauges,
    pub bytes_received: Counters,
    pub bytes_sent: Counters,
    pub send_errors: Counters,
    pub send_error: Gauges,
}

impl ProxyMetrics {
    pub fn register(all: Arc<Metrics>) -> ProxyMetrics {
        let m = &all;
        ProxyMetrics {
            diffs: m.gauge("walb_proxy_diffs", "Diffs waiting to be sent to an archive"),
            bytes_received: m.counter(
                "walb_proxy_bytes_received_total",
                "wlog bytes received from storage",
            ),
            bytes_sent: m.counter(
                "walb_proxy_bytes_sent_total",
                "wdiff bytes delivered to an archive",
            ),
            send_errors: m.counter(
                "walb_proxy_send_errors_total",
                "Times sending to an archive gave up",
            ),
            send_error: m.gauge(
                "walb_proxy_send_error",
                "1 while sending to an archive has given up",
            ),
            all,
        }
    }

    /// Sets the waiting-diffs gauge from the queue directory.
    pub fn update_waiting(&self, v: &Vol, archive: &str) {
        if let Ok(w) = v.dir.waiting(archive) {
            self.diffs
                .set(&[("vol", &v.name), ("archive", archive)], w.len() as u64);
        }
    }

    pub fn count_sent(&self, vol: &str, archive: &str, bytes: u64) {
        self.bytes_sent
            .inc_by(&[("vol", vol), ("archive", archive)], bytes);
    }

    pub fn count_send_error(&self, vol: &str, archive: &str) {
        self.send_errors
            .inc_by(&[("vol", vol), ("archive", archive)], 1);
    }

    pub fn set_send_error(&self, vol: &str, archive: &str, on: bool) {
        self.send_error
            .set(&[("vol", vol), ("archive", archive)], on as u64);
    }
}
