//! The lsid set of a device (docs/formats.md §8.1):
//! oldest ≤ prev_written ≤ written ≤ permanent ≤ completed ≤ latest.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lsids {
    /// Next lsid to allocate.
    pub latest: u64,
    /// All packs below have their log write done.
    pub completed: u64,
    /// All logs below are durable on the log device; only `[oldest, permanent)` may be read.
    pub permanent: u64,
    /// All packs below are also on the data device.
    pub written: u64,
    /// `written` at the last superblock sync; redo starts here.
    pub prev_written: u64,
    /// Logs below may be overwritten.
    pub oldest: u64,
}

impl Lsids {
    /// Every lsid at `at`, oldest at `oldest` (start-up after redo).
    pub fn at(oldest: u64, at: u64) -> Lsids {
        Lsids {
            latest: at,
            completed: at,
            permanent: at,
            written: at,
            prev_written: at,
            oldest,
        }
    }

    pub fn is_ordered(&self) -> bool {
        self.oldest <= self.prev_written
            && self.prev_written <= self.written
            && self.written <= self.permanent
            && self.permanent <= self.completed
            && self.completed <= self.latest
    }
}
