//! Version prefix, common headers and dispatch.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Body, Query};
use crate::{
    archive, containers, images, networks_api, system, volumes_api, State, API_VERSION,
    MIN_API_VERSION, VERSION,
};

/// A parsed API version (`1.41` -> (1, 41)).
pub(crate) type ApiVersion = (u32, u32);

fn parse_version(s: &str) -> Option<ApiVersion> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Splits `/v1.41/images/json` into the version and the rest.
fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let v = &rest[..end];
        if v.contains('.') && v.chars().all(|c| c.is_ascii_digit() || c == '.') {
            let tail = &rest[end..];
            return (Some(v), if tail.is_empty() { "/" } else { tail });
        }
    }
    (None, path)
}

fn check_version(v: Option<&str>) -> Result<ApiVersion, ApiError> {
    let max = parse_version(API_VERSION).unwrap_or((1, 47));
    let min = parse_version(MIN_API_VERSION).unwrap_or((1, 24));
    let Some(v) = v else { return Ok(max) };
    let parsed = parse_version(v)
        .ok_or_else(|| ApiError::bad_request(format!("invalid API version {v:?}")))?;
    if parsed > max {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if parsed < min {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok(parsed)
}

/// Serves one request.
pub(crate) async fn handle<B>(state: Arc<State>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let (version, path) = split_version(&raw_path);
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    let result = match check_version(version) {
        Ok(v) => dispatch(state, req, &method, &path, v).await,
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(%method, path = %raw_path, status = e.status.as_u16(), error = %e.message, "request failed");
            } else {
                tracing::debug!(%method, path = %raw_path, status = e.status.as_u16(), error = %e.message, "request refused");
            }
            http::error(&e)
        }
    };
    tracing::debug!(%method, path = %raw_path, status = resp.status().as_u16(), "request");
    let h = resp.headers_mut();
    h.insert("api-version", HeaderValue::from_static(API_VERSION));
    h.insert("ostype", HeaderValue::from_static("linux"));
    h.insert("docker-experimental", HeaderValue::from_static("false"));
    if let Ok(v) = HeaderValue::from_str(&format!("Docker/{VERSION} (linux)")) {
        h.insert(hyper::header::SERVER, v);
    }
    resp
}

fn ping(method: &Method) -> Response<Body> {
    let mut r = Response::new(if method == Method::HEAD {
        http::empty()
    } else {
        http::full("OK")
    });
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(hyper::header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("builder-version"),
        HeaderValue::from_static("1"),
    );
    h.insert(
        HeaderName::from_static("swarm"),
        HeaderValue::from_static("inactive"),
    );
    r
}

fn not_found() -> ApiError {
    ApiError::not_found("page not found")
}

