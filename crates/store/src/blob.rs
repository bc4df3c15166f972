//! The content store: blobs named by their digest, written atomically and verified while
//! they are written.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use skiff_reference::{Algorithm, Digest};
use tempfile::TempPath;

use crate::error::{io_err, Error, Result};
use crate::fsutil::{sync_dir, Hasher};
use crate::{ActiveGuard, Store};

/// Streams one blob into the content store.
///
/// Write the bytes (e.g. tee a download into it), then [`BlobWriter::commit`]: the digest is
/// checked against the expected one and the blob renamed into place. A mismatch, an error,
/// or dropping the writer without committing leaves nothing behind.
pub struct BlobWriter {
    store: Store,
    expected: Option<Digest>,
    file: Option<BufWriter<File>>,
    tmp: Option<TempPath>,
    hasher: Hasher,
    written: u64,
    _active: ActiveGuard,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("expected", &self.expected)
            .field("written", &self.written)
            .finish()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the blob writer is closed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// A reader that copies everything it reads into a [`BlobWriter`]: feed it to
/// [`Store::unpack_layer`] to store a downloaded layer blob and unpack it in one pass.
pub struct Tee<'a, R> {
    reader: R,
    writer: &'a mut BlobWriter,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.writer.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl BlobWriter {
    /// Wraps `reader` so that what is read from it is also written to this blob. Drain the
    /// tee to its end before [`BlobWriter::commit`] (the unpacker may stop at the tar's end,
    /// or not read at all when the snapshot exists).
    pub fn tee<R: Read>(&mut self, reader: R) -> Tee<'_, R> {
        Tee {
            reader,
            writer: self,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies the digest, makes the blob durable and renames it into place; returns its
    /// digest. Committing a blob that is already stored just discards the copy.
    pub fn commit(mut self) -> Result<Digest> {
        let tmp = self
            .tmp
            .take()
            .ok_or_else(|| Error::Invalid("blob writer already used".into()))?;
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::Invalid("blob writer already used".into()))?;
        let file = file
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io_err("writing", tmp.to_path_buf()))?;
        let actual = self.hasher.clone().finish();
        if let Some(expected) = &self.expected {
            if *expected != actual {
                return Err(Error::DigestMismatch {
                    what: "blob".into(),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        let dest = self.store.blob_path(&actual);
        if dest.exists() {
            tracing::debug!(digest = %actual, "blob already stored");
            return Ok(actual);
        }
        file.sync_all()
            .map_err(io_err("syncing", tmp.to_path_buf()))?;
        drop(file);
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .map_err(io_err("renaming a temp file to", &dest))?;
        if let Some(dir) = dest.parent() {
            sync_dir(dir)?;
        }
        tracing::debug!(digest = %actual, bytes = self.written, "blob stored");
        Ok(actual)
    }
}

/// A reader that reports every chunk it yields to a callback (for progress bars).
pub struct Progress<R, F> {
    inner: R,
    callback: F,
}

impl<R: Read, F: FnMut(u64)> Progress<R, F> {
    /// Wraps `inner`; `callback` gets the number of bytes of each read.
    pub fn new(inner: R, callback: F) -> Self {
        Progress { inner, callback }
    }
}

impl<R: Read, F: FnMut(u64)> Read for Progress<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.callback)(n as u64);
        Ok(n)
    }
}

impl Store {
    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .root
            .join("content/blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Starts writing a blob. With `expected`, the content must have that digest; without
    /// it the blob is stored under the sha256 of what was written.
    pub fn blob_writer(&self, expected: Option<&Digest>) -> Result<BlobWriter> {
        let dir = self.path("content/tmp");
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&dir)
            .map_err(io_err("creating a temp file in", &dir))?;
        let (file, tmp) = tmp.into_parts();
        let active = self.activate(tmp.to_path_buf());
        let alg = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        Ok(BlobWriter {
            store: self.clone(),
            expected: expected.cloned(),
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            tmp: Some(tmp),
            hasher: Hasher::new(alg),
            written: 0,
            _active: active,
        })
    }

    /// Stores everything `reader` yields as the blob `expected`; returns its size.
    pub fn put_blob(&self, expected: &Digest, reader: impl Read) -> Result<u64> {
        let (_, n) = self.put_blob_inner(Some(expected), reader)?;
        Ok(n)
    }

