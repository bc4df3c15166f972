//! `run` and `exec` in the foreground: forward signals to the container process, copy a
//! terminal if there is one, and return the exit code (128+signal when killed).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Context, Result};

/// The signals the runtime takes over (everything a user or supervisor may send).
fn forwarded() -> SigSet {
    let mut s = SigSet::all();
    for sig in [
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGTRAP,
        Signal::SIGKILL,
        Signal::SIGSTOP,
    ] {
        s.remove(sig);
    }
    s
}

/// Blocks the forwarded signals; call before creating the container so none is lost. The
/// container side resets its mask before execve.
pub fn block_signals() -> Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded()), None)
        .ctx(|| "cannot block signals".into())
}

/// Become a subreaper so that a container process whose parent exits is re-parented to us.
pub fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).ctx(|| "cannot become a child subreaper".into())
}

fn code(status: WaitStatus) -> Option<(Pid, i32)> {
    match status {
        WaitStatus::Exited(p, c) => Some((p, c)),
        WaitStatus::Signaled(p, s, _) => Some((p, 128 + s as i32)),
        _ => None,
    }
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Waits for `pid`, forwarding signals and copying the terminal `master` to stdio.
pub fn wait(pid: Pid, master: Option<OwnedFd>) -> Result<i32> {
    let sfd = SignalFd::with_flags(&forwarded(), SfdFlags::SFD_CLOEXEC)
        .ctx(|| "cannot create a signalfd".into())?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let saved = match &master {
        Some(m) => {
            if let Ok(ws) = skiff_sys::tty::get_winsize(stdin.as_fd()) {
                let _ = skiff_sys::tty::set_winsize(m.as_fd(), ws);
            }
            termios::tcgetattr(stdin.as_fd()).ok().inspect(|t| {
                let mut raw = t.clone();
                termios::cfmakeraw(&mut raw);
                let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
            })
        }
        None => None,
    };
    let mut exit: Option<i32> = reap(pid);
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    while exit.is_none() {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &master {
            if master_open {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).ctx(|| "poll failed".into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(info)) = sfd.read_signal() {
                let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                match Signal::try_from(signo) {
                    Ok(Signal::SIGCHLD) => exit = reap(pid),
                    Ok(Signal::SIGWINCH) => {
                        if let (Some(m), Ok(ws)) =
                            (&master, skiff_sys::tty::get_winsize(stdin.as_fd()))
                        {
                            let _ = skiff_sys::tty::set_winsize(m.as_fd(), ws);
                        }
                    }
                    Ok(sig) => {
                        let _ = kill(pid, sig);
                    }
                    Err(_) => {}
                }
            }
        }
        if let Some(m) = &master {
            let mut i = 1;
            if master_open {
                if ready.get(i).copied().unwrap_or(false) {
                    match nix::unistd::read(m.as_raw_fd(), &mut buf) {
                        Ok(0) | Err(Errno::EIO) => master_open = false,
                        Ok(n) => {
                            write_all(stdout.as_fd(), &buf[..n]);
                        }
                        Err(_) => {}
                    }
                }
                i += 1;
            }
            if stdin_open && ready.get(i).copied().unwrap_or(false) {
                match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                    Ok(0) | Err(Errno::EIO) => stdin_open = false,
                    Ok(n) => {
                        write_all(m.as_fd(), &buf[..n]);
                    }
                    Err(_) => {}
                }
            }
        }
    }
    if let Some(m) = &master {
        // Drain what the process wrote before it exited.
        let _ = nix::fcntl::fcntl(
            m.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        while let Ok(n) = nix::unistd::read(m.as_raw_fd(), &mut buf) {
            if n == 0 || !write_all(stdout.as_fd(), &buf[..n]) {
                break;
            }
        }
    }
    if let Some(t) = saved {
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &t);
    }
    Ok(exit.unwrap_or(255))
}

/// Reaps every exited child; returns `pid`'s exit code if it is among them.
fn reap(pid: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(st) => {
                if let Some((p, c)) = code(st) {
                    if p == pid {
                        found = Some(c);
                    }
                }
            }
        }
    }
}
