//! walb-proxy: the proxy daemon (wlog → indexed wdiff, one retrying send queue per archive).
//! It must not reach into another daemon's files.

#![forbid(unsafe_code)]

pub mod archive_info;
pub mod commands;
pub mod layout;
pub mod metrics;
pub mod proxy;
pub mod recv;
pub mod send;
pub mod sender;
pub mod volume;
