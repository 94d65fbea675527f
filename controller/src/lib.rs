//! walb-controller: `walbc` (layout model, per-server commands, high-level operations) and
//! `walb-tool` (offline format tools over `walb-core`). It must not hold volume state.

pub mod tool;
pub mod walbc;