async fn dispatch<B>(
    state: Arc<State>,
    req: Request<B>,
    method: &Method,
    path: &str,
    _version: ApiVersion,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let q = Query::parse(req.uri().query());
    let path = path.trim_end_matches('/');
    let m = method.as_str();
    match (m, path) {
        ("GET" | "HEAD", "/_ping") => return Ok(ping(method)),
        ("GET", "/version") => return Ok(system::version(&state)),
        ("GET", "/info") => return system::info(&state).await,
        ("GET", "/events") => return system::events(&state, &q),
        ("GET", "/system/df") => return system::df(&state).await,
        ("POST", "/auth") => return system::auth(&state, req.into_body()).await,
        ("GET", "/images/json") => return images::list(&state, &q).await,
        ("POST", "/images/create") => {
            let headers = req.headers().clone();
            return images::create(&state, &q, &headers, req.into_body()).await;
        }
        ("POST", "/images/load") => return images::load(&state, &q, req.into_body()).await,
        ("GET", "/images/get") => {
            let names: Vec<String> = q.all("names").into_iter().map(str::to_owned).collect();
            return images::save(&state, names).await;
        }
        ("POST", "/images/prune") => return images::prune(&state, &q).await,
        ("GET", "/images/search") => {
            return Err(ApiError::bad_request(
                "image search is not supported by skiffd: it has no registry search client; search on the registry's web site instead",
            ))
        }
        ("GET", "/containers/json") => return containers::list(&state, &q).await,
        ("POST", "/containers/create") => {
            return containers::create(&state, &q, req.into_body()).await
        }
        ("POST", "/containers/prune") => return system::prune_containers(&state, &q).await,
        ("POST", "/build/prune") => return system::build_prune(),
        ("POST", "/commit") => return archive::commit(&state, &q, req.into_body()).await,
        ("GET", "/volumes") => return volumes_api::list(&state, &q).await,
        ("POST", "/volumes/create") => {
            return volumes_api::create(&state, req.into_body()).await
        }
        ("POST", "/volumes/prune") => return volumes_api::prune(&state, &q).await,
        ("GET", "/networks") => return networks_api::list(&state, &q).await,
        ("POST", "/networks/create") => {
            return networks_api::create(&state, req.into_body()).await
        }
        ("POST", "/networks/prune") => return networks_api::prune(&state, &q).await,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/networks/") {
        let (id, op) = rest.split_once('/').unwrap_or((rest, ""));
        return match (m, op) {
            ("GET", "") => networks_api::inspect(&state, id).await,
            ("DELETE", "") => networks_api::remove(&state, id).await,
            ("POST", "connect") => networks_api::connect(&state, id, req.into_body()).await,
            ("POST", "disconnect") => networks_api::disconnect(&state, id, req.into_body()).await,
            _ => Err(not_found()),
        };
    }
    if let Some(rest) = path.strip_prefix("/images/") {
        if m == "DELETE" {
            return images::remove(&state, rest, &q).await;
        }
        let (name, op) = rest.rsplit_once('/').ok_or_else(not_found)?;
        if name.is_empty() {
            return Err(not_found());
        }
        return match (m, op) {
            ("GET", "json") => images::inspect(&state, name).await,
            ("GET", "history") => images::history(&state, name).await,
            ("GET", "get") => images::save(&state, vec![name.to_owned()]).await,
            ("POST", "tag") => images::tag(&state, name, &q).await,
            ("POST", "push") => images::push(&state, name, &q, req.headers()).await,
            _ => Err(not_found()),
        };
    }
    if let Some(rest) = path.strip_prefix("/containers/") {
        let (id, op) = rest.split_once('/').unwrap_or((rest, ""));
        if id.is_empty() {
            return Err(not_found());
        }
        return containers::route(&state, req, m, id, op, &q).await;
    }
    if let Some(rest) = path.strip_prefix("/exec/") {
        let (id, op) = rest.split_once('/').ok_or_else(not_found)?;
        return containers::exec_route(&state, req, m, id, op).await;
    }
    if let Some(name) = path.strip_prefix("/volumes/") {
        return match m {
            "GET" => volumes_api::inspect(&state, name).await,
            "DELETE" => volumes_api::remove(&state, name, &q).await,
            _ => Err(not_found()),
        };
    }
    Err(not_found())
}

/// Runs blocking work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// 200 with a JSON body.
pub(crate) fn ok_json<T: serde::Serialize>(v: &T) -> Result<Response<Body>, ApiError> {
    Ok(http::json(StatusCode::OK, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            split_version("/v1.41/images/json"),
            (Some("1.41"), "/images/json")
        );
        assert_eq!(split_version("/_ping"), (None, "/_ping"));
        assert_eq!(split_version("/volumes/v1.x"), (None, "/volumes/v1.x"));
        assert!(check_version(Some("1.24")).is_ok());
        let e = check_version(Some("1.50")).unwrap_err();
        assert_eq!(
            e.message,
            "client version 1.50 is too new. Maximum supported API version is 1.47"
        );
        assert!(check_version(Some("1.12"))
            .unwrap_err()
            .message
            .contains("too old"));
    }
}
