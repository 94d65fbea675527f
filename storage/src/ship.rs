//! Wlog shipping: per volume in Target, take implicit snapshots, extract the logs of the next
//! transfer from the log device, send them to the first proxy that accepts, and after the ack
//! advance the done record and free the logs (docs/formats.md §6.4, §7.4). One poller asks
//! wdevd for every device's state at once and wakes only the volumes with something to do, so
//! an idle volume costs nothing between polls; at most `--max-transfers` wlogs are on their
//! way at once, taken in turn.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::SemaphorePermit;
use walb_core::meta::{transfer_end, transfer_end_gid, MetaDiff, MetaLsidGid, MetaSnap};
use walb_core::wlog::{WlogHeader, WlogWriter};
use walb_core::Lsid;
use walb_daemon::serve::Shutdown;
use walb_daemon::transfers::{turn_over, LINGER, UNACKED};
use walb_daemon::{CmdError, CmdResult};
use walb_proto::proxy_client::ProxyClient;
use walb_proto::{frame, wire, Commit, Open};

use crate::record::now;
use crate::storage::Storage;
use crate::vol::{save, Meta, State, Vol};
use crate::wdevd::DevStatus;
use walb_proto::flow::{Flow, FlowError};

/// Runs until shutdown: every `--poll-ms`, one wdevd request for every device's state; the
/// shipping task of each volume whose device moved or that has logs to ship or free is woken.
/// When wdevd cannot answer for all devices, every volume is woken (its step reports why).
pub async fn watch(st: Arc<Storage>, shutdown: Shutdown) {
    let mut seen: HashMap<String, DevStatus> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(st.poll) => {}
            _ = shutdown.stopping() => return,
        }
        let vols: Vec<Arc<Vol>> = st.vols.read().await.values().cloned().collect();
        let devs = match st.wdevd.status_all().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!("device states: {e}");
                vols.iter().for_each(|v| v.polled.notify_one());
                continue;
            }
        };
        let now: HashMap<String, DevStatus> = devs
            .into_iter()
            .map(|d| (d.name.as_str().to_string(), d))
            .collect();
        for vol in vols {
            let m = vol.meta.lock().await;
            let Some(dev) = now.get(&m.wdev) else {
                continue;
            };
            vol.writes.sample(dev.latest);
            let log = (dev.log_usage, dev.log_capacity);
            if vol.log_shown.lock().expect("log_shown lock").replace(log) != Some(log) {
                let l = [("vol", vol.name.as_str())];
                st.metrics.log_usage.set(&l, dev.log_usage);
                st.metrics.log_capacity.set(&l, dev.log_capacity);
            }
            if to_wake(&m, dev, seen.get(&m.wdev)) {
                vol.polled.notify_one();
            }
        }
        seen = now;
    }
}

/// Whether the poller wakes a volume's shipping task: its device moved since the last poll
/// (`before`), or logs wait to be shipped (Target) or freed (Standby).
fn to_wake(m: &Meta, dev: &DevStatus, before: Option<&DevStatus>) -> bool {
    let waiting = match m.state {
        State::Target => dev.permanent > m.done.lsid.0 || !m.queue.is_empty(),
        State::Standby => dev.permanent.min(dev.prev_written) > dev.oldest,
        _ => false,
    };
    waiting || before != Some(dev)
}

/// Runs until shutdown: one step per kick or wake-up by the poller, backing off after
/// failures (the poller's wake-ups wait the back-off out).
pub async fn run(st: Arc<Storage>, vol: Arc<Vol>, shutdown: Shutdown) {
    let mut backoff = walb_daemon::backoff::Backoff::default();
    let mut session = None;
    loop {
        let retry = backoff.wait();
        tokio::select! {
            _ = vol.kick.notified() => backoff.reset(),
            _ = vol.polled.notified(), if retry.is_zero() => {}
            _ = tokio::time::sleep(retry), if !retry.is_zero() => {}
            _ = shutdown.stopping() => return,
        }
        loop {
            match step(&st, &vol, &mut session).await {
                Ok(true) if !shutdown.is_stopping() => continue,
                Ok(true) => return,
                Ok(false) => {
                    backoff.reset();
                    // Only while a slot is free: a lingering session keeps its own.
                    let free = st.transfers.available_permits() > 0;
                    if session.is_some() && free && linger(&vol, &shutdown).await {
                        continue;
                    }
                    session = None;
                    break;
                }
                Err(e) => {
                    session = None;
                    let wait = backoff.failed();
                    tracing::warn!(vol = vol.name, "wlog transfer: {e}; retry in {wait:?}");
                    st.metrics.transfer_errors.inc_by(&[("vol", &vol.name)], 1);
                    break;
                }
            }
        }
    }
}

