//! Reading (and following) a container's log, and the log drivers: `json-file` (the
//! default), `local` (kept in the same line format here, with `local`'s rotation defaults:
//! 20 MB, 5 files) and `none` (nothing kept; reading it is an error, as with Docker).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use skiff_monitor::logfile::{Entry, Stream};

use crate::engine::{Ctr, Shared};
use crate::error::Result;
use crate::model::{LogEntry, LogsOptions, Status};

/// Bytes read from a log file at a time: memory stays bounded whatever the log's size.
const CHUNK: usize = 256 * 1024;

/// The log lines of a container, oldest first, read from the files a chunk at a time. With
/// `follow` it waits for new lines and ends once the container is no longer running and the
/// log is read to its end.
pub struct LogStream {
    queue: VecDeque<LogEntry>,
    cancelled: Option<Box<dyn Fn() -> bool + Send>>,
    /// Rotated files still to read, oldest first (the live file is `live`).
    older: VecDeque<(PathBuf, u64)>,
    /// The file being read and what is left of its last chunk (an incomplete line).
    cur: Option<File>,
    partial: Vec<u8>,
    /// Whether `cur` is the live file (the last one).
    at_live: bool,
    live: PathBuf,
    live_start: u64,
    follow: Option<Follow>,
    buf: Vec<u8>,
    opts: LogsOptions,
    since: Option<String>,
    until: Option<String>,
}

struct Follow {
    ctr: Arc<Ctr>,
    sh: Arc<Shared>,
    ino: u64,
}

pub(crate) const JSON_FILE: &str = "json-file";
pub(crate) const LOCAL: &str = "local";
pub(crate) const NONE: &str = "none";
/// `local`'s defaults: max-size 20 MB, max-file 5.
pub(crate) const LOCAL_ROTATION: (u64, u32) = (20 << 20, 5);
/// Docker's answer to reading a log that is not kept.
pub const NOT_READABLE: &str = "configured logging driver does not support reading";

/// A container's log driver (json-file when none is named); Docker's error for others.
pub(crate) fn driver(hc: &bollard_stubs::models::HostConfig) -> Result<&'static str> {
    let t = hc
        .log_config
        .as_ref()
        .and_then(|l| l.typ.as_deref())
        .unwrap_or("");
    match t {
        "" | JSON_FILE => Ok(JSON_FILE),
        LOCAL => Ok(LOCAL),
        NONE => Ok(NONE),
        other => Err(crate::Error::InvalidInput(format!(
            "logger: no log driver named '{other}' is registered"
        ))),
    }
}

/// Where a driver keeps the log of container `id` in its directory `dir` (made here);
/// empty for `none`.
pub(crate) fn path(driver: &str, dir: &std::path::Path, id: &str) -> Result<String> {
    let p = match driver {
        NONE => return Ok(String::new()),
        LOCAL => {
            let d = dir.join("local-logs");
            std::fs::create_dir_all(&d).map_err(crate::error::io_err(format!(
                "cannot create {}",
                d.display()
            )))?;
            d.join("container.log")
        }
        _ => dir.join(format!("{id}-json.log")),
    };
    Ok(p.display().to_string())
}

