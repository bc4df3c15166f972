//! skiff-monitor: one small process per running container. It creates and starts the
//! container through the runtime library, owns the container's stdio (pipes or a pty), writes
//! its output to a `json-file` log, streams it to attached clients, forwards their stdin and
//! records the exit status. It runs in its own session, so it outlives the daemon: a restarted
//! daemon finds it again through its directory.
//!
//! The directory (`Config::dir`) holds:
//! - `monitor.sock`: clients connect and send one command line:
//!   - `start\n` → `ok\n` or `error <message>\n` (with `--wait-start` the container is only
//!     created until this arrives, so a client can attach before the first byte of output);
//!   - `attach\n` → `ok\n`, then frames both ways ([`protocol`]);
//!   - `resize <rows> <cols>\n` → `ok\n` (tty only);
//!   - `wait\n` → `ok\n`, then the connection is closed once `exit.json` is in place (before
//!     attached clients get the rest of the output): the daemon learns of the end without
//!     polling.
//! - `exit.json`: written once the container exited ([`ExitStatus`]).
//!
//! The monitor reports readiness on `Config::ready` (a pipe from the daemon): `ok <pid>\n`
//! once the container is created, or `error <message>\n`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod exec_helper;
pub mod logfile;
pub mod protocol;
mod serve;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use serve::run;

/// What to run and where.
#[derive(Debug)]
pub struct Config {
    pub id: String,
    pub bundle: PathBuf,
    /// The runtime's state root (skiffd uses /run/skiff/runtime).
    pub runtime_root: PathBuf,
    /// The monitor's own directory (socket, exit status).
    pub dir: PathBuf,
    pub log: Option<(PathBuf, logfile::Rotation)>,
    pub tty: bool,
    /// Keep the container's stdin open for attached clients (`docker run -i`).
    pub stdin: bool,
    /// Create, then wait for a `start` command.
    pub wait_start: bool,
    /// Where to report readiness (the write end of the daemon's pipe).
    pub ready: Option<std::fs::File>,
}

/// `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExitStatus {
    /// The exit code, 128+N for a signal, as Docker reports it.
    pub exit_code: i32,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub finished_at: String,
    /// Why the container could not run, when it could not.
    #[serde(default)]
    pub error: String,
}

pub const SOCKET: &str = "monitor.sock";

/// The longest path `sockaddr_un` takes (108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

/// The path to bind or connect for the socket in `dir`.
///
/// A unix socket path must fit in 108 bytes, and a monitor directory under a long exec root
/// (`--exec-root /var/tmp/bench/run/exec`, then `monitors/<64 hex>/`) does not. Then the
/// directory is opened `O_PATH` and the path goes through `/proc/self/fd/N/`: keep the
/// returned fd open until the bind or connect is done.
pub fn socket_path(dir: &std::path::Path) -> std::io::Result<(PathBuf, Option<std::fs::File>)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let full = dir.join(SOCKET);
    if full.as_os_str().as_bytes().len() <= SUN_PATH_MAX {
        return Ok((full, None));
    }
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
        .open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd()));
    Ok((short, Some(d)))
}
pub const EXIT_FILE: &str = "exit.json";

/// The exit status a monitor recorded in `dir`, once there is one.
pub fn read_exit(dir: &std::path::Path) -> Option<ExitStatus> {
    serde_json::from_slice(&std::fs::read(dir.join(EXIT_FILE)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_in_long_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("x".repeat(60)).join("y".repeat(60));
        std::fs::create_dir_all(&dir).unwrap();
        let (bind, keep) = socket_path(&dir).unwrap();
        assert!(
            keep.is_some(),
            "a {}-byte path needs the fd",
            dir.as_os_str().len()
        );
        assert!(bind.starts_with("/proc/self/fd/"));
        let l = std::os::unix::net::UnixListener::bind(&bind).unwrap();
        drop(keep);
        assert!(
            dir.join(SOCKET).exists(),
            "the socket is in the directory itself"
        );
        let (conn, _keep) = socket_path(&dir).unwrap();
        let _c = std::os::unix::net::UnixStream::connect(&conn).unwrap();
        l.accept().unwrap();
        // A short directory keeps its plain path.
        let (p, keep) = socket_path(tmp.path()).unwrap();
        assert_eq!(p, tmp.path().join(SOCKET));
        assert!(keep.is_none());
    }
}