/// A session with everything acknowledged waits up to `LINGER` for the poller to see more
/// writes, so a steady writer's wlogs keep one stream; true when woken.
async fn linger(vol: &Vol, shutdown: &Shutdown) -> bool {
    tokio::select! {
        _ = vol.polled.notified() => true,
        _ = vol.kick.notified() => true,
        _ = tokio::time::sleep(LINGER) => false,
        _ = shutdown.stopping() => false,
    }
}

/// The wlogs of a volume on their way to one proxy: one flow carries them one after the
/// other, the next sent while the proxy makes the previous one durable, so a long link does
/// not idle a round trip per wlog (docs/formats.md §7.4). It lasts while there is more to
/// ship and ends when the volume is idle or on a failure; the done record moves only on
/// Acks, so what was not acknowledged is sent again.
struct Session<'a> {
    proxy: String,
    flow: Flow,
    /// Sent, not acknowledged yet, oldest first.
    unacked: VecDeque<Shipped>,
    /// The volume's `--max-transfers` slot while the session lasts.
    _slot: SemaphorePermit<'a>,
    /// When it took the slot: its turn.
    since: Instant,
    /// When it sent its last wlog.
    last_sent: Instant,
}

/// New logs below this size, half a poll or less after a session's last send, wait for the next
/// poll.
const COALESCE_BYTES: u64 = 4 << 20;

/// One wlog sent: the done record it continues and the one its Ack makes.
struct Shipped {
    from: MetaLsidGid,
    to: MetaLsidGid,
    bytes: u64,
    sent: Instant,
}

