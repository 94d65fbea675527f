//! The client side of the control plane (proto/control.proto): one typed command to one
//! server. Each request message is a `Cmd` whose `Reply` is the reply oneof's field of the same
//! name, so a caller gets the reply's type, never text to parse.

use std::future::Future;
use std::pin::Pin;

use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::archive_control_client::ArchiveControlClient;
use crate::control_client::ControlClient;
use crate::proxy_control_client::ProxyControlClient;
use crate::storage_control_client::StorageControlClient;
use crate::{archive_reply, archive_request, control_reply, control_request, proxy_reply};
use crate::{proxy_request, storage_reply, storage_request, wire};
use crate::{ArchiveReply, ArchiveRequest, ControlReply, ControlRequest, ProxyReply};
use crate::{ProxyRequest, StorageReply, StorageRequest};

/// The metadata key of an UNAVAILABLE status from a server that is still starting (recovering
/// its data), so a client can tell it from a server that is down.
pub const STARTING_KEY: &str = "walb-starting";

/// The metadata key carrying `walbc --confirm VOL`: a protected archive runs a command that
/// deletes backups of VOL only when it names the same volume (docs/security.md).
pub const CONFIRM_KEY: &str = "walb-confirm";

static CONFIRM: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sends `vol` as the confirmation with every later call of this process (walbc --confirm).
pub fn set_confirm(vol: &str) {
    let _ = CONFIRM.set(vol.to_string());
}

/// A refused or failed command: which server, the gRPC code, and its message.
#[derive(Debug, thiserror::Error)]
#[error("{server}: {message} ({code:?})")]
pub struct CallError {
    pub server: String,
    pub code: Code,
    pub message: String,
    /// The server answered that it is still starting: the same call will work shortly.
    pub starting: bool,
}

type Sent<R> = Pin<Box<dyn Future<Output = Result<R, Status>> + Send>>;

/// A command one daemon serves, and its reply.
pub trait Cmd: std::fmt::Debug + Send + 'static {
    type Reply: std::fmt::Debug + Send + 'static;
    /// Sends the command as `req`'s metadata says, over `ch`.
    fn send(self, ch: Channel, md: tonic::metadata::MetadataMap) -> Sent<Self::Reply>;
}

fn request<T>(msg: T, md: tonic::metadata::MetadataMap) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    *r.metadata_mut() = md;
    r
}

/// Implements `Cmd` for every request message of one service: `$var` names both the request's
/// and the reply's oneof field.
macro_rules! commands {
    ($client:ident, $req:ident => $rep:ident, $req_mod:ident, $rep_mod:ident,
     [$($var:ident: $msg:ident => $reply:ty),* $(,)?]) => {
        impl Cmd for $req {
            type Reply = $rep;
            fn send(self, ch: Channel, md: tonic::metadata::MetadataMap) -> Sent<$rep> {
                Box::pin(async move {
                    let mut c = crate::sized!($client::new(ch));
                    Ok(c.call(request(self, md)).await?.into_inner())
                })
            }
        }
        $(impl Cmd for $req_mod::$msg {
            type Reply = $reply;
            fn send(self, ch: Channel, md: tonic::metadata::MetadataMap) -> Sent<$reply> {
                Box::pin(async move {
                    let req = $req { cmd: Some($req_mod::Cmd::$var(self)) };
                    match req.send(ch, md).await?.reply {
                        Some($rep_mod::Reply::$var(r)) => Ok(r),
                        other => Err(Status::internal(format!(
                            "the reply to {} was {other:?}",
                            stringify!($var)
                        ))),
                    }
                })
            }
        })*
    };
}

commands!(ControlClient, ControlRequest => ControlReply, control_request, control_reply, [
    Hello: Hello => control_reply::Hello,
    Shutdown: Shutdown => crate::Done,
    RotateCerts: RotateCerts => control_reply::RotateCerts,
]);

