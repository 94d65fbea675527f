//! The sending side of a data flow (walb.proto): Open → Accept|Reject → frames → Commit → Ack.
//! Plumbing only: what the frames carry is the caller's business.

use crate::{event, frame, Event, Frame};
use tokio::sync::mpsc;
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

/// The frame sender and event stream of an opened flow.
pub struct Flow {
    pub tx: mpsc::Sender<Frame>,
    answers: Answers,
}

/// The receiver's answers on a flow's stream, in order.
pub struct Answers(Streaming<Event>);

impl Answers {
    /// The next answer: Accept, Reject or Ack.
    pub async fn next(&mut self) -> Result<event::Kind, FlowError> {
        self.0
            .message()
            .await?
            .and_then(|e| e.kind)
            .ok_or_else(|| FlowError::Transport("receiver closed the flow".into()))
    }
}

/// Starts a stream with `open` through `call` (a generated client method) without waiting
/// for the answer: a sender of several transfers on one stream (a chain of diffs,
/// docs/formats.md §7.5) sends each next Open, data and Commit before the previous Ack and
/// reads the answers as they come.
pub async fn start<F, Fut>(
    open: Frame,
    call: F,
) -> Result<(mpsc::Sender<Frame>, Answers), FlowError>
where
    F: FnOnce(ReceiverStream<Frame>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Streaming<Event>>, tonic::Status>>,
{
    let (tx, rx) = mpsc::channel(8);
    tx.send(open)
        .await
        .map_err(|_| FlowError::Transport("flow closed".into()))?;
    let events = call(ReceiverStream::new(rx)).await?.into_inner();
    Ok((tx, Answers(events)))
}

impl Flow {
    /// Starts a flow with `open` through `call` (a generated client method) and waits for the
    /// receiver's answer.
    pub async fn open<F, Fut>(open: Frame, call: F) -> Result<Flow, FlowError>
    where
        F: FnOnce(ReceiverStream<Frame>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Streaming<Event>>, tonic::Status>>,
    {
        let (tx, answers) = start(open, call).await?;
        let mut flow = Flow { tx, answers };
        match flow.next().await? {
            event::Kind::Accept(_) => Ok(flow),
            event::Kind::Reject(r) => Err(FlowError::Rejected(r)),
            event::Kind::Ack(_) => Err(FlowError::Transport("ack before data".into())),
        }
    }

    async fn next(&mut self) -> Result<event::Kind, FlowError> {
        self.answers.next().await
    }

    /// Sends a frame; when the receiver has ended the flow, returns why it did (its error
    /// status or rejection), not only that it did.
    pub async fn send(&mut self, f: Frame) -> Result<(), FlowError> {
        if self.tx.send(f).await.is_ok() {
            return Ok(());
        }
        Err(match self.next().await {
            Ok(event::Kind::Reject(r)) => FlowError::Rejected(r),
            Ok(k) => FlowError::Transport(format!("receiver closed the flow after {k:?}")),
            Err(e) => e,
        })
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
        match self.next().await? {
            event::Kind::Ack(_) => Ok(()),
            event::Kind::Reject(r) => Err(FlowError::Rejected(r)),
            event::Kind::Accept(_) => Err(FlowError::Transport("accept instead of ack".into())),
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
