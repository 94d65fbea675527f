//! One task per (volume, archive): picks the oldest mergeable run of waiting diffs, sends it
//! (send.rs) and reacts to the outcome as walb's proxy does (docs/scenarios.md §7.3,
//! docs/formats.md §7.5): delete on accept / too-old-diff / different-uuid; send error at once on
//! smaller-lv-size / archive-not-found; back-off (1 s doubling to 300 s) otherwise, giving up after
//! the retry timeout without a new wlog (or kick, or start), except for too-new-diff and syncing,
//! which retry forever.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use walb_core::meta::{can_merge, merge, MetaDiff};
use walb_core::wdiff::FileHeader;
use walb_core::Uuid;
use walb_daemon::transfers::{turn_over, LINGER, UNACKED};
use walb_daemon::{CmdError, CmdResult};

use crate::archive_info::ArchiveInfo;
use crate::layout::HeldDiff;
use crate::metrics::ProxyMetrics;
use crate::send::{Batch, DiffFlow, Outcome};
use crate::volume::{SendCtl, Vol};

/// One sender task's handles: the proxy's metrics and limits are given to it, so it needs
/// nothing else of the proxy.
pub struct Sender {
    pub metrics: Arc<ProxyMetrics>,
    /// Give up retrying after this long without a new wlog, kick or start.
    pub retry_timeout: Duration,
    /// Limits of one merged send: bytes and files.
    pub max_merge: (u64, usize),
    /// The proxy's `--max-transfers` slots, shared by every sender.
    pub transfers: Arc<tokio::sync::Semaphore>,
    pub vol: Arc<Vol>,
    pub archive: String,
    pub info: ArchiveInfo,
    pub ctl: Arc<SendCtl>,
}

/// What one round did.
enum Round {
    /// Nothing waits.
    Idle,
    /// Diffs left the queue; look again at once.
    Progress,
    /// Retry later; `give_up` once the retry timeout passed without a new wlog, kick or start.
    Retry { why: String, give_up: bool },
    /// Stop until kick, start or a new wlog.
    Error(String),
}

