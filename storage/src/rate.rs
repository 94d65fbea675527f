//! A volume's write rate, from the device's newest lsid sampled by the poller, and the
//! time until the log overflows at that rate if nothing more were shipped (what an operator
//! has left when the pipeline stalls).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far back the rate looks.
const WINDOW: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct WriteRate(Mutex<VecDeque<(Instant, u64)>>);

impl WriteRate {
    /// Notes the device's newest lsid now.
    pub fn sample(&self, lsid: u64) {
        self.sample_at(Instant::now(), lsid);
    }

    fn sample_at(&self, t: Instant, lsid: u64) {
        let mut s = self.0.lock().expect("rate lock");
        // A reset or a new device restarts the count.
        if s.back().is_some_and(|&(_, l)| l > lsid) {
            s.clear();
        }
        s.push_back((t, lsid));
        while s.len() > 2
            && s.front()
                .is_some_and(|&(f, _)| t.duration_since(f) > WINDOW)
        {
            s.pop_front();
        }
    }

    /// Physical blocks a second over the window; None before two samples a second apart.
    pub fn pb_per_sec(&self) -> Option<f64> {
        let s = self.0.lock().expect("rate lock");
        let (&(t0, l0), &(t1, l1)) = (s.front()?, s.back()?);
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs >= 1.0).then(|| (l1 - l0) as f64 / secs)
    }
}

/// Seconds until `free_pb` physical blocks fill at `pb_per_sec`; None when nothing is written.
pub fn overflow_in(free_pb: u64, pb_per_sec: f64) -> Option<u64> {
    (pb_per_sec > 0.0).then(|| (free_pb as f64 / pb_per_sec) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window() {
        let r = WriteRate::default();
        let t = Instant::now();
        assert_eq!(r.pb_per_sec(), None);
        r.sample_at(t, 100);
        r.sample_at(t + Duration::from_secs(2), 300);
        assert_eq!(r.pb_per_sec(), Some(100.0));
        // Samples older than the window drop out.
        r.sample_at(t + Duration::from_secs(40), 300);
        r.sample_at(t + Duration::from_secs(42), 300);
        assert_eq!(r.pb_per_sec(), Some(0.0));
        assert_eq!(overflow_in(1000, 0.0), None);
        assert_eq!(overflow_in(1000, 100.0), Some(10));
        // A reset of the log starts over.
        r.sample_at(t + Duration::from_secs(43), 5);
        assert_eq!(r.pb_per_sec(), None);
    }
}
