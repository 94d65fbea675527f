//! walb-archive: the archive daemon (base image + wdiff chain, apply, merge, restore, replication).
//! It must not reach into another daemon's files.

pub mod archive;
pub mod capacity;
pub mod commands;
pub mod devhash;
pub mod flow;
pub mod hashsync;
pub mod image;
pub mod metrics;
pub mod ops;
pub mod owner;
pub mod rebuild;
pub mod repl;
pub mod repo;
pub mod retention;
pub mod service;
pub mod store_error;
pub mod thin;
pub mod upkeep;
pub mod verify;
pub mod volume;
