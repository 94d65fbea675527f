//! Calls a server's Control service (`walb_proto::control::call`), and waits on one.

use std::time::Duration;

use tonic::Code;
pub use walb_proto::control::{call, CallError};

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
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
