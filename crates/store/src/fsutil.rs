//! Small file system helpers: durable atomic replacement, digests.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256, Sha384, Sha512};
use skiff_reference::{Algorithm, Digest};

use crate::error::{io_err, Result};

/// fsyncs a directory so that a rename or create in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

/// Writes `data` to `path` atomically and durably: a temp file in the same directory,
/// fsync, rename over `path`, fsync the directory. A crash leaves the old or the new file.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("creating a temp file in", dir))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err("writing", tmp.path().to_owned()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .map_err(io_err("renaming a temp file to", path))?;
    sync_dir(dir)
}

/// An incremental digest of one of the supported algorithms.
#[derive(Clone)]
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    pub(crate) fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub(crate) fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, format!("{:x}", h.finalize())),
            Hasher::Sha384(h) => (Algorithm::Sha384, format!("{:x}", h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, format!("{:x}", h.finalize())),
        };
        // The hex is lowercase and of the algorithm's length by construction.
        Digest::new(alg, &hex).unwrap_or_else(|_| unreachable!("hasher output is valid hex"))
    }
}

/// sha256 of a byte string.
pub(crate) fn sha256(data: &[u8]) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(data);
    h.finish()
}

/// Digest and length of everything `r` yields.
pub(crate) fn digest_reader(alg: Algorithm, mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finish(), n))
}

/// Removes a file or a directory tree; missing is fine.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

/// Parses a JSON document read from `path` (for error messages).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&data).map_err(|source| crate::Error::Json {
        what: path.display().to_string(),
        source,
    })
}
