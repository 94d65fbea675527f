//! walb-daemon: what every daemon (storage, proxy, archive) shares: flags merged with a TOML
//! config, logging, the Control service over a command trait, command errors as gRPC statuses,
//! the Prometheus `/metrics` endpoint, periodic transfer summaries in the log, readiness for
//! systemd, graceful shutdown, atomic per-volume files, the command table (`access`), the
//! caller's identity (`peer`), the audit log, certificate reload (`tls`) and the limits on
//! what one peer can take (`limits`), and a received flow's chunks handed to a blocking thread
//! (`chunks`).
//! It must not hold any daemon's volume logic.

pub mod access;
pub mod args;
pub mod audit;
pub mod backoff;
pub mod chunks;
pub mod config;
pub mod conn;
pub mod disk;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod peer;
pub mod progress;
pub mod serve;
pub mod tls;
pub mod transfers;
pub mod volfile;

pub use error::{CmdError, CmdResult};
