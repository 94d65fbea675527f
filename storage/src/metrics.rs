//! The storage's metric families (registered once; `walb_daemon::metrics`).

use std::sync::Arc;

use walb_daemon::metrics::{Counters, Gauges, Metrics};

pub struct StorageMetrics {
    pub all: Arc<Metrics>,
    pub bytes_shipped: Counters,
    pub transfer_errors: Counters,
    pub log_usage: Gauges,
    pub log_capacity: Gauges,
    pub done_gid: Gauges,
    pub scan_bytes: Gauges,
}

impl StorageMetrics {
    pub fn register(all: Arc<Metrics>) -> StorageMetrics {
        let m = &all;
        StorageMetrics {
            bytes_shipped: m.counter(
                "walb_storage_bytes_shipped_total",
                "wlog bytes a proxy acknowledged",
            ),
            transfer_errors: m.counter(
                "walb_storage_transfer_errors_total",
                "wlog transfers that failed (retried after a back-off)",
            ),
            log_usage: m.gauge(
                "walb_storage_log_usage_pb",
                "Physical blocks of the wdev's log ring in use (not yet freed)",
            ),
            log_capacity: m.gauge(
                "walb_storage_log_capacity_pb",
                "Physical blocks of the wdev's log ring",
            ),
            done_gid: m.gauge(
                "walb_storage_done_gid",
                "gid up to which the volume's logs are at a proxy (the done record)",
            ),
            scan_bytes: m.gauge(
                "walb_storage_scan_bytes",
                "Bytes the running or last full or hash backup has scanned",
            ),
            all,
        }
    }
}
