//! Container and exec endpoints: thin handlers over `skiff_engine::Engine`, whose calls
//! (they block: locks, files, waits) run on `spawn_blocking` threads. Attach and exec start
//! hijack the connection (HTTP upgrade) and bridge it to the monitor's attach socket or to
//! the exec helper's pipes.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use skiff_engine::models::ExecConfig;
use skiff_engine::{CreateBody, Engine, LogsOptions, Status, WaitCondition};
use skiff_monitor::protocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ApiError;
use crate::http::{self, Body, Query};
use crate::router::{blocking, ok_json};
use crate::State;

const RAW: &str = "application/vnd.docker.raw-stream";
const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";

/// Runs an engine call on a blocking thread.
async fn eng<T, F>(state: &Arc<State>, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Engine) -> skiff_engine::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let e = state.engine.clone();
    blocking(move || f(&e).map_err(ApiError::from)).await
}

fn no_content() -> Result<Response<Body>, ApiError> {
    Ok(http::status(StatusCode::NO_CONTENT))
}

fn int_param(q: &Query, key: &str) -> Result<Option<i64>, ApiError> {
    match q.non_empty(key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
        }),
    }
}

/// `POST /containers/create?name=`.
pub(crate) async fn create<B>(
    state: &Arc<State>,
    q: &Query,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let raw = http::read_body(body, 4 << 20).await?;
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let cb: CreateBody = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the create request: {e}")))?;
    let image = cb.config.image.clone().unwrap_or_default();
    let name = q.non_empty("name").map(str::to_owned);
    let id = eng(state, move |e| e.create(name.as_deref(), cb)).await?;
    state
        .events
        .publish("container", "create", &id, &[("image", image.as_str())]);
    Ok(http::json(
        StatusCode::CREATED,
        &json!({ "Id": id, "Warnings": [] }),
    ))
}

/// `GET /containers/json?all=&filters=`.
pub(crate) async fn list(state: &Arc<State>, q: &Query) -> Result<Response<Body>, ApiError> {
    let filters: skiff_engine::Filters = q.filters()?.0.into_iter().collect();
    let all = q.bool("all");
    let mut out = eng(state, move |e| e.list(all, &filters)).await?;
    if let Some(n) = int_param(q, "limit")?.filter(|n| *n > 0) {
        out.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    if q.bool("size") {
        let e = state.engine.clone();
        out = blocking(move || {
            for c in &mut out {
                crate::system::add_size(&e, c);
            }
            Ok(out)
        })
        .await?;
    }
    ok_json(&out)
}

/// A tty container's requested initial size (rows, columns).
fn console_size(rec: &skiff_engine::Record) -> Option<(u16, u16)> {
    if !rec.config.tty.unwrap_or(false) {
        return None;
    }
    let s = rec.host_config.console_size.as_ref()?;
    let h = u16::try_from(*s.first()?).ok()?;
    let w = u16::try_from(*s.get(1)?).ok()?;
    (h > 0 && w > 0).then_some((h, w))
}

/// Volume name → the ids of the containers (any state) that mount it.
pub(crate) fn volume_users(engine: &Engine) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let all = engine
        .list(true, &skiff_engine::Filters::new())
        .unwrap_or_default();
    for c in all {
        let Some(id) = c.id else { continue };
        let Ok(rec) = engine.record(&id) else {
            continue;
        };
        for m in &rec.mounts {
            if let Some(name) = m.name.as_ref().filter(|n| !n.is_empty()) {
                out.entry(name.clone()).or_default().push(id.clone());
            }
        }
    }
    out
}

