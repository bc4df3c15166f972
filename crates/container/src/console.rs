//! Terminals: the container side creates its pty inside its own devpts and sends the master
//! over the console socket; the runtime side receives it (for `run`/`exec` in the foreground
//! without a console socket) and copies between the user's terminal and the container.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use oci_spec::runtime::Process;

use crate::error::{Context, Error, Result};
use crate::mounts::fd_path;

/// Connects to the caller's `--console-socket`.
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = UnixStream::connect(path)
        .ctx(|| format!("cannot connect to console socket {}", path.display()))?;
    Ok(s.into())
}

fn open_pty(p: &Process) -> Result<(nix::pty::PtyMaster, OwnedFd, String)> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "cannot open /dev/ptmx (is devpts mounted at /dev/pts?)".into())?;
    grantpt(&master).ctx(|| "grantpt failed".into())?;
    unlockpt(&master).ctx(|| "unlockpt failed".into())?;
    let name = ptsname_r(&master).ctx(|| "ptsname failed".into())?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(&name)
        .ctx(|| format!("cannot open {name}"))?
        .into();
    // The slave must really be a pty (devpts comes from the container's /dev/pts).
    let st = nix::sys::stat::fstat(slave.as_raw_fd()).ctx(|| format!("cannot stat {name}"))?;
    let major = nix::sys::stat::major(st.st_rdev);
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || !(136..=143).contains(&major) {
        return Err(Error::Other(format!(
            "{name} is not a pseudo-terminal (device major {major}); is /dev/pts a real devpts?"
        )));
    }
    if let Some(size) = p.console_size() {
        let ws = skiff_sys::tty::WinSize {
            rows: u16::try_from(size.height()).unwrap_or(u16::MAX),
            cols: u16::try_from(size.width()).unwrap_or(u16::MAX),
        };
        skiff_sys::tty::set_winsize(slave.as_fd(), ws)
            .ctx(|| "cannot set the console size".into())?;
    }
    Ok((master, slave, name))
}

/// In the container (after pivot_root): opens a pty from the container's /dev/ptmx, binds the
/// slave over /dev/console, sends the master over `sock` and returns the slave.
pub fn setup_in_container(sock: &OwnedFd, p: &Process) -> Result<OwnedFd> {
    let (master, slave, name) = open_pty(p)?;
    // /dev/console is the pty slave, bound from our verified fd over a target that is not a
    // symlink (CVE-2025-52565).
    if let Ok(m) = std::fs::symlink_metadata("/dev/console") {
        if m.file_type().is_symlink() {
            let to = std::fs::read_link("/dev/console").unwrap_or_default();
            return Err(Error::Other(format!(
                "/dev/console in the container is a symlink to {}; refusing to mount the console through it",
                to.display()
            )));
        }
    }
    let root: OwnedFd = std::fs::File::open("/")
        .ctx(|| "cannot open /".into())?
        .into();
    let target = crate::mounts::ensure(
        root.as_fd(),
        Path::new("/dev/console"),
        crate::mounts::Kind::File,
        true,
    )?;
    mount(
        Some(fd_path(slave.as_fd()).as_str()),
        fd_path(target.as_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| "cannot bind the pty over /dev/console".into())?;
    skiff_sys::socket::send_fd(sock.as_fd(), name.as_bytes(), master.as_fd())
        .ctx(|| "cannot send the console to the console socket".into())?;
    Ok(slave)
}

/// For `exec -t`: a new pty from the container's devpts, master sent over `sock`.
pub fn setup_exec(sock: &OwnedFd, p: &Process) -> Result<OwnedFd> {
    let (master, slave, name) = open_pty(p)?;
    skiff_sys::socket::send_fd(sock.as_fd(), name.as_bytes(), master.as_fd())
        .ctx(|| "cannot send the console to the console socket".into())?;
    Ok(slave)
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}

/// Makes `slave` the controlling terminal (we are a session leader) and stdio.
pub fn make_controlling(slave: OwnedFd) -> Result<()> {
    skiff_sys::tty::set_controlling_tty(slave.as_fd())
        .ctx(|| "cannot make the pty the controlling terminal".into())?;
    for fd in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), fd)
            .ctx(|| format!("cannot dup the pty to fd {fd}"))?;
    }
    Ok(())
}

/// Receives the master the container sent.
pub fn receive_master(sock: BorrowedFd<'_>) -> Result<OwnedFd> {
    skiff_sys::socket::recv_fd(sock).map_err(|e| Error::Sys {
        what: "cannot receive the console from the container".into(),
        source: e,
    })
}
