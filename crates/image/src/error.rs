//! Errors of pulls and pushes.

use skiff_reference::Digest;

/// What can go wrong in a pull or push.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry refused or failed, or content from it did not verify.
    #[error(transparent)]
    Registry(#[from] skiff_registry::Error),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] skiff_store::Error),
    /// One layer failed (with which one). The message includes the cause's, so the cause
    /// is not also reported as `source()` (see [`Error::registry_error`], [`Error::cause`]).
    #[error("layer {layer}: {cause}")]
    Layer {
        /// The layer blob digest.
        layer: Digest,
        /// What went wrong.
        cause: Box<Error>,
    },
    /// The image is malformed or the request makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// Another layer failed first; this one was abandoned.
    #[error("cancelled")]
    Cancelled,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The underlying registry error, if any (looking through [`Error::Layer`]).
    pub fn registry_error(&self) -> Option<&skiff_registry::Error> {
        match self {
            Error::Registry(e) => Some(e),
            Error::Layer { cause, .. } => cause.registry_error(),
            _ => None,
        }
    }

    /// The error behind [`Error::Layer`] (itself for the others).
    pub fn cause(&self) -> &Error {
        match self {
            Error::Layer { cause, .. } => cause.cause(),
            e => e,
        }
    }
}