impl Sender {
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        loop {
            let due = {
                let st = self.ctl.lock();
                if st.stop {
                    return;
                }
                if st.error {
                    None
                } else {
                    st.due
                }
            };
            match due {
                None => {
                    self.ctl.notify.notified().await;
                    continue;
                }
                Some(t) if t > Instant::now() => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => {}
                        _ = self.ctl.notify.notified() => {}
                    }
                    continue;
                }
                Some(_) => {}
            }
            {
                let mut st = self.ctl.lock();
                st.due = None;
                st.busy = true;
            }
            let round = self.round().await;
            self.metrics.update_waiting(&self.vol, &self.archive);
            let mut st = self.ctl.lock();
            st.busy = false;
            let (vol, archive) = (self.vol.name.as_str(), self.archive.as_str());
            match round {
                Round::Idle => {}
                Round::Progress => {
                    st.backoff.reset();
                    st.last_failure = None;
                    st.due = Some(Instant::now());
                }
                Round::Retry { why, give_up } => {
                    let quiet = st.armed.is_none_or(|t| t.elapsed() >= self.retry_timeout);
                    if give_up && quiet {
                        tracing::warn!(vol, archive, "send error: giving up after {why}");
                        st.error = true;
                        self.metrics.count_send_error(vol, archive);
                    } else {
                        let wait = st.backoff.failed();
                        tracing::info!(vol, archive, "send failed ({why}); retry in {wait:?}");
                        // A trigger that came meanwhile (kick, new wlog) keeps its earlier time.
                        let at = Instant::now() + wait;
                        st.due = Some(st.due.map_or(at, |d| d.min(at)));
                    }
                    st.last_failure = Some(why);
                }
                Round::Error(why) => {
                    tracing::warn!(vol, archive, "send error: {why}");
                    st.error = true;
                    st.last_failure = Some(why);
                    self.metrics.count_send_error(vol, archive);
                }
            }
            let error = st.error;
            drop(st);
            self.metrics.set_send_error(vol, archive, error);
        }
    }

    /// Sends the oldest run of waiting diffs and, on the same stream while the archive makes
    /// it durable, the runs after it (at most `UNACKED` unanswered); each answer is judged in
    /// turn. Anything but an Ack ends the round: the batches behind it go again next round.
    async fn round(&self) -> Round {
        let (batch, size_lb) = match self.next_batch(None).await {
            Ok(b) => b,
            Err(why) => return Round::Retry { why, give_up: true },
        };
        if batch.is_empty() {
            return Round::Idle;
        }
        // Volumes take turns for the `--max-transfers` slots.
        let _slot = self
            .transfers
            .acquire()
            .await
            .expect("transfer slots stay open");
        let t0 = Instant::now();
        let (mut flow, bytes) =
            match DiffFlow::start(&self.info.addr, self.batch(&batch, size_lb)).await {
                Ok(f) => f,
                Err(o) => return self.judge(batch, o, t0).await,
            };
        let mut next_gid = end_gid(&batch);
        let mut unacked = VecDeque::from([(batch, bytes, t0)]);
        let mut more = true;
        loop {
            // After its turn, while every slot is taken, the round ends and the volume queues
            // for a slot again behind those waiting.
            if turn_over(t0, &self.transfers) {
                more = false;
            }
            if more && unacked.len() < UNACKED {
                match self.next_batch(Some(next_gid)).await {
                    Ok((next, size_lb)) if !next.is_empty() => {
                        let t = Instant::now();
                        match flow.send(self.batch(&next, size_lb)).await {
                            Ok(bytes) => {
                                next_gid = end_gid(&next);
                                unacked.push_back((next, bytes, t));
                                continue;
                            }
                            // The answers to the batches before it say why the stream ended;
                            // this one goes again in a later round.
                            Err(_) => more = false,
                        }
                    }
                    // All answered and nothing waits: the next wlog may be on its way, and
                    // the stream stays open a moment for it rather than start anew.
                    Ok(_) if unacked.is_empty() => {
                        let woken = tokio::time::timeout(LINGER, self.ctl.notify.notified());
                        if woken.await.is_ok() && !self.ctl.lock().stop {
                            continue;
                        }
                        return Round::Progress;
                    }
                    Ok(_) => {}
                    Err(_) => more = false,
                }
            }
            if unacked.is_empty() {
                return Round::Progress;
            }
            // While another batch may go, a wlog arriving meanwhile is sent at once rather than
            // after this Ack: the archive's link does not idle a round trip per batch, and a
            // batch holds what came during one transfer, not during one transfer and its Ack.
            let answer = match more && unacked.len() < UNACKED {
                true => tokio::select! {
                    a = flow.acked() => a,
                    _ = self.ctl.notify.notified() => continue,
                },
                false => flow.acked().await,
            };
            let (batch, bytes, t) = unacked.pop_front().expect("checked above");
            match answer {
                Ok(()) => {
                    let round = self.judge(batch, Outcome::Accepted { bytes }, t).await;
                    if !matches!(round, Round::Progress) {
                        return round;
                    }
                }
                Err(o) => return self.judge(batch, o, t).await,
            }
        }
    }

    /// The oldest run of waiting diffs that continues the chain at `after` (any run when
    /// `None`; none when the oldest waiting diff does not start there), and the volume's size.
    async fn next_batch(&self, after: Option<u64>) -> Result<(Vec<HeldDiff>, u64), String> {
        let (dir, archive) = (self.vol.dir.clone(), self.archive.clone());
        let (max_bytes, max_files) = self.max_merge;
        let picked = tokio::task::spawn_blocking(move || -> CmdResult<(Vec<HeldDiff>, u64)> {
            let mut waiting = dir.waiting(&archive)?;
            if let Some(gid) = after {
                waiting.retain(|d| d.meta.snap_b.gid_b.0 >= gid);
                if waiting
                    .first()
                    .is_some_and(|d| d.meta.snap_b.gid_b.0 != gid)
                {
                    waiting.clear();
                }
            }
            Ok((pick(waiting, max_bytes, max_files)?, dir.size_lb()?))
        })
        .await;
        match picked {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn batch<'a>(&'a self, diffs: &'a [HeldDiff], size_lb: u64) -> Batch<'a> {
        tracing::debug!(vol = %self.vol.name, archive = %self.archive, n = diffs.len(), "sending");
        Batch {
            vol: &self.vol.name,
            size_lb,
            diffs,
            cmpr: self.info.cmpr.0,
        }
    }

    /// What one batch's answer means for the queue (docs/formats.md §7.5).
    async fn judge(&self, batch: Vec<HeldDiff>, outcome: Outcome, t0: Instant) -> Round {
        match outcome {
            Outcome::Accepted { bytes } => {
                self.metrics.all.transfer("wdiff-transfer", t0.elapsed());
                self.metrics
                    .count_sent(&self.vol.name, &self.archive, bytes);
                tracing::debug!(vol = %self.vol.name, archive = %self.archive,
                    "sent {} diffs ({} bytes)", batch.len(), bytes);
                walb_daemon::transfers::record(
                    "diff transfers sent",
                    &self.vol.name,
                    bytes,
                    batch.first().map_or(0, |d| d.meta.snap_b.gid_b.0),
                    batch.last().map_or(0, |d| d.meta.snap_e.gid_b.0),
                );
                self.drop_sent(batch).await
            }
            Outcome::Rejected(w) if w == "too-old-diff" || w == "different-uuid" => {
                tracing::info!(vol = %self.vol.name, archive = %self.archive,
                    "archive answered {w}: dropping {} diffs", batch.len());
                self.drop_sent(batch).await
            }
            Outcome::Rejected(w) if w == "smaller-lv-size" || w == "archive-not-found" => {
                Round::Error(format!("archive rejected: {w}"))
            }
            // The archive's disk is at its floor: hold the diffs until it has room again.
            Outcome::Rejected(w)
                if w == "too-new-diff" || w == "syncing" || w == "archive-full" =>
            {
                Round::Retry {
                    why: format!("archive rejected: {w}"),
                    give_up: false,
                }
            }
            Outcome::Rejected(w) => Round::Retry {
                why: format!("archive rejected: {w}"),
                give_up: true,
            },
            Outcome::Failed(e) => Round::Retry {
                why: e,
                give_up: true,
            },
        }
    }

    async fn drop_sent(&self, batch: Vec<HeldDiff>) -> Round {
        let (dir, archive) = (self.vol.dir.clone(), self.archive.clone());
        match tokio::task::spawn_blocking(move || dir.unlink_sent(&archive, &batch)).await {
            Ok(Ok(())) => Round::Progress,
            Ok(Err(e)) => Round::Error(e.to_string()),
            Err(e) => Round::Error(e.to_string()),
        }
    }
}

/// The gid a batch ends at: where the next batch of the chain begins.
fn end_gid(batch: &[HeldDiff]) -> u64 {
    batch.last().map_or(0, |d| d.meta.snap_e.gid_b.0)
}

fn file_uuid(d: &HeldDiff) -> CmdResult<Uuid> {
    let mut b = [0u8; walb_core::wdiff::header::FILE_HEADER_SIZE];
    std::fs::File::open(&d.path)
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| CmdError::Internal(format!("read {}: {e}", d.path.display())))?;
    let h = FileHeader::decode(&b)
        .map_err(|e| CmdError::Internal(format!("{}: {e}", d.path.display())))?;
    Ok(h.uuid)
}

