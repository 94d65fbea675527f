//! Transfers (shipped wlogs, received diffs, sent diffs) are logged one by one at DEBUG; at
//! INFO a summary per volume once a period, and only when something moved: how many
//! transfers, how many bytes, and the gids they covered.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// The most outgoing data transfers a daemon runs at once: the wlogs a storage ships, the diff
/// sends of a proxy. A volume waits for a slot, first come first served, and holds it for a
/// session (its transfers one after the other on one stream); it gives it back when the
/// session ends, or after a `TURN` while every slot is taken, so many volumes take turns
/// instead of one running ahead. What one transfer holds in memory (up to
/// `--max-wlog-send-mb` or `--max-merge-mb`) is bounded too.
#[derive(clap::Args, Clone, Debug)]
pub struct TransferArgs {
    /// Outgoing transfers (wlogs shipped, diffs sent) run at once; more volumes wait their
    /// turn.
    #[arg(long, default_value_t = 8)]
    pub max_transfers: usize,
}

impl TransferArgs {
    /// The slots, one per transfer allowed at once.
    pub fn slots(&self) -> Semaphore {
        Semaphore::new(self.max_transfers.max(1))
    }
}

/// Transfers a session has sent before it waits for the oldest one's answer.
pub const UNACKED: usize = 2;

/// How long a session keeps its slot while every slot is taken.
pub const TURN: Duration = Duration::from_secs(1);

/// How long a session with everything answered waits for more to send before it ends.
pub const LINGER: Duration = Duration::from_secs(1);

/// Whether a session that started at `since` gives its slot back now: its turn is over and
/// every slot is taken, so other volumes may be waiting.
pub fn turn_over(since: Instant, slots: &Semaphore) -> bool {
    since.elapsed() >= TURN && slots.available_permits() == 0
}

/// The default period of the INFO summary.
pub const DEFAULT_SUMMARY_SECS: u64 = 60;

struct Tally {
    count: u64,
    bytes: u64,
    gid_b: u64,
    gid_e: u64,
}

/// (what, volume) → the transfers since the last summary.
static TALLY: Mutex<BTreeMap<(&'static str, String), Tally>> = Mutex::new(BTreeMap::new());

/// Counts one transfer of `what` (e.g. "shipped wlogs") for `vol`: `bytes` covering gids
/// `gid_b` to `gid_e`. The caller logs the transfer itself at DEBUG.
pub fn record(what: &'static str, vol: &str, bytes: u64, gid_b: u64, gid_e: u64) {
    let mut t = TALLY.lock().expect("transfer tally lock");
    let e = t.entry((what, vol.to_string())).or_insert(Tally {
        count: 0,
        bytes: 0,
        gid_b,
        gid_e,
    });
    e.count += 1;
    e.bytes += bytes;
    e.gid_b = e.gid_b.min(gid_b);
    e.gid_e = e.gid_e.max(gid_e);
}

/// `record` for a transfer of one diff (its gids from its MetaDiff).
pub fn record_diff(what: &'static str, vol: &str, bytes: u64, diff: &walb_core::meta::MetaDiff) {
    record(what, vol, bytes, diff.snap_b.gid_b.0, diff.snap_e.gid_b.0);
}

/// Logs at INFO what was recorded since the last summary, and forgets it.
pub fn summarize() {
    let t = std::mem::take(&mut *TALLY.lock().expect("transfer tally lock"));
    for ((what, vol), s) in t {
        tracing::info!(
            vol,
            "{what}: {} transfers, {} bytes, gid {} → {}",
            s.count,
            s.bytes,
            s.gid_b,
            s.gid_e
        );
    }
}

/// Summarizes every `period` from a task of the current tokio runtime.
pub fn spawn_summaries(period: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tick.tick().await;
            summarize();
        }
    });
}
