//! Small file helpers: every cgroup file access goes through here so errors name the path.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// Writes `value` to `dir/file` in one write(2), as cgroupfs wants.
///
/// With `create` (fake trees in tests) a missing file is created; on cgroupfs files are never
/// created, so a missing file is an error naming it.
pub(crate) fn write(dir: &Path, file: &str, value: &str, create: bool) -> Result<(), Error> {
    let path = dir.join(file);
    write_path(&path, value, create)
}

pub(crate) fn write_path(path: &Path, value: &str, create: bool) -> Result<(), Error> {
    let res = OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| Error::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Like [`write`] but returns `Ok(false)` if the file (or its directory) does not exist.
pub(crate) fn write_if_exists(
    dir: &Path,
    file: &str,
    value: &str,
    create: bool,
) -> Result<bool, Error> {
    match write(dir, file, value, create) {
        Ok(()) => Ok(true),
        Err(Error::Write { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn read(dir: &Path, file: &str) -> Result<String, Error> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
}

/// Reads `dir/file`, or `None` if it does not exist (controller absent, older kernel).
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, Error> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path, source }),
    }
}

/// Parses a cgroup number; `max` (v2 "no limit") is `u64::MAX`.
pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64, Error> {
    let t = s.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>().or_else(|_| {
        // v1 reports "-1" for some unlimited values.
        if t.starts_with('-') && t[1..].parse::<u64>().is_ok() {
            Ok(0)
        } else {
            Err(Error::Parse {
                path: path.to_path_buf(),
                content: t.to_string(),
            })
        }
    })
}

/// Reads a single number; a missing file reads as 0.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<u64, Error> {
    match read_opt(dir, file)? {
        Some(s) => parse_u64(&dir.join(file), &s),
        None => Ok(0),
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events).
pub(crate) fn parse_flat_keyed(path: &Path, s: &str) -> Result<Vec<(String, u64)>, Error> {
    let mut out = Vec::new();
    for line in s.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        out.push((k.to_string(), parse_u64(path, v)?));
    }
    Ok(out)
}

/// The value of `key` in a flat-keyed file, or `None` if the file or the key is absent.
pub(crate) fn keyed_value(dir: &Path, file: &str, key: &str) -> Result<Option<u64>, Error> {
    let Some(s) = read_opt(dir, file)? else {
        return Ok(None);
    };
    let path = dir.join(file);
    for line in s.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some(key) {
            if let Some(v) = it.next() {
                return parse_u64(&path, v).map(Some);
            }
        }
    }
    Ok(None)
}

/// Parses a `cgroup.procs` file.
pub(crate) fn parse_pids(path: &Path, s: &str) -> Result<Vec<i32>, Error> {
    s.split_whitespace()
        .map(|p| {
            p.parse::<i32>().map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                content: p.to_string(),
            })
        })
        .collect()
}

/// mkdir; returns whether the directory was created (false: it already existed).
pub(crate) fn mkdir(path: &Path) -> Result<bool, Error> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(Error::Mkdir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// mkdir -p below `base` (which must exist); returns the directories created, outermost first.
pub(crate) fn mkdir_p(base: &Path, path: &Path) -> Result<Vec<PathBuf>, Error> {
    // Fast path: the parent usually exists.
    match fs::create_dir(path) {
        Ok(()) => return Ok(vec![path.to_path_buf()]),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(Vec::new()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Mkdir {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let rel = path.strip_prefix(base).unwrap_or(path);
    let mut created = Vec::new();
    let mut cur = base.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        if mkdir(&cur)? {
            created.push(cur.clone());
        }
    }
    Ok(created)
}

/// rmdir; `Ok(true)` if removed or already gone, `Ok(false)` if busy (processes or children).
pub(crate) fn rmdir(path: &Path) -> Result<bool, Error> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EBUSY) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
            ) =>
        {
            Ok(false)
        }
        Err(source) => Err(Error::Rmdir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The sub-directories (child cgroups) of `dir`; none if it does not exist.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(ent.path());
        }
    }
    Ok(out)
}

pub(crate) fn is_not_found(e: &io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
}
