//! The monitor's loop: one thread, one poll set.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use skiff_container::{chain, CreateOptions, Runtime};

use crate::logfile::{JsonLog, Stream};
use crate::protocol::{self, RESIZE, STDERR, STDIN, STDOUT};
use crate::{Config, ExitStatus, EXIT_FILE, SOCKET};

/// Why the monitor itself failed (the container's own failures end up in `exit.json`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: Errno,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(Errno) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

/// An attached client's output backlog beyond which it is dropped: a client that does not
/// read cannot make the monitor grow.
const CLIENT_BACKLOG: usize = 4 << 20;

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    attached: bool,
    /// Sent `wait`: gets nothing until the container's end, then the end of its stream.
    waiting: bool,
    done: bool,
}

impl Client {
    fn send(&mut self, data: &[u8]) {
        if self.out.is_empty() {
            match self.sock.write(data) {
                Ok(n) if n == data.len() => return,
                Ok(n) => self.out.extend_from_slice(&data[n..]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.out.extend_from_slice(data),
                Err(_) => self.done = true,
            }
        } else {
            self.out.extend_from_slice(data);
        }
        if self.out.len() > CLIENT_BACKLOG {
            tracing::warn!("an attached client does not read its output; dropping it");
            self.done = true;
        }
    }

    fn flush(&mut self) {
        while !self.out.is_empty() {
            match self.sock.write(&self.out) {
                Ok(0) => break,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.done = true;
                    break;
                }
            }
        }
    }
}

struct Io {
    /// stdout and stderr read ends, or the pty master as stdout.
    outputs: Vec<(Stream, Option<OwnedFd>)>,
    /// Where attached clients' input goes (stdin pipe or pty master), while open.
    input: Option<OwnedFd>,
    input_pending: Vec<u8>,
    input_close: bool,
    master: Option<OwnedFd>,
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Error> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(sys_err("fcntl"))?;
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(sys_err("fcntl"))?;
    Ok(())
}

fn dev_null() -> Result<OwnedFd, Error> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(io_err("cannot open /dev/null"))?
        .into())
}

fn report_ready(ready: &mut Option<std::fs::File>, line: &str) {
    if let Some(mut f) = ready.take() {
        let _ = f.write_all(line.as_bytes());
    }
}

