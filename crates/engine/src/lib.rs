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
//! exit, applies its restart policy (Docker's backoff) and `--rm`; a container with a
//! healthcheck also gets a checker thread (`health`) whose probes run as execs.
//!
//! `exec` runs through the daemon's exec helper (a separate process: the runtime forks);
//! with a tty the exec'd process sends its pty master straight back over a console
//! socket. `update` applies new limits to the live cgroup and persists them. The events
//! the engine makes on its own (every exit's `die`, a policy restart's `start`,
//! `health_status: ...`) go to the daemon through an [`EventHook`].
//!
//! Networking: `host` shares the host's; every other mode gets a network namespace of its
//! own, configured by the daemon's [`NetworkHook`] (skiff-network) between the container's
//! creation and its start. Without a hook nothing is configured in it, not even `lo`.
//!
//! File systems: [`fs`] opens a container's file system as the container sees it, running
//! or not (`/proc/<pid>/root`, or a private mount namespace with its volumes), every path
//! resolved with `openat2(RESOLVE_IN_ROOT)`; [`archive`] builds `docker cp`, `export`,
//! `diff` (from the overlay upper dir), commit layers and container sizes on it.
//!
//! Errors: one enum, [`Error`], with [`Error::kind`] for the API's status codes.
#![forbid(unsafe_code)]

pub mod archive;
mod engine;
mod error;
mod exec;
pub mod fs;
mod health;
mod logs;
mod model;
mod monitor;
mod names;
mod netmode;
pub mod spec;
mod update;
pub mod volumes;

pub use bollard_stubs::models;
pub use engine::{
    default_init_bin, parse_signal, Engine, EngineConfig, EventHook, NetworkHook, Waiter,
};
pub use error::{Error, ErrorKind, Result};
pub use exec::{resize_console, ExecProcess};
pub use logs::LogStream;
pub use model::{
    CreateBody, Filters, LogEntry, LogsOptions, MonitorRef, Record, State, Status, WaitCondition,
};
/// The exec helper's `main` (see [`skiff_monitor::exec_helper`]).
pub use skiff_monitor::exec_helper::main as exec_helper_main;
pub use update::UpdateBody;
