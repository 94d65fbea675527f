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

/// Binds `vol` to storage `id`, or (None) to whichever sends a backup next.
pub fn bind(vol: &Vol, id: Option<&str>) -> CmdResult<()> {
    let p = vol.dir.join(FILE);
    Ok(match id {
        Some(id) => volfile::write(&p, id),
        None => volfile::remove(&p),
    }?)
}

/// Refuses a storage's full or hash sync of a volume bound to another storage; binds an
/// unbound volume to the sender. Without TLS (or from an archive: replication) nothing is
/// checked.
pub fn check(a: &Archive, flow: &FlowGuard, open: &Open) -> Result<(), Status> {
    let vol = a.vol(&open.vol);
    if flow.peer.role() != Some("storage")
        || walb_daemon::volfile::check_vol_name(&open.vol).is_err()
        || !vol.exists()
    {
        return Ok(());
    }
    match flow.other_owner(&vol.dir.join(FILE))? {
        None => Ok(()),
        Some(owner) => {
            tracing::warn!(vol = %vol.name, peer = %flow.peer, "backup denied: the volume takes backups from storage {owner}");
            Err(Status::permission_denied(format!(
                "{}: volume {} takes backups from storage {owner} (walbc call ARCHIVE bind-storage {} names another)",
                flow.peer, vol.name, vol.name
            )))
        }
    }
}
