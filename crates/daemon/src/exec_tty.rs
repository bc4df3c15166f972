//! `docker exec -t`: the exec'd process's pty master, bridged raw over the hijacked
//! connection (no frames), resized by `POST /exec/{id}/resize`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// How long a read of the master waits before it looks whether the process ended (a
/// background child may keep the terminal open after the exec'd process is gone).
const TICK_MS: u16 = 100;

/// Copies what the process writes to its terminal into `out` until the terminal closes,
/// or, once `done` is set (the process has exited), until nothing more is pending. `out`
/// returning false means the reader went away: the terminal is still drained so the
/// process never blocks on a full pty.
pub(crate) fn pump(master: &OwnedFd, done: &AtomicBool, mut out: impl FnMut(&[u8]) -> bool) {
    let mut buf = vec![0u8; 32 << 10];
    let mut reading = true;
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ready = match poll(&mut fds, PollTimeout::from(TICK_MS)) {
            Ok(n) => n > 0,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        if !ready {
            if done.load(Ordering::SeqCst) {
                break;
            }
            continue;
        }
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            // EIO: every slave fd is closed.
            Ok(0) | Err(Errno::EIO) => break,
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => break,
            Ok(n) => {
                if reading && !out(&buf[..n]) {
                    reading = false;
                }
            }
        }
    }
}

/// Writes the client's bytes to the terminal (blocking, on its own thread) until the
/// channel closes.
pub(crate) fn feed(master: &Arc<OwnedFd>) -> std::io::Result<std::sync::mpsc::Sender<Vec<u8>>> {
    use std::io::Write;
    let mut f = std::fs::File::from(master.try_clone()?);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for chunk in rx {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    Ok(tx)
}

/// Sets `done` when dropped (also when the waiting task panics).
pub(crate) struct DoneOnDrop(pub Arc<AtomicBool>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
