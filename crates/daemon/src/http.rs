//! HTTP plumbing: the response body type, streaming bodies fed from blocking code, request
//! bodies read by blocking code, query strings with Docker's boolean and filter rules.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Every response body.
pub type Body = BoxBody<Bytes, io::Error>;

/// A complete body.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A JSON response.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let text = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An empty response with `status`.
pub fn status(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

/// The error response: `{"message": ...}` with `Content-Type: application/json`.
pub fn error(e: &ApiError) -> Response<Body> {
    let mut r = Response::new(full(e.body()));
    *r.status_mut() = e.status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A body streamed from a channel; the sending side sees a closed channel when the client
/// goes away.
pub struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A streaming response: returns the response and the sender feeding its body.
pub fn streaming(content_type: &'static str) -> (Response<Body>, mpsc::Sender<io::Result<Bytes>>) {
    let (tx, rx) = mpsc::channel(16);
    let mut r = Response::new(ChannelBody { rx }.boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    (r, tx)
}

/// A `Write` for blocking code that sends what is written into a streaming body in
/// 64 KiB chunks. Fails with `BrokenPipe` once the client has gone.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 << 10;

impl ChannelWriter {
    /// A writer into `tx` (use from a blocking thread only).
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(data))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// Ends the stream with an error (the client sees a broken transfer).
    pub fn abort(self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// A blocking `Read` over a request body, fed by an async task (see [`body_reader`]).
pub struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Starts pumping `body` into a [`BodyReader`] for a blocking thread.
pub fn body_reader<B>(body: B) -> BodyReader
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        loop {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        if tx.send(Ok(d)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    let msg = format!("reading the request body: {e}");
                    let _ = tx.send(Err(io::Error::other(msg))).await;
                    break;
                }
                None => break,
            }
        }
    });
    BodyReader {
        rx,
        cur: Bytes::new(),
    }
}

/// Reads a whole (small) request body, at most `limit` bytes.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        let f =
            f.map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
        if let Ok(d) = f.into_data() {
            if out.len() + d.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {limit} bytes"),
                ));
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(Bytes::from(out))
}

/// Decoded query parameters.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(q: Option<&str>) -> Query {
        let mut out = Vec::new();
        for part in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            out.push((decode(k), decode(v)));
        }
        Query(out)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first non-empty value of `key`.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// All values of `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Docker's boolean: absent, "", "0", "no", "false", "none" are false.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(truthy)
    }

    /// The `filters` parameter: `{"k":["v"]}` or the older `{"k":{"v":true}}`.
    pub fn filters(&self) -> Result<Filters, ApiError> {
        match self.non_empty("filters") {
            None => Ok(Filters::default()),
            Some(s) => Filters::parse(s),
        }
    }
}

/// Docker's boolean rule for strings.
pub fn truthy(v: &str) -> bool {
    !matches!(
        v.to_ascii_lowercase().as_str(),
        "" | "0" | "no" | "false" | "none"
    )
}

/// Parsed `filters`.
#[derive(Debug, Default, Clone)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the JSON of a `filters` parameter.
    pub fn parse(s: &str) -> Result<Filters, ApiError> {
        let v: serde_json::Value = serde_json::from_str(s)
            .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad_request("invalid filter: not a JSON object"))?;
        let mut out = BTreeMap::new();
        for (k, v) in obj {
            let vals: Vec<String> = match v {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, b)| b.as_bool().unwrap_or(true))
                    .map(|(k, _)| k.clone())
                    .collect(),
                serde_json::Value::String(s) => vec![s.clone()],
                _ => return Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
            };
            out.insert(k.clone(), vals);
        }
        Ok(Filters(out))
    }

    /// Refuses keys not in `allowed`, with Docker's message.
    pub fn check(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    /// The values of `key` (empty if absent).
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// A boolean filter (`dangling=true`): `None` if absent, an error if not a boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key).first().map(String::as_str) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(Some(false)),
            Some(v) => Err(ApiError::bad_request(format!(
                "invalid filter '{key}={v}': expected true or false"
            ))),
        }
    }

    /// Whether `labels` satisfy every `label=key` / `label=key=value` filter.
    pub fn labels_match<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.get("label").iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels(k) == Some(v),
            None => labels(f).is_some(),
        })
    }
}

/// Shell-style glob match with `*` and `?` (Docker's reference filter uses path.Match).
pub fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && go(p, &s[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_filters() {
        let q = Query::parse(Some(
            "a=1&b=&names=x%2Fy&names=z&filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D",
        ));
        assert!(q.bool("a"));
        assert!(!q.bool("b"));
        assert!(!q.bool("missing"));
        assert_eq!(q.all("names"), vec!["x/y", "z"]);
        let f = q.filters().unwrap();
        assert_eq!(f.bool("dangling").unwrap(), Some(true));
        assert!(f.check(&["label"]).is_err());
        let f = Filters::parse(r#"{"label":["a=b","c"]}"#).unwrap();
        assert!(f.labels_match(|k| match k {
            "a" => Some("b"),
            "c" => Some(""),
            _ => None,
        }));
        assert!(!f.labels_match(|_| None));
    }

    #[test]
    fn globs() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:*", "busybox:latest"));
        assert!(!glob("*", "a/b"));
        assert!(glob("*/*", "a/b"));
        assert!(glob("b?sybox", "busybox"));
    }
}
