//! The sending side of a hash sync (walb.proto `HashSync`): Open → Accept|Reject → the
//! receiver's snapshot → its bulk hashes, forwarded as they come while the sender's chunks go
//! the other way → Commit → Ack. Used by hash backup (storage) and hash replication (archive).
//! Plumbing only, like `flow`.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::flow::FlowError;
use crate::{hash_event, Frame, HashEvent};

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
        let (tx, rx) = mpsc::channel(8);
        tx.send(open).await.map_err(|_| closed())?;
        let events = call(ReceiverStream::new(rx)).await?.into_inner();
        let mut flow = HashFlow { tx, events };
        flow.expect_accept().await?;
        match flow.next().await? {
            hash_event::Kind::Snap(b) => Ok((flow, b)),
            other => Err(unexpected("Snap", &other)),
        }
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
    /// `each` runs once per batch.
    pub async fn forward_hashes(
        &mut self,
        to: std::sync::mpsc::SyncSender<(u64, Bytes)>,
        mut each: impl FnMut(),
    ) -> Result<(), FlowError> {
        loop {
            match self.next().await? {
                hash_event::Kind::Hashes(h) => {
                    each();
                    if to.send((h.first, h.blake3)).is_err() || h.last {
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
