//! The store's error type: one enum, sorted into not-found / conflict / invalid-input / I/O
//! classes by [`Error::kind`] so an API layer can map it to a status code in one place.

use std::io;
use std::path::PathBuf;

/// How an API layer should report an [`Error`] (HTTP 404 / 409 / 400 / 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The image, blob, snapshot or container rootfs does not exist.
    NotFound,
    /// The operation conflicts with the store's state: in use, ambiguous prefix, exists.
    Conflict,
    /// The caller's input (reference, digest, archive, layer) is invalid or was refused.
    InvalidInput,
    /// The store could not do its job (I/O, mount, corrupt metadata).
    Internal,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No image matches a name, tag, digest or ID prefix.
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// A blob is not in the content store.
    #[error("blob {0} is not in the content store")]
    BlobNotFound(String),
    /// A layer snapshot does not exist.
    #[error("snapshot {0} does not exist")]
    SnapshotNotFound(String),
    /// No root filesystem exists for a container.
    #[error("container {0} has no root filesystem in the store")]
    RootfsNotFound(String),
    /// An ID prefix matches more than one image.
    #[error("the image ID prefix {prefix:?} is ambiguous: it matches {count} images")]
    AmbiguousPrefix {
        /// The prefix as given.
        prefix: String,
        /// How many images it matches.
        count: usize,
    },
    /// Removing the image needs `force` (used by containers, several repositories).
    #[error("cannot remove image {image}: {why} (use force to remove it anyway)")]
    ImageInUse {
        /// The image ID.
        image: String,
        /// Why it is protected.
        why: String,
    },
    /// A container rootfs already exists.
    #[error("container {0} already has a root filesystem")]
    RootfsExists(String),
    /// A container rootfs is mounted and cannot be removed.
    #[error("the root filesystem of container {0} is still mounted")]
    RootfsMounted(String),
    /// Written data does not match its expected digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being written (`blob`, `layer diffID`, an archive member).
        what: String,
        /// The digest the caller said.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },
    /// A string is not a valid digest or an ID prefix.
    #[error("invalid digest or image ID {input:?}")]
    InvalidDigest {
        /// The input.
        input: String,
        /// The parse error.
        #[source]
        source: skiff_reference::DigestError,
    },
    /// A string is not a valid image reference.
    #[error("invalid image reference {input:?}")]
    InvalidReference {
        /// The input.
        input: String,
        /// The parse error.
        #[source]
        source: skiff_reference::Error,
    },
    /// A container ID is not a safe directory name.
    #[error("invalid container ID {0:?}: use 1-128 characters of [A-Za-z0-9_.-], not starting with . or -")]
    InvalidContainerId(String),
    /// A manifest, config, index or archive is malformed or refused.
    #[error("{0}")]
    Invalid(String),
    /// Too many layers for one overlay mount.
    #[error("image {image} has {layers} layers: the overlay mount options would take {len} bytes, more than the {max} bytes the kernel accepts (Docker's limit is about 128 layers); flatten the image (export + import) or use the vfs driver")]
    TooManyLayers {
        /// The image ID.
        image: String,
        /// Its number of layers.
        layers: usize,
        /// The length of the mount options.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// Another process holds the store.
    #[error("the store at {0} is in use by another process")]
    Locked(PathBuf),
    /// Applying a layer failed.
    #[error("unpacking layer {layer} failed")]
    Unpack {
        /// The layer's diffID.
        layer: String,
        /// What skiff-unpack said.
        #[source]
        source: skiff_unpack::Error,
    },
    /// A JSON document could not be parsed or written.
    #[error("{what} is not valid JSON")]
    Json {
        /// Which document.
        what: String,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
    /// A file system operation failed.
    #[error("{op} {path} failed")]
    Io {
        /// What was done (`writing`, `renaming`, `mounting overlay on`).
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The class of the error, for mapping to a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ImageNotFound(_)
            | Error::BlobNotFound(_)
            | Error::SnapshotNotFound(_)
            | Error::RootfsNotFound(_) => ErrorKind::NotFound,
            Error::AmbiguousPrefix { .. }
            | Error::ImageInUse { .. }
            | Error::RootfsExists(_)
            | Error::RootfsMounted(_)
            | Error::Locked(_) => ErrorKind::Conflict,
            Error::DigestMismatch { .. }
            | Error::InvalidDigest { .. }
            | Error::InvalidReference { .. }
            | Error::InvalidContainerId(_)
            | Error::Invalid(_)
            | Error::TooManyLayers { .. }
            | Error::Unpack { .. } => ErrorKind::InvalidInput,
            Error::Json { .. } | Error::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// Shorthand for an [`Error::Io`] mapper.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
