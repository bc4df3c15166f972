//! `docker exec`: a new process in a running container. The runtime's exec forks, which a
//! multi-threaded daemon must not do, so it runs in a small helper process: the static
//! skiff-monitor binary in its `exec` mode ([`skiff_monitor::exec_helper`]).

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};

use bollard_stubs::models::ExecConfig;
use serde_json::json;

use crate::error::{io_err, rt_err, Error, Result};

/// The environment variable the helper gets its process description from.
pub use skiff_monitor::exec_helper::PROCESS_ENV;

/// A running exec: the helper process, with its stdio pipes.
#[derive(Debug)]
pub struct ExecProcess {
    child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    /// With a tty: the pty master the exec'd process's terminal is the slave of (its
    /// input and output both go through it). `None` when the process could not start.
    pub master: Option<OwnedFd>,
}

impl ExecProcess {
    /// The helper's pid (the exec'd process is its child).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process; its exit code (128+N for a signal).
    pub fn wait(&mut self) -> Result<i64> {
        drop(self.stdin.take());
        let st = self.child.wait().map_err(io_err("cannot wait for exec"))?;
        Ok(st
            .code()
            .map(i64::from)
            .or_else(|| {
                std::os::unix::process::ExitStatusExt::signal(&st).map(|s| 128 + i64::from(s))
            })
            .unwrap_or(128))
    }

    /// Reads stdout and stderr to their ends and waits: (exit code, stdout, stderr).
    pub fn output(mut self) -> Result<(i64, Vec<u8>, Vec<u8>)> {
        drop(self.stdin.take());
        let mut err = Vec::new();
        let stderr = self.stderr.take();
        let t = std::thread::spawn(move || {
            if let Some(mut e) = stderr {
                let _ = e.read_to_end(&mut err);
            }
            err
        });
        let mut out = Vec::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_end(&mut out);
        }
        let err = t.join().unwrap_or_default();
        Ok((self.wait()?, out, err))
    }
}

/// The OCI process of an exec: the container's process with the exec's command, env,
/// working dir and user.
pub(crate) fn process(
    rt: &skiff_container::Runtime,
    id: &str,
    rootfs: &std::path::Path,
    cfg: &ExecConfig,
) -> Result<serde_json::Value> {
    let cmd = cfg.cmd.clone().unwrap_or_default();
    if cmd.is_empty() {
        return Err(Error::InvalidInput("No exec command specified".into()));
    }
    let p = rt
        .spec_process(id)
        .map_err(rt_err(format!("cannot read the process of {id}")))?;
    let mut v = serde_json::to_value(&p)
        .map_err(|e| Error::Internal(format!("cannot encode a process: {e}")))?;
    v["args"] = json!(cmd);
    let tty = cfg.tty.unwrap_or(false);
    v["terminal"] = json!(tty);
    match cfg.console_size.as_deref() {
        Some([h, w]) if tty && *h > 0 && *w > 0 => {
            v["consoleSize"] = json!({"height": h, "width": w});
        }
        _ => {
            if let Some(o) = v.as_object_mut() {
                o.remove("consoleSize");
            }
        }
    }
    let mut env: Vec<String> = serde_json::from_value(v["env"].clone()).unwrap_or_default();
    for kv in cfg.env.iter().flatten() {
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    v["env"] = json!(env);
    if let Some(w) = cfg.working_dir.as_deref().filter(|w| !w.is_empty()) {
        v["cwd"] = json!(w);
    }
    if let Some(u) = cfg.user.as_deref().filter(|u| !u.is_empty()) {
        let (uid, gid, extra) = crate::spec::resolve_user(rootfs, u)?;
        v["user"] = json!({"uid": uid, "gid": gid, "additionalGids": extra});
    }
    if cfg.privileged.unwrap_or(false) {
        let caps = crate::spec::host_caps();
        v["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    }
    Ok(v)
}

pub(crate) fn spawn(
    helper: &(std::path::PathBuf, Vec<String>),
    runtime_root: &std::path::Path,
    id: &str,
    process: &serde_json::Value,
    stdin: bool,
) -> Result<ExecProcess> {
    let tty = process["terminal"].as_bool().unwrap_or(false);
    let mut cmd = Command::new(&helper.0);
    cmd.args(&helper.1)
        .arg(runtime_root)
        .arg(id)
        .env(PROCESS_ENV, process.to_string())
        .stderr(Stdio::piped());
    // With a tty the helper's stdin is a console socket (runc's `--console-socket`, as a
    // connected pair): the process sends its pty master over it straight to us.
    let mut console = None;
    if tty {
        let (ours, theirs) =
            UnixStream::pair().map_err(io_err("cannot create a console socket pair"))?;
        cmd.stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null());
        console = Some(ours);
    } else {
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped());
    }
    let spawned = {
        let _g = crate::monitor::spawn_lock();
        cmd.spawn()
    };
    // Our copy of the helper's end goes now, so a helper that fails early ends the receive.
    drop(cmd);
    let mut child = spawned.map_err(io_err(format!("cannot run {}", helper.0.display())))?;
    // A process that cannot start sends nothing: the socket ends, its error is on stderr.
    let master = console.and_then(|s| skiff_container::console::receive_master(s.as_fd()).ok());
    Ok(ExecProcess {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        master,
        child,
    })
}

/// Sets the size of an exec's terminal (`POST /exec/{id}/resize`).
pub fn resize_console(master: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<()> {
    skiff_sys::tty::set_winsize(master, skiff_sys::tty::WinSize { rows, cols })
        .map_err(|e| Error::Internal(format!("cannot resize the exec's terminal: {e}")))
}
