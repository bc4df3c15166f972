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

/// The log lines of a container, oldest first. With `follow` it waits for new lines and
/// ends once the container is no longer running and the log is read to its end.
pub struct LogStream {
    queue: VecDeque<LogEntry>,
    cancelled: Option<Box<dyn Fn() -> bool + Send>>,
    follow: Option<Follow>,
    opts: LogsOptions,
    since: Option<String>,
    until: Option<String>,
}

struct Follow {
    ctr: Arc<Ctr>,
    sh: Arc<Shared>,
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    partial: Vec<u8>,
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

impl LogStream {
    pub(crate) fn open(ctr: Arc<Ctr>, sh: Arc<Shared>, opts: LogsOptions) -> Result<LogStream> {
        let (path, max_files) = {
            let st = ctr.lock();
            if st.rec.log_path.is_empty() {
                return Err(crate::Error::NotImplemented(NOT_READABLE.into()));
            }
            (PathBuf::from(&st.rec.log_path), st.rec.log_max_file)
        };
        let mut s = LogStream {
            queue: VecDeque::new(),
            cancelled: None,
            follow: None,
            since: opts.since.map(stamp),
            until: opts.until.map(stamp),
            opts,
        };
        let mut entries = Vec::new();
        for n in (1..max_files.max(1)).rev() {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            if let Ok(mut f) = File::open(PathBuf::from(p)) {
                let mut buf = Vec::new();
                let _ = f.read_to_end(&mut buf);
                parse_lines(&buf, &mut entries);
            }
        }
        let mut file = File::open(&path).ok();
        let mut partial = Vec::new();
        let mut ino = 0;
        if let Some(f) = file.as_mut() {
            ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            parse_lines(&buf[..end], &mut entries);
            partial = buf[end..].to_vec();
        }
        let mut kept: Vec<LogEntry> = entries.into_iter().filter_map(|e| s.accept(e)).collect();
        if let Some(t) = s.opts.tail {
            let skip = kept.len().saturating_sub(t);
            kept.drain(..skip);
        }
        s.queue = kept.into();
        if s.opts.follow {
            s.follow = Some(Follow {
                ctr,
                sh,
                path,
                file,
                ino,
                partial,
            });
        }
        Ok(s)
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

    /// Reads what was appended; false when following should end.
    fn poll(&mut self) -> bool {
        let Some(f) = self.follow.as_mut() else {
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
        let mut buf = Vec::new();
        if let Some(file) = f.file.as_mut() {
            let _ = file.read_to_end(&mut buf);
        }
        // Rotated (or created): finish the old file, then read the new one from its start.
        let cur_ino = std::fs::metadata(&f.path).map(|m| m.ino()).ok();
        if cur_ino.is_some() && cur_ino != Some(f.ino) {
            if let Ok(mut nf) = File::open(&f.path) {
                f.ino = nf.metadata().map(|m| m.ino()).unwrap_or(0);
                let _ = nf.seek(SeekFrom::Start(0));
                if !f.partial.is_empty() || !buf.is_empty() {
                    buf.push(b'\n');
                }
                let _ = nf.read_to_end(&mut buf);
                f.file = Some(nf);
            }
        }
        let mut data = std::mem::take(&mut f.partial);
        data.extend_from_slice(&buf);
        let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        f.partial = data[end..].to_vec();
        let mut entries = Vec::new();
        parse_lines(&data[..end], &mut entries);
        let got = !entries.is_empty();
        for e in entries {
            if let Some(e) = self.accept(e) {
                self.queue.push_back(e);
            }
        }
        // `until` in the past ends a follow too (after one more read, as an exit does).
        let past_until = self
            .opts
            .until
            .is_some_and(|u| std::time::SystemTime::now() > u);
        (got || running) && !past_until
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
