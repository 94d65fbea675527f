//! The client side of `Control.Call`: one command to one server.

use tonic::Code;

use crate::control_client::ControlClient;
use crate::{wire, Command};

/// The metadata key of an UNAVAILABLE status from a server that is still starting (recovering
/// its data), so a client can tell it from a server that is down.
pub const STARTING_KEY: &str = "walb-starting";

/// The metadata key carrying `walbc --confirm VOL`: a protected archive runs a command that
/// deletes backups of VOL only when it names the same volume (docs/security.md).
pub const CONFIRM_KEY: &str = "walb-confirm";

static CONFIRM: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sends `vol` as the confirmation with every later call of this process (walbc --confirm).
pub fn set_confirm(vol: &str) {
    let _ = CONFIRM.set(vol.to_string());
}

/// A refused or failed command: which server, the gRPC code, and its message.
#[derive(Debug, thiserror::Error)]
#[error("{server}: {message} ({code:?})")]
pub struct CallError {
    pub server: String,
    pub code: Code,
    pub message: String,
    /// The server answered that it is still starting: the same call will work shortly.
    pub starting: bool,
}

/// Sends `args` to the server at `addr` and returns its reply text.
pub async fn call(addr: &str, args: &[&str]) -> Result<String, CallError> {
    let err = |code, message: String| CallError {
        server: addr.to_string(),
        code,
        message,
        starting: false,
    };
    let ch = wire::connect(addr)
        .await
        .map_err(|e| err(Code::Unavailable, e.to_string()))?;
    let mut c = ControlClient::new(ch)
        .max_decoding_message_size(wire::MAX_MESSAGE)
        .max_encoding_message_size(wire::MAX_MESSAGE);
    let mut req = tonic::Request::new(Command {
        args: args.iter().map(|s| s.to_string()).collect(),
    });
    if let Some(vol) = CONFIRM.get() {
        let v = vol
            .parse()
            .map_err(|_| err(Code::InvalidArgument, format!("--confirm {vol:?}")))?;
        req.metadata_mut().insert(CONFIRM_KEY, v);
    }
    c.call(req)
        .await
        .map(|r| r.into_inner().text)
        .map_err(|s| CallError {
            starting: s.metadata().contains_key(STARTING_KEY),
            ..err(s.code(), s.message().to_string())
        })
}
