//! The repository's one error type: each variant names the object or input that was wrong.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository URL could not be understood.
    #[error("repository URL {url}: {why}")]
    Url { url: String, why: String },
    /// The object store refused or failed a request.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// An object broke the layout of docs/repository.md or its checksum.
    #[error("object {key}: {why}")]
    Corrupt { key: String, why: String },
    /// A volume, image or snapshot that is not in the repository.
    #[error("{0}")]
    NotFound(String),
    /// Another archive holds the volume's lease.
    #[error("volume {vol} is leased by {holder} until {expires} (unix seconds)")]
    Leased {
        vol: String,
        holder: String,
        expires: u64,
    },
    /// A walb format error in a wdiff or a restored image.
    #[error(transparent)]
    Core(#[from] walb_core::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn corrupt(key: impl std::fmt::Display, why: impl Into<String>) -> Error {
        Error::Corrupt {
            key: key.to_string(),
            why: why.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
