//! Snapshot metadata: MetaSnap, MetaDiff, MetaState, MetaLsidGid, their rules (docs/formats.md
//! §6.2), wdiff file names (§6.3), gid allocation (§6.4) and binary forms.

pub mod codec;
pub mod diff;
pub mod lsidgid;
pub mod name;
pub mod snap;
pub mod state;

pub use diff::{
    applicable_chain, apply_snap, can_merge, choose_next, contains, merge, merge_all, relation,
    restorable, MetaDiff, Relation, Restorable,
};
pub use lsidgid::{next_gid, transfer_end, transfer_end_gid, MetaLsidGid, TransferEnd};
pub use name::{format_name, iso_utc, parse_iso_utc, parse_name, unix_now};
pub use snap::MetaSnap;
pub use state::{apply_all, MetaState};

#[cfg(test)]
mod tests;
