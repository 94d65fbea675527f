//! A received flow's chunks handed to a blocking thread (which writes, converts or checks them)
//! over a bounded channel, and the thread's result put together with the chunk loop's: what
//! the archive's and the proxy's receiving flows share.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::Status;

/// Chunks handed to the thread at once: the memory one flow holds.
pub const IN_FLIGHT_CHUNKS: usize = 8;

/// Why a flow's chunk loop stopped short of Commit.
pub enum Stop {
    /// The thread ended early: its own result says why.
    ThreadGone,
    Failed(Status),
}

impl From<Status> for Stop {
    fn from(st: Status) -> Stop {
        Stop::Failed(st)
    }
}

/// A blocking thread fed with a flow's chunks; `what` names it in errors.
pub struct ChunkThread<T> {
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<Result<T, Status>>,
    what: &'static str,
}

impl<T: Send + 'static> ChunkThread<T> {
    /// Starts `work` on a blocking thread; it gets the chunks sent, until the input ends.
    pub fn spawn(
        what: &'static str,
        work: impl FnOnce(mpsc::Receiver<Bytes>) -> Result<T, Status> + Send + 'static,
    ) -> ChunkThread<T> {
        let (tx, rx) = mpsc::channel(IN_FLIGHT_CHUNKS);
        ChunkThread {
            tx,
            task: tokio::task::spawn_blocking(move || work(rx)),
            what,
        }
    }

    /// Hands one chunk on; `ThreadGone` when the thread has ended.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Stop> {
        self.tx.send(chunk).await.map_err(|_| Stop::ThreadGone)
    }

    /// Ends the input and waits for the thread's result.
    pub async fn finish(self) -> Result<T, Status> {
        drop(self.tx);
        self.task
            .await
            .map_err(|e| Status::internal(format!("{}: {e}", self.what)))?
    }

    /// Ends the input, waits for the thread (so that no file of a failed flow outlives its
    /// answer), and puts its result together with the chunk loop's, `received`: an error of
    /// the thread's own (bad data, a full disk) is why the loop could not hand chunks on.
    pub async fn join<R>(self, received: Result<R, Stop>) -> Result<(R, T), Status> {
        let what = self.what;
        match (received, self.finish().await) {
            (Ok(r), Ok(t)) => Ok((r, t)),
            (Err(Stop::ThreadGone), Err(e)) | (Ok(_), Err(e)) | (Err(Stop::Failed(e)), _) => Err(e),
            (Err(Stop::ThreadGone), Ok(_)) => Err(Status::internal(format!("{what} ended early"))),
        }
    }
}