fn write_exit(dir: &Path, st: &ExitStatus) -> Result<(), Error> {
    let tmp = dir.join(".exit.json.tmp");
    let body = serde_json::to_vec(st)
        .map_err(|e| io_err("cannot encode exit.json")(io::Error::other(e)))?;
    let mut f =
        std::fs::File::create(&tmp).map_err(io_err(format!("cannot write {}", tmp.display())))?;
    // No fsync: the exec root is runtime state (a tmpfs under /run normally) that a machine
    // crash takes away with the containers; the rename alone keeps readers from a partial file.
    f.write_all(&body)
        .map_err(io_err(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, dir.join(EXIT_FILE)).map_err(io_err("cannot write exit.json"))
}

/// The container could not run: say why on the ready pipe (if still unanswered) and in
/// exit.json.
fn failed(
    dir: &Path,
    ready: &mut Option<std::fs::File>,
    e: &skiff_container::Error,
) -> Result<ExitStatus, Error> {
    let msg = chain(e);
    report_ready(ready, &format!("error {}\n", msg.replace('\n', " ")));
    let st = ExitStatus {
        exit_code: 128,
        oom_killed: false,
        finished_at: now(),
        error: msg,
    };
    write_exit(dir, &st)?;
    Ok(st)
}

fn now() -> String {
    crate::logfile::rfc3339_nanos(SystemTime::now())
}

/// Runs the container to its end; returns what went into `exit.json`.
pub fn run(mut cfg: Config) -> Result<ExitStatus, Error> {
    let mut ready = cfg.ready.take();
    let _ = nix::unistd::setsid();
    skiff_container::foreground::become_subreaper().map_err(|e| Error::Io {
        what: chain(&e),
        source: io::Error::other("prctl"),
    })?;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(sys_err("cannot block signals"))?;
    let sigfd = SignalFd::with_flags(
        &{
            let mut m = SigSet::empty();
            m.add(Signal::SIGCHLD);
            m
        },
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(sys_err("cannot create a signalfd"))?;
    std::fs::create_dir_all(&cfg.dir)
        .map_err(io_err(format!("cannot create {}", cfg.dir.display())))?;
    let mut log = match &cfg.log {
        Some((path, rot)) => Some(
            JsonLog::open(path, *rot)
                .map_err(io_err(format!("cannot open log {}", path.display())))?,
        ),
        None => None,
    };
    let rt = Runtime::new(&cfg.runtime_root);
    let mut opts = CreateOptions {
        id: cfg.id.clone(),
        bundle: cfg.bundle.clone(),
        pid_file: None,
        console_socket: None,
        console_fd: None,
        no_pivot: false,
        no_new_keyring: false,
        preserve_fds: 0,
    };
    let null = dev_null()?;
    let mut io = Io {
        outputs: Vec::new(),
        input: None,
        input_pending: Vec::new(),
        input_close: false,
        master: None,
    };
    let mut console_mine = None;
    // The container inherits fds 0-2 of this process: point them at its pipes for create.
    let mut keep_for_child: Vec<OwnedFd> = Vec::new();
    if cfg.tty {
        let (a, b) = UnixStream::pair().map_err(io_err("cannot create a console socket pair"))?;
        opts.console_fd = Some(b.into());
        console_mine = Some(a);
        for fd in 0..=2 {
            nix::unistd::dup2(null.as_raw_fd(), fd).map_err(sys_err("dup2"))?;
        }
    } else {
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
        let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
        if cfg.stdin {
            let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
            nix::unistd::dup2(in_r.as_raw_fd(), 0).map_err(sys_err("dup2"))?;
            io.input = Some(in_w);
            keep_for_child.push(in_r);
        } else {
            nix::unistd::dup2(null.as_raw_fd(), 0).map_err(sys_err("dup2"))?;
        }
        nix::unistd::dup2(out_w.as_raw_fd(), 1).map_err(sys_err("dup2"))?;
        nix::unistd::dup2(err_w.as_raw_fd(), 2).map_err(sys_err("dup2"))?;
        io.outputs.push((Stream::Stdout, Some(out_r)));
        io.outputs.push((Stream::Stderr, Some(err_r)));
        keep_for_child.push(out_w);
        keep_for_child.push(err_w);
    }
    let created = rt.create(opts);
    // Our own stdio back to /dev/null: only the container holds the pipes' other ends now.
    for fd in 0..=2 {
        let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
    }
    drop(keep_for_child);
    let rec = match created {
        Ok(r) => r,
        Err(e) => return failed(&cfg.dir, &mut ready, &e),
    };
    if let Some(sock) = console_mine {
        match skiff_container::console::receive_master(sock.as_fd()) {
            Ok(m) => {
                let dup: OwnedFd = m.try_clone().map_err(io_err("dup"))?;
                io.outputs.push((Stream::Stdout, Some(m)));
                if cfg.stdin {
                    io.input = Some(dup.try_clone().map_err(io_err("dup"))?);
                }
                io.master = Some(dup);
            }
            Err(e) => {
                let _ = rt.delete_record(&rec, true);
                return failed(&cfg.dir, &mut ready, &e);
            }
        }
    }
    for (_, fd) in &io.outputs {
        if let Some(fd) = fd {
            set_nonblocking(fd.as_fd())?;
        }
    }
    if let Some(fd) = &io.input {
        set_nonblocking(fd.as_fd())?;
    }
    let mut oom = rt.oom_watcher(&cfg.id).ok();
    let sock_path = cfg.dir.join(SOCKET);
    let _ = std::fs::remove_file(&sock_path);
    let (bind_path, _dir) = crate::socket_path(&cfg.dir)
        .map_err(io_err(format!("cannot open {}", cfg.dir.display())))?;
    let listener = UnixListener::bind(&bind_path)
        .map_err(io_err(format!("cannot listen on {}", sock_path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("nonblocking"))?;
    report_ready(&mut ready, &format!("ok {}\n", rec.pid));
    let init = Pid::from_raw(rec.pid);
    let mut started = false;
    if !cfg.wait_start {
        if let Err(e) = rt.start_record(&rec) {
            let _ = rt.delete_record(&rec, true);
            let st = ExitStatus {
                exit_code: 128,
                oom_killed: false,
                finished_at: now(),
                error: chain(&e),
            };
            write_exit(&cfg.dir, &st)?;
            return Ok(st);
        }
        started = true;
    }
    // What creating the container allocated (the spec, seccomp programs, mount lists) is free
    // now: give it back, the monitor lives as long as the container.
    skiff_sys::process::release_free_heap();
    skiff_sys::process::release_unused_stack();
    let mut clients: Vec<Client> = Vec::new();
    let mut exit_code: Option<i32> = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // Once the init is gone, what is left in the outputs is read without waiting.
        let timeout = if exit_code.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        let mut fds = vec![
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        ];
        let mut slots = Vec::new();
        for (i, (_, fd)) in io.outputs.iter().enumerate() {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                slots.push(Slot::Output(i));
            }
        }
        if let Some(fd) = io.input.as_ref().filter(|_| !io.input_pending.is_empty()) {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
            slots.push(Slot::Input);
        }
        for (i, c) in clients.iter().enumerate() {
            let mut ev = PollFlags::POLLIN;
            if !c.out.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.sock.as_fd(), ev));
            slots.push(Slot::Client(i));
        }
        let n = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys_err("poll")(e)),
        };
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if exit_code.is_some() && n == 0 {
            break;
        }
        if ready[0] {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, c)) if p == init => exit_code = Some(c),
                    Ok(WaitStatus::Signaled(p, s, _)) if p == init => {
                        exit_code = Some(128 + s as i32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        if ready[1] {
            while let Ok((s, _)) = listener.accept() {
                let _ = s.set_nonblocking(true);
                clients.push(Client {
                    sock: s,
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    attached: false,
                    waiting: false,
                    done: false,
                });
            }
        }
        for (k, slot) in slots.iter().enumerate() {
            if !ready[k + 2] {
                continue;
            }
            match *slot {
                Slot::Output(i) => {
                    let (stream, fd) = &io.outputs[i];
                    let stream = *stream;
                    let Some(fd) = fd else { continue };
                    match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                        Ok(0) | Err(Errno::EIO) => {
                            io.outputs[i].1 = None;
                        }
                        Ok(n) => {
                            let data = &buf[..n];
                            if let Some(l) = log.as_mut() {
                                if let Err(e) = l.write(stream, data) {
                                    tracing::warn!("cannot write the container log: {e}");
                                }
                            }
                            let kind = if stream == Stream::Stderr {
                                STDERR
                            } else {
                                STDOUT
                            };
                            let mut frame = protocol::header(kind, n).to_vec();
                            frame.extend_from_slice(data);
                            for c in clients.iter_mut().filter(|c| c.attached) {
                                c.send(&frame);
                            }
                        }
                        Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                        Err(_) => io.outputs[i].1 = None,
                    }
                }
                Slot::Input => write_input(&mut io),
                Slot::Client(i) => {
                    let c = &mut clients[i];
                    c.flush();
                    loop {
                        match c.sock.read(&mut buf) {
                            Ok(0) => {
                                c.done = true;
                                break;
                            }
                            Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                c.done = true;
                                break;
                            }
                        }
                    }
                    handle_client(c, &rt, &rec, &mut started, &mut io);
                }
            }
        }
        write_input(&mut io);
        clients.retain(|c| !c.done);
        if exit_code.is_some() && io.outputs.iter().all(|(_, fd)| fd.is_none()) {
            break;
        }
    }
    if let Some(l) = log.as_mut() {
        let _ = l.flush();
    }
    let oom_killed = oom
        .as_mut()
        .is_some_and(|w| w.wait(Duration::ZERO).is_ok_and(|n| n > 0));
    if let Err(e) = rt.delete_record(&rec, true) {
        tracing::warn!(
            "cannot delete the runtime state of {}: {}",
            cfg.id,
            chain(&e)
        );
    }
    let st = ExitStatus {
        exit_code: exit_code.unwrap_or(128),
        oom_killed,
        finished_at: now(),
        error: String::new(),
    };
    write_exit(&cfg.dir, &st)?;
    // Whoever waits for the end learns it now (exit.json is in place), before attached
    // clients are given what is left of the output.
    clients.retain(|c| !c.waiting);
    // Attached clients get what is left, then the end of their stream.
    for c in clients.iter_mut() {
        let _ = c.sock.set_nonblocking(false);
        let _ = c.sock.set_write_timeout(Some(Duration::from_secs(2)));
        let pending = std::mem::take(&mut c.out);
        let _ = c.sock.write_all(&pending);
    }
    let _ = std::fs::remove_file(&sock_path);
    Ok(st)
}

