//! skiff-init: the init `docker run --init` puts in front of the command, bind-mounted
//! read-only at `/sbin/docker-init` and started as `docker-init -- CMD ARGS...` (tini's
//! command line). As PID 1 of the container it
//!
//! - runs the command as its child, in a process group of its own (the terminal's
//!   foreground group when stdin is a terminal);
//! - forwards every signal it can catch to the child (`-g`: to the child's process group),
//!   so `docker stop`'s SIGTERM reaches the command, which PID 1 semantics would otherwise
//!   shield;
//! - reaps every zombie re-parented to it;
//! - exits with the child's status: its exit code, or 128+N when signal N killed it (`-e
//!   CODE` maps CODE to 0). A command that cannot be run: 127 (not found) or 126.
//!
//! Signals are blocked (once the child runs) and taken with `sigwait`, so nothing runs in a
//! signal handler. The
//! binary is linked statically (build.rs): images need no C library for it.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const NAME: &str = "skiff-init";

/// The command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Opts {
    /// `-g`: signals go to the child's process group.
    group: bool,
    /// `-s`: become a subreaper (implied when not PID 1).
    subreaper: bool,
    /// `-e CODE`: exit codes mapped to 0.
    remap: Vec<i32>,
    cmd: Vec<OsString>,
}

const USAGE: &str = "usage: skiff-init [-g] [-s] [-e EXIT_CODE]... [--] PROGRAM [ARGS...]";

/// tini's options (the ones that matter to a container; `-v`, `-w`, `-l` are accepted).
fn parse(args: Vec<OsString>) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--") => break,
            Some("-g") => o.group = true,
            Some("-s") => o.subreaper = true,
            Some("-v" | "-vv" | "-vvv" | "-w" | "-l") => {}
            Some("-e") => {
                let v = it.next().ok_or("-e needs an exit code")?;
                let code = v
                    .to_str()
                    .and_then(|v| v.parse::<i32>().ok())
                    .filter(|c| (0..=255).contains(c))
                    .ok_or_else(|| format!("-e: {v:?} is not an exit code (0-255)"))?;
                o.remap.push(code);
            }
            Some("-p") => {
                it.next().ok_or("-p needs a signal")?;
            }
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s}"));
            }
            _ => {
                o.cmd.push(a);
                break;
            }
        }
    }
    o.cmd.extend(it);
    if o.cmd.is_empty() {
        return Err("no program to run".into());
    }
    Ok(o)
}

/// What init takes (and forwards): every signal but the ones the kernel sends a process
/// for its own faults, which must keep their default action.
fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in Signal::iterator() {
        if !matches!(
            s,
            Signal::SIGFPE
                | Signal::SIGILL
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGABRT
                | Signal::SIGTRAP
                | Signal::SIGSYS
                | Signal::SIGKILL
                | Signal::SIGSTOP
        ) {
            set.add(s);
        }
    }
    set
}

/// A wait status as a shell shows it.
fn exit_code(st: WaitStatus) -> Option<i32> {
    match st {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Reaps every child that has ended; the child's exit code once it is among them.
fn reap(child: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(st) => {
                if st.pid() == Some(child) {
                    code = exit_code(st);
                }
            }
        }
    }
}

fn run(o: &Opts) -> i32 {
    if o.subreaper || nix::unistd::getpid().as_raw() != 1 {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            eprintln!("[{NAME}] cannot become a subreaper ({e}): zombies may not be reaped");
        }
    }
    // Signals are blocked first, so none is lost (or kills this process) while the child
    // starts; the child unblocks them before it execs the command.
    let set = forwarded();
    if let Err(e) = set.thread_block() {
        eprintln!("[{NAME}] cannot block signals: {e}");
        return 1;
    }
    let mut cmd = Command::new(&o.cmd[0]);
    cmd.args(&o.cmd[1..]).process_group(0);
    skiff_sys::process::spawn_unblocked(&mut cmd);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[{NAME}] exec {} failed: {e}", o.cmd[0].to_string_lossy());
            return match e.kind() {
                ErrorKind::NotFound => 127,
                ErrorKind::PermissionDenied => 126,
                _ => 1,
            };
        }
    };
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    drop(child);
    // Its group takes the terminal (SIGTTOU is blocked, so this works from any group).
    let stdin = std::io::stdin();
    if nix::unistd::isatty(std::os::fd::AsRawFd::as_raw_fd(&stdin)).unwrap_or(false)
        && nix::unistd::tcsetpgrp(stdin.as_fd(), pid).is_ok()
    {
        // The command may have touched the terminal before its group owned it and been
        // stopped (SIGTTIN/SIGTTOU): it goes on now, and its read or write is retried.
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGCONT);
    }
    let target = if o.group {
        Pid::from_raw(-pid.as_raw())
    } else {
        pid
    };
    let done = |code: i32| if o.remap.contains(&code) { 0 } else { code };
    if let Some(code) = reap(pid) {
        return done(code);
    }
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig == Signal::SIGCHLD {
            if let Some(code) = reap(pid) {
                return done(code);
            }
            continue;
        }
        // The child may be gone already (ESRCH): its SIGCHLD comes next.
        let _ = kill(target, sig);
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().and_then(|a| a.to_str()) == Some("--version") {
        println!("{NAME} version {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if matches!(args.first().and_then(|a| a.to_str()), Some("-h" | "--help")) {
        println!("{USAGE}");
        return;
    }
    let code = match parse(args) {
        Ok(o) => run(&o),
        Err(e) => {
            eprintln!("[{NAME}] {e}\n{USAGE}");
            1
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Opts, String> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn dockers_command_line() {
        let o = p(&["--", "sh", "-c", "echo -g"]).unwrap();
        assert!(!o.group);
        assert_eq!(o.cmd, ["sh", "-c", "echo -g"]);
        let o = p(&["-g", "-e", "143", "sleep", "1"]).unwrap();
        assert!(o.group);
        assert_eq!(o.remap, [143]);
        assert_eq!(o.cmd, ["sleep", "1"]);
        assert!(p(&["--"]).is_err());
        assert!(p(&["-x", "sh"]).is_err());
        assert!(p(&["-e", "300", "sh"]).is_err());
    }

    #[test]
    fn statuses_as_a_shell_shows_them() {
        let pid = Pid::from_raw(5);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)),
            Some(143)
        );
        assert!(!forwarded().contains(Signal::SIGSEGV));
        assert!(forwarded().contains(Signal::SIGTERM));
        assert!(forwarded().contains(Signal::SIGCHLD));
    }
}
