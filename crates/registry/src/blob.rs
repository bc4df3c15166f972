//! A blob download that verifies size and digest as it streams and resumes broken transfers.

use std::io::{self, Read};
use std::time::Duration;

use skiff_reference::Digest;

use crate::client::{Client, Target};
use crate::error::Error;
use crate::hash::Hasher;

/// Where a blob comes from.
#[derive(Clone)]
pub(crate) enum BlobSource {
    /// `GET /v2/<repo>/blobs/<digest>` on a registry (or mirror).
    Registry(Target),
    /// A URL of a non-distributable layer's descriptor.
    Url(String),
}

/// A verified blob stream from [`Client::fetch_blob`].
///
/// It reads exactly the descriptor's size and hashes every byte. The bytes of each `read`
/// are unverified until the stream ends: the `read` that would return the last bytes checks
/// the digest first and returns an error instead if it does not match (as does a blob that
/// is too short or too long). **A caller must therefore treat everything it produced from this
/// stream as garbage when any read fails**, e.g. delete a half-unpacked snapshot, and must
/// read to the end (a decoder that stops early should be followed by [`BlobReader::finish`]).
///
/// When the connection breaks, or a read times out, the reader asks again from the current
/// offset with a `Range` request (after a pause that doubles each time) and goes on hashing;
/// it gives up after [`crate::Config::retries`] failures in a row without progress.
///
/// Errors are [`io::Error`]s wrapping an [`Error`]: get it back with [`Error::from_io`].
pub struct BlobReader {
    client: Client,
    source: BlobSource,
    what: String,
    digest: Digest,
    size: u64,
    body: Option<Box<dyn Read + Send>>,
    /// Leading bytes of `body` to drop (the server ignored our `Range`).
    skip: u64,
    offset: u64,
    hasher: Option<Hasher>,
    failures: u32,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Verified,
    Failed,
}

impl BlobReader {
    pub(crate) fn new(
        client: Client,
        source: BlobSource,
        what: String,
        digest: Digest,
        size: u64,
        (body, skip): (Box<dyn Read + Send>, u64),
    ) -> BlobReader {
        BlobReader {
            client,
            source,
            what,
            hasher: Some(Hasher::new(digest.algorithm())),
            digest,
            size,
            body: Some(body),
            skip,
            offset: 0,
            failures: 0,
            state: State::Reading,
        }
    }

    /// The digest the content must have.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The size the content must have.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many bytes were delivered so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads and discards the rest of the blob, verifying it; returns how many bytes that was.
    pub fn finish(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    fn fail(&mut self, err: Error) -> io::Error {
        self.state = State::Failed;
        self.body = None;
        err.into_io()
    }

    /// Drops the connection and waits before the next attempt, or fails if out of retries.
    fn retry(&mut self, err: Error) -> io::Result<()> {
        self.body = None;
        if self.failures >= self.client.retries() || !retryable(&err) {
            return Err(self.fail(err));
        }
        let pause = self
            .client
            .retry_delay()
            .saturating_mul(1 << self.failures.min(10))
            .min(Duration::from_secs(10));
        self.failures += 1;
        tracing::debug!(
            what = self.what,
            offset = self.offset,
            attempt = self.failures,
            error = %err,
            "blob transfer broke; resuming"
        );
        std::thread::sleep(pause);
        Ok(())
    }

    fn verify(&mut self) -> Result<(), Error> {
        let actual = self
            .hasher
            .take()
            .expect("hasher present until verified")
            .finish();
        if actual != self.digest {
            return Err(Error::DigestMismatch {
                what: self.what.clone(),
                expected: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}

fn retryable(err: &Error) -> bool {
    match err {
        Error::Http { .. } | Error::Read { .. } => true,
        Error::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        Error::SizeMismatch { .. } | Error::InvalidHeader { .. } => true,
        _ => false,
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.state {
            State::Verified => return Ok(0),
            State::Failed => {
                return Err(io::Error::other(format!(
                    "{}: an earlier read failed",
                    self.what
                )))
            }
            State::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.body.is_none() {
                match self
                    .client
                    .open_blob(&self.source, &self.digest, self.offset)
                {
                    Ok((body, skip)) => {
                        self.body = Some(body);
                        self.skip = skip;
                    }
                    Err(e) => {
                        self.retry(e)?;
                        continue;
                    }
                }
            }
            let body = self.body.as_mut().expect("body opened above");
            if self.skip > 0 {
                let want = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                match body.read(&mut buf[..want]) {
                    Ok(0) => {
                        let e = Error::SizeMismatch {
                            what: format!("{} (resent whole)", self.what),
                            expected: self.size,
                            actual: self.offset - self.skip,
                        };
                        self.retry(e)?;
                    }
                    Ok(n) => self.skip -= n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        let url = self.what.clone();
                        self.retry(Error::Read { url, source })?;
                    }
                }
                continue;
            }
            let remaining = self.size - self.offset;
            // Ask for one byte more than remains, to notice a blob that is too long.
            let cap = usize::try_from(remaining.saturating_add(1))
                .unwrap_or(usize::MAX)
                .min(buf.len());
            match body.read(&mut buf[..cap]) {
                Ok(0) if remaining == 0 => {
                    self.verify().map_err(|e| self.fail(e))?;
                    self.state = State::Verified;
                    return Ok(0);
                }
                Ok(0) => {
                    // The connection closed early (or the server sent less than it said).
                    let e = Error::SizeMismatch {
                        what: self.what.clone(),
                        expected: self.size,
                        actual: self.offset,
                    };
                    self.retry(e)?;
                }
                Ok(n) if n as u64 > remaining => {
                    let e = Error::SizeMismatch {
                        what: self.what.clone(),
                        expected: self.size,
                        actual: self.offset + n as u64,
                    };
                    return Err(self.fail(e));
                }
                Ok(n) => {
                    self.hasher
                        .as_mut()
                        .expect("hasher present until verified")
                        .update(&buf[..n]);
                    self.offset += n as u64;
                    self.failures = 0;
                    if self.offset == self.size {
                        // Check before handing out the last bytes.
                        self.verify().map_err(|e| self.fail(e))?;
                        self.state = State::Verified;
                        self.body = None;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let url = self.what.clone();
                    self.retry(Error::Read { url, source })?;
                }
            }
        }
    }
}

/// Gets the [`Error`] out of an [`io::Error`] from a [`BlobReader`] (or wraps a foreign one).
pub(crate) fn io_to_error(err: io::Error, context: &str) -> Error {
    if Error::from_io(&err).is_some() {
        if let Some(inner) = err.into_inner() {
            if let Ok(e) = inner.downcast::<Error>() {
                return *e;
            }
        }
        unreachable!("checked above that it holds an Error");
    }
    Error::Read {
        url: context.to_owned(),
        source: err,
    }
}
