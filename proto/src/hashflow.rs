//! The sending side of a hash sync (walb.proto `HashSync`): Open → Accept|Reject → the
//! receiver's snapshot → its bulk hashes, forwarded as they come while the sender's chunks go
//! the other way → Commit → Ack. Used by hash backup (storage) and hash replication (archive).
//! Used in reverse by failback (walbc sends, the storage hashes its device; no Snap). Plumbing
//! only, like `flow`.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::flow::FlowError;
use crate::{hash_event, Frame, HashEvent, Hashes};

/// Hashes per `Hashes` message at most: 8 KiB of hashes.
pub const HASHES_PER_MSG: usize = 256;
/// Image bytes one `Hashes` message covers at most: the sender compares (and starts sending)
/// a batch only once it has it, so large bulks go a few to a message (256 bulks of 256 KiB
/// would hold the first data back until 64 MiB of the image are hashed).
pub const IMAGE_BYTES_PER_MSG: usize = 4 << 20;

/// The frame sender and hash-event stream of an accepted hash sync.
pub struct HashFlow {
    pub tx: mpsc::Sender<Frame>,
    events: Streaming<HashEvent>,
}

impl HashFlow {
    /// Starts a hash sync with `open` through `call` (the generated client method) and waits
    /// for the receiver's Accept and then its snapshot (a serialised MetaSnap).
    pub async fn open<F, Fut>(open: Frame, call: F) -> Result<(HashFlow, Bytes), FlowError>
    where
        F: FnOnce(ReceiverStream<Frame>) -> Fut,
        Fut: std::future::Future<
            Output = Result<tonic::Response<Streaming<HashEvent>>, tonic::Status>,
        >,
    {
        let mut flow = HashFlow::open_accepted(open, call).await?;
        match flow.next().await? {
            hash_event::Kind::Snap(b) => Ok((flow, b)),
            other => Err(unexpected("Snap", &other)),
        }
    }

    /// Starts a hash sync whose receiver sends its hashes right after Accept, without a
    /// snapshot (failback); waits for the Accept.
    pub async fn open_accepted<F, Fut>(open: Frame, call: F) -> Result<HashFlow, FlowError>
    where
        F: FnOnce(ReceiverStream<Frame>) -> Fut,
        Fut: std::future::Future<
            Output = Result<tonic::Response<Streaming<HashEvent>>, tonic::Status>,
        >,
    {
        let (tx, rx) = mpsc::channel(8);
        tx.send(open).await.map_err(|_| closed())?;
        let events = call(ReceiverStream::new(rx)).await?.into_inner();
        let mut flow = HashFlow { tx, events };
        flow.expect_accept().await?;
        Ok(flow)
    }

    async fn expect_accept(&mut self) -> Result<(), FlowError> {
        match self.next().await? {
            hash_event::Kind::Accept(_) => Ok(()),
            hash_event::Kind::Reject(w) => Err(FlowError::Rejected(w)),
            other => Err(unexpected("Accept", &other)),
        }
    }

    async fn next(&mut self) -> Result<hash_event::Kind, FlowError> {
        self.events
            .message()
            .await?
            .and_then(|e| e.kind)
            .ok_or_else(|| FlowError::Transport("the receiver closed the hash sync".into()))
    }

    /// Hands each batch of hashes (first bulk number, 32-byte BLAKE3s) to `to` until the
    /// last batch, or until `to` hangs up (the comparison ended early: its result tells why);
    /// `each` runs once per batch. Waits (without blocking the runtime) while the comparison
    /// is behind.
    pub async fn forward_hashes(
        &mut self,
        to: mpsc::Sender<(u64, Bytes)>,
        mut each: impl FnMut(),
    ) -> Result<(), FlowError> {
        loop {
            match self.next().await? {
                hash_event::Kind::Hashes(h) => {
                    each();
                    if to.send((h.first, h.blake3)).await.is_err() || h.last {
                        return Ok(());
                    }
                }
                other => return Err(unexpected("Hashes", &other)),
            }
        }
    }

    /// Sends the commit and waits for the Ack (the receiver made the diff durable).
    pub async fn commit(mut self, commit: Frame) -> Result<(), FlowError> {
        if self.tx.send(commit).await.is_err() {
            // The receiver ended the flow: its status says why.
            return Err(match self.next().await {
                Ok(k) => unexpected("Ack", &k),
                Err(e) => e,
            });
        }
        match self.next().await? {
            hash_event::Kind::Ack(_) => Ok(()),
            hash_event::Kind::Reject(w) => Err(FlowError::Rejected(w)),
            other => Err(unexpected("Ack", &other)),
        }
    }
}

