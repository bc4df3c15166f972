//! The engine's error type: one enum whose variants an API layer maps to status codes in one
//! place ([`Error::kind`]).

/// How an API layer should report an [`Error`] (HTTP 404 / 409 / 400 / 500 / 501).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    InvalidInput,
    Internal,
    NotImplemented,
}

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container matches an id, id prefix or name.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// The image named in a create request is not in the store.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// A named object (volume, exec) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the state: a name in use, a running container...
    #[error("{0}")]
    Conflict(String),
    /// The request itself is invalid.
    #[error("{0}")]
    InvalidInput(String),
    /// The container could not start (its process, a mount, the monitor).
    #[error("cannot start container {id}: {msg}")]
    Start { id: String, msg: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Runtime {
        what: String,
        #[source]
        source: Box<skiff_container::Error>,
    },
    #[error("{what}")]
    Store {
        what: String,
        #[source]
        source: Box<skiff_store::Error>,
    },
    #[error("{0}")]
    Internal(String),
    /// What the container's configuration does not offer (reading a `none` log).
    #[error("{0}")]
    NotImplemented(String),
}

impl Error {
    /// The class an API layer maps to a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoSuchContainer(_) | Error::NoSuchImage(_) | Error::NotFound(_) => {
                ErrorKind::NotFound
            }
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotImplemented(_) => ErrorKind::NotImplemented,
            Error::Store { source, .. } => match source.kind() {
                skiff_store::ErrorKind::NotFound => ErrorKind::NotFound,
                skiff_store::ErrorKind::Conflict => ErrorKind::Conflict,
                skiff_store::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                skiff_store::ErrorKind::Internal => ErrorKind::Internal,
            },
            Error::Start { .. } | Error::Io { .. } | Error::Runtime { .. } | Error::Internal(_) => {
                ErrorKind::Internal
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub(crate) fn rt_err(what: impl Into<String>) -> impl FnOnce(skiff_container::Error) -> Error {
    let what = what.into();
    move |source| Error::Runtime {
        what,
        source: Box::new(source),
    }
}

pub(crate) fn store_err(what: impl Into<String>) -> impl FnOnce(skiff_store::Error) -> Error {
    let what = what.into();
    move |source| Error::Store {
        what,
        source: Box::new(source),
    }
}