/// `/containers/{id}/{op}`.
pub(crate) async fn route<B>(
    state: &Arc<State>,
    req: Request<B>,
    method: &str,
    id: &str,
    op: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let name = id.to_owned();
    match (method, op) {
        ("DELETE", "") => {
            let (force, v) = (q.bool("force"), q.bool("v"));
            let id = eng(state, move |e| {
                let id = e.resolve(&name)?;
                e.remove(&id, force, v).map(|()| id)
            })
            .await?;
            state.execs.forget_container(&id);
            no_content()
        }
        ("GET", "json") => {
            let r = eng(state, move |e| e.inspect(&name)).await?;
            let mut v = serde_json::to_value(&r)
                .map_err(|e| ApiError::internal(format!("encoding the container: {e}")))?;
            // Clients read these unconditionally (docker-py's run() reads LogConfig.Type).
            let lc = &mut v["HostConfig"]["LogConfig"];
            if lc["Type"].as_str().unwrap_or("").is_empty() {
                lc["Type"] = json!("json-file");
            }
            if lc["Config"].is_null() {
                lc["Config"] = json!({});
            }
            if q.bool("size") {
                let (e, id) = (state.engine.clone(), r.id.clone().unwrap_or_default());
                if let Ok((rw, rootfs)) = blocking(move || Ok(e.size(&id)?)).await {
                    v["SizeRw"] = json!(rw);
                    v["SizeRootFs"] = json!(rootfs);
                }
            }
            let execs = state.execs.of_container(r.id.as_deref().unwrap_or(""));
            v["ExecIDs"] = if execs.is_empty() {
                Value::Null
            } else {
                json!(execs)
            };
            ok_json(&v)
        }
        ("POST", "start") => {
            let started = eng(state, move |e| {
                let rec = e.record(&name)?;
                if rec.state.status.is_running() {
                    return Ok(None);
                }
                // HostConfig.ConsoleSize [rows, cols]: the tty's size from the first byte when
                // a client attached first (its monitor waits with the pty made), else at once
                // after the start.
                let size = console_size(&rec);
                let sized = size.is_some_and(|(h, w)| e.resize(&rec.id, h, w).is_ok());
                let started = e.start(&rec.id);
                if let (Some((h, w)), false, Ok(())) = (size, sized, &started) {
                    let _ = e.resize(&rec.id, h, w);
                }
                match started {
                    Ok(()) => Ok(Some(rec.id)),
                    Err(err) => {
                        // Docker removes an auto-remove container whose start failed: the
                        // CLI's `run --rm` waits for that (wait?condition=removed).
                        if rec.host_config.auto_remove == Some(true) {
                            if let Err(rm) = e.remove(&rec.id, true, true) {
                                tracing::warn!(container = %rec.id, "auto-remove after a failed start: {rm}");
                            }
                        }
                        Err(err)
                    }
                }
            })
            .await?;
            match started {
                Some(id) => {
                    // `die` and `destroy` (AutoRemove) come from the engine's event hook.
                    state.events.publish("container", "start", &id, &[]);
                    no_content()
                }
                None => Ok(http::status(StatusCode::NOT_MODIFIED)),
            }
        }
        ("POST", "stop") => {
            let t = int_param(q, "t")?;
            let stopped = eng(state, move |e| {
                let rec = e.record(&name)?;
                if !rec.state.status.is_running() {
                    // Docker records the manual stop even so (restart policies).
                    e.stop(&rec.id, t)?;
                    return Ok(None);
                }
                e.stop(&rec.id, t).map(|()| Some(rec.id))
            })
            .await?;
            match stopped {
                Some(id) => {
                    state.events.publish("container", "stop", &id, &[]);
                    no_content()
                }
                None => Ok(http::status(StatusCode::NOT_MODIFIED)),
            }
        }
        ("POST", "restart") => {
            let t = int_param(q, "t")?;
            let id = eng(state, move |e| {
                let id = e.resolve(&name)?;
                e.restart(&id, t).map(|()| id)
            })
            .await?;
            // As Docker: `die` (from the engine) and `stop`, then `start` and `restart`.
            for action in ["stop", "start", "restart"] {
                state.events.publish("container", action, &id, &[]);
            }
            no_content()
        }
        ("POST", "kill") => {
            let sig = q.non_empty("signal").map(str::to_owned);
            eng(state, move |e| e.kill(&name, sig.as_deref())).await?;
            no_content()
        }
        ("POST", "pause") => {
            eng(state, move |e| e.pause(&name)).await?;
            no_content()
        }
        ("POST", "unpause") => {
            eng(state, move |e| e.unpause(&name)).await?;
            no_content()
        }
        ("POST", "rename") => {
            let new = q
                .non_empty("name")
                .ok_or_else(|| ApiError::bad_request("a new name is required"))?
                .to_owned();
            eng(state, move |e| e.rename(&name, &new)).await?;
            no_content()
        }
        ("GET", "top") => ok_json(&eng(state, move |e| e.top(&name)).await?),
        ("POST", "resize") => {
            let h = u16::try_from(int_param(q, "h")?.unwrap_or(0)).unwrap_or(u16::MAX);
            let w = u16::try_from(int_param(q, "w")?.unwrap_or(0)).unwrap_or(u16::MAX);
            eng(state, move |e| {
                let id = e.resolve(&name)?;
                // Before the monitor exists (a created container) there is nothing to resize;
                // the size also comes with HostConfig.ConsoleSize.
                if let Err(err) = e.resize(&id, h, w) {
                    tracing::debug!(container = %id, "resize: {err}");
                }
                Ok(())
            })
            .await?;
            Ok(http::status(StatusCode::OK))
        }
        ("POST", "wait") => {
            let gone = req.extensions().get::<crate::server::PeerGone>().cloned();
            wait(state, &name, q, gone).await
        }
        ("GET", "logs") => logs(state, &name, q).await,
        ("POST", "attach") => attach(state, req, &name, q).await,
        ("GET", "stats") => stats(state, &name, q).await,
        ("POST", "exec") => exec_create(state, &name, req.into_body()).await,
        ("POST", "update") => update(state, &name, req.into_body()).await,
        (_, "archive" | "export" | "changes") => {
            crate::archive::route(state, req, method, &name, op, q).await
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// `POST /containers/{id}/wait?condition=`: the 200 headers go out at once (the CLI starts
/// the container only once it has them), the body when the condition holds.
async fn wait(
    state: &Arc<State>,
    name: &str,
    q: &Query,
    gone: Option<crate::server::PeerGone>,
) -> Result<Response<Body>, ApiError> {
    let cond: WaitCondition = q
        .get("condition")
        .unwrap_or("")
        .parse()
        .map_err(ApiError::from)?;
    let name = name.to_owned();
    // Subscribed before the waiter looks at the state: no change can fall in between.
    let (_, mut events) = state.events.subscribe(None);
    let (id, waiter) = eng(state, move |e| {
        let id = e.resolve(&name)?;
        e.waiter(&id, cond).map(|w| (id, w))
    })
    .await?;
    let (resp, tx) = http::streaming("application/json");
    let mut gone = gone;
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        // No thread waits: the condition is looked at again whenever this container has an
        // event (`die`, `destroy`...; the state changes before the event is published), and
        // the wait ends when the client hangs up (`docker run -d` sends it and exits).
        let result = loop {
            match waiter.wait_timeout(Duration::ZERO) {
                Ok(Some(code)) => break Ok(code),
                Ok(None) => {}
                Err(e) => break Err(e.to_string()),
            }
            // Belt and braces: a state change without an event is seen within this.
            let tick = tokio::time::sleep(Duration::from_secs(30));
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(ev) if ev.kind != "container" || ev.id != id => continue,
                        // This container's event, or missed events: look again.
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    () = async {
                        match gone.as_mut() {
                            Some(g) => g.hung_up().await,
                            None => std::future::pending().await,
                        }
                    } => return,
                    () = tx.closed() => return,
                    // A daemon going down ends the stream (containers keep running).
                    _ = shutdown.wait_for(|down| *down) => return,
                    () = &mut tick => break,
                }
            }
        };
        let body = match result {
            Ok(code) => json!({ "StatusCode": code, "Error": null }),
            Err(msg) => json!({ "StatusCode": -1, "Error": { "Message": msg } }),
        };
        let mut text = body.to_string();
        text.push('\n');
        let _ = tx.send(Ok(Bytes::from(text))).await;
    });
    Ok(resp)
}

