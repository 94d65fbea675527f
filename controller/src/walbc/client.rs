//! Calls a server with a typed command (`walb_proto::control::call`), and waits on one.

use std::future::Future;
use std::time::Duration;

use tonic::Code;
pub use walb_proto::control::{call, CallError, Cmd};

/// Runs `f` (one call to `addr`); while the server answers that it is still starting
/// (recovering its data), it is run again until `timeout` passes.
pub async fn when_ready<T, Fut>(
    addr: &str,
    timeout: Duration,
    f: impl Fn() -> Fut,
) -> Result<T, CallError>
where
    Fut: Future<Output = Result<T, CallError>>,
{
    let end = tokio::time::Instant::now() + timeout;
    loop {
        match f().await {
            Err(e) if e.starting && tokio::time::Instant::now() < end => {
                tracing::debug!("{addr}: {}; waiting", e.message);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
}

/// One call, repeated while the server is still starting (`when_ready`).
pub async fn call_when_ready<C: Cmd + Clone>(
    addr: &str,
    cmd: C,
    timeout: Duration,
) -> Result<C::Reply, CallError> {
    when_ready(addr, timeout, || call(addr, cmd.clone())).await
}

/// Calls until `done` accepts the reply or `timeout` passes; returns the accepted reply.
pub async fn wait_for<C: Cmd + Clone>(
    addr: &str,
    cmd: C,
    timeout: Duration,
    done: impl Fn(&C::Reply) -> bool,
) -> Result<C::Reply, CallError> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        let last = call(addr, cmd.clone()).await;
        match &last {
            Ok(t) if done(t) => return last,
            _ if tokio::time::Instant::now() >= end => {
                return Err(CallError {
                    server: addr.to_string(),
                    code: Code::DeadlineExceeded,
                    starting: false,
                    message: format!(
                        "gave up after {timeout:?} waiting on {cmd:?}; last answer: {}",
                        match last {
                            Ok(t) => format!("{t:?}"),
                            Err(e) => e.to_string(),
                        }
                    ),
                })
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