/// The oldest run of waiting diffs that merge into one: same uuid, each mergeable onto the
/// merge of the ones before, at most `max_bytes` (unless one diff alone is larger) and
/// `max_files`.
fn pick(waiting: Vec<HeldDiff>, max_bytes: u64, max_files: usize) -> CmdResult<Vec<HeldDiff>> {
    let mut out: Vec<HeldDiff> = Vec::new();
    let mut acc: Option<(MetaDiff, Uuid)> = None;
    let mut bytes = 0;
    for d in waiting {
        let uuid = file_uuid(&d)?;
        if let Some((m, u)) = acc {
            if out.len() >= max_files
                || bytes + d.meta.data_size > max_bytes
                || u != uuid
                || !can_merge(&m, &d.meta)
            {
                break;
            }
            acc = Some((merge(&m, &d.meta), u));
        } else {
            acc = Some((d.meta, uuid));
        }
        bytes += d.meta.data_size;
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use walb_core::meta::format_name;
    use walb_core::wdiff::{Cmpr, IndexedWriter};

    use super::*;

    fn held(dir: &std::path::Path, b: u64, e: u64, mergeable: bool, uuid: u8) -> HeldDiff {
        let mut meta = MetaDiff::clean(b, e).unwrap();
        meta.is_mergeable = mergeable;
        let name = format_name(&meta);
        let path = dir.join(&name);
        let w = IndexedWriter::new(
            std::fs::File::create(&path).unwrap(),
            Uuid([uuid; 16]),
            Cmpr::NONE,
        )
        .unwrap();
        w.finish().unwrap();
        meta.data_size = std::fs::metadata(&path).unwrap().len();
        HeldDiff { path, name, meta }
    }

    fn gids(v: &[HeldDiff]) -> Vec<(u64, u64)> {
        v.iter()
            .map(|d| (d.meta.snap_b.gid_b.0, d.meta.snap_e.gid_b.0))
            .collect()
    }

    #[test]
    fn pick_takes_the_oldest_mergeable_run_within_limits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let all = vec![
            held(p, 0, 1, true, 1),
            held(p, 1, 2, true, 1),
            held(p, 2, 3, true, 1),
            // An explicit snapshot: not mergeable onto the run before it.
            held(p, 3, 4, false, 1),
            held(p, 4, 5, true, 1),
            held(p, 5, 6, true, 2),
        ];
        let size = all[0].meta.data_size;
        assert_eq!(
            gids(&pick(all.clone(), u64::MAX, 1000).unwrap()),
            [(0, 1), (1, 2), (2, 3)]
        );
        assert_eq!(
            gids(&pick(all.clone(), u64::MAX, 2).unwrap()),
            [(0, 1), (1, 2)]
        );
        assert_eq!(
            gids(&pick(all.clone(), size * 2, 1000).unwrap()),
            [(0, 1), (1, 2)]
        );
        // One diff alone may exceed the size limit.
        assert_eq!(gids(&pick(all.clone(), 1, 1000).unwrap()), [(0, 1)]);
        assert_eq!(
            gids(&pick(all[3..].to_vec(), u64::MAX, 1000).unwrap()),
            [(3, 4), (4, 5)]
        );
        // A uuid change ends the run.
        assert_eq!(
            gids(&pick(all[4..].to_vec(), u64::MAX, 1000).unwrap()),
            [(4, 5)]
        );
        assert!(pick(Vec::new(), 1, 1).unwrap().is_empty());
    }
}