/// Docker's `since`/`until`: unix seconds with an optional fraction.
fn parse_time(s: &str) -> Result<SystemTime, ApiError> {
    if let Ok(f) = s.parse::<f64>() {
        if f >= 0.0 {
            return Ok(UNIX_EPOCH + Duration::from_secs_f64(f));
        }
    }
    crate::time::parse_rfc3339(s)
        .and_then(|t| u64::try_from(t).ok())
        .map(|t| UNIX_EPOCH + Duration::from_secs(t))
        .ok_or_else(|| ApiError::bad_request(format!("invalid time {s:?}")))
}

/// `GET /containers/{id}/logs`: multiplexed frames (raw with a tty), chunked, streamed while
/// following.
/// The largest log frame sent (lines are grouped up to this size).
const FRAME_MAX: usize = 64 * 1024;

async fn logs(state: &Arc<State>, name: &str, q: &Query) -> Result<Response<Body>, ApiError> {
    let mut opts = LogsOptions {
        follow: q.bool("follow"),
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        timestamps: q.bool("timestamps"),
        ..Default::default()
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    match q.non_empty("tail") {
        None | Some("all") => {}
        Some(t) => {
            let n: i64 = t
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid tail {t:?}")))?;
            opts.tail = usize::try_from(n).ok();
        }
    }
    if let Some(s) = q.non_empty("since").filter(|s| *s != "0") {
        opts.since = Some(parse_time(s)?);
    }
    if let Some(s) = q.non_empty("until").filter(|s| *s != "0") {
        opts.until = Some(parse_time(s)?);
    }
    let timestamps = opts.timestamps;
    let name = name.to_owned();
    let (tty, stream) = eng(state, move |e| {
        let rec = e.record(&name)?;
        let stream = e.logs(&rec.id, opts)?;
        Ok((rec.config.tty.unwrap_or(false), stream))
    })
    .await?;
    let (resp, tx) = http::streaming(if tty { RAW } else { MULTIPLEXED });
    tokio::task::spawn_blocking(move || {
        // A follower whose client went away stops even while the container is silent.
        let gone = tx.clone();
        let stream = stream.cancel_when(move || gone.is_closed());
        let mut w = http::ChannelWriter::new(tx);
        // Consecutive lines of one stream go out as one frame (a client reads frames as a
        // byte stream per stream), sent whenever the log has nothing more buffered: a few
        // frames per chunk of the file instead of one per line.
        let mut stream = stream;
        let mut frame: Vec<u8> = Vec::with_capacity(FRAME_MAX + 4096);
        let mut kind = protocol::STDOUT;
        let send = |w: &mut http::ChannelWriter, frame: &mut Vec<u8>, kind: u8| {
            let r = if frame.is_empty() {
                Ok(())
            } else if tty {
                w.write_all(frame)
            } else {
                protocol::write_frame(w, kind, frame)
            };
            frame.clear();
            r
        };
        while let Some(entry) = stream.next() {
            let k = match entry.stream {
                skiff_monitor::logfile::Stream::Stderr => protocol::STDERR,
                _ => protocol::STDOUT,
            };
            if (k != kind || frame.len() >= FRAME_MAX) && send(&mut w, &mut frame, kind).is_err() {
                return;
            }
            kind = k;
            if timestamps {
                frame.extend_from_slice(entry.time.as_bytes());
                frame.push(b' ');
            }
            frame.extend_from_slice(entry.line.as_bytes());
            if !stream.has_buffered()
                && send(&mut w, &mut frame, kind)
                    .and_then(|()| w.flush())
                    .is_err()
            {
                return;
            }
        }
        let _ = send(&mut w, &mut frame, kind).and_then(|()| w.flush());
    });
    Ok(resp)
}

/// Anything a hijacked stream can be.
trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}