/// One transfer if there is one to do, or one Ack awaited; true when more may follow at once.
/// False with the session kept when everything sent is acknowledged and nothing more is due
/// yet; false without it when the volume cannot ship now.
async fn step<'a>(
    st: &'a Storage,
    vol: &Vol,
    session: &mut Option<Session<'a>>,
) -> CmdResult<bool> {
    let meta = vol.meta.lock().await.clone();
    if meta.state != State::Target {
        *session = None;
    }
    let dev = match meta.state {
        State::Target | State::Standby => st.wdevd.status(&meta.wdev).await?,
        _ => return Ok(false),
    };
    if meta.state == State::Standby {
        // Not the backup target: logs are simply freed.
        let to = dev.permanent.min(dev.prev_written);
        if to > dev.oldest {
            st.wdevd.set_oldest(&meta.wdev, to).await?;
        }
        return Ok(false);
    }
    if dev.overflow {
        *session = None;
        let mut m = vol.meta.lock().await;
        if m.state == State::Target {
            tracing::error!(
                vol = vol.name,
                "log overflow: stopping; a hash backup recovers"
            );
            m.state = State::Stopped;
            save(&vol.dir, &m)?;
        }
        return Ok(false);
    }
    // Logs shipped before the last checkpoint may be freed only now.
    free_logs(st, &meta.wdev, meta.done.lsid.0, &dev).await?;
    let max_pb = st.max_wlog_send_pb(dev.pbs);
    let last_sent = session
        .as_ref()
        .and_then(|s| s.unacked.back())
        .map(|s| s.to);
    take_implicit_snapshot(st, vol, dev.permanent, max_pb, last_sent).await?;
    // A volume that keeps writing would keep its slot: after its turn, while every slot is
    // taken, its session ends and it queues for a slot again behind the volumes waiting.
    if let Some(s) = session {
        if turn_over(s.since, &st.transfers) {
            if !s.unacked.is_empty() {
                return settle(st, vol, &meta.wdev, session, false).await;
            }
            *session = None;
        }
    }
    // A slot for the session: at most `--max-transfers` volumes' wlogs in memory and on the
    // way; the volumes waiting take their turns in order. What is due is read once it is held.
    let slot = match session {
        Some(_) => None,
        None => Some(
            st.transfers
                .acquire()
                .await
                .expect("transfer slots stay open"),
        ),
    };
    let meta = vol.meta.lock().await.clone();
    // Transfers continue from the last wlog sent, acknowledged or not.
    let from = last_sent.unwrap_or(meta.done);
    let queue: Vec<MetaLsidGid> = meta
        .queue
        .iter()
        .filter(|r| r.gid > from.gid)
        .copied()
        .collect();
    let end = transfer_end(&from, &queue, Lsid(dev.permanent), max_pb)
        // Its logs are not permanent yet (a snapshot taken just before a WAL reset). A
        // transfer cut short here could take an intermediate gid the snapshot owns.
        .filter(|end| end.rec_e.lsid <= Lsid(dev.permanent));
    let Some(end) = end else {
        return settle(st, vol, &meta.wdev, session, true).await;
    };
    let (begin, limit) = (from.lsid.0, end.lsid_limit.0);
    if meta.state != State::Target || limit < begin {
        // A backup reset the volume while this step ran (the device status is older than
        // the done record): nothing to ship until the next step.
        *session = None;
        return Ok(false);
    }
    // A trickle of writes (a database's commits make logs permanent many times a second)
    // leaves at most about once a poll (the next poll's wake-up, at least half a poll after
    // the last send, always lets it go): every wlog costs each server a file and a
    // registration, and the archive a restorable point. Up to an explicit snapshot it leaves
    // at once.
    if let Some(s) = session.as_ref() {
        let bytes = (limit - begin) * dev.pbs as u64;
        if end.rec_e.is_mergeable && bytes < COALESCE_BYTES && s.last_sent.elapsed() < st.poll / 2 {
            return settle(st, vol, &meta.wdev, session, true).await;
        }
    }
    let ldev = st.wdevd.ldev_path(&meta.wdev).await?;
    let (wlog, lsid_e) = tokio::task::spawn_blocking(move || extract(&ldev, begin, limit))
        .await
        .map_err(|e| CmdError::Internal(format!("extract task: {e}")))??;
    let gid_e = transfer_end_gid(&from, &end, Lsid(lsid_e));
    let mut diff = MetaDiff::new(MetaSnap::clean(from.gid), MetaSnap::clean(gid_e))?;
    diff.is_mergeable = from.is_mergeable;
    diff.timestamp = end.rec_e.timestamp;
    let open = Open {
        vol: vol.name.clone(),
        host_type: "storage".into(),
        uuid: wlog.uuid.clone(),
        pbs: dev.pbs,
        salt: wlog.salt,
        size_lb: dev.size_lb,
        max_log_pb: limit - begin,
        ..Default::default()
    };
    let reached = lsid_e == end.rec_e.lsid.0;
    let shipped = Shipped {
        from,
        to: MetaLsidGid {
            is_mergeable: if reached {
                end.rec_e.is_mergeable
            } else {
                true
            },
            timestamp: end.rec_e.timestamp,
            lsid: Lsid(lsid_e),
            gid: gid_e,
        },
        bytes: wlog.bytes.len() as u64,
        sent: Instant::now(),
    };
    let diff = diff.to_bytes();
    match session {
        Some(s) => {
            if let Err(e) = send_wlog(&mut s.flow, open, wlog.bytes, diff).await {
                // The proxy ended the stream: the answers to the wlogs before say why.
                while let Some(before) = s.unacked.pop_front() {
                    let acked = s.flow.acked().await;
                    acked.map_err(|e| flow_failed(st, &s.proxy, e))?;
                    apply(st, vol, &meta.wdev, before).await?;
                }
                return Err(flow_failed(st, &s.proxy, e));
            }
            s.unacked.push_back(shipped);
            s.last_sent = Instant::now();
            if s.unacked.len() >= UNACKED {
                return settle(st, vol, &meta.wdev, session, false).await;
            }
            Ok(true)
        }
        None => {
            // A session's first wlog waits for its Ack, so that a proxy that refuses it
            // hands the volume to the next one at once.
            let (proxy, flow) = open_session(st, open, wlog.bytes, diff).await?;
            let slot = slot.expect("a slot is taken for a new session");
            let applied = apply(st, vol, &meta.wdev, shipped).await?;
            *session = applied.then_some(Session {
                proxy,
                flow,
                unacked: VecDeque::new(),
                _slot: slot,
                since: Instant::now(),
                last_sent: Instant::now(),
            });
            Ok(applied)
        }
    }
}

