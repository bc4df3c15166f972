//! The Docker Engine API client: HTTP/1.1 over the daemon's unix socket (hyper), one
//! connection per request, API version negotiated through `HEAD /_ping`.

use std::path::PathBuf;

use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// The newest API version this client speaks.
pub const MAX_API: &str = "1.47";

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Cannot connect to the Docker daemon at unix://{}. Is the docker daemon running?", .0.display())]
    Connect(PathBuf, #[source] std::io::Error),
    #[error("unsupported host {0:?}: skiff talks to a unix socket (unix:///path)")]
    Host(String),
    #[error("Error response from daemon: {message}")]
    Api { status: StatusCode, message: String },
    #[error("talking to the daemon: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("reading the daemon's answer: {0}")]
    Decode(#[from] serde_json::Error),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A daemon endpoint.
#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
    version: String,
}

/// The socket a `-H`/`DOCKER_HOST` value names.
pub fn socket_of(host: &str) -> Result<PathBuf> {
    if let Some(p) = host.strip_prefix("unix://") {
        return Ok(PathBuf::from(p));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    Err(ClientError::Host(host.to_owned()))
}

/// `?a=b&c=d`, percent-encoded; empty for no pairs.
pub fn query(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

/// A path segment (a container or image name), percent-encoded except for `/` and `:`.
pub fn seg(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b':')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// A request body.
pub enum Body {
    Empty,
    Json(Value),
    Bytes(Vec<u8>, &'static str),
    /// Streamed (chunked) from a reader: `load`, `import`.
    Stream(Box<dyn tokio::io::AsyncRead + Send + Unpin>, &'static str),
}

/// What requests carry.
pub type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

fn full(b: Bytes) -> ReqBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// A body read from an `AsyncRead` in 64 KiB frames.
struct ReaderBody {
    r: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    buf: Box<[u8]>,
    done: bool,
}

impl hyper::body::Body for ReaderBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let mut rb = tokio::io::ReadBuf::new(&mut this.buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut this.r), cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(hyper::body::Frame::data(
                Bytes::copy_from_slice(rb.filled()),
            )))),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Client {
    /// Connects to `host` and negotiates the API version.
    pub async fn new(host: &str) -> Result<Client> {
        let mut c = Client {
            socket: socket_of(host)?,
            version: MAX_API.to_owned(),
        };
        let env = std::env::var("DOCKER_API_VERSION")
            .ok()
            .filter(|v| !v.is_empty());
        if let Some(v) = env {
            c.version = v;
            return Ok(c);
        }
        let (mut send, _) = c.connect(false).await?;
        let req = Request::builder()
            .method(Method::HEAD)
            .uri("/_ping")
            .header("host", "docker")
            .body(full(Bytes::new()))?;
        let resp = send.send_request(req).await?;
        let v = resp
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("1.24")
            .to_owned();
        if version_lt(&v, MAX_API) {
            c.version = v;
        }
        Ok(c)
    }

    /// The negotiated API version.
    pub fn version(&self) -> &str {
        &self.version
    }

    async fn connect(
        &self,
        upgrades: bool,
    ) -> Result<(hyper::client::conn::http1::SendRequest<ReqBody>, ())> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| ClientError::Connect(self.socket.clone(), e))?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        if upgrades {
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
        } else {
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        Ok((send, ()))
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, String)],
    ) -> Result<Request<ReqBody>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("/v{}{path}", self.version))
            .header("host", "docker")
            .header("user-agent", concat!("skiff/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let body = match body {
            Body::Empty => full(Bytes::new()),
            Body::Json(v) => {
                b = b.header("content-type", "application/json");
                full(Bytes::from(serde_json::to_vec(&v)?))
            }
            Body::Bytes(d, ct) => {
                b = b.header("content-type", ct);
                full(Bytes::from(d))
            }
            Body::Stream(r, ct) => {
                b = b.header("content-type", ct);
                ReaderBody {
                    r,
                    buf: vec![0; 64 * 1024].into_boxed_slice(),
                    done: false,
                }
                .boxed_unsync()
            }
        };
        Ok(b.body(body)?)
    }

    /// Sends a request; returns the response whatever its status.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, String)],
    ) -> Result<Response<Incoming>> {
        let (mut send, _) = self.connect(false).await?;
        let req = self.build(method, path, body, headers)?;
        Ok(send.send_request(req).await?)
    }

    /// Sends a request; a status >= 400 becomes [`ClientError::Api`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, String)],
    ) -> Result<Response<Incoming>> {
        let resp = self.send_raw(method, path, body, headers).await?;
        check(resp).await
    }

    /// A request whose answer is JSON (`null` for an empty body).
    pub async fn json(&self, method: Method, path: &str, body: Body) -> Result<Value> {
        let resp = self.send(method, path, body, &[]).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path, Body::Empty).await
    }

    /// `POST path` without a body; the answer's body is dropped.
    pub async fn post(&self, path: &str) -> Result<()> {
        let resp = self.send(Method::POST, path, Body::Empty, &[]).await?;
        resp.into_body().collect().await?;
        Ok(())
    }

    /// A hijacked (upgraded) connection: attach and exec start.
    pub async fn hijack(
        &self,
        path: &str,
        body: Body,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let (mut send, _) = self.connect(true).await?;
        let mut req = self.build(Method::POST, path, body, &[])?;
        let h = req.headers_mut();
        h.insert(
            "connection",
            hyper::header::HeaderValue::from_static("Upgrade"),
        );
        h.insert("upgrade", hyper::header::HeaderValue::from_static("tcp"));
        let resp = send.send_request(req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let resp = check(resp).await?;
            return Err(ClientError::Api {
                status: resp.status(),
                message: format!(
                    "the daemon did not upgrade the connection ({})",
                    resp.status()
                ),
            });
        }
        Ok(TokioIo::new(hyper::upgrade::on(resp).await?))
    }
}

/// Whether API version `a` is older than `b`.
pub fn version_lt(a: &str, b: &str) -> bool {
    let p = |s: &str| -> (u32, u32) {
        let (x, y) = s.split_once('.').unwrap_or((s, "0"));
        (x.parse().unwrap_or(0), y.parse().unwrap_or(0))
    };
    p(a) < p(b)
}

/// Turns an error status into [`ClientError::Api`] with the daemon's message.
pub async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>> {
    let status = resp.status();
    if status.as_u16() < 400 {
        return Ok(resp);
    }
    let bytes = resp.into_body().collect().await?.to_bytes();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| {
            let t = String::from_utf8_lossy(&bytes).trim().to_owned();
            if t.is_empty() {
                status.to_string()
            } else {
                t
            }
        });
    Err(ClientError::Api { status, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_queries() {
        assert_eq!(
            socket_of("unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert!(socket_of("tcp://1.2.3.4:2375").is_err());
        assert_eq!(
            query(&[("a", "x y".into()), ("b", "1".into())]),
            "?a=x%20y&b=1"
        );
        assert_eq!(query(&[]), "");
        assert_eq!(seg("localhost:5000/a b"), "localhost:5000/a%20b");
        assert!(version_lt("1.41", "1.47"));
        assert!(!version_lt("1.47", "1.47"));
    }
}