/// Hash batches on their way from `HashFlow::forward_hashes` to a comparison in blocking code,
/// which iterates them (`hash_batches`).
pub struct HashBatches(mpsc::Receiver<(u64, Bytes)>);

impl Iterator for HashBatches {
    type Item = (u64, Bytes);

    fn next(&mut self) -> Option<(u64, Bytes)> {
        self.0.blocking_recv()
    }
}

/// The channel from `HashFlow::forward_hashes` to a blocking comparison, 8 batches deep.
pub fn hash_batches() -> (mpsc::Sender<(u64, Bytes)>, HashBatches) {
    let (tx, rx) = mpsc::channel(8);
    (tx, HashBatches(rx))
}

/// The receiving side's hashes of bulks of `bulk` bytes in `Hashes` messages of
/// `HASHES_PER_MSG` hashes or `IMAGE_BYTES_PER_MSG` of image, whichever is fewer (at least
/// one): `push` each bulk's hash in order, then `finish` (the last message, `last` set); every
/// message goes to `send`.
pub struct HashBatcher<F> {
    batch: Vec<u8>,
    per_msg: usize,
    first: u64,
    n: u64,
    send: F,
}

impl<E, F: FnMut(Hashes) -> Result<(), E>> HashBatcher<F> {
    pub fn new(bulk: usize, send: F) -> HashBatcher<F> {
        let per_msg = (IMAGE_BYTES_PER_MSG / bulk.max(1)).clamp(1, HASHES_PER_MSG);
        HashBatcher {
            batch: Vec::with_capacity(per_msg * 32),
            per_msg,
            first: 0,
            n: 0,
            send,
        }
    }

    pub fn push(&mut self, hash: &[u8; 32]) -> Result<(), E> {
        self.batch.extend_from_slice(hash);
        self.n += 1;
        if self.batch.len() == self.per_msg * 32 {
            self.flush(false)?;
            self.first = self.n;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), E> {
        self.flush(true)
    }

    fn flush(&mut self, last: bool) -> Result<(), E> {
        (self.send)(Hashes {
            first: self.first,
            blake3: std::mem::take(&mut self.batch).into(),
            last,
        })
    }
}

/// Sends `data` as chunk frames from blocking code (a comparison worker).
pub fn send_chunks_blocking(tx: &mpsc::Sender<Frame>, data: Bytes) -> Result<(), FlowError> {
    for c in crate::wire::chunks(data) {
        tx.blocking_send(c).map_err(|_| closed())?;
    }
    Ok(())
}

fn closed() -> FlowError {
    FlowError::Transport("the hash sync ended".into())
}

fn unexpected(want: &str, got: &hash_event::Kind) -> FlowError {
    FlowError::Transport(format!("expected {want}, got {got:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(bulk: usize, n: u64) -> Vec<(u64, usize, bool)> {
        let mut got = Vec::new();
        let mut b = HashBatcher::new(bulk, |h: Hashes| -> Result<(), ()> {
            got.push((h.first, h.blake3.len() / 32, h.last));
            Ok(())
        });
        for i in 0..n {
            b.push(&[i as u8; 32]).unwrap();
        }
        b.finish().unwrap();
        got
    }

    #[test]
    fn hashes_go_in_full_batches_then_a_last_one() {
        assert_eq!(
            batches(4096, 600),
            [(0, 256, false), (256, 256, false), (512, 88, true)]
        );
        // A whole number of batches ends with an empty last one.
        assert_eq!(batches(4096, 256), [(0, 256, false), (256, 0, true)]);
        assert_eq!(batches(4096, 0), [(0, 0, true)]);
    }

    #[test]
    fn large_bulks_go_a_few_to_a_message() {
        // 256 KiB bulks: 16 to a message (4 MiB of image).
        assert_eq!(
            batches(256 << 10, 40),
            [(0, 16, false), (16, 16, false), (32, 8, true)]
        );
        // A bulk larger than a message's share still goes.
        assert_eq!(
            batches(8 << 20, 2),
            [(0, 1, false), (1, 1, false), (2, 0, true)]
        );
    }
}