/// Nothing more to send now: waits for the oldest unacknowledged wlog's Ack and applies it;
/// false when none was left (the session ends). With `or_more`, while another wlog may be
/// sent, the poller's next wake-up (the device moved) ends the wait early with true, so what
/// was written meanwhile leaves before this Ack rather than after it.
async fn settle(
    st: &Storage,
    vol: &Vol,
    wdev: &str,
    session: &mut Option<Session<'_>>,
    or_more: bool,
) -> CmdResult<bool> {
    let Some(s) = session.as_mut() else {
        return Ok(false);
    };
    if s.unacked.is_empty() {
        return Ok(false);
    }
    let acked = match or_more && s.unacked.len() < UNACKED {
        true => tokio::select! {
            a = s.flow.acked() => a,
            _ = vol.polled.notified() => return Ok(true),
            _ = vol.kick.notified() => return Ok(true),
        },
        false => s.flow.acked().await,
    };
    acked.map_err(|e| flow_failed(st, &s.proxy, e))?;
    let shipped = s.unacked.pop_front().expect("checked above");
    let applied = apply(st, vol, wdev, shipped).await?;
    if !applied {
        *session = None;
    }
    Ok(applied)
}

/// After a proxy's Ack: advances the done record, counts the transfer and frees what may be
/// freed. False when a backup reset the volume meanwhile (the done record is no longer the
/// one the wlog continued): the session ends and nothing is applied.
async fn apply(st: &Storage, vol: &Vol, wdev: &str, s: Shipped) -> CmdResult<bool> {
    {
        let mut m = vol.meta.lock().await;
        if m.done != s.from {
            tracing::info!(
                vol = vol.name,
                "the volume was reset while gid {} → {} was on its way",
                s.from.gid.0,
                s.to.gid.0
            );
            return Ok(false);
        }
        m.done = s.to;
        m.queue.retain(|r| r.gid > s.to.gid);
        save(&vol.dir, &m)?;
    }
    st.metrics.all.transfer("wlog-transfer", s.sent.elapsed());
    tracing::debug!(
        vol = vol.name,
        "shipped lsid {}..{} as gid {} → {}",
        s.from.lsid.0,
        s.to.lsid.0,
        s.from.gid.0,
        s.to.gid.0
    );
    walb_daemon::transfers::record(
        "shipped wlogs",
        &vol.name,
        s.bytes,
        s.from.gid.0,
        s.to.gid.0,
    );
    let l = [("vol", vol.name.as_str())];
    st.metrics.bytes_shipped.inc_by(&l, s.bytes);
    st.metrics.done_gid.set(&l, s.to.gid.0);
    let dev = st.wdevd.status(wdev).await?;
    free_logs(st, wdev, s.to.lsid.0, &dev).await?;
    Ok(true)
}

/// A session's failure: a proxy that could not be reached goes to the end of the order.
fn flow_failed(st: &Storage, proxy: &str, e: FlowError) -> CmdError {
    if matches!(e, FlowError::Transport(_)) {
        st.proxy_down(proxy);
    }
    CmdError::Internal(format!("{proxy}: {e}"))
}

