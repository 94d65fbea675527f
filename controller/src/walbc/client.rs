//! Calls a server by walb's command words (`words`), and waits on one.

use std::time::Duration;

use tonic::Code;
pub use walb_proto::control::CallError;

pub use super::words::call_words as call;

/// One call; while the server answers that it is still starting (recovering its data), the
/// call is repeated until `timeout` passes.
pub async fn call_when_ready(
    addr: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, CallError> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        match call(addr, args).await {
            Err(e) if e.starting && tokio::time::Instant::now() < end => {
                tracing::debug!("{addr}: {}; waiting", e.message);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
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
                    starting: false,
                    message: format!(
                        "gave up after {timeout:?} waiting on {args:?}; last answer: {}",
                        match last {
                            Ok(t) => t,
                            Err(e) => e.to_string(),
                        }
                    ),
                })
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
