//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `skiff-network`. Messages are sentences naming the network,
/// address, port or path involved; the cause is in `source()`.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// An unknown network, endpoint or container (Docker answers 404).
    #[error("{0}")]
    NotFound(String),
    /// Something already exists or is in use: a network name, an address, a host port (409).
    #[error("{0}")]
    Conflict(String),
    /// Refused by policy: removing a network that still has endpoints, or a predefined one
    /// (Docker answers 403).
    #[error("{0}")]
    Forbidden(String),
    /// A request that can never succeed as written: a bad subnet, gateway, port spec (400).
    #[error("{0}")]
    InvalidInput(String),
    /// A netlink request (links, addresses, routes) failed.
    #[error("netlink: could not {what}")]
    Netlink {
        /// What was being done, e.g. "create bridge skiff0".
        what: String,
        /// The kernel's answer.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// `nft -f -` refused Skiff's ruleset or could not be run.
    #[error("nftables: could not apply the ruleset of table {table}: {stderr}")]
    Nft {
        /// The table being written.
        table: String,
        /// What `nft` printed.
        stderr: String,
    },
    /// A file or socket operation failed.
    #[error("could not {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The persisted state could not be parsed.
    #[error("the network state file {} is corrupt", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = NetworkError> = std::result::Result<T, E>;

impl NetworkError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        NetworkError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn netlink(what: impl Into<String>, source: rtnetlink::Error) -> Self {
        NetworkError::Netlink {
            what: what.into(),
            source: Box::new(source),
        }
    }
}