/// Frees the logs below `done` that wdevd allows freeing (up to its last checkpoint). When
/// shipped logs wait for a checkpoint while the log is more than half full, asks for one
/// rather than let the log overflow.
async fn free_logs(st: &Storage, wdev: &str, done: u64, dev: &DevStatus) -> CmdResult<()> {
    let mut prev_written = dev.prev_written;
    if done > prev_written && dev.log_usage * 2 > dev.log_capacity {
        st.wdevd.checkpoint(wdev).await?;
        prev_written = st.wdevd.status(wdev).await?.prev_written;
    }
    let to = done.min(prev_written);
    if to > dev.oldest {
        st.wdevd.set_oldest(wdev, to).await?;
    }
    Ok(())
}

/// Queues a mergeable snapshot at `permanent` when new logs wait and either no record waits
/// to be sent or the newest is older than the snapshot interval.
async fn take_implicit_snapshot(
    st: &Storage,
    vol: &Vol,
    permanent: u64,
    max_pb: u64,
    last_sent: Option<MetaLsidGid>,
) -> CmdResult<()> {
    let mut m = vol.meta.lock().await;
    let pre = *m.queue.last().unwrap_or(&m.done);
    // Records already sent and waiting for their Ack count as shipped.
    let sent = last_sent.unwrap_or(m.done);
    let waiting = m.queue.iter().any(|r| r.gid > sent.gid);
    let due = !waiting || pre.timestamp + st.snapshot_interval.as_secs() <= now();
    if permanent > pre.lsid.0 && due {
        m.queue_snapshot(permanent, true, max_pb);
        save(&vol.dir, &m)?;
    }
    Ok(())
}

/// A wlog file in memory.
pub struct Wlog {
    pub uuid: Bytes,
    pub salt: u32,
    pub bytes: Bytes,
}

/// Reads the packs in `[begin, limit)` from the log device (stopping before a pack that
/// crosses `limit`) as a wlog file; returns it and the lsid reached.
pub fn extract(ldev: &Path, begin: u64, limit: u64) -> CmdResult<(Wlog, u64)> {
    let io = walb_core::blockio::FileIo::open(ldev, false)
        .map_err(|e| CmdError::Internal(format!("open {}: {e}", ldev.display())))?;
    let mut ldev_r = walb_core::ldev::Ldev::open(Box::new(io), None)?;
    let sb = ldev_r.sb.clone();
    let header = WlogHeader {
        salt: sb.log_checksum_salt,
        pbs: sb.pbs,
        uuid: sb.uuid,
        begin_lsid: begin,
        // An upper bound that must lie above begin, even for a transfer without logs (an
        // explicit snapshot right after the previous one).
        end_lsid: limit.max(begin + 1),
    };
    let mut w = WlogWriter::new(Vec::new(), header)?;
    let mut lsid = begin;
    while lsid < limit {
        let p = ldev_r.read_pack(lsid)?.ok_or_else(|| {
            CmdError::Internal(format!(
                "{}: no valid logpack at lsid {lsid}, below the permanent lsid",
                ldev.display()
            ))
        })?;
        if p.header.next_lsid() > limit {
            break;
        }
        if let Some(i) = p.first_bad_record(sb.pbs, sb.log_checksum_salt) {
            return Err(CmdError::Internal(format!(
                "{}: logpack at lsid {lsid}, record {i}: data checksum mismatch",
                ldev.display()
            )));
        }
        w.write_pack(&p.header, &p.data)?;
        lsid = p.header.next_lsid();
    }
    let bytes = w.finish()?;
    Ok((
        Wlog {
            uuid: Bytes::copy_from_slice(&sb.uuid.0),
            salt: sb.log_checksum_salt,
            bytes: Bytes::from(bytes),
        },
        lsid,
    ))
}