commands!(StorageControlClient, StorageRequest => StorageReply, storage_request, storage_reply, [
    InitVol: InitVol => crate::Done,
    ClearVol: ClearVol => crate::Done,
    ResetVol: ResetVol => crate::Done,
    Start: Start => crate::Done,
    Stop: Stop => crate::Done,
    Snapshot: Snapshot => storage_reply::Snapshot,
    FullBkp: FullBkp => crate::GidReply,
    HashBkp: HashBkp => crate::GidReply,
    Resize: Resize => crate::SizeReply,
    SetFullScanBps: SetFullScanBps => crate::Done,
    Cancel: Cancel => crate::Done,
    Kick: Kick => crate::Done,
    Status: Status => crate::Text,
    ListVols: ListVols => crate::Names,
    Get: Get => storage_reply::Get,
    GetProgress: GetProgress => crate::ProgressReply,
]);

commands!(ProxyControlClient, ProxyRequest => ProxyReply, proxy_request, proxy_reply, [
    Start: Start => crate::Done,
    Stop: Stop => crate::Done,
    ClearVol: ClearVol => crate::Done,
    Kick: Kick => crate::Done,
    ArchiveInfoSet: ArchiveInfoSet => crate::Done,
    ArchiveInfoDelete: ArchiveInfoDelete => crate::Done,
    ArchiveInfoList: ArchiveInfoList => crate::Names,
    ArchiveInfoGet: ArchiveInfoGet => crate::ArchiveInfo,
    ListVols: ListVols => crate::Names,
    GetState: GetState => proxy_reply::GetState,
    SendError: SendError => proxy_reply::SendError,
    HeldDiffs: HeldDiffs => crate::Names,
    Status: Status => crate::Text,
]);

commands!(ArchiveControlClient, ArchiveRequest => ArchiveReply, archive_request, archive_reply, [
    InitVol: InitVol => crate::Done,
    ClearVol: ClearVol => crate::Done,
    ResetVol: ResetVol => crate::Done,
    Start: Start => crate::Done,
    Stop: Stop => crate::Done,
    ListVols: ListVols => crate::Names,
    Capacity: Capacity => archive_reply::Capacity,
    GetProgress: GetProgress => crate::ProgressReply,
    GetState: GetState => archive_reply::GetState,
    Restorable: Restorable => archive_reply::Restorable,
    Base: Base => crate::BaseState,
    LatestSnap: LatestSnap => crate::Snap,
    Uuids: Uuids => archive_reply::Uuids,
    Diffs: Diffs => crate::Names,
    HasImage: HasImage => crate::Flag,
    Health: Health => archive_reply::Health,
    Restored: Restored => archive_reply::Restored,
    RepoStatus: RepoStatus => archive_reply::RepoStatus,
    Replicate: Replicate => archive_reply::Replicate,
    Status: Status => crate::Text,
    Restore: Restore => archive_reply::Restore,
    DelRestored: DelRestored => crate::Done,
    Apply: Apply => crate::Done,
    Merge: Merge => crate::Done,
    GcDiff: GcDiff => crate::Count,
    Cat: Cat => crate::Done,
    Bhash: Bhash => archive_reply::Bhash,
    Verify: Verify => archive_reply::Verify,
    Resize: Resize => crate::SizeReply,
    DeviceHash: DeviceHash => crate::Done,
    BindStorage: BindStorage => crate::Done,
    SetSnapshots: SetSnapshots => crate::Count,
    Retention: Retention => archive_reply::Retention,
]);

/// Sends `cmd` to the server at `addr` and returns its reply.
pub async fn call<C: Cmd>(addr: &str, cmd: C) -> Result<C::Reply, CallError> {
    let err = |code, message: String| CallError {
        server: addr.to_string(),
        code,
        message,
        starting: false,
    };
    let ch = wire::connect(addr)
        .await
        .map_err(|e| err(Code::Unavailable, e.to_string()))?;
    let mut md = tonic::metadata::MetadataMap::new();
    if let Some(vol) = CONFIRM.get() {
        let v = vol
            .parse()
            .map_err(|_| err(Code::InvalidArgument, format!("--confirm {vol:?}")))?;
        md.insert(CONFIRM_KEY, v);
    }
    cmd.send(ch, md).await.map_err(|s| CallError {
        starting: s.metadata().contains_key(STARTING_KEY),
        ..err(s.code(), s.message().to_string())
    })
}