fn stamp(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

fn with_suffix(path: &std::path::Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The offset in `f` after which exactly `want` complete lines follow, or the number of
/// complete lines in the whole file when it has fewer (reads backwards, a block at a time).
fn tail_offset(f: &mut File, want: usize) -> std::result::Result<u64, usize> {
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut block = vec![0u8; 64 * 1024];
    let mut pos = len;
    let mut seen_end = false; // past the trailing incomplete line, if any
    let mut lines = 0usize;
    while pos > 0 {
        let n = usize::try_from(pos.min(block.len() as u64)).unwrap_or(block.len());
        pos -= n as u64;
        if f.seek(SeekFrom::Start(pos)).is_err() || f.read_exact(&mut block[..n]).is_err() {
            break;
        }
        for i in (0..n).rev() {
            if block[i] != b'\n' {
                continue;
            }
            if !seen_end {
                seen_end = true; // ends the last complete line
                continue;
            }
            lines += 1;
            if lines == want {
                return Ok(pos + i as u64 + 1);
            }
        }
    }
    if seen_end {
        lines += 1; // the first line has no newline before it
    }
    if lines >= want {
        Ok(0)
    } else {
        Err(lines)
    }
}

impl LogStream {
    pub(crate) fn open(ctr: Arc<Ctr>, sh: Arc<Shared>, opts: LogsOptions) -> Result<LogStream> {
        let (live, max_files) = {
            let st = ctr.lock();
            if st.rec.log_path.is_empty() {
                return Err(crate::Error::NotImplemented(NOT_READABLE.into()));
            }
            (PathBuf::from(&st.rec.log_path), st.rec.log_max_file)
        };
        // Oldest first: path.N ... path.1, then the live file.
        let mut files: Vec<(PathBuf, u64)> = (1..max_files.max(1))
            .rev()
            .map(|n| (with_suffix(&live, n), 0))
            .filter(|(p, _)| p.exists())
            .collect();
        files.push((live.clone(), 0));
        if let Some(mut want) = opts.tail {
            // Docker's tail: the last N lines of the log, before any other filter.
            let mut first = files.len();
            for (i, (p, off)) in files.iter_mut().enumerate().rev() {
                if want == 0 {
                    break;
                }
                let Ok(mut f) = File::open(&*p) else {
                    continue;
                };
                first = i;
                match tail_offset(&mut f, want) {
                    Ok(o) => {
                        *off = o;
                        want = 0;
                    }
                    Err(n) => want -= n,
                }
            }
            if opts.tail == Some(0) {
                // Nothing old: start at the live file's end.
                let end = std::fs::metadata(&live).map(|m| m.len()).unwrap_or(0);
                files = vec![(live.clone(), end)];
            } else {
                files.drain(..first.min(files.len().saturating_sub(1)));
            }
        }
        let (live_path, live_start) = files.pop().unwrap_or((live, 0));
        let follow = opts.follow.then(|| Follow {
            ctr,
            sh,
            ino: std::fs::metadata(&live_path).map(|m| m.ino()).unwrap_or(0),
        });
        let mut s = LogStream {
            queue: VecDeque::new(),
            cancelled: None,
            older: files.into(),
            cur: None,
            partial: Vec::new(),
            at_live: false,
            live: live_path,
            live_start,
            follow,
            buf: vec![0u8; CHUNK],
            since: opts.since.map(stamp),
            until: opts.until.map(stamp),
            opts,
        };
        s.next_file();
        Ok(s)
    }

    /// Moves to the next file; false when the live file is already the current one.
    fn next_file(&mut self) -> bool {
        if self.at_live {
            return false;
        }
        self.partial.clear();
        while let Some((p, off)) = self.older.pop_front() {
            if let Ok(mut f) = File::open(&p) {
                if off == 0 || f.seek(SeekFrom::Start(off)).is_ok() {
                    self.cur = Some(f);
                    return true;
                }
            }
        }
        self.at_live = true;
        self.cur = File::open(&self.live).ok();
        if let Some(f) = self.cur.as_mut() {
            if self.live_start > 0 && f.seek(SeekFrom::Start(self.live_start)).is_err() {
                self.cur = None;
            }
        }
        true
    }

    fn accept(&self, e: Entry) -> Option<LogEntry> {
        let want = match e.stream {
            Stream::Stdout => self.opts.stdout,
            Stream::Stderr => self.opts.stderr,
        };
        if !want {
            return None;
        }
        if self.since.as_ref().is_some_and(|s| e.time < *s) {
            return None;
        }
        if self.until.as_ref().is_some_and(|u| e.time > *u) {
            return None;
        }
        Some(LogEntry {
            stream: e.stream,
            time: e.time,
            line: e.log,
        })
    }

    /// Reads one chunk of the current file into the queue; false at its end.
    fn read_chunk(&mut self) -> bool {
        let Some(f) = self.cur.as_mut() else {
            return false;
        };
        let n = match f.read(&mut self.buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        self.partial.extend_from_slice(&self.buf[..n]);
        let end = self
            .partial
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let mut entries = Vec::new();
        parse_lines(&self.partial[..end], &mut entries);
        self.partial.drain(..end);
        for e in entries {
            if let Some(e) = self.accept(e) {
                self.queue.push_back(e);
            }
        }
        true
    }

    /// Follows the live file: reads what was appended, switches to a new file after a
    /// rotation; false when following should end.
    fn poll(&mut self) -> bool {
        let Some(f) = self.follow.as_ref() else {
            return false;
        };
        let running = {
            let st = f.ctr.lock();
            !st.removed
                && (st.rec.state.status.is_running()
                    || st.rec.state.status == Status::Restarting
                    || st.rec.monitor.is_some())
        };
        if f.sh.shutdown.load(Ordering::SeqCst) {
            return false;
        }
        let mut got = false;
        while self.read_chunk() {
            got = true;
        }
        // Rotated (or created): the old file is read to its end; go on with the new one.
        let cur_ino = std::fs::metadata(&self.live).map(|m| m.ino()).ok();
        let ino = self.follow.as_ref().map_or(0, |f| f.ino);
        if cur_ino.is_some() && cur_ino != Some(ino) {
            if let Ok(nf) = File::open(&self.live) {
                if let Some(f) = self.follow.as_mut() {
                    f.ino = nf.metadata().map(|m| m.ino()).unwrap_or(0);
                }
                self.partial.clear();
                self.cur = Some(nf);
                while self.read_chunk() {
                    got = true;
                }
            }
        }
        // `until` in the past ends a follow too (after one more read, as an exit does).
        let past_until = self
            .opts
            .until
            .is_some_and(|u| std::time::SystemTime::now() > u);
        (got || running) && !past_until
    }

    /// Whether the next call to `next` returns without reading or waiting.
    pub fn has_buffered(&self) -> bool {
        !self.queue.is_empty()
    }
}

fn parse_lines(buf: &[u8], out: &mut Vec<Entry>) {
    for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(e) = serde_json::from_slice::<Entry>(line) {
            out.push(e);
        }
    }
}

impl LogStream {
    /// Ends a followed stream early once `cancelled` returns true (checked while waiting
    /// for new lines): an API layer passes "the client went away".
    pub fn cancel_when(mut self, cancelled: impl Fn() -> bool + Send + 'static) -> LogStream {
        self.cancelled = Some(Box::new(cancelled));
        self
    }
}

impl Iterator for LogStream {
    type Item = LogEntry;

    fn next(&mut self) -> Option<LogEntry> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            // What is already written, file after file, a chunk at a time.
            if self.read_chunk() {
                continue;
            }
            if !self.at_live {
                self.next_file();
                continue;
            }
            self.follow.as_ref()?;
            if !self.poll() {
                // One last read: the monitor flushes its log before recording the exit.
                self.poll();
                self.follow = None;
                if self.queue.is_empty() {
                    return None;
                }
                continue;
            }
            if self.queue.is_empty() {
                if self.cancelled.as_ref().is_some_and(|c| c()) {
                    self.follow = None;
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        f
    }

    fn rest(f: &mut File, off: u64) -> String {
        f.seek(SeekFrom::Start(off)).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn tail_offsets() {
        let mut f = file(b"a\nb\nc\n");
        for (want, expect) in [(1, "c\n"), (2, "b\nc\n"), (3, "a\nb\nc\n")] {
            let off = tail_offset(&mut f, want).unwrap();
            assert_eq!(rest(&mut f, off), expect, "tail {want}");
        }
        assert_eq!(tail_offset(&mut f, 4), Err(3), "fewer lines than asked");
        // An incomplete last line is not a line.
        let mut f = file(b"a\nb\nc");
        let off = tail_offset(&mut f, 1).unwrap();
        assert_eq!(rest(&mut f, off), "b\nc");
        assert_eq!(tail_offset(&mut f, 3), Err(2));
        let mut f = file(b"");
        assert_eq!(tail_offset(&mut f, 1), Err(0));
        // Across the 64 KiB blocks of the backward scan.
        let big: String = (0..20_000).map(|i| format!("line {i:05}\n")).collect();
        let mut f = file(big.as_bytes());
        let off = tail_offset(&mut f, 12_345).unwrap();
        let r = rest(&mut f, off);
        assert_eq!(r.lines().count(), 12_345);
        assert!(r.starts_with("line 07655\n"));
    }
}
