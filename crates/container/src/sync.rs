//! The parent/child handshake over a SOCK_SEQPACKET socket pair: one message per datagram.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::error::{Context, Error, Result};

/// Messages between the runtime and the container's init (or an exec'd process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Parent → child: cgroup joined and id maps written; carries the hook state JSON.
    Go(String),
    /// Child → parent (slow path): namespaces joined (user namespace unshared): write my id
    /// maps and put me into the cgroup before I fork the init.
    Place,
    /// Parent → child (slow path): placed.
    Placed,
    /// Child → parent: run the prestart/createRuntime hooks now.
    Hooks,
    /// Parent → child: hooks done.
    HooksDone,
    /// Child → parent: the pid of the process that will exec (slow path and exec).
    Pid(i32),
    /// Child → parent: the console master fd follows separately; set up done, waiting for start.
    Ready,
    /// Child → parent: something failed; the message is for the user.
    Error(String),
    /// Child → parent: the seccomp notify listener fd is attached (sent with `send_fd`).
    SeccompFd,
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go(s) => [b"G".as_slice(), s.as_bytes()].concat(),
            Msg::Place => b"U".to_vec(),
            Msg::Placed => b"u".to_vec(),
            Msg::Hooks => b"H".to_vec(),
            Msg::HooksDone => b"D".to_vec(),
            Msg::Pid(p) => format!("P{p}").into_bytes(),
            Msg::Ready => b"R".to_vec(),
            Msg::Error(s) => [b"E".as_slice(), s.as_bytes()].concat(),
            Msg::SeccompFd => b"S".to_vec(),
        }
    }

    fn decode(b: &[u8]) -> Option<Msg> {
        let (tag, rest) = b.split_first()?;
        let text = || String::from_utf8_lossy(rest).into_owned();
        Some(match tag {
            b'G' => Msg::Go(text()),
            b'U' => Msg::Place,
            b'u' => Msg::Placed,
            b'H' => Msg::Hooks,
            b'D' => Msg::HooksDone,
            b'P' => Msg::Pid(text().parse().ok()?),
            b'R' => Msg::Ready,
            b'E' => Msg::Error(text()),
            b'S' => Msg::SeccompFd,
            _ => return None,
        })
    }
}

/// One end of the handshake channel.
pub struct Channel(pub OwnedFd);

/// A connected pair, both ends close-on-exec (the child's end closing at execve tells the
/// parent the exec happened).
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "cannot create the sync socket pair".into())?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        send(self.0.as_raw_fd(), &msg.encode(), MsgFlags::MSG_NOSIGNAL)
            .ctx(|| "cannot talk to the other side of the runtime".into())
            .map(drop)
    }

    /// Sends `msg` with `fd` attached.
    pub fn send_fd(&self, msg: &Msg, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        use std::os::fd::AsFd;
        skiff_sys::socket::send_fd(self.0.as_fd(), &msg.encode(), fd)
            .ctx(|| "cannot pass an fd to the runtime".into())
    }

    /// The next message, or `None` when the other side closed (exited or exec'd).
    pub fn recv(&self) -> Result<Option<Msg>> {
        Ok(self.recv_fd()?.map(|(m, _)| m))
    }

    /// The next message and the fd attached to it, if any.
    pub fn recv_fd(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        use std::os::fd::AsFd;
        let mut buf = vec![0u8; 64 * 1024];
        let mut reset_seen = false;
        loop {
            match skiff_sys::socket::recv_with_fd(self.0.as_fd(), &mut buf) {
                Ok((0, _)) => return Ok(None),
                Ok((n, fd)) => {
                    return Msg::decode(&buf[..n])
                        .map(|m| Some((m, fd)))
                        .ok_or_else(|| {
                            Error::Other("garbled message from the container process".into())
                        })
                }
                Err(nix::errno::Errno::EINTR) => continue,
                // The other side exited without reading something we sent; the kernel reports
                // that once (and clears it) before the messages still queued for us, such as
                // the error it exited with.
                Err(nix::errno::Errno::ECONNRESET) if !reset_seen => reset_seen = true,
                Err(e) => return Err(e).ctx(|| "cannot read from the container process".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip() {
        let (a, b) = pair().unwrap();
        for m in [
            Msg::Go("{\"x\":1}".into()),
            Msg::Place,
            Msg::Placed,
            Msg::Hooks,
            Msg::HooksDone,
            Msg::Pid(4242),
            Msg::Ready,
            Msg::Error("boom".into()),
            Msg::SeccompFd,
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None, "EOF once the other end is gone");
    }

    #[test]
    fn the_last_words_of_a_side_that_never_read_arrive() {
        // The init fails and exits while a message from the runtime waits unread for it.
        let (parent, child) = pair().unwrap();
        parent.send(&Msg::Placed).unwrap();
        child.send(&Msg::Error("mount failed".into())).unwrap();
        drop(child);
        assert_eq!(
            parent.recv().unwrap(),
            Some(Msg::Error("mount failed".into()))
        );
        assert_eq!(parent.recv().unwrap(), None);
    }
}