/// Hijacks the connection: `101 UPGRADED` and `run` on the upgraded stream. A request
/// without `Upgrade` (older clients) gets `200` and the output as the body instead.
fn hijack<B, F, Fut>(mut req: Request<B>, content_type: &'static str, run: F) -> Response<Body>
where
    F: FnOnce(Box<dyn Conn>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if req.headers().contains_key(UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on.await {
                Ok(up) => run(Box::new(TokioIo::new(up))).await,
                Err(e) => tracing::debug!(error = %e, "the connection upgrade failed"),
            }
        });
        let mut resp = Response::new(http::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("tcp"));
        resp.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
        return resp;
    }
    let (ours, theirs) = tokio::io::duplex(64 << 10);
    tokio::spawn(run(Box::new(ours)));
    let (resp, tx) = http::streaming(content_type);
    tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(theirs);
        let _ = w.shutdown().await;
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    resp
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=`: bridges the hijacked
/// connection and the monitor's attach socket (frames both ways; raw client bytes with a
/// tty; the client's half-close closes the container's stdin).
async fn attach<B>(
    state: &Arc<State>,
    req: Request<B>,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let (want_in, want_out, want_err) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let name = name.to_owned();
    let (tty, sock) = eng(state, move |e| {
        let rec = e.record(&name)?;
        let tty = rec.config.tty.unwrap_or(false);
        match e.attach(&rec.id) {
            Ok(sock) => Ok((tty, Some(sock))),
            // The process cannot start (a missing executable...): as with Docker the
            // attach succeeds and ends at once, and the client learns why from `start`,
            // which fails the same way (the CLI maps its message to 126/127).
            Err(err @ skiff_engine::Error::Start { .. }) => {
                tracing::debug!(container = %rec.id, "attach: {err}");
                Ok((tty, None))
            }
            Err(err) => Err(err),
        }
    })
    .await?;
    let ct = if tty { RAW } else { MULTIPLEXED };
    let Some(sock) = sock else {
        return Ok(hijack(req, ct, |conn| async move {
            let (_, mut cw) = tokio::io::split(conn);
            let _ = cw.shutdown().await;
        }));
    };
    sock.set_nonblocking(true)
        .map_err(|e| ApiError::internal(format!("attach: {e}")))?;
    let sock = tokio::net::UnixStream::from_std(sock)
        .map_err(|e| ApiError::internal(format!("attach: {e}")))?;
    Ok(hijack(req, ct, move |conn| async move {
        let (mut cr, mut cw) = tokio::io::split(conn);
        let (mut mr, mut mw) = sock.into_split();
        let input = tokio::spawn(async move {
            let mut buf = vec![0u8; 32 << 10];
            if want_in {
                loop {
                    let n = cr.read(&mut buf).await.unwrap_or_default();
                    let mut frame = protocol::header(protocol::STDIN, n).to_vec();
                    frame.extend_from_slice(&buf[..n]);
                    if mw.write_all(&frame).await.is_err() || n == 0 {
                        break;
                    }
                }
            }
            // Keep the write half open: dropping it would end the monitor's session.
            std::future::pending::<()>().await;
        });
        loop {
            let mut h = [0u8; protocol::HEADER];
            if mr.read_exact(&mut h).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            let mut payload = vec![0u8; len];
            if mr.read_exact(&mut payload).await.is_err() {
                break;
            }
            let wanted = match h[0] {
                protocol::STDOUT => want_out,
                protocol::STDERR => want_err,
                _ => false,
            };
            if !wanted {
                continue;
            }
            let r = if tty {
                cw.write_all(&payload).await
            } else {
                let mut frame = h.to_vec();
                frame.extend_from_slice(&payload);
                cw.write_all(&frame).await
            };
            if r.is_err() || cw.flush().await.is_err() {
                break;
            }
        }
        input.abort();
        let _ = cw.shutdown().await;
    }))
}

/// `GET /containers/{id}/stats?stream=`: Docker's JSON from the cgroup statistics, once or
/// every second.
async fn stats(state: &Arc<State>, name: &str, q: &Query) -> Result<Response<Body>, ApiError> {
    let stream = q.get("stream").is_none_or(http::truthy) && !q.bool("one-shot");
    let name = name.to_owned();
    let rec = {
        let n = name.clone();
        eng(state, move |e| e.record(&n)).await?
    };
    let sample = {
        let st = state.clone();
        let id = rec.id.clone();
        move || -> Option<Value> {
            let s = st.engine.stats(&id).ok()?;
            Some(stats_json(&s))
        }
    };
    let first = {
        let s = sample.clone();
        blocking(move || Ok(s())).await?
    };
    let running = rec.state.status.is_running();
    let head = json!({ "name": rec.name, "id": rec.id });
    let empty = json!({
        "read": now_rfc3339(),
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
        "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {}},
        "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {}},
        "memory_stats": {},
    });
    let merge = move |mut v: Value, prev: Option<&Value>| {
        if let (Some(o), Some(h)) = (v.as_object_mut(), head.as_object()) {
            o.extend(h.clone());
            if let Some(p) = prev {
                o.insert("precpu_stats".into(), p["cpu_stats"].clone());
                o.insert("preread".into(), p["read"].clone());
            }
        }
        v
    };
    if !stream || !running {
        let v = merge(first.unwrap_or(empty), None);
        return ok_json(&v);
    }
    let (resp, tx) = http::streaming("application/json");
    tokio::spawn(async move {
        let mut prev: Option<Value> = None;
        let mut cur = first;
        while let Some(v) = cur {
            let out = merge(v.clone(), prev.as_ref());
            let mut text = out.to_string();
            text.push('\n');
            if tx.send(Ok(Bytes::from(text))).await.is_err() {
                break;
            }
            prev = Some(v);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = sample.clone();
            cur = tokio::task::spawn_blocking(s).await.ok().flatten();
        }
    });
    Ok(resp)
}

/// The host's CPU time in nanoseconds (`/proc/stat`'s first line) and its CPU count.
fn host_cpu() -> (u64, usize) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut total = 0u64;
    let mut cpus = 0;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("cpu ") {
            let ticks: u64 = rest
                .split_whitespace()
                .take(8)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum();
            // USER_HZ is 100 on Linux.
            total = ticks.saturating_mul(10_000_000);
        } else if l.starts_with("cpu") {
            cpus += 1;
        }
    }
    (total, cpus.max(1))
}

fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = crate::time::rfc3339(d.as_secs());
    // `...Z` with nanoseconds, as Docker writes `read`.
    format!("{}.{:09}Z", s.trim_end_matches('Z'), d.subsec_nanos())
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

fn stats_json(s: &skiff_cgroups::Stats) -> Value {
    let (system, cpus) = host_cpu();
    let mut limit = s.memory.usage.limit;
    let total = mem_total();
    if limit == 0 || (total > 0 && limit > total) {
        limit = total;
    }
    json!({
        "read": now_rfc3339(),
        "preread": "0001-01-01T00:00:00Z",
        "num_procs": 0,
        "pids_stats": { "current": s.pids.current, "limit": s.pids.limit },
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": s.cpu.usage.total,
                "percpu_usage": s.cpu.usage.percpu,
                "usage_in_kernelmode": s.cpu.usage.kernel,
                "usage_in_usermode": s.cpu.usage.user,
            },
            "system_cpu_usage": system,
            "online_cpus": cpus,
            "throttling_data": {
                "periods": s.cpu.throttling.periods,
                "throttled_periods": s.cpu.throttling.throttled_periods,
                "throttled_time": s.cpu.throttling.throttled_time,
            },
        },
        "precpu_stats": {
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        },
        "memory_stats": {
            "usage": s.memory.usage.usage,
            "max_usage": s.memory.usage.max,
            "limit": limit,
            "failcnt": s.memory.usage.failcnt,
            "stats": s.memory.raw,
        },
        "blkio_stats": {
            "io_service_bytes_recursive": s.blkio.io_service_bytes_recursive,
            "io_serviced_recursive": s.blkio.io_serviced_recursive,
        },
        "storage_stats": {},
        "networks": {},
    })
}

/// `POST /containers/{id}/update`: new limits and restart policy.
async fn update<B>(state: &Arc<State>, name: &str, body: B) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let raw = http::read_body(body, 1 << 20).await?;
    let body: skiff_engine::UpdateBody = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the update request: {e}")))?;
    let name = name.to_owned();
    let (id, warnings) = eng(state, move |e| {
        let id = e.resolve(&name)?;
        let w = e.update(&id, &body)?;
        Ok((id, w))
    })
    .await?;
    state.events.publish("container", "update", &id, &[]);
    ok_json(&json!({ "Warnings": warnings }))
}

// ---------------------------------------------------------------- exec

/// One `docker exec`, as `/exec/{id}/json` shows it.
#[derive(Debug, Clone)]
struct ExecEntry {
    container: String,
    config: ExecConfig,
    running: bool,
    started: bool,
    exit_code: Option<i64>,
    pid: u32,
    /// With a tty: the pty master, for resizes.
    console: Option<Arc<std::os::fd::OwnedFd>>,
}

/// The execs made through this daemon, by id.
#[derive(Debug, Default)]
pub(crate) struct Execs(Mutex<HashMap<String, ExecEntry>>);

impl Execs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecEntry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Result<ExecEntry, ApiError> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    /// The ids of a container's execs, sorted.
    fn of_container(&self, container: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.container == container)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Drops the execs of a removed container (Docker forgets them too).
    pub(crate) fn forget_container(&self, container: &str) {
        self.lock().retain(|_, e| e.container != container);
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut ExecEntry)) {
        if let Some(e) = self.lock().get_mut(id) {
            f(e);
        }
    }
}

fn random_id() -> Result<String, ApiError> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| ApiError::internal(format!("reading /dev/urandom: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// `POST /containers/{id}/exec`.
async fn exec_create<B>(state: &Arc<State>, name: &str, body: B) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let raw = http::read_body(body, 1 << 20).await?;
    let config: ExecConfig = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the exec request: {e}")))?;
    if config.cmd.as_ref().is_none_or(Vec::is_empty) {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let name = name.to_owned();
    let rec = eng(state, move |e| e.record(&name)).await?;
    match rec.state.status {
        Status::Running => {}
        Status::Paused => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "Container {} is paused, unpause the container before exec",
                    rec.id
                ),
            ))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Container {} is not running", rec.id),
            ))
        }
    }
    let id = random_id()?;
    state.execs.lock().insert(
        id.clone(),
        ExecEntry {
            container: rec.id.clone(),
            config,
            running: false,
            started: false,
            exit_code: None,
            pid: 0,
            console: None,
        },
    );
    Ok(http::json(StatusCode::CREATED, &json!({ "Id": id })))
}

/// `/exec/{id}/{op}`.
pub(crate) async fn exec_route<B>(
    state: &Arc<State>,
    req: Request<B>,
    method: &str,
    id: &str,
    op: &str,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    match (method, op) {
        ("GET", "json") => {
            let e = state.execs.get(id)?;
            let c = &e.config;
            ok_json(&json!({
                "ID": id,
                "Running": e.running,
                "ExitCode": e.exit_code,
                "ContainerID": e.container,
                "Pid": e.pid,
                "OpenStdin": c.attach_stdin.unwrap_or(false),
                "OpenStdout": c.attach_stdout.unwrap_or(false),
                "OpenStderr": c.attach_stderr.unwrap_or(false),
                "CanRemove": false,
                "DetachKeys": "",
                "ProcessConfig": {
                    "tty": c.tty.unwrap_or(false),
                    "entrypoint": c.cmd.as_ref().and_then(|v| v.first()).cloned().unwrap_or_default(),
                    "arguments": c.cmd.as_ref().map(|v| v[1..].to_vec()).unwrap_or_default(),
                    "privileged": c.privileged.unwrap_or(false),
                    "user": c.user.clone().unwrap_or_default(),
                },
            }))
        }
        ("POST", "resize") => {
            let e = state.execs.get(id)?;
            let q = Query::parse(req.uri().query());
            let h = u16::try_from(int_param(&q, "h")?.unwrap_or(0)).unwrap_or(u16::MAX);
            let w = u16::try_from(int_param(&q, "w")?.unwrap_or(0)).unwrap_or(u16::MAX);
            // Without a terminal (or once it is gone) there is nothing to resize.
            if let Some(m) = e.console.filter(|_| e.running) {
                if let Err(err) = skiff_engine::resize_console(std::os::fd::AsFd::as_fd(&*m), h, w)
                {
                    tracing::debug!(exec = %id, "resize: {err}");
                }
            }
            Ok(http::status(StatusCode::OK))
        }
        ("POST", "start") => exec_start(state, req, id).await,
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// Whether the exec helper's stderr starts with its own failure message (the process
/// could not be started: a missing binary...).
fn exec_failed(stderr: &[u8]) -> bool {
    stderr.starts_with(b"exec failed: ")
}

/// The exec's exit code: the helper's 125 for a process that could not start is Docker's
/// 126 (with the message as an output frame).
fn exit_code(code: i64, failed: bool) -> i64 {
    if code == 125 && failed {
        126
    } else {
        code
    }
}

/// `POST /exec/{id}/start`: runs the process; detached it answers 200 at once, otherwise
/// it hijacks the connection and streams multiplexed output until the process ends (its
/// exit code is recorded before the stream closes).
async fn exec_start<B>(
    state: &Arc<State>,
    req: Request<B>,
    id: &str,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (parts, body) = req.into_parts();
    let raw = http::read_body(body, 1 << 20).await?;
    let req = Request::from_parts(parts, http::empty());
    let opts: Value = if raw.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let detach = opts["Detach"].as_bool().unwrap_or(false);
    let entry = state.execs.get(id)?;
    {
        let mut all = state.execs.lock();
        let e = all
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
        if e.started {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Exec {id} has already been started"),
            ));
        }
        e.started = true;
    }
    let mut cfg = entry.config.clone();
    if detach {
        cfg.attach_stdin = Some(false);
    }
    let container = entry.container.clone();
    let mut proc = match eng(state, move |e| e.exec(&container, &cfg)).await {
        Ok(p) => p,
        Err(err) => {
            state.execs.update(id, |e| e.exit_code = Some(126));
            return Err(err);
        }
    };
    let pid = proc.pid();
    let tty = entry.config.tty.unwrap_or(false);
    let console = proc.master.take().map(Arc::new);
    state.execs.update(id, |e| {
        e.running = true;
        e.pid = pid;
        e.console = console.clone();
    });
    let execs = state.clone();
    let eid = id.to_owned();
    let finish = move |code: i64| {
        execs.execs.update(&eid, |e| {
            e.running = false;
            e.exit_code = Some(code);
            // The terminal goes with the process (the entry stays for inspect).
            e.console = None;
        });
    };
    if tty {
        return Ok(exec_start_tty(req, proc, console, detach, finish));
    }
    if detach {
        tokio::task::spawn_blocking(move || {
            let code = proc
                .output()
                .map(|(code, _, err)| exit_code(code, exec_failed(&err)))
                .unwrap_or(-1);
            finish(code);
        });
        return Ok(http::status(StatusCode::OK));
    }
    let stdin = proc.stdin.take();
    let outs: [(u8, Option<Box<dyn Read + Send>>); 2] = [
        (
            protocol::STDOUT,
            proc.stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            protocol::STDERR,
            proc.stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ];
    Ok(hijack(req, MULTIPLEXED, move |conn| async move {
        let (mut cr, mut cw) = tokio::io::split(conn);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for (kind, pipe) in outs {
            let Some(mut pipe) = pipe else { continue };
            let tx = tx.clone();
            let failed = failed.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 << 10];
                let mut first = true;
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if first && kind == protocol::STDERR && exec_failed(&buf[..n]) {
                                failed.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            first = false;
                            let mut frame = protocol::header(kind, n).to_vec();
                            frame.extend_from_slice(&buf[..n]);
                            if tx.blocking_send(frame).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        drop(tx);
        let input = tokio::spawn(async move {
            let Some(mut stdin) = stdin else { return };
            let (itx, irx) = std::sync::mpsc::channel::<Vec<u8>>();
            std::thread::spawn(move || {
                for chunk in irx {
                    if stdin.write_all(&chunk).is_err() {
                        break;
                    }
                }
            });
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if itx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut client_gone = false;
        while let Some(frame) = rx.recv().await {
            if client_gone {
                continue;
            }
            if cw.write_all(&frame).await.is_err() || cw.flush().await.is_err() {
                client_gone = true;
            }
        }
        let code = tokio::task::spawn_blocking(move || proc.wait().unwrap_or(-1))
            .await
            .unwrap_or(-1);
        finish(exit_code(
            code,
            failed.load(std::sync::atomic::Ordering::SeqCst),
        ));
        input.abort();
        let _ = cw.shutdown().await;
    }))
}

/// `exec start` with a tty: the terminal's bytes raw both ways (detached: drained so the
/// process never blocks). The exit code is recorded before the stream closes.
fn exec_start_tty(
    req: Request<Body>,
    proc: skiff_engine::ExecProcess,
    console: Option<Arc<std::os::fd::OwnedFd>>,
    detach: bool,
    finish: impl FnOnce(i64) + Send + 'static,
) -> Response<Body> {
    use std::sync::atomic::AtomicBool;
    let done = Arc::new(AtomicBool::new(false));
    let wait = {
        let done = done.clone();
        move || {
            let _g = crate::exec_tty::DoneOnDrop(done);
            proc.output()
                .map(|(code, _, err)| (exit_code(code, exec_failed(&err)), err))
                .unwrap_or((-1, Vec::new()))
        }
    };
    if detach {
        if let Some(m) = console {
            let done = done.clone();
            std::thread::spawn(move || crate::exec_tty::pump(&m, &done, |_| true));
        }
        tokio::task::spawn_blocking(move || finish(wait().0));
        return http::status(StatusCode::OK);
    }
    hijack(req, RAW, move |conn| async move {
        let (mut cr, mut cw) = tokio::io::split(conn);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let mut input = None;
        if let Some(m) = console {
            let d = done.clone();
            let pm = m.clone();
            std::thread::spawn(move || {
                crate::exec_tty::pump(&pm, &d, |b| tx.blocking_send(b.to_vec()).is_ok());
            });
            if let Ok(feed) = crate::exec_tty::feed(&m) {
                input = Some(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 << 10];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if feed.send(buf[..n].to_vec()).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }));
            }
        } else {
            drop(tx);
        }
        let waiter = tokio::task::spawn_blocking(wait);
        let mut client_gone = false;
        while let Some(chunk) = rx.recv().await {
            if !client_gone && (cw.write_all(&chunk).await.is_err() || cw.flush().await.is_err()) {
                client_gone = true;
            }
        }
        let (code, err) = waiter.await.unwrap_or((-1, Vec::new()));
        if exec_failed(&err) && !client_gone {
            let _ = cw.write_all(&err).await;
        }
        finish(code);
        if let Some(i) = input {
            i.abort();
        }
        let _ = cw.shutdown().await;
    })
}
