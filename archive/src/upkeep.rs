//! What the archive runs on its volumes by itself: retention on a schedule (and on command)
//! and scheduled verification, over `Archive::every_volume`. The rules and the work on one
//! volume's files are in `retention` and `verify`, which know nothing of the server.

use std::sync::Arc;
use std::time::Duration;

use walb_daemon::CmdResult;

use crate::archive::Archive;
use crate::retention;
use crate::verify::{self, Deep};
use crate::volume::Vol;

/// Runs retention on every volume every `every`, until the daemon stops.
pub async fn retention_scheduled(a: Arc<Archive>, every: Duration) {
    a.every_volume("retention", every, |a, vol| {
        retention_once(a, vol, false).map(|_| None)
    })
    .await
}

/// Retention on one volume now (`dry_run`: only the plan); returns the plan.
pub fn retention_once(
    a: &Archive,
    vol: &Vol,
    dry_run: bool,
) -> CmdResult<walb_proto::archive_reply::Retention> {
    use crate::volume::State;
    use walb_proto::archive_reply::{retention::Point, Retention};
    let mut reply = Retention {
        archive: a.id.clone(),
        ..Default::default()
    };
    if a.retention.is_off() {
        // A plan against no rules would call every point but the newest a drop.
        reply.off = true;
        return Ok(reply);
    }
    if !vol.exists() || vol.state()? != State::Archived || vol.base()?.is_applying {
        return Ok(reply);
    }
    let p = retention::plan(
        &vol.restorable()?,
        walb_core::meta::unix_now(),
        &a.retention,
    );
    reply.points = p
        .iter()
        .map(|(r, why)| Point {
            gid: r.gid.0,
            time: r.timestamp,
            reasons: why.iter().map(|w| w.word().to_string()).collect(),
        })
        .collect();
    if !dry_run {
        let n = retention::enforce(vol, &p, a.discard)?;
        if n > 0 {
            tracing::info!(vol = %vol.name, "retention dropped {n} points");
            a.refresh_metrics(vol);
        }
    }
    Ok(reply)
}

/// Verifies every volume whose last verification is older than `every` seconds, until the
/// daemon stops; checks once a minute.
pub async fn verify_scheduled(a: Arc<Archive>, every: u64) {
    let job = move |a: &Archive, vol: &Vol| {
        if !vol.has_image()
            || verify::last(vol)?.is_some_and(|r| r.time + every > walb_core::meta::unix_now())
        {
            return Ok(None);
        }
        let r = verify::verify(vol, Deep::Newest)?;
        a.note_verify(&vol.name, &r);
        Ok(Some(r.summary()))
    };
    a.every_volume("scheduled verify", Duration::from_secs(60), job)
        .await
}