/// Sends the wlog to the proxies in priority order, those that failed lately last; the
/// first that accepts and acks it carries the session. Returns its address and the flow.
async fn open_session(
    st: &Storage,
    open: Open,
    wlog: Bytes,
    diff: Vec<u8>,
) -> CmdResult<(String, Flow)> {
    let mut why = Vec::new();
    for p in st.proxy_order() {
        match first_wlog(&p, open.clone(), wlog.clone(), diff.clone()).await {
            Ok(flow) => {
                st.proxy_up(&p);
                return Ok((p, flow));
            }
            Err(e) => why.push(flow_failed(st, &p, e).to_string()),
        }
    }
    Err(CmdError::Internal(format!(
        "no proxy took the wlog ({})",
        why.join("; ")
    )))
}

/// Starts a flow to the proxy at `addr` with a wlog and waits for its Ack.
async fn first_wlog(addr: &str, open: Open, wlog: Bytes, diff: Vec<u8>) -> Result<Flow, FlowError> {
    let ch = wire::connect(addr)
        .await
        .map_err(|e| FlowError::Transport(e.to_string()))?;
    let mut client = walb_proto::sized!(ProxyClient::new(ch));
    // The wlog follows the Open at once: a refusal is rare, a round trip is not free.
    let mut flow = Flow::start(wire::frame(frame::Kind::Open(open)), move |s| async move {
        client.wlog_transfer(s).await
    });
    flow.send_bytes(wlog).await?;
    flow.send(commit(diff)).await?;
    flow.acked().await?;
    Ok(flow)
}

/// Sends another wlog on a session's flow (its Open, chunks and Commit) without waiting.
async fn send_wlog(
    flow: &mut Flow,
    open: Open,
    wlog: Bytes,
    diff: Vec<u8>,
) -> Result<(), FlowError> {
    flow.send(wire::frame(frame::Kind::Open(open))).await?;
    flow.send_bytes(wlog).await?;
    flow.send(commit(diff)).await
}

fn commit(diff: Vec<u8>) -> walb_proto::Frame {
    wire::frame(frame::Kind::Commit(Commit {
        diff: diff.into(),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(permanent: u64, prev_written: u64, oldest: u64) -> DevStatus {
        DevStatus {
            name: wdev_client::DevName::new("wdev0").unwrap(),
            uuid: String::new(),
            pbs: 4096,
            size_lb: 8,
            latest: permanent,
            completed: permanent,
            permanent,
            written: prev_written,
            prev_written,
            oldest,
            log_usage: permanent - oldest,
            log_capacity: 100,
            overflow: false,
        }
    }

    fn meta(state: State, done: u64) -> Meta {
        Meta {
            state,
            wdev: "wdev0".into(),
            done: MetaLsidGid {
                lsid: walb_core::Lsid(done),
                ..crate::vol::zero_done()
            },
            queue: Vec::new(),
        }
    }

    #[test]
    fn the_poller_wakes_only_volumes_with_something_to_do() {
        let idle = dev(10, 10, 10);
        // Shipped and freed, device unchanged: left asleep, in every state.
        for s in [
            State::Target,
            State::Standby,
            State::Stopped,
            State::SyncReady,
        ] {
            assert!(!to_wake(&meta(s, 10), &idle, Some(&idle)), "{s:?}");
        }
        // Any change of the device wakes it (the first poll too).
        assert!(to_wake(&meta(State::Stopped, 10), &idle, None));
        assert!(to_wake(
            &meta(State::Target, 10),
            &idle,
            Some(&dev(10, 8, 8))
        ));
        // Logs to ship wake a Target volume at every poll, even with the device unchanged.
        let more = dev(12, 10, 10);
        assert!(to_wake(&meta(State::Target, 10), &more, Some(&more)));
        let mut queued = meta(State::Target, 10);
        queued.queue_snapshot(10, false, 1 << 20);
        assert!(to_wake(&queued, &idle, Some(&idle)));
        // A Standby volume: logs below the last checkpoint to free.
        let unfreed = dev(12, 12, 10);
        assert!(to_wake(&meta(State::Standby, 0), &unfreed, Some(&unfreed)));
        assert!(!to_wake(&meta(State::Stopped, 0), &unfreed, Some(&unfreed)));
    }
}
