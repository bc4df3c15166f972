//! Starting and watching `skiff-monitor` processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{io_err, Error, Result};
use crate::model::MonitorRef;

/// What a monitor is started with.
pub struct Spawn<'a> {
    pub bin: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub runtime_root: &'a Path,
    pub dir: &'a Path,
    /// The json-file log (none: the output is not kept, `--log-driver none`).
    pub log: Option<&'a Path>,
    pub log_max_size: u64,
    pub log_max_file: u32,
    pub tty: bool,
    pub stdin: bool,
    pub wait_start: bool,
}

/// A monitor being watched: our child (reaped here) or one adopted from an earlier engine.
pub struct Handle {
    pub child: Option<Child>,
    pub mref: MonitorRef,
}

/// Serialises spawns: the ready pipe's write end must not leak into another monitor.
static SPAWN: Mutex<()> = Mutex::new(());

/// Starts a monitor; returns it and the container's pid, or the monitor's error.
pub fn spawn(s: &Spawn<'_>) -> Result<(Handle, i32), String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let mut cmd = Command::new(s.bin);
    cmd.arg("--id")
        .arg(s.id)
        .arg("--bundle")
        .arg(s.bundle)
        .arg("--runtime-root")
        .arg(s.runtime_root)
        .arg("--dir")
        .arg(s.dir)
        .arg("--log-max-size")
        .arg(s.log_max_size.to_string())
        .arg("--log-max-file")
        .arg(s.log_max_file.max(1).to_string())
        .arg("--ready-fd")
        .arg(w.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(log) = s.log {
        cmd.arg("--log").arg(log);
    }
    if s.tty {
        cmd.arg("--tty");
    }
    if s.stdin {
        cmd.arg("--stdin");
    }
    if s.wait_start {
        cmd.arg("--wait-start");
    }
    let mut child = {
        let _g = spawn_lock();
        let c = cmd.spawn();
        drop(w);
        c.map_err(|e| format!("cannot run {}: {e}", s.bin.display()))?
    };
    let line = read_ready(std::fs::File::from(r), &mut child);
    let pid = child.id() as i32;
    let start_time = skiff_container::state::proc_stat(pid)
        .map(|(_, t)| t)
        .unwrap_or(0);
    let handle = Handle {
        child: Some(child),
        mref: MonitorRef {
            pid,
            start_time,
            waiting: s.wait_start,
        },
    };
    match line.trim_end().split_once(' ') {
        Some(("ok", p)) => Ok((handle, p.trim().parse().unwrap_or(0))),
        Some(("error", msg)) => {
            let mut h = handle;
            h.reap_blocking();
            Err(msg.to_string())
        }
        _ => {
            let mut h = handle;
            h.reap_blocking();
            Err("the monitor ended without reporting".to_string())
        }
    }
}

/// Held while spawning any process that must not inherit a monitor's ready pipe.
pub(crate) fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The monitor's readiness line. The pipe's write end is inheritable (the monitor gets it
/// by number), so a process spawned meanwhile by other code may hold it too: do not rely on
/// EOF, stop once the monitor itself is gone.
fn read_ready(r: std::fs::File, child: &mut Child) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut reader = BufReader::new(r);
    let mut line = String::new();
    loop {
        let ready = {
            let mut fds = [PollFd::new(reader.get_ref().as_fd(), PollFlags::POLLIN)];
            matches!(poll(&mut fds, PollTimeout::from(100u16)), Ok(n) if n > 0)
        };
        if ready {
            let _ = reader.read_line(&mut line);
            return line;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return line;
        }
    }
}

impl Handle {
    /// Adopts a monitor left by an earlier engine if it is still that monitor.
    pub fn adopt(mref: &MonitorRef, bin: &Path, id: &str) -> Option<Handle> {
        let (state, start) = skiff_container::state::proc_stat(mref.pid)?;
        if state == 'Z' || start != mref.start_time {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", mref.pid)).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let name = bin.file_name()?.as_encoded_bytes();
        let first_ok = args.first().is_some_and(|a| {
            Path::new(std::ffi::OsStr::from_bytes(a))
                .file_name()
                .map(|n| n.as_encoded_bytes())
                == Some(name)
        });
        let id_ok = args
            .windows(2)
            .any(|w| w[0] == b"--id" && w[1] == id.as_bytes());
        (first_ok && id_ok).then(|| Handle {
            child: None,
            mref: mref.clone(),
        })
    }

    /// Whether the monitor process still runs (reaping it if it is our child).
    pub fn alive(&mut self) -> bool {
        if let Some(c) = self.child.as_mut() {
            return matches!(c.try_wait(), Ok(None));
        }
        // An adopted monitor may still be a child of this process (an engine dropped and
        // reopened in one process): reap it if so.
        let pid = nix::unistd::Pid::from_raw(self.mref.pid);
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        match skiff_container::state::proc_stat(self.mref.pid) {
            Some((state, start)) => state != 'Z' && start == self.mref.start_time,
            None => false,
        }
    }

    /// A pidfd of the monitor (readable once it has ended), when this kernel has pidfds and
    /// the process is still the monitor (checked after opening: the pid is not reused).
    pub fn pidfd(&mut self) -> Option<std::os::fd::OwnedFd> {
        let fd = skiff_sys::process::pidfd_open(nix::unistd::Pid::from_raw(self.mref.pid)).ok()?;
        self.alive().then_some(fd)
    }

    /// Waits (bounded, 6 s) for the monitor to end: on its pidfd when there is one.
    pub fn reap_blocking(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(6);
        let pidfd = self.pidfd();
        while self.alive() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match &pidfd {
                Some(fd) => {
                    use std::os::fd::AsFd;
                    let mut fds = [nix::poll::PollFd::new(
                        fd.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
                }
                None => std::thread::sleep(Duration::from_millis(10).min(left)),
            }
        }
    }
}

/// Asks the monitor to close a connection once the container has ended (`wait`): the
/// returned socket turns readable (its `ok`, then the end of the stream) without polling.
/// `None` when the monitor cannot be reached.
pub fn subscribe_exit(dir: &Path) -> Option<UnixStream> {
    let (short, _dir) = skiff_monitor::socket_path(dir).ok()?;
    let mut s = UnixStream::connect(&short).ok()?;
    s.write_all(b"wait\n").ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

use std::os::unix::ffi::OsStrExt;

/// Sends one command on the monitor's socket; returns the connection after its `ok`.
pub fn command(dir: &Path, cmd: &str) -> Result<UnixStream> {
    let path: PathBuf = dir.join(skiff_monitor::SOCKET);
    let (short, _dir) = skiff_monitor::socket_path(dir)
        .map_err(io_err(format!("cannot connect to {}", path.display())))?;
    let mut s = UnixStream::connect(&short)
        .map_err(io_err(format!("cannot connect to {}", path.display())))?;
    s.write_all(format!("{cmd}\n").as_bytes())
        .map_err(io_err("cannot talk to the monitor"))?;
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) if b[0] != b'\n' => reply.push(b[0]),
            Ok(_) => break,
            Err(e) => return Err(io_err("cannot read the monitor's reply")(e)),
        }
    }
    let reply = String::from_utf8_lossy(&reply).into_owned();
    if reply == "ok" {
        Ok(s)
    } else {
        Err(Error::Internal(format!(
            "the monitor refused {cmd:?}: {}",
            reply.strip_prefix("error ").unwrap_or(&reply)
        )))
    }
}
