//! Passing file descriptors over unix sockets (SCM_RIGHTS): the console master goes to the
//! caller's `--console-socket` this way.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::cmsg_space;
use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

/// Sends `fd` with a short name as the payload (runc sends the pty's name).
pub fn send_fd(sock: BorrowedFd<'_>, name: &[u8], fd: BorrowedFd<'_>) -> nix::Result<()> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(name)];
    sendmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Receives one fd sent with [`send_fd`].
pub fn recv_fd(sock: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    recv_with_fd(sock, &mut buf)?.1.ok_or(Errno::EBADMSG)
}

/// Receives one message into `buf` with at most one fd attached (SCM_RIGHTS). Returns the
/// message length (0 at end of stream) and the fd, if one came with it.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<(usize, Option<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for (i, &raw) in fds.iter().enumerate() {
                if i == 0 && fd.is_none() {
                    // SAFETY: the kernel installed this fd in our table for this message; we are
                    // its only owner.
                    fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
                } else {
                    let _ = nix::unistd::close(raw);
                }
            }
        }
    }
    Ok((msg.bytes, fd))
}
