//! The sending side of a data flow (walb.proto): Open → Accept|Reject → frames → Commit → Ack.
//! Plumbing only: what the frames carry is the caller's business.

use crate::{event, frame, Event, Frame};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Why a flow did not end with an Ack.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The receiver refused, with walb's rejection word.
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Transport(String),
}

impl From<tonic::Status> for FlowError {
    fn from(s: tonic::Status) -> FlowError {
        FlowError::Transport(format!("{} [{:?}]", s.message(), s.code()))
    }
}

type Answer = Result<tonic::Response<Streaming<Event>>, tonic::Status>;

/// The frame sender and event stream of an opened flow.
pub struct Flow {
    pub tx: mpsc::Sender<Frame>,
    /// The receiver's events, once its answer came.
    events: Option<Streaming<Event>>,
    /// The call still waiting for the receiver's answer (a started flow).
    calling: Option<JoinHandle<Answer>>,
    /// The receiver's Accept was read.
    accepted: bool,
    /// Commits sent whose answers were not read yet.
    unanswered: usize,
}

impl Flow {
    /// Starts a flow with `open` through `call` (a generated client method) and waits for the
    /// receiver's answer.
    pub async fn open<F, Fut>(open: Frame, call: F) -> Result<Flow, FlowError>
    where
        F: FnOnce(ReceiverStream<Frame>) -> Fut,
        Fut: std::future::Future<Output = Answer>,
    {
        let (tx, rx) = mpsc::channel(8);
        tx.send(open)
            .await
            .map_err(|_| FlowError::Transport("flow closed".into()))?;
        let events = call(ReceiverStream::new(rx)).await?.into_inner();
        let mut flow = Flow {
            tx,
            events: Some(events),
            calling: None,
            accepted: false,
            unanswered: 0,
        };
        flow.expect_accept().await?;
        Ok(flow)
    }

    /// Starts a flow with `open` through `call` and returns at once: the frames sent next
    /// follow the Open without waiting a round trip for the receiver's answer (docs/formats.md
    /// §7.4). A Reject then shows in the first `send` after the receiver ended the flow, or in
    /// `commit`. For transfers the receiver rarely refuses, across links where a round trip
    /// costs more than the data it could carry.
    pub fn start<F, Fut>(open: Frame, call: F) -> Flow
    where
        F: FnOnce(ReceiverStream<Frame>) -> Fut,
        Fut: std::future::Future<Output = Answer> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(open)
            .expect("a new channel has room for the Open");
        Flow {
            tx,
            events: None,
            calling: Some(tokio::spawn(call(ReceiverStream::new(rx)))),
            accepted: false,
            unanswered: 0,
        }
    }

    async fn expect_accept(&mut self) -> Result<(), FlowError> {
        match self.next().await? {
            event::Kind::Accept(_) => {
                self.accepted = true;
                Ok(())
            }
            event::Kind::Reject(r) => Err(FlowError::Rejected(r)),
            event::Kind::Ack(_) => Err(FlowError::Transport("ack before data".into())),
        }
    }

    /// The receiver's next event after its Accept.
    async fn next_accepted(&mut self) -> Result<event::Kind, FlowError> {
        if !self.accepted {
            self.expect_accept().await?;
        }
        self.next().await
    }

    /// Cancel safe (as `acked` is): dropped while it waits, nothing is lost.
    async fn next(&mut self) -> Result<event::Kind, FlowError> {
        if let Some(call) = self.calling.as_mut() {
            let joined = call.await;
            self.calling = None;
            let answer = joined.map_err(|e| FlowError::Transport(format!("flow call: {e}")))??;
            self.events = Some(answer.into_inner());
        }
        let events = self
            .events
            .as_mut()
            .ok_or_else(|| FlowError::Transport("the flow's call failed".into()))?;
        events
            .message()
            .await?
            .and_then(|e| e.kind)
            .ok_or_else(|| FlowError::Transport("receiver closed the flow".into()))
    }

    /// Sends a frame; when the receiver has ended the flow, returns why it did (its error
    /// status or rejection), not only that it did.
    pub async fn send(&mut self, f: Frame) -> Result<(), FlowError> {
        let commit = matches!(f.kind, Some(frame::Kind::Commit(_)));
        if self.tx.send(f).await.is_ok() {
            self.unanswered += usize::from(commit);
            return Ok(());
        }
        Err(self.why_ended().await)
    }

    /// Why the receiver ended the flow (its frames can no longer be sent): its error status
    /// or rejection. While earlier transfers of the flow wait for their answers, those come
    /// first and `acked` reads them; this then says only that the flow ended.
    pub async fn why_ended(&mut self) -> FlowError {
        if self.unanswered > 0 {
            return FlowError::Transport("the receiver ended the flow".into());
        }
        match self.next_accepted().await {
            Ok(event::Kind::Reject(r)) => FlowError::Rejected(r),
            Ok(k) => FlowError::Transport(format!("receiver closed the flow after {k:?}")),
            Err(e) => e,
        }
    }

    /// Sends `data` as chunks of `wire::CHUNK` bytes.
    pub async fn send_bytes(&mut self, data: bytes::Bytes) -> Result<(), FlowError> {
        for c in crate::wire::chunks(data) {
            self.send(c).await?;
        }
        Ok(())
    }

    /// Sends the commit and waits for the Ack (the receiver made it durable).
    pub async fn commit(mut self, commit: Frame) -> Result<(), FlowError> {
        self.send(commit).await?;
        self.acked().await
    }

    /// Waits for the Ack of the oldest transfer of the flow not yet acknowledged (its Accept
    /// first, when not read yet). A flow that carries several transfers one after the other
    /// (another Open sent after a Commit, docs/formats.md §7.4) reads their Acks in turn.
    /// Cancel safe: a sender may wait for an Ack or for more to send, whichever comes first.
    pub async fn acked(&mut self) -> Result<(), FlowError> {
        match self.next_accepted().await? {
            event::Kind::Ack(_) => {
                self.accepted = false;
                self.unanswered = self.unanswered.saturating_sub(1);
                Ok(())
            }
            event::Kind::Reject(r) => Err(FlowError::Rejected(r)),
            event::Kind::Accept(_) => Err(FlowError::Transport("accept instead of ack".into())),
        }
    }
}

impl Drop for Flow {
    /// A flow given up before the receiver answered ends its call too.
    fn drop(&mut self) {
        if let Some(call) = &self.calling {
            call.abort();
        }
    }
}

/// The receiving side: the next frame's content, or a status naming what was expected when
/// the sender sent an empty frame or closed the stream.
pub async fn next_frame(
    input: &mut Streaming<Frame>,
    what: &str,
) -> Result<frame::Kind, tonic::Status> {
    match input.message().await? {
        Some(Frame { kind: Some(k) }) => Ok(k),
        Some(Frame { kind: None }) => Err(tonic::Status::invalid_argument(format!(
            "empty frame while expecting {what}"
        ))),
        None => Err(tonic::Status::aborted(format!(
            "the sender closed the stream while expecting {what}"
        ))),
    }
}
