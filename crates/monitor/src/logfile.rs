//! Docker's `json-file` log format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-29T11:17:03.123456789Z"}`, with
//! `max-size`/`max-file` rotation (`container.log`, `container.log.1`, ...).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Docker splits lines longer than this into partial entries.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a json-file log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// Rotation settings (`--log-opt max-size=10m --log-opt max-file=3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes after which the file rotates; 0 = never.
    pub max_size: u64,
    /// Files kept, the live one included (at least 1).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 0,
            max_files: 1,
        }
    }
}

/// Writes a container's output as json-file entries, splitting it into lines per stream.
pub struct JsonLog {
    path: PathBuf,
    rotation: Rotation,
    file: BufWriter<File>,
    size: u64,
    pending: [Vec<u8>; 2],
}

impl JsonLog {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<JsonLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode_0640()
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path: path.to_owned(),
            rotation,
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Adds output of `stream`: complete lines become entries now, a trailing partial line
    /// waits for its newline (or becomes a partial entry at [`MAX_LINE`] bytes or [`flush`]).
    ///
    /// [`flush`]: JsonLog::flush
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        let i = stream as usize;
        while !data.is_empty() {
            let room = MAX_LINE - self.pending[i].len();
            let (take, line_end) = match data.iter().take(room).position(|&b| b == b'\n') {
                Some(n) => (n + 1, true),
                None => (data.len().min(room), false),
            };
            self.pending[i].extend_from_slice(&data[..take]);
            data = &data[take..];
            if line_end || self.pending[i].len() >= MAX_LINE {
                let line = std::mem::take(&mut self.pending[i]);
                self.entry(stream, &line)?;
            }
        }
        // One write(2) per chunk of output, not per line; readers see whole lines.
        self.file.flush()
    }

    /// Writes out partial lines (at exit).
    pub fn flush(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.pending[stream as usize]);
            if !line.is_empty() {
                self.entry(stream, &line)?;
            }
        }
        self.file.flush()
    }

    fn entry(&mut self, stream: Stream, line: &[u8]) -> io::Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: rfc3339_nanos(SystemTime::now()),
        };
        let mut text = serde_json::to_vec(&e).map_err(io::Error::other)?;
        text.push(b'\n');
        if self.rotation.max_size > 0
            && self.size > 0
            && self.size + text.len() as u64 > self.rotation.max_size
        {
            self.rotate()?;
        }
        self.file.write_all(&text)?;
        self.size += text.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.max_files.max(1);
        self.file.flush()?;
        if keep == 1 {
            self.file.get_ref().set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..keep - 1).rev() {
            let _ = fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1));
        }
        fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = BufWriter::with_capacity(
            64 * 1024,
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode_0640()
                .open(&self.path)?,
        );
        self.size = 0;
        Ok(())
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Every entry of a log, oldest first (rotated files, then the live one). Lines that do not
/// parse (a write cut by a crash) are skipped.
pub fn read_all(path: &Path, max_files: u32) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for n in (1..max_files.max(1)).rev() {
        if let Ok(f) = File::open(numbered(path, n)) {
            read_into(f, &mut out)?;
        }
    }
    match File::open(path) {
        Ok(f) => read_into(f, &mut out)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

fn read_into(f: File, out: &mut Vec<Entry>) -> io::Result<()> {
    for line in BufReader::new(f).lines() {
        if let Ok(e) = serde_json::from_str::<Entry>(&line?) {
            out.push(e);
        }
    }
    Ok(())
}

/// RFC 3339 with nanoseconds in UTC, as Docker writes log times.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

trait Mode0640 {
    fn mode_0640(&mut self) -> &mut Self;
}

impl Mode0640 for OpenOptions {
    fn mode_0640(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o640)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_per_stream_and_partials_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = JsonLog::open(&path, Rotation::default()).unwrap();
        log.write(Stream::Stdout, b"one\ntw").unwrap();
        log.write(Stream::Stderr, b"err\n").unwrap();
        log.write(Stream::Stdout, b"o\nthree").unwrap();
        log.flush().unwrap();
        let e = read_all(&path, 1).unwrap();
        let got: Vec<(&str, Stream)> = e.iter().map(|e| (e.log.as_str(), e.stream)).collect();
        assert_eq!(
            got,
            [
                ("one\n", Stream::Stdout),
                ("err\n", Stream::Stderr),
                ("two\n", Stream::Stdout),
                ("three", Stream::Stdout)
            ]
        );
        assert!(
            e[0].time.ends_with('Z') && e[0].time.len() == 30,
            "{}",
            e[0].time
        );
        // Docker's exact line shape.
        let raw = fs::read_to_string(&path).unwrap();
        assert!(
            raw.starts_with("{\"log\":\"one\\n\",\"stream\":\"stdout\",\"time\":\""),
            "{raw}"
        );
    }

    #[test]
    fn long_lines_become_partial_entries_and_bad_utf8_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = JsonLog::open(&path, Rotation::default()).unwrap();
        log.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10])
            .unwrap();
        log.write(Stream::Stdout, b"\n\xff\n").unwrap();
        let e = read_all(&path, 1).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].log.len(), MAX_LINE);
        assert_eq!(e[1].log, format!("{}\n", "x".repeat(10)));
        assert_eq!(e[2].log, "\u{fffd}\n");
    }

    #[test]
    fn rotation_keeps_max_files_and_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let rot = Rotation {
            max_size: 1000,
            max_files: 3,
        };
        let mut log = JsonLog::open(&path, rot).unwrap();
        for i in 0..200 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let mut files: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["c.log", "c.log.1", "c.log.2"]);
        for f in &files {
            assert!(fs::metadata(dir.path().join(f)).unwrap().len() <= 1000);
        }
        let e = read_all(&path, 3).unwrap();
        assert_eq!(e.last().unwrap().log, "line 199\n");
        // Oldest first and contiguous.
        let first: u32 = e[0].log.trim().trim_start_matches("line ").parse().unwrap();
        assert_eq!(u32::try_from(e.len()).unwrap(), 200 - first);
    }
}