enum Slot {
    Output(usize),
    Input,
    Client(usize),
}

fn write_input(io: &mut Io) {
    if let Some(fd) = &io.input {
        while !io.input_pending.is_empty() {
            match nix::unistd::write(fd, &io.input_pending) {
                Ok(n) => {
                    io.input_pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    io.input_pending.clear();
                    io.input = None;
                    return;
                }
            }
        }
        if io.input_pending.is_empty() && io.input_close && io.master.is_none() {
            io.input = None;
        }
    }
}

fn handle_client(
    c: &mut Client,
    rt: &Runtime,
    rec: &skiff_container::state::Record,
    started: &mut bool,
    io: &mut Io,
) {
    if !c.attached {
        let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') else {
            return;
        };
        let line: String = String::from_utf8_lossy(&c.inbuf[..nl]).into_owned();
        c.inbuf.drain(..=nl);
        let mut words = line.split_whitespace();
        let reply = match words.next() {
            Some("start") if *started => "error the container is already started\n".to_string(),
            Some("start") => match rt.start_record(rec) {
                Ok(()) => {
                    *started = true;
                    skiff_sys::process::release_free_heap();
                    "ok\n".to_string()
                }
                Err(e) => format!("error {}\n", chain(&e).replace('\n', " ")),
            },
            Some("attach") => {
                c.attached = true;
                "ok\n".to_string()
            }
            Some("wait") => {
                c.waiting = true;
                "ok\n".to_string()
            }
            Some("resize") => {
                let rows = words.next().and_then(|w| w.parse().ok());
                let cols = words.next().and_then(|w| w.parse().ok());
                match (rows, cols, &io.master) {
                    (Some(rows), Some(cols), Some(m)) => {
                        match skiff_sys_resize(m.as_fd(), rows, cols) {
                            Ok(()) => "ok\n".to_string(),
                            Err(e) => format!("error cannot resize: {e}\n"),
                        }
                    }
                    (_, _, None) => "error the container has no tty\n".to_string(),
                    _ => "error usage: resize ROWS COLS\n".to_string(),
                }
            }
            _ => format!("error unknown command {line:?}\n"),
        };
        c.send(reply.as_bytes());
        if c.waiting {
            return;
        }
        if !c.attached {
            c.flush();
            c.done = true;
            return;
        }
    }
    for (kind, payload) in protocol::take_frames(&mut c.inbuf) {
        match kind {
            STDIN if payload.is_empty() => io.input_close = true,
            STDIN => io.input_pending.extend_from_slice(&payload),
            RESIZE if payload.len() == 4 => {
                if let Some(m) = &io.master {
                    let rows = u16::from_be_bytes([payload[0], payload[1]]);
                    let cols = u16::from_be_bytes([payload[2], payload[3]]);
                    let _ = skiff_sys_resize(m.as_fd(), rows, cols);
                }
            }
            _ => {}
        }
    }
}

fn skiff_sys_resize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    skiff_sys::tty::set_winsize(fd, skiff_sys::tty::WinSize { rows, cols })
}
