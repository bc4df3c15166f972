//! The runtime library's error type.

use std::path::PathBuf;

/// Everything that can go wrong while creating or managing a container. Messages are
/// sentences naming the container, path or field at fault; the `source` carries the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {0:?}: use 1-1024 characters from [A-Za-z0-9_+.-], not starting with '.'")]
    InvalidId(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("container does not exist: {0}")]
    NotExist(String),
    #[error("container {id} is {status}: {what}")]
    WrongState {
        id: String,
        status: String,
        what: String,
    },
    #[error("invalid config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("invalid spec: {0}")]
    Spec(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] skiff_cgroups::Error),
    #[error(transparent)]
    Seccomp(#[from] skiff_seccomp::Error),
    /// An error the container's init (or exec'd process) reported before it could exec.
    #[error("unable to start container process: {0}")]
    Init(String),
    #[error("error running {kind} hook #{index} ({path}): {msg}")]
    Hook {
        kind: String,
        index: usize,
        path: String,
        msg: String,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a description to syscall (`nix`) and I/O errors.
pub(crate) trait Context<T> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T>;
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|source| Error::Sys {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}

/// Renders an error with its whole `source()` chain, "a: b: c".
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let m = e.to_string();
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = e.source();
    }
    s
}
