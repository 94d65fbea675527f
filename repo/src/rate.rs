//! A byte-rate limit shared by a transfer's parallel requests (`--repo-rate-mbps`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Rate {
    /// Bytes a second; 0: unlimited.
    bps: u64,
    state: Mutex<(Instant, u64)>,
}

impl Rate {
    pub fn new(bps: u64) -> Rate {
        Rate {
            bps,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    pub fn unlimited() -> Rate {
        Rate::new(0)
    }

    /// Counts `n` bytes and waits until the rate since the start allows them.
    pub async fn take(&self, n: u64) {
        if self.bps == 0 {
            return;
        }
        let wait = {
            let mut s = self.state.lock().expect("rate lock");
            // Idle time is no credit beyond a second: the window starts again.
            let behind =
                s.0.elapsed()
                    .saturating_sub(Duration::from_secs_f64(s.1 as f64 / self.bps as f64));
            if behind > Duration::from_secs(1) {
                *s = (Instant::now(), 0);
            }
            s.1 += n;
            let due = Duration::from_secs_f64(s.1 as f64 / self.bps as f64);
            due.saturating_sub(s.0.elapsed())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rate_holds_bytes_back() {
        let r = Rate::new(10 << 20);
        let t = Instant::now();
        for _ in 0..4 {
            r.take(1 << 20).await;
        }
        assert!(
            t.elapsed() >= Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
        let t = Instant::now();
        Rate::unlimited().take(1 << 40).await;
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}
