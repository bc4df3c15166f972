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

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("what", &self.what)
            .field("size", &self.size)
            .field("offset", &self.offset)
            .field("state", &self.state)
            .finish_non_exhaustive()
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

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    use skiff_reference::Reference;

    use super::*;
    use crate::hash::sha256_digest;
    use crate::Config;

    /// An answer of the test server: status, headers, body, and after how many body bytes
    /// to cut the connection (the headers still announce the whole body).
    pub(crate) struct Answer {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        pub cut_after: Option<usize>,
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1 for tests: one request per connection. The handler
    /// gets the method, the path and the request headers (names lowercased).
    pub(crate) struct TestServer {
        pub addr: SocketAddr,
        pub log: Arc<Mutex<Vec<String>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    type Handler = dyn Fn(&str, &str, &[(String, String)]) -> Answer + Send + Sync;

    impl TestServer {
        pub fn start(handler: Box<Handler>) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let log = Arc::new(Mutex::new(Vec::new()));
            let (stop2, log2) = (stop.clone(), log.clone());
            let thread = std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let _ = serve_one(conn, &*handler, &log2);
                }
            });
            TestServer {
                addr,
                log,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn serve_one(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>) -> io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(()); // not HTTP (a TLS hello): just close
        };
        if !version.starts_with("HTTP/") {
            return Ok(());
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let range = headers
            .iter()
            .find(|(k, _)| k == "range")
            .map(|(_, v)| format!(" range={v}"))
            .unwrap_or_default();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        let body = if body.is_empty() {
            String::new()
        } else {
            format!(" body={}", String::from_utf8_lossy(&body))
        };
        log.lock()
            .unwrap()
            .push(format!("{method} {path}{range}{body}"));
        let answer = handler(method, path, &headers);
        let mut out = conn;
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            answer.status,
            answer.body.len()
        );
        for (k, v) in &answer.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if method != "HEAD" {
            let n = answer
                .cut_after
                .unwrap_or(answer.body.len())
                .min(answer.body.len());
            out.write_all(&answer.body[..n])?;
        }
        out.flush()?;
        out.shutdown(std::net::Shutdown::Both)
    }

    pub(crate) fn test_client() -> Client {
        Client::new(Config {
            docker_config_dir: Some("/nonexistent/skiff-test".into()),
            certs_dir: None,
            retries: 3,
            retry_delay: Duration::from_millis(5),
            read_timeout: Duration::from_secs(5),
            ..Config::default()
        })
        .unwrap()
    }

    fn blob() -> Vec<u8> {
        (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn descriptor(digest: &Digest, size: u64) -> oci_spec::image::Descriptor {
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest.to_string(),
            "size": size,
        }))
        .unwrap()
    }

    /// Serves `data` at any blob path: the first `broken` answers are cut after `cut` bytes;
    /// `honour_range` decides whether a Range request gets a 206.
    fn blob_server(data: Vec<u8>, broken: usize, cut: usize, honour_range: bool) -> TestServer {
        let count = Mutex::new(0usize);
        TestServer::start(Box::new(move |_, path, headers| {
            if path == "/v2/" {
                return Answer {
                    status: 200,
                    headers: vec![],
                    body: b"{}".to_vec(),
                    cut_after: None,
                };
            }
            let mut n = count.lock().unwrap();
            *n += 1;
            let start = headers
                .iter()
                .find(|(k, _)| k == "range")
                .and_then(|(_, v)| v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
                .filter(|_| honour_range)
                .unwrap_or(0usize);
            let mut answer = Answer {
                status: if start > 0 { 206 } else { 200 },
                headers: vec![],
                body: data[start..].to_vec(),
                cut_after: (*n <= broken).then_some(cut),
            };
            if start > 0 {
                answer.headers.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
                ));
            }
            answer
        }))
    }

    fn fetch(server: &TestServer, digest: &Digest, size: u64) -> io::Result<Vec<u8>> {
        let client = test_client();
        let repo = Reference::parse(&format!("{}/test/blob", server.addr)).unwrap();
        let mut reader = client
            .fetch_blob(&repo, &descriptor(digest, size))
            .map_err(Error::into_io)?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        assert_eq!(reader.offset(), size);
        Ok(out)
    }

    #[test]
    fn resumes_with_range_after_a_cut() {
        let data = blob();
        let digest = sha256_digest(&data);
        let server = blob_server(data.clone(), 2, 70_000, true);
        let got = fetch(&server, &digest, data.len() as u64).unwrap();
        assert_eq!(got, data);
        let log = server.log.lock().unwrap().clone();
        let blob_reqs: Vec<_> = log.iter().filter(|l| l.contains("/blobs/")).collect();
        assert_eq!(blob_reqs.len(), 3, "{log:?}");
        assert!(!blob_reqs[0].contains("range"), "{log:?}");
        assert!(blob_reqs[1].ends_with("range=bytes=70000-"), "{log:?}");
        assert!(blob_reqs[2].ends_with("range=bytes=140000-"), "{log:?}");
    }

    #[test]
    fn resumes_when_the_server_ignores_range() {
        let data = blob();
        let digest = sha256_digest(&data);
        let server = blob_server(data.clone(), 1, 100_001, false);
        assert_eq!(fetch(&server, &digest, data.len() as u64).unwrap(), data);
    }

    #[test]
    fn corrupt_blob_is_an_error_not_data() {
        let mut data = blob();
        let digest = sha256_digest(&data);
        data[150_000] ^= 1;
        let server = blob_server(data.clone(), 1, 50_000, true);
        let err = fetch(&server, &digest, data.len() as u64).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = Error::from_io(&err).unwrap();
        assert!(matches!(inner, Error::DigestMismatch { .. }), "{inner}");
        assert!(err.to_string().contains(&digest.to_string()), "{err}");
    }

    #[test]
    fn wrong_size_is_an_error() {
        let data = blob();
        let digest = sha256_digest(&data);
        let server = blob_server(data.clone(), 0, 0, true);
        // descriptor says shorter: too long
        let err = fetch(&server, &digest, 1000).unwrap_err();
        assert!(
            matches!(Error::from_io(&err), Some(Error::SizeMismatch { .. })),
            "{err}"
        );
    }

    #[test]
    fn gives_up_after_retries_without_progress() {
        let data = blob();
        let digest = sha256_digest(&data);
        // every answer breaks before the first byte: no progress, 1 + 3 retries
        let server = blob_server(data.clone(), usize::MAX, 0, true);
        let err = fetch(&server, &digest, data.len() as u64).unwrap_err();
        assert!(Error::from_io(&err).is_some(), "{err}");
        let blob_reqs = server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("/blobs/"))
            .count();
        assert_eq!(blob_reqs, 4);
    }

    #[test]
    fn follows_redirects_and_resumes_through_them() {
        let data = blob();
        let digest = sha256_digest(&data);
        let storage = blob_server(data.clone(), 1, 90_000, true);
        let target = format!("http://{}/storage/object", storage.addr);
        let registry = TestServer::start(Box::new(move |_, path, _| {
            if path == "/v2/" {
                return Answer {
                    status: 200,
                    headers: vec![],
                    body: b"{}".to_vec(),
                    cut_after: None,
                };
            }
            Answer {
                status: 307,
                headers: vec![("Location".into(), target.clone())],
                body: vec![],
                cut_after: None,
            }
        }));
        assert_eq!(fetch(&registry, &digest, data.len() as u64).unwrap(), data);
        let log = storage.log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "GET /storage/object",
                "GET /storage/object range=bytes=90000-"
            ],
            "{log:?}"
        );
    }

    #[test]
    fn missing_blob_is_not_found() {
        let server = TestServer::start(Box::new(|_, path, _| Answer {
            status: if path == "/v2/" { 200 } else { 404 },
            headers: vec![],
            body: br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#
                .to_vec(),
            cut_after: None,
        }));
        let digest = sha256_digest(b"x");
        let err = fetch(&server, &digest, 1).unwrap_err();
        let inner = Error::from_io(&err).unwrap();
        assert!(inner.is_not_found(), "{inner}");
        assert!(
            inner
                .to_string()
                .contains("BLOB_UNKNOWN: blob unknown to registry"),
            "{inner}"
        );
    }
}
