//! skiff-container: builds and manages OCI containers from bundles. This is the runtime
//! library behind `skiff-runtime` (runc's command line) and, later, the daemon.
#![forbid(unsafe_code)]

mod caps;
pub mod console;
mod container;
pub mod error;
pub mod exe;
pub mod foreground;
mod hooks;
mod idmap;
mod init;
pub mod mounts;
mod process;
mod procfs;
mod rootfs;
pub mod spec;
pub mod state;
mod sync;

pub use container::{CreateOptions, ExecOptions, Runtime};
pub use error::{chain, Error, Result};
pub use process::lsm_enabled;
pub use state::{State, Status};

/// The capability names this runtime knows, in kernel order.
pub fn known_capabilities() -> &'static [&'static str] {
    &caps::CAPS
}
