//! `docker cp` (`HEAD|GET|PUT /containers/{id}/archive`), `docker export`
//! (`GET /containers/{id}/export`) and `docker diff` (`GET /containers/{id}/changes`): thin
//! handlers over the engine's container file systems (`skiff_engine::fs`), which resolve
//! every path inside the container.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use skiff_engine::archive::{ExtractOptions, PathStat};
use skiff_engine::fs::View;

use crate::error::ApiError;
use crate::http::{self, Body, ChannelWriter, Query};
use crate::router::{blocking, ok_json};
use crate::State;

const STAT_HEADER: &str = "x-docker-container-path-stat";

fn stat_header(stat: &PathStat) -> Result<HeaderValue, ApiError> {
    let json = serde_json::to_vec(stat)
        .map_err(|e| ApiError::internal(format!("encoding the path stat: {e}")))?;
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(json))
        .map_err(|e| ApiError::internal(format!("encoding the path stat header: {e}")))
}

fn path_param(q: &Query) -> Result<String, ApiError> {
    q.non_empty("path")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request("path cannot be empty"))
}

/// `/containers/{id}/{archive,export,changes}`.
pub(crate) async fn route<B>(
    state: &Arc<State>,
    req: Request<B>,
    method: &str,
    name: &str,
    op: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    match (method, op) {
        ("HEAD", "archive") => head(state, name, q).await,
        ("GET", "archive") => get(state, name, q).await,
        ("PUT", "archive") => put(state, name, q, req.into_body()).await,
        ("GET", "export") => export(state, name).await,
        ("GET", "changes") => {
            let e = state.engine.clone();
            let name = name.to_owned();
            ok_json(&blocking(move || Ok(e.changes(&name)?)).await?)
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// `HEAD /containers/{id}/archive?path=`: the stat header only.
async fn head(state: &Arc<State>, name: &str, q: &Query) -> Result<Response<Body>, ApiError> {
    let path = path_param(q)?;
    let (e, name) = (state.engine.clone(), name.to_owned());
    let stat =
        blocking(move || Ok(e.with_fs(&name, View::Container, |fs| fs.stat(&path))?)).await?;
    let mut r = http::status(StatusCode::OK);
    r.headers_mut().insert(STAT_HEADER, stat_header(&stat)?);
    Ok(r)
}

/// `GET /containers/{id}/archive?path=`: the stat header and a tar of the path, streamed.
async fn get(state: &Arc<State>, name: &str, q: &Query) -> Result<Response<Body>, ApiError> {
    let path = path_param(q)?;
    let (e, name) = (state.engine.clone(), name.to_owned());
    let (resp, tx) = http::streaming("application/x-tar");
    let (stat_tx, stat_rx) = tokio::sync::oneshot::channel::<Result<PathStat, ApiError>>();
    let events = state.clone();
    std::thread::spawn(move || {
        let mut stat_tx = Some(stat_tx);
        let res = e.with_fs(&name, View::Container, |fs| {
            let stat = fs.stat(&path)?;
            if let Some(t) = stat_tx.take() {
                if t.send(Ok(stat)).is_err() {
                    return Ok(());
                }
            }
            let mut w = ChannelWriter::new(tx);
            match fs.archive(&path, &mut w) {
                Ok(()) => {
                    let id = fs.id().to_owned();
                    events
                        .events
                        .publish("container", "archive-path", &id, &[("path", &path)]);
                }
                Err(err) => {
                    tracing::warn!(container = %name, %path, "archive: {err}");
                    w.abort(std::io::Error::other(err.to_string()));
                }
            }
            Ok(())
        });
        if let (Err(err), Some(t)) = (res, stat_tx) {
            let _ = t.send(Err(err.into()));
        }
    });
    let stat = stat_rx
        .await
        .map_err(|_| ApiError::internal("the archive worker ended early"))??;
    let mut resp = resp;
    resp.headers_mut().insert(STAT_HEADER, stat_header(&stat)?);
    Ok(resp)
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`: extracts the tar
/// body into the directory `path`.
async fn put<B>(
    state: &Arc<State>,
    name: &str,
    q: &Query,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let path = path_param(q)?;
    let opts = ExtractOptions {
        no_overwrite_dir_non_dir: q.bool("noOverwriteDirNonDir"),
        copy_uid_gid: q.bool("copyUIDGID"),
    };
    let reader = http::body_reader(body);
    let (e, name) = (state.engine.clone(), name.to_owned());
    let p = path.clone();
    let id = blocking(move || {
        Ok(e.with_fs(&name, View::Container, |fs| {
            fs.extract(&p, reader, opts)?;
            Ok(fs.id().to_owned())
        })?)
    })
    .await?;
    state
        .events
        .publish("container", "extract-to-dir", &id, &[("path", &path)]);
    Ok(http::status(StatusCode::OK))
}

/// `GET /containers/{id}/export`: a tar of the root filesystem, streamed.
async fn export(state: &Arc<State>, name: &str) -> Result<Response<Body>, ApiError> {
    let (e, n) = (state.engine.clone(), name.to_owned());
    let id = blocking(move || Ok(e.resolve(&n)?)).await?;
    let (resp, tx) = http::streaming("application/x-tar");
    let e = state.engine.clone();
    let st = state.clone();
    std::thread::spawn(move || {
        let mut w = ChannelWriter::new(tx);
        match e.with_fs(&id, View::Rootfs, |fs| fs.export(&mut w)) {
            Ok(()) => st.events.publish("container", "export", &id, &[]),
            Err(err) => {
                tracing::warn!(container = %id, "export: {err}");
                w.abort(std::io::Error::other(err.to_string()));
            }
        }
    });
    Ok(resp)
}
