//! Logging for every binary: `tracing` from `RUST_LOG` (default info) on stderr, coloured only
//! when stderr is a terminal, so a log file or a pipe gets no escape codes.

use std::io::IsTerminal;

/// Installs the subscriber; a second call (or one already installed) changes nothing.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
