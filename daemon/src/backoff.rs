//! The one retry back-off of the daemons: 1 s after the first failure, doubling to 300 s,
//! back to none after a success (a storage's wlog shipping, a proxy's diff sending).

use std::time::Duration;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(300);

/// How long to wait before the next try; zero while nothing failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff(Duration);

impl Backoff {
    /// One more failure: the wait grows (1 s, 2 s, 4 s … 300 s) and is returned.
    pub fn failed(&mut self) -> Duration {
        self.0 = (self.0 * 2).clamp(FIRST, MAX);
        self.0
    }

    /// A success (or a kick): no wait.
    pub fn reset(&mut self) {
        self.0 = Duration::ZERO;
    }

    /// The current wait; zero when the last try went through.
    pub fn wait(&self) -> Duration {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_five_minutes() {
        let mut b = Backoff::default();
        assert_eq!(b.wait(), Duration::ZERO);
        let waits: Vec<u64> = (0..11).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        b.reset();
        assert_eq!(b.wait(), Duration::ZERO);
        assert_eq!(b.failed(), FIRST);
    }
}
