//! The archive's metric families (registered once; `walb_daemon::metrics`). A new metric is
//! a field here and one registration line.

use std::sync::Arc;

use walb_daemon::metrics::{Buckets, Counters, Gauges, Histograms, Metrics};

pub struct ArchiveMetrics {
    pub all: Arc<Metrics>,
    pub diffs: Gauges,
    pub diff_bytes: Gauges,
    pub latest_gid: Gauges,
    pub bytes_received: Counters,
    pub verify_failures: Gauges,
    pub verify_time: Gauges,
    pub free_bytes: Gauges,
    pub broken: Gauges,
    pub rejections: Counters,
    pub write_to_restorable: Histograms,
    pub repo_lag: Gauges,
    pub repo_bytes_up: Gauges,
    pub repo_dedup_permille: Gauges,
}

impl ArchiveMetrics {
    pub fn register(all: Arc<Metrics>) -> ArchiveMetrics {
        let m = &all;
        ArchiveMetrics {
            diffs: m.gauge("walb_archive_diffs", "wdiff files held per volume"),
            diff_bytes: m.gauge("walb_archive_diff_bytes", "Bytes of wdiff files per volume"),
            latest_gid: m.gauge(
                "walb_archive_latest_gid",
                "gid of the archive's latest snapshot",
            ),
            bytes_received: m.counter(
                "walb_archive_bytes_received_total",
                "Bytes received by full sync, hash sync and wdiff transfer",
            ),
            verify_failures: m.gauge(
                "walb_archive_verify_failures",
                "Damaged files the volume's last verification found",
            ),
            verify_time: m.gauge(
                "walb_archive_verify_time_seconds",
                "Unix time of the volume's last verification",
            ),
            free_bytes: m.gauge(
                "walb_archive_free_bytes",
                "Free bytes of the data dir's file system, as last checked",
            ),
            broken: m.gauge(
                "walb_archive_broken",
                "1 while a volume's startup recovery has failed (see status)",
            ),
            rejections: m.counter(
                "walb_archive_rejections_total",
                "Data flows rejected, by reason",
            ),
            // 1 s to 36 h: diff timestamps are whole seconds.
            write_to_restorable: m.histogram(
                "walb_archive_write_to_restorable_seconds",
                "Time from a received diff's timestamp (its snapshot on the storage, after its \
                 newest write) to its registration here, when it becomes restorable",
                Buckets::exponential(1.0, 2.0, 18),
            ),
            repo_lag: m.gauge(
                "walb_archive_repo_lag_seconds",
                "Age of the oldest registered diff not yet uploaded to the repository (0: none)",
            ),
            repo_bytes_up: m.gauge(
                "walb_archive_repo_bytes_up",
                "Bytes uploaded to the repository since the daemon started",
            ),
            repo_dedup_permille: m.gauge(
                "walb_archive_repo_dedup_permille",
                "Image bytes uploaded per byte of new chunks, times 1000 (dedup ratio)",
            ),
            all,
        }
    }
}
