//! Calls a server's Control service.

use std::time::Duration;

use tonic::Code;
use walb_proto::control_client::ControlClient;
use walb_proto::{wire, Command};

/// A refused or failed command: which server, the gRPC code, and its message.
#[derive(Debug, thiserror::Error)]
#[error("{server}: {message} ({code:?})")]
pub struct CallError {
    pub server: String,
    pub code: Code,
    pub message: String,
}

/// Sends `args` to the server at `addr` and returns its reply text.
pub async fn call(addr: &str, args: &[&str]) -> Result<String, CallError> {
    let err = |code, message: String| CallError {
        server: addr.to_string(),
        code,
        message,
    };
    let ch = wire::connect(addr)
        .await
        .map_err(|e| err(Code::Unavailable, e.to_string()))?;
    let mut c = ControlClient::new(ch)
        .max_decoding_message_size(wire::MAX_MESSAGE)
        .max_encoding_message_size(wire::MAX_MESSAGE);
    let req = Command {
        args: args.iter().map(|s| s.to_string()).collect(),
    };
    c.call(req)
        .await
        .map(|r| r.into_inner().text)
        .map_err(|s| err(s.code(), s.message().to_string()))
}

/// Calls until `done` accepts the reply or `timeout` passes; returns the accepted reply.
pub async fn wait_for(
    addr: &str,
    args: &[&str],
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Result<String, CallError> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        let last = call(addr, args).await;
        match &last {
            Ok(t) if done(t) => return last,
            _ if tokio::time::Instant::now() >= end => {
                return Err(CallError {
                    server: addr.to_string(),
                    code: Code::DeadlineExceeded,
                    message: format!(
                        "gave up after {timeout:?} waiting on {args:?}; last answer: {}",
                        match last {
                            Ok(t) => t,
                            Err(e) => e.to_string(),
                        }
                    ),
                })
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
