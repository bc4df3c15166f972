//! Frames on an attached connection, with Docker's stream multiplexing header: one byte of
//! stream type, three zero bytes, the payload length as a big-endian u32, then the payload.
//! Monitor → client: [`STDOUT`] and [`STDERR`] (a tty's output is all [`STDOUT`]). Client →
//! monitor: [`STDIN`] (an empty payload closes the container's stdin) and [`RESIZE`]
//! (rows and columns as big-endian u16s).

use std::io::{self, Read, Write};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 9;
pub const HEADER: usize = 8;

/// The header of a frame of `len` bytes of stream `kind`.
pub fn header(kind: u8, len: usize) -> [u8; HEADER] {
    let n = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [kind, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&header(kind, payload.len()))?;
    w.write_all(payload)
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; HEADER];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((h[0], payload)))
}

/// Splits complete frames off the front of `buf` (bytes read so far from a connection).
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= HEADER {
        let h = &buf[at..at + HEADER];
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if buf.len() - at - HEADER < len {
            break;
        }
        out.push((h[0], buf[at + HEADER..at + HEADER + len].to_vec()));
        at += HEADER + len;
    }
    buf.drain(..at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut wire = Vec::new();
        write_frame(&mut wire, STDOUT, b"hello").unwrap();
        write_frame(&mut wire, STDIN, b"").unwrap();
        write_frame(&mut wire, RESIZE, &[0, 24, 0, 80]).unwrap();
        assert_eq!(&wire[..8], &[1, 0, 0, 0, 0, 0, 0, 5]);
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for b in &wire[13..] {
            buf.push(*b);
            got.extend(take_frames(&mut buf));
        }
        assert_eq!(got, [(STDIN, vec![]), (RESIZE, vec![0, 24, 0, 80])]);
        assert!(buf.is_empty());
    }
}
