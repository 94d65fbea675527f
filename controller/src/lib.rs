//! walb-controller: `walbc` (layout model, typed commands to each server, high-level
//! operations across servers). It must not hold volume state.

pub mod walbc;
