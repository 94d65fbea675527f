//! Command errors and their gRPC statuses: the edge where the daemons' typed errors (this
//! crate's `volfile`, the archive's volume files, the storage's records, the proxy's layout, …)
//! become one of the kinds walbc tells apart.

use tonic::{Code, Status};

/// Why a command failed; each kind maps to one gRPC status code so walbc can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Unknown volume (or other named thing).
    #[error("{0}")]
    NotFound(String),
    /// The volume is in a state that does not allow the command.
    #[error("{0}")]
    State(String),
    /// Bad arguments or bad input data.
    #[error("{0}")]
    Invalid(String),
    /// A failure of this server (I/O, a full disk).
    #[error("{0}")]
    Internal(String),
    /// Data this server stored is damaged (a checksum or format rule failed on a file at
    /// rest): what was acknowledged cannot be read back as it was.
    #[error("{0}")]
    DataLoss(String),
    /// The server is still starting (recovering its data); try again shortly.
    #[error("{0}")]
    Starting(String),
}

pub use walb_proto::control::STARTING_KEY;

pub type CmdResult<T> = Result<T, CmdError>;

impl From<CmdError> for Status {
    fn from(e: CmdError) -> Status {
        match e {
            CmdError::NotFound(m) => Status::new(Code::NotFound, m),
            CmdError::State(m) => Status::new(Code::FailedPrecondition, m),
            CmdError::Invalid(m) => Status::new(Code::InvalidArgument, m),
            CmdError::Internal(m) => Status::new(Code::Internal, m),
            CmdError::DataLoss(m) => Status::new(Code::DataLoss, m),
            CmdError::Starting(m) => {
                let mut st = Status::new(Code::Unavailable, m);
                st.metadata_mut().insert(
                    STARTING_KEY,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                st
            }
        }
    }
}

impl From<walb_core::Error> for CmdError {
    fn from(e: walb_core::Error) -> CmdError {
        match e {
            walb_core::Error::Io { .. } => CmdError::Internal(e.to_string()),
            // Only readers of stored files name the file: damage at rest.
            walb_core::Error::File { .. } if e.is_corruption() => CmdError::DataLoss(e.to_string()),
            walb_core::Error::File { .. } => CmdError::Internal(e.to_string()),
            _ => CmdError::Invalid(e.to_string()),
        }
    }
}

impl From<std::io::Error> for CmdError {
    fn from(e: std::io::Error) -> CmdError {
        CmdError::Internal(e.to_string())
    }
}

impl From<crate::volfile::FileError> for CmdError {
    fn from(e: crate::volfile::FileError) -> CmdError {
        CmdError::Internal(e.to_string())
    }
}

impl From<crate::volfile::BadName> for CmdError {
    fn from(e: crate::volfile::BadName) -> CmdError {
        CmdError::Invalid(e.to_string())
    }
}

impl CmdError {
    /// True for failures of the server itself (logged at ERROR), not of the caller.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, CmdError::Internal(_) | CmdError::DataLoss(_))
    }
}

/// `Invalid` with a formatted message.
pub fn invalid(msg: impl Into<String>) -> CmdError {
    CmdError::Invalid(msg.into())
}

/// `State` with a formatted message.
pub fn bad_state(msg: impl Into<String>) -> CmdError {
    CmdError::State(msg.into())
}

/// Argument `i` of a command, or an error naming what is missing.
pub fn arg<'a>(args: &'a [String], i: usize, what: &str) -> CmdResult<&'a str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| invalid(format!("missing argument: {what}")))
}

/// Argument `i` parsed as a number.
pub fn num_arg(args: &[String], i: usize, what: &str) -> CmdResult<u64> {
    let s = arg(args, i, what)?;
    s.parse()
        .map_err(|_| invalid(format!("{what}: {s:?} is not a number")))
}
