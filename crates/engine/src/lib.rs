//! skiff-engine: the daemon's container manager, as a library (the HTTP API calls it).
//!
//! Each container lives in `<data_root>/containers/<id>/`: `config.json` (its [`Record`],
//! written atomically), `<id>-json.log`, `hostname`, `hosts`, `resolv.conf` (engine-owned
//! files bind-mounted into the container) and `bundle/config.json` (the OCI spec). Its
//! root filesystem comes from the image store ([`skiff_store::Store::create_rootfs`]).
//!
//! A started container runs under its own `skiff-monitor` process (see that crate), which
//! owns its stdio and log, serves attach on `<run_root>/m/<id>/monitor.sock` and records
//! the exit in `exit.json`. Monitors outlive the engine: [`Engine::open`] adopts those
//! still running (pid, start time and command line checked) and picks up the exit codes
//! of those that ended meanwhile. One watcher thread per running container waits for its
//! exit, applies its restart policy (Docker's backoff) and `--rm`.
//!
//! Networking: `host` shares the host's; every other mode gets a network namespace of its
//! own, configured by the daemon's [`NetworkHook`] (skiff-network) between the container's
//! creation and its start. Without a hook nothing is configured in it, not even `lo`.
//!
//! Errors: one enum, [`Error`], with [`Error::kind`] for the API's status codes.
#![forbid(unsafe_code)]

mod engine;
mod error;
mod exec;
mod logs;
mod model;
mod monitor;
mod names;
mod netmode;
pub mod spec;
pub mod volumes;

pub use bollard_stubs::models;
pub use engine::{parse_signal, Engine, EngineConfig, NetworkHook, Waiter};
pub use error::{Error, ErrorKind, Result};
pub use exec::{exec_helper_main, ExecProcess};
pub use logs::LogStream;
pub use model::{
    CreateBody, Filters, LogEntry, LogsOptions, MonitorRef, Record, State, Status, WaitCondition,
};
