//! Log durability without the device lock: a flusher (fsync, the periodic checkpoint, the
//! writeback thread) syncs the log device through its own handle while writers go on logging,
//! and one sync covers every pack written before it started, so flushers that arrive
//! together share one sync (docs/wdev.md, "Write path").

use std::sync::Mutex;

use walb_core::blockio::BlockIo;

pub struct LogSync {
    /// A handle of its own on the log device; its lock makes syncs take turns.
    io: Mutex<Box<dyn BlockIo>>,
    marks: Mutex<Marks>,
}

struct Marks {
    /// Bumped when the log starts over (reset-wal): a sync begun before must not claim
    /// lsids of the new log.
    epoch: u64,
    /// Every pack below this has been written (the device's `completed`).
    completed: u64,
    /// Every pack below this is durable.
    durable: u64,
}

impl LogSync {
    /// `lsid`: the log's end, durable already (the device was just opened and redone).
    pub fn new(io: Box<dyn BlockIo>, lsid: u64) -> LogSync {
        LogSync {
            io: Mutex::new(io),
            marks: Mutex::new(Marks {
                epoch: 0,
                completed: lsid,
                durable: lsid,
            }),
        }
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().expect("log sync marks")
    }

    /// Every pack below `lsid` is written (called after the write returned).
    pub fn written(&self, lsid: u64) {
        self.marks().completed = lsid;
    }

    /// Every pack below the returned lsid is durable.
    pub fn durable(&self) -> u64 {
        self.marks().durable
    }

    /// The log starts over at `lsid` (reset-wal, after a checkpoint made everything durable).
    pub fn restart(&self, lsid: u64) {
        let mut m = self.marks();
        m.epoch += 1;
        m.completed = lsid;
        m.durable = lsid;
    }

    /// Returns once every pack below `lsid` is durable: at once when a sync already covered
    /// it, else after a sync that covers every pack written when it starts.
    pub fn sync_to(&self, lsid: u64) -> std::io::Result<()> {
        if self.durable() >= lsid {
            return Ok(());
        }
        let mut io = self.io.lock().expect("log sync handle");
        let (epoch, upto) = {
            let m = self.marks();
            if m.durable >= lsid {
                return Ok(());
            }
            (m.epoch, m.completed)
        };
        io.sync()?;
        let mut m = self.marks();
        if m.epoch == epoch {
            m.durable = m.durable.max(upto);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A log device that only counts its syncs.
    struct Syncs(Arc<AtomicUsize>);

    impl BlockIo for Syncs {
        fn read_at(&mut self, _: &mut [u8], _: u64) -> io::Result<()> {
            Ok(())
        }
        fn write_at(&mut self, _: &[u8], _: u64) -> io::Result<()> {
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn size(&mut self) -> io::Result<u64> {
            Ok(0)
        }
        fn discard(&mut self, _: u64, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn try_clone(&self) -> io::Result<Box<dyn BlockIo>> {
            Ok(Box::new(Syncs(self.0.clone())))
        }
    }

    #[test]
    fn one_sync_covers_every_pack_written_before_it() {
        let n = Arc::new(AtomicUsize::new(0));
        let s = LogSync::new(Box::new(Syncs(n.clone())), 10);
        s.sync_to(10).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 0, "durable at open");
        s.written(12);
        s.written(15);
        s.sync_to(12).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(s.durable(), 15, "the sync covered every written pack");
        s.sync_to(15).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1, "nothing new to sync");
        // After reset-wal, a target of the old log does not pass as durable in the new one.
        s.restart(0);
        s.written(3);
        s.sync_to(3).unwrap();
        assert_eq!((n.load(Ordering::SeqCst), s.durable()), (2, 3));
    }
}
