//! One error type for every format and algorithm in `core`. Each variant names what was wrong
//! and where, so a tool can print "FILE: wdiff pack header at offset 4128: checksum mismatch".

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A structure broke a format rule.
    #[error("{what} at offset {offset}: {rule}")]
    Corrupt {
        what: &'static str,
        offset: u64,
        rule: String,
    },
    /// The input ended inside a structure.
    #[error("truncated {what} at offset {offset}: need {need} bytes, got {got}")]
    Truncated {
        what: &'static str,
        offset: u64,
        need: u64,
        got: u64,
    },
    /// A caller asked for something the format cannot express.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A codec failed to compress or decompress.
    #[error("{codec} codec: {msg}")]
    Codec { codec: &'static str, msg: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An error met while reading a stored file, with the file's path.
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn corrupt(what: &'static str, offset: u64, rule: impl Into<String>) -> Error {
        Error::Corrupt {
            what,
            offset,
            rule: rule.into(),
        }
    }
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps `self` with the path of the file it was met in.
    pub fn in_file(self, path: &std::path::Path) -> Error {
        Error::File {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }

    /// True when the bytes themselves are wrong (a broken rule, a cut structure, a codec
    /// failure), as opposed to a caller's mistake or an I/O failure.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corrupt { .. } | Error::Truncated { .. } | Error::Codec { .. } => true,
            Error::File { source, .. } => source.is_corruption(),
            Error::Invalid(_) | Error::Io { .. } => false,
        }
    }
}

/// Adds context to `io::Result`s.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
