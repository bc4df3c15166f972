//! Streams: Docker's multiplexed frames, hijacked attach/exec connections, terminal raw mode and
//! size forwarding, and JSON progress messages.

use std::io::Write;
use std::os::fd::AsFd;

use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use nix::sys::termios::{self, SetArg, Termios};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Splits Docker's 8-byte-header frames out of `buf`: (stream, payload) items; what is left
/// is an incomplete frame.
pub fn frames(buf: &mut BytesMut) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while buf.len() >= 8 {
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            break;
        }
        let stream = buf[0];
        buf.advance(8);
        out.push((stream, buf.split_to(len).to_vec()));
    }
    out
}

fn write_frame(stream: u8, data: &[u8]) -> std::io::Result<()> {
    if stream == 2 {
        let mut e = std::io::stderr().lock();
        e.write_all(data)?;
        e.flush()
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(data)?;
        o.flush()
    }
}

/// Copies a stream to stdout/stderr: raw with a tty, demultiplexed without.
pub async fn copy_output<R: AsyncRead + Unpin>(mut r: R, tty: bool) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(32 * 1024);
    loop {
        let n = r.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if tty {
            write_frame(1, &buf)?;
            buf.clear();
        } else {
            for (s, d) in frames(&mut buf) {
                write_frame(s, &d)?;
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(32 * 1024);
        }
    }
}

/// Copies an HTTP body (logs) to stdout/stderr.
pub async fn copy_body(mut body: Incoming, tty: bool) -> anyhow::Result<()> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            if tty {
                write_frame(1, &data)?;
            } else {
                buf.extend_from_slice(&data);
                for (s, d) in frames(&mut buf) {
                    write_frame(s, &d)?;
                }
            }
        }
    }
    Ok(())
}

/// Watches typed input for the detach key sequence; holds back a partial match until it
/// either completes or fails.
#[derive(Debug)]
pub struct DetachKeys {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachKeys {
    pub fn new(keys: Vec<u8>) -> Option<DetachKeys> {
        (!keys.is_empty()).then_some(DetachKeys { keys, matched: 0 })
    }

    /// Filters `input` into what to send on; `true` when the sequence is complete.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return true;
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// Copies our stdin to `w`; half-closes it at EOF. Returns `true` when the user typed the
/// detach keys.
pub async fn copy_stdin<W: AsyncWrite + Unpin>(mut w: W, mut detach: Option<DetachKeys>) -> bool {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Vec::with_capacity(buf.len());
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.clear();
                let done = match &mut detach {
                    Some(d) => d.feed(&buf[..n], &mut out),
                    None => {
                        out.extend_from_slice(&buf[..n]);
                        false
                    }
                };
                if !out.is_empty() && (w.write_all(&out).await.is_err() || w.flush().await.is_err())
                {
                    return false;
                }
                if done {
                    return true;
                }
            }
        }
    }
    let _ = w.shutdown().await;
    false
}

/// Streams a hijacked connection: output to stdout/stderr until it ends, stdin (when `w` is
/// given) to the container. `Ok(true)`: the user detached.
pub async fn pump<R, W>(
    r: R,
    w: Option<W>,
    tty: bool,
    detach: Option<DetachKeys>,
) -> std::io::Result<bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut input = w.map(|w| tokio::spawn(copy_stdin(w, detach)));
    let out = copy_output(r, tty);
    tokio::pin!(out);
    if let Some(h) = input.as_mut() {
        tokio::select! {
            res = &mut out => {
                h.abort();
                return res.map(|()| false);
            }
            d = &mut *h => {
                if matches!(d, Ok(true)) {
                    return Ok(true);
                }
            }
        }
    }
    out.await.map(|()| false)
}

/// The detach keys for an interactive tty session (`ctrl-p,ctrl-q` unless given).
pub fn detach_keys(active: bool, flag: Option<&str>) -> Option<DetachKeys> {
    if !active {
        return None;
    }
    let keys = crate::opts::parse_detach_keys(flag.unwrap_or("ctrl-p,ctrl-q")).ok()?;
    DetachKeys::new(keys)
}

/// Raw mode on stdin's terminal for as long as it lives (restored on drop).
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode; `None` when stdin is no terminal.
    pub fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Whether stdin / stdout is a terminal.
pub fn stdin_is_tty() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdin())
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

/// Our terminal's size (rows, cols), from stdout.
pub fn term_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    let ws = skiff_sys::tty::get_winsize(out.as_fd()).ok()?;
    (ws.rows > 0 && ws.cols > 0).then_some((ws.rows, ws.cols))
}

/// A JSON progress/stream message (`jsonmessage.JSONMessage`).
#[derive(Debug, Default, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub progress: Option<String>,
    #[serde(default, rename = "progressDetail")]
    pub progress_detail: Option<serde_json::Value>,
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub aux: Option<serde_json::Value>,
}

impl skiff_progress::Line for Message {
    fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn bar(&self) -> Option<&str> {
        self.progress.as_deref()
    }
    fn has_detail(&self) -> bool {
        self.progress_detail.is_some()
    }
}

/// Reads a JSON-lines progress body; shows it (unless `quiet`) on `out`; returns the messages'
/// `aux` values and the `stream` texts; an `error` message becomes the error.
pub async fn progress<W: Write>(
    mut body: Incoming,
    out: W,
    tty: bool,
    quiet: bool,
) -> anyhow::Result<(Vec<serde_json::Value>, String)> {
    let mut r = skiff_progress::Renderer::new(out, tty);
    let mut buf = BytesMut::new();
    let mut aux = Vec::new();
    let mut streams = String::new();
    let mut handle = |line: &[u8], r: &mut skiff_progress::Renderer<W>| -> anyhow::Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let m: Message = serde_json::from_slice(line)?;
        if let Some(e) = &m.error {
            anyhow::bail!("{e}");
        }
        if let Some(a) = &m.aux {
            aux.push(a.clone());
        }
        if let Some(s) = &m.stream {
            streams.push_str(s);
        }
        if !quiet {
            r.show(&m)?;
        }
        Ok(())
    };
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(i + 1);
                handle(&line, &mut r)?;
            }
        }
    }
    if !buf.is_empty() {
        handle(&buf, &mut r)?;
    }
    Ok((aux, streams))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_held_back_and_detected() {
        let mut d = DetachKeys::new(vec![16, 17]).unwrap();
        let mut out = Vec::new();
        assert!(!d.feed(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        out.clear();
        // A broken sequence sends the held byte on.
        assert!(!d.feed(b"c", &mut out));
        assert_eq!(out, b"\x10c");
        out.clear();
        assert!(!d.feed(b"\x10\x10", &mut out));
        assert_eq!(out, b"\x10");
        out.clear();
        assert!(d.feed(b"\x11rest", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn frames_split_and_keep_partial() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i', 2, 0, 0, 0, 0, 0, 0, 3, b'e',
        ]);
        let f = frames(&mut b);
        assert_eq!(f, vec![(1, b"hi".to_vec())]);
        assert_eq!(b.len(), 9);
        b.extend_from_slice(b"rr");
        assert_eq!(frames(&mut b), vec![(2, b"err".to_vec())]);
        assert!(b.is_empty());
    }
}