    pub(crate) fn put_blob_inner(
        &self,
        expected: Option<&Digest>,
        mut reader: impl Read,
    ) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer(expected)?;
        io::copy(&mut reader, &mut w)
            .map_err(io_err("writing a blob to", self.path("content/tmp")))?;
        let n = w.written();
        Ok((w.commit()?, n))
    }

    /// Stores a small blob from memory; returns its sha256 digest.
    pub(crate) fn put_bytes(&self, data: &[u8]) -> Result<Digest> {
        Ok(self.put_blob_inner(None, data)?.0)
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(digest.to_string()),
            _ => io_err("opening", &p)(e),
        })
    }

    /// Reads a whole (small) blob.
    pub(crate) fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut v)
            .map_err(io_err("reading", self.blob_path(digest)))?;
        Ok(v)
    }

    /// Whether a blob is stored.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        match std::fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::BlobNotFound(digest.to_string()))
            }
            Err(e) => Err(io_err("reading metadata of", &p)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::sha256;
    use crate::StoreOptions;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), StoreOptions::default()).unwrap();
        (d, s)
    }

    fn tmp_entries(s: &Store) -> usize {
        std::fs::read_dir(s.path("content/tmp")).unwrap().count()
    }

    #[test]
    fn good_blob() {
        let (_d, s) = store();
        let d = sha256(b"hello");
        assert_eq!(s.put_blob(&d, &b"hello"[..]).unwrap(), 5);
        assert!(s.has_blob(&d));
        assert_eq!(s.blob_size(&d).unwrap(), 5);
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");
        // Again: fine, same content.
        s.put_blob(&d, &b"hello"[..]).unwrap();
        assert_eq!(tmp_entries(&s), 0);
    }

    #[test]
    fn sha512_blob() {
        let (_d, s) = store();
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"x");
        let d = h.finish();
        s.put_blob(&d, &b"x"[..]).unwrap();
        assert!(s.blob_path(&d).starts_with(s.path("content/blobs/sha512")));
        assert!(s.has_blob(&d));
        let err = s.put_blob(&d, &b"y"[..]).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn bad_digest_leaves_nothing() {
        let (_d, s) = store();
        let d = sha256(b"hello");
        let err = s.put_blob(&d, &b"hellO"[..]).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }));
        assert!(err.to_string().contains(&d.to_string()), "{err}");
        assert!(!s.has_blob(&d));
        assert_eq!(tmp_entries(&s), 0);
        assert!(matches!(s.open_blob(&d), Err(Error::BlobNotFound(_))));
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let (_d, s) = store();
        let mut w = s.blob_writer(None).unwrap();
        w.write_all(b"partial").unwrap();
        assert_eq!(tmp_entries(&s), 1);
        drop(w);
        assert_eq!(tmp_entries(&s), 0);
    }

    #[test]
    fn unknown_digest_writer() {
        let (_d, s) = store();
        let mut w = s.blob_writer(None).unwrap();
        w.write_all(b"abc").unwrap();
        let d = w.commit().unwrap();
        assert_eq!(d, sha256(b"abc"));
        assert!(s.has_blob(&d));
    }

    #[test]
    fn concurrent_writes_of_same_and_different_blobs() {
        let (_d, s) = store();
        let data: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 300_000]).collect();
        std::thread::scope(|sc| {
            for t in 0..16 {
                let s = s.clone();
                let data = &data;
                sc.spawn(move || {
                    let blob = &data[t % 4];
                    let d = sha256(blob);
                    let mut w = s.blob_writer(Some(&d)).unwrap();
                    for chunk in blob.chunks(7000) {
                        w.write_all(chunk).unwrap();
                    }
                    assert_eq!(w.commit().unwrap(), d);
                });
            }
        });
        for blob in &data {
            assert_eq!(s.read_blob(&sha256(blob)).unwrap(), *blob);
        }
        assert_eq!(tmp_entries(&s), 0);
    }

    #[test]
    fn progress_counts() {
        let mut total = 0;
        let mut r = Progress::new(&[1u8; 1000][..], |n| total += n);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(total, 1000);
    }
}
