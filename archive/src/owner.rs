//! The storage a volume's backups come from (docs/security.md, "Data flows"): with TLS, an
//! archive volume takes full and hash backups from one storage certificate, the first to send
//! one (its id is kept in the volume's `storage` file), so a stolen certificate of another
//! storage cannot write a backup into it. `bind-storage VOL [ID]` names another storage (or,
//! without ID, lets the next one bind), as replacing a storage needs.

use tonic::Status;
use walb_daemon::limits::FlowGuard;
use walb_daemon::{volfile, CmdResult};
use walb_proto::Open;

use crate::archive::Archive;
use crate::volume::Vol;

const FILE: &str = "storage";

/// The storage `vol` takes backups from, if bound.
pub fn bound(vol: &Vol) -> CmdResult<Option<String>> {
    Ok(volfile::read(&vol.dir.join(FILE))?.map(|s| s.trim().to_string()))
}

/// Binds `vol` to storage `id`, or (None) to whichever sends a backup next.
pub fn bind(vol: &Vol, id: Option<&str>) -> CmdResult<()> {
    let p = vol.dir.join(FILE);
    match id {
        Some(id) => volfile::write(&p, id),
        None => volfile::remove(&p),
    }
}

/// Refuses a storage's full or hash sync of a volume bound to another storage; binds an
/// unbound volume to the sender. Without TLS (or from an archive: replication) nothing is
/// checked.
pub fn check(a: &Archive, flow: &FlowGuard, open: &Open) -> Result<(), Status> {
    let Some((role, id)) = flow.peer.role.as_ref().filter(|_| flow.peer.tls) else {
        return Ok(());
    };
    let vol = a.vol(&open.vol);
    if role != "storage"
        || walb_daemon::volfile::check_vol_name(&open.vol).is_err()
        || !vol.exists()
    {
        return Ok(());
    }
    let status = |e: walb_daemon::CmdError| Status::internal(e.to_string());
    tokio::task::block_in_place(|| match bound(&vol).map_err(status)? {
        Some(owner) if owner == *id => Ok(()),
        Some(owner) => {
            tracing::warn!(vol = %vol.name, peer = %flow.peer, "backup denied: the volume takes backups from storage {owner}");
            Err(Status::permission_denied(format!(
                "{}: volume {} takes backups from storage {owner} (walbc call ARCHIVE bind-storage {} names another)",
                flow.peer, vol.name, vol.name
            )))
        }
        None => bind(&vol, Some(id)).map_err(status),
    })
}
