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

/// The run-config fields an image keeps (Docker's merge on create reads only these).
const IMAGE_CONFIG_KEYS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// Lays `top`'s image-config fields over `base`: `Env` by variable, `Labels`,
/// `ExposedPorts` and `Volumes` by key, the others replaced.
fn overlay_config(base: &mut serde_json::Value, top: &serde_json::Value) {
    let Some(top) = top.as_object() else { return };
    for k in IMAGE_CONFIG_KEYS {
        let Some(v) = top.get(*k).filter(|v| !v.is_null()) else {
            continue;
        };
        match *k {
            "Env" => {
                let mut env: Vec<String> = base[*k]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| e.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                for e in v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str())
                {
                    let key = e.split('=').next().unwrap_or("");
                    env.retain(|x| x.split('=').next() != Some(key));
                    env.push(e.to_owned());
                }
                base[*k] = serde_json::json!(env);
            }
            "Labels" | "ExposedPorts" | "Volumes" => {
                if !base[*k].is_object() {
                    base[*k] = serde_json::json!({});
                }
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    base[*k][mk] = mv.clone();
                }
            }
            _ => base[*k] = v.clone(),
        }
    }
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`: the container's
/// changes as a new image on top of its image, with its config (the body's fields and the
/// `--change` instructions applied). 201 `{"Id"}`.
pub(crate) async fn commit<B>(
    state: &Arc<State>,
    q: &Query,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let name = q
        .non_empty("container")
        .ok_or_else(|| ApiError::bad_request("a container is required"))?
        .to_owned();
    let raw = http::read_body(body, 4 << 20).await?;
    let body_config: serde_json::Value = if raw.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in the commit body: {e}")))?
    };
    let changes = crate::changes::config_from_changes(&q.all("changes"))?;
    let tag = match (q.non_empty("repo"), q.non_empty("tag")) {
        (Some(repo), Some(t)) => Some(skiff_store::Reference::parse(repo)?.with_tag(t)?),
        (Some(repo), None) => Some(skiff_store::Reference::parse(repo)?),
        (None, _) => None,
    };
    let pause = q.get("pause").is_none_or(http::truthy);
    let comment = q.non_empty("comment").map(str::to_owned);
    let author = q.non_empty("author").map(str::to_owned);
    let (e, store) = (state.engine.clone(), state.store.clone());
    let (id, image) = blocking(move || {
        let rec = e.record(&name)?;
        let mut config = serde_json::to_value(&rec.config)
            .map_err(|err| ApiError::internal(format!("encoding the container config: {err}")))?;
        if let Some(obj) = config.as_object_mut() {
            obj.retain(|k, _| IMAGE_CONFIG_KEYS.contains(&k.as_str()));
        }
        overlay_config(&mut config, &body_config);
        if let Some(c) = changes {
            let c = serde_json::to_value(&c)
                .map_err(|err| ApiError::internal(format!("encoding the changes: {err}")))?;
            overlay_config(&mut config, &c);
        }
        let paused = pause && rec.state.status == skiff_engine::Status::Running && {
            e.pause(&rec.id).is_ok()
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(8);
        let reader = ChanReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        let mut writer = ChanWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let opts = skiff_store::CommitOptions {
            tag,
            config,
            comment,
            author,
            created_by: format!("skiff commit {}", rec.id),
        };
        let image = std::thread::scope(|s| {
            let (eng, cid) = (&e, rec.id.as_str());
            let producer = s.spawn(move || {
                let r = eng.commit_layer(cid, &mut writer);
                if let Err(err) = &r {
                    // The reader fails instead of taking a cut stream for a whole layer.
                    let _ = tx.send(Err(std::io::Error::other(err.to_string())));
                }
                drop(writer);
                r
            });
            let image = store.commit(&rec.image, reader, &opts);
            let layer = producer.join().unwrap_or_else(|_| {
                Err(skiff_engine::Error::Internal(
                    "the layer writer panicked".into(),
                ))
            });
            layer?;
            Ok::<_, ApiError>(image?)
        });
        if paused {
            if let Err(err) = e.unpause(&rec.id) {
                tracing::warn!(container = %rec.id, "unpause after commit: {err}");
            }
        }
        Ok((rec.id, image?))
    })
    .await?;
    let img = image.id.to_string();
    state
        .events
        .publish("container", "commit", &id, &[("imageID", img.as_str())]);
    Ok(http::json(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": img }),
    ))
}

/// The reading end of the layer stream between [`commit`]'s two threads: an error sent by
/// the writer fails the read (a pipe would only show an early end).
struct ChanReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct ChanWriter {
    tx: std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.buf);
        self.tx
            .send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader ended"))
    }
}
