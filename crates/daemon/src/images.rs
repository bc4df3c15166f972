//! `/images/...`: list, inspect, history, pull and import, push, tag, remove, save, load,
//! prune.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine;
use bollard_stubs::models::{
    HistoryResponseItem, ImageDeleteResponseItem, ImagePruneResponse, ImageSummary,
};
use bytes::Bytes;
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};
use skiff_image::Progress;
use skiff_reference::Reference;
use skiff_registry::{Client, Credential, Platform};
use skiff_store::{Compression, Image, ImportOptions, Removed, Store};
use tokio::sync::mpsc;

use crate::error::{chain, ApiError};
use crate::http::{self, glob, Body, Query};
use crate::router::{blocking, ok_json};
use crate::State;

/// Seconds since the epoch of an image's creation.
fn created(img: &Image) -> i64 {
    img.created
        .as_deref()
        .and_then(crate::time::parse_rfc3339)
        .unwrap_or_else(|| i64::try_from(img.added).unwrap_or(0))
}

fn size_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Summaries of all images (what `/images/json` and `/system/df` list), with config labels.
pub(crate) fn summaries(store: &Store) -> Vec<(ImageSummary, Image)> {
    let mut out = Vec::new();
    for img in store.images() {
        let (size, labels) = match store.inspect(&img.id.to_string()) {
            Ok(d) => (
                d.size,
                d.config
                    .config()
                    .as_ref()
                    .and_then(|c| c.labels().clone())
                    .unwrap_or_default(),
            ),
            Err(e) => {
                tracing::warn!(image = %img.id, error = %e, "cannot inspect image");
                (0, HashMap::new())
            }
        };
        out.push((
            ImageSummary {
                id: img.id.to_string(),
                parent_id: String::new(),
                repo_tags: img.repo_tags.iter().map(Reference::familiar).collect(),
                repo_digests: img.repo_digests.iter().map(Reference::familiar).collect(),
                created: created(&img),
                size: size_i64(size),
                shared_size: -1,
                labels,
                containers: -1,
                virtual_size: Some(size_i64(size)),
                manifests: None,
            },
            img,
        ));
    }
    out.sort_by(|a, b| b.0.created.cmp(&a.0.created).then(a.0.id.cmp(&b.0.id)));
    out
}

/// `GET /images/json`.
pub(crate) async fn list(state: &Arc<State>, q: &Query) -> Result<Response<Body>, ApiError> {
    let filters = q.filters()?;
    filters.check(&["dangling", "reference", "label", "before", "since", "until"])?;
    let dangling = filters.bool("dangling")?;
    let store = state.store.clone();
    let all = blocking(move || Ok(summaries(&store))).await?;
    let bound = |key: &str| -> Result<Option<i64>, ApiError> {
        match filters.get(key).first() {
            None => Ok(None),
            Some(name) => all
                .iter()
                .find(|(s, i)| {
                    s.id == *name
                        || i.id.hex().starts_with(name.as_str())
                        || s.repo_tags
                            .iter()
                            .any(|t| t == name || t == &format!("{name}:latest"))
                })
                .map(|(s, _)| Some(s.created))
                .ok_or_else(|| ApiError::not_found(format!("No such image: {name}"))),
        }
    };
    let before = bound("before")?;
    let since = bound("since")?;
    let refs = filters.get("reference");
    let mut out = Vec::new();
    for (mut s, _) in all.clone() {
        if let Some(d) = dangling {
            if d != s.repo_tags.is_empty() {
                continue;
            }
        }
        if !filters.labels_match(|k| s.labels.get(k).map(String::as_str)) {
            continue;
        }
        if before.is_some_and(|b| s.created >= b) || since.is_some_and(|b| s.created <= b) {
            continue;
        }
        if !refs.is_empty() {
            let matching: Vec<String> = s
                .repo_tags
                .iter()
                .filter(|t| {
                    let name = t.rsplit_once(':').map_or(t.as_str(), |(n, tag)| {
                        if tag.contains('/') {
                            t.as_str()
                        } else {
                            n
                        }
                    });
                    refs.iter().any(|p| glob(p, t) || glob(p, name))
                })
                .cloned()
                .collect();
            if matching.is_empty() {
                continue;
            }
            // Digests of the matching repositories only (the CLI shows a row for each).
            let tag_names: Vec<&str> = matching
                .iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((n, tag)) if !tag.contains('/') => n,
                    _ => t.as_str(),
                })
                .collect();
            s.repo_digests.retain(|d| {
                let name = d.split_once('@').map_or(d.as_str(), |(n, _)| n);
                tag_names.contains(&name) || refs.iter().any(|p| glob(p, name))
            });
            s.repo_tags = matching;
        }
        out.push(s);
    }
    ok_json(&out)
}

/// `GET /images/{name}/json`.
pub(crate) async fn inspect(state: &Arc<State>, name: &str) -> Result<Response<Body>, ApiError> {
    let store = state.store.clone();
    let name = name.to_owned();
    let driver = state.store.driver();
    let root = state.config.data_root.clone();
    let v = blocking(move || {
        let d = store.inspect(&name)?;
        let raw: Value = serde_json::from_slice(&d.raw_config).unwrap_or(Value::Null);
        let mut config = raw.get("config").cloned().unwrap_or_else(|| json!({}));
        if let Some(c) = config.as_object_mut() {
            for (k, v) in [
                ("Hostname", json!("")),
                ("Domainname", json!("")),
                ("User", json!("")),
                ("AttachStdin", json!(false)),
                ("AttachStdout", json!(false)),
                ("AttachStderr", json!(false)),
                ("Tty", json!(false)),
                ("OpenStdin", json!(false)),
                ("StdinOnce", json!(false)),
                ("Env", Value::Null),
                ("Cmd", Value::Null),
                ("Image", json!("")),
                ("Volumes", Value::Null),
                ("WorkingDir", json!("")),
                ("Entrypoint", Value::Null),
                ("OnBuild", Value::Null),
                ("Labels", Value::Null),
            ] {
                c.entry(k).or_insert(v);
            }
        }
        let img = &d.image;
        let upper: Vec<String> = img
            .layers
            .iter()
            .rev()
            .map(|l| {
                root.join("snapshots")
                    .join(l.chain_id.hex())
                    .join("diff")
                    .display()
                    .to_string()
            })
            .collect();
        let graph = match driver {
            skiff_store::Driver::Overlay => json!({
                "Name": "overlay2",
                "Data": {
                    "LowerDir": upper.iter().skip(1).cloned().collect::<Vec<_>>().join(":"),
                    "UpperDir": upper.first().cloned().unwrap_or_default(),
                }
            }),
            skiff_store::Driver::Vfs => json!({"Name": "vfs", "Data": null}),
        };
        Ok(json!({
            "Id": img.id.to_string(),
            "RepoTags": img.repo_tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
            "RepoDigests": img.repo_digests.iter().map(Reference::familiar).collect::<Vec<_>>(),
            "Parent": "",
            "Comment": raw.get("comment").cloned().unwrap_or(json!("")),
            "Created": img.created.clone().unwrap_or_else(|| crate::time::rfc3339(img.added)),
            "DockerVersion": raw.get("docker_version").cloned().unwrap_or(json!("")),
            "Author": raw.get("author").cloned().unwrap_or(json!("")),
            "Config": config,
            "Architecture": raw.get("architecture").cloned().unwrap_or(json!("")),
            "Variant": raw.get("variant").cloned(),
            "Os": raw.get("os").cloned().unwrap_or(json!("linux")),
            "Size": d.size,
            "VirtualSize": d.size,
            "GraphDriver": graph,
            "RootFS": {
                "Type": "layers",
                "Layers": img.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            },
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }))
    })
    .await?;
    ok_json(&v)
}

/// `GET /images/{name}/history`.
pub(crate) async fn history(state: &Arc<State>, name: &str) -> Result<Response<Body>, ApiError> {
    let store = state.store.clone();
    let name = name.to_owned();
    let items = blocking(move || {
        let img = store.image(&name)?;
        let hist = store.history(&name)?;
        Ok(hist
            .into_iter()
            .map(|h| HistoryResponseItem {
                id: h
                    .id
                    .as_ref()
                    .map_or_else(|| "<missing>".to_owned(), ToString::to_string),
                created: h
                    .created
                    .as_deref()
                    .and_then(crate::time::parse_rfc3339)
                    .unwrap_or(0),
                created_by: h.created_by.unwrap_or_default(),
                tags: if h.id.is_some() {
                    img.repo_tags.iter().map(Reference::familiar).collect()
                } else {
                    Vec::new()
                },
                size: size_i64(h.size),
                comment: h.comment.unwrap_or_default(),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    ok_json(&items)
}

/// `POST /images/{name}/tag?repo=&tag=`.
pub(crate) async fn tag(
    state: &Arc<State>,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let repo = q
        .non_empty("repo")
        .ok_or_else(|| ApiError::bad_request("repository name (repo) must not be empty"))?;
    let tag = q.non_empty("tag").unwrap_or("latest");
    let target = Reference::parse(&format!("{repo}:{tag}"))?;
    if target.digest().is_some() {
        return Err(ApiError::bad_request(format!(
            "refusing to create a tag with a digest reference: {target}"
        )));
    }
    let store = state.store.clone();
    let name = name.to_owned();
    let t = target.clone();
    let id = blocking(move || {
        let img = store.image(&name)?;
        store.tag(&img.id.to_string(), &t)?;
        Ok(img.id.to_string())
    })
    .await?;
    state
        .events
        .publish("image", "tag", &id, &[("name", &target.familiar())]);
    Ok(http::status(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=&noprune=`.
pub(crate) async fn remove(
    state: &Arc<State>,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let force = q.bool("force");
    let noprune = q.bool("noprune");
    let store = state.store.clone();
    let name = name.to_owned();
    let removed = blocking(move || {
        let img = store.image(&name)?;
        let removed = store.remove_image(&name, force)?;
        if !noprune && removed.iter().any(|r| matches!(r, Removed::Deleted(_))) {
            if let Err(e) = store.gc() {
                tracing::warn!(error = %e, "garbage collection after an image removal failed");
            }
        }
        Ok((img.id, removed))
    })
    .await?;
    let (id, removed) = removed;
    let mut out = Vec::new();
    for r in removed {
        match r {
            Removed::Untagged(r) => {
                let f = r.familiar();
                state
                    .events
                    .publish("image", "untag", &id.to_string(), &[("name", &f)]);
                out.push(ImageDeleteResponseItem {
                    untagged: Some(f),
                    deleted: None,
                });
            }
            Removed::Deleted(d) => {
                state.events.publish(
                    "image",
                    "delete",
                    &d.to_string(),
                    &[("name", &d.to_string())],
                );
                out.push(ImageDeleteResponseItem {
                    untagged: None,
                    deleted: Some(d.to_string()),
                });
            }
        }
    }
    ok_json(&out)
}

/// `POST /images/prune?filters=`.
pub(crate) async fn prune(state: &Arc<State>, q: &Query) -> Result<Response<Body>, ApiError> {
    let filters = q.filters()?;
    filters.check(&["dangling"])?;
    let dangling_only = filters.bool("dangling")?.unwrap_or(true);
    let store = state.store.clone();
    let (before, report) = blocking(move || {
        let before = store.images();
        let report = store.prune(dangling_only)?;
        Ok((before, report))
    })
    .await?;
    let mut deleted = Vec::new();
    for id in &report.images {
        if let Some(img) = before.iter().find(|i| i.id == *id) {
            for r in img.repo_tags.iter().chain(&img.repo_digests) {
                deleted.push(ImageDeleteResponseItem {
                    untagged: Some(r.familiar()),
                    deleted: None,
                });
            }
        }
        deleted.push(ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(id.to_string()),
        });
        state.events.publish(
            "image",
            "delete",
            &id.to_string(),
            &[("name", &id.to_string())],
        );
    }
    ok_json(&ImagePruneResponse {
        images_deleted: Some(deleted),
        space_reclaimed: Some(size_i64(report.gc.bytes)),
    })
}

/// `X-Registry-Auth`: base64 (URL or standard alphabet) JSON of the credentials.
fn registry_auth(headers: &HeaderMap) -> Result<Option<Credential>, ApiError> {
    let Some(v) = headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s.is_empty() {
        return Ok(None);
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let raw = URL_SAFE
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .or_else(|_| STANDARD.decode(s))
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .map_err(|_| ApiError::bad_request("invalid X-Registry-Auth header: not base64"))?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth header: {e}")))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (user, pass, token) = (field("username"), field("password"), field("identitytoken"));
    if !token.is_empty() {
        return Ok(Some(Credential::IdentityToken {
            username: user,
            token,
        }));
    }
    if !user.is_empty() || !pass.is_empty() {
        return Ok(Some(Credential::Basic {
            username: user,
            password: pass,
        }));
    }
    let auth = field("auth");
    if let Some((u, p)) = STANDARD
        .decode(&auth)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
    {
        return Ok(Some(Credential::Basic {
            username: u,
            password: p,
        }));
    }
    Ok(None)
}

/// The registry client for a request: the shared one, or a fresh one with the request's
/// credentials (they must not leak to other requests).
fn client_for(state: &State, headers: &HeaderMap, registry: &str) -> Result<Client, ApiError> {
    match registry_auth(headers)? {
        None => Ok(state.client.clone()),
        Some(cred) => {
            let c = Client::new(state.registry.clone())?;
            c.set_credential(registry, cred);
            Ok(c)
        }
    }
}

/// One JSON message line of a progress stream.
fn line(v: &impl serde::Serialize) -> Bytes {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.extend_from_slice(b"\r\n");
    Bytes::from(s)
}

/// An error inside a progress stream (after the 200 was sent).
fn error_line(message: &str) -> Bytes {
    line(&json!({"errorDetail": {"message": message}, "error": message}))
}

/// Runs a pull or push on a blocking thread and streams its progress. Errors that happen
/// before the operation produced `hold` messages become a plain error response (so an
/// unknown tag is a 404, not a 200 with an error line).
async fn progress_stream<F, T>(
    hold: usize,
    cancel: Arc<AtomicBool>,
    work: F,
    finish: impl FnOnce(&T) -> Vec<Bytes> + Send + 'static,
) -> Result<Response<Body>, ApiError>
where
    F: FnOnce(&mut dyn FnMut(Progress)) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let (ptx, mut prx) = mpsc::channel::<Progress>(256);
    let task = tokio::task::spawn_blocking(move || {
        let mut send = |p: Progress| {
            let _ = ptx.blocking_send(p);
        };
        work(&mut send)
    });
    let mut held = Vec::new();
    while held.len() < hold {
        match prx.recv().await {
            Some(p) => held.push(p),
            None => break,
        }
    }
    let mut task = Some(task);
    if held.len() < hold {
        // The work ended early: report its error (or success) properly.
        if let Some(t) = task.take() {
            let result = t.await??;
            let (resp, tx) = http::streaming("application/json");
            tokio::spawn(async move {
                for p in held {
                    let _ = tx.send(Ok(line(&p))).await;
                }
                for b in finish(&result) {
                    let _ = tx.send(Ok(b)).await;
                }
            });
            return Ok(resp);
        }
    }
    let (resp, tx) = http::streaming("application/json");
    tokio::spawn(async move {
        let mut gone = false;
        for p in held {
            gone |= tx.send(Ok(line(&p))).await.is_err();
        }
        while let Some(p) = prx.recv().await {
            if !gone && tx.send(Ok(line(&p))).await.is_err() {
                gone = true;
                cancel.store(true, Ordering::Relaxed);
                tracing::info!("client went away: cancelling the transfer");
            }
        }
        let Some(task) = task else { return };
        match task.await {
            Ok(Ok(result)) => {
                for b in finish(&result) {
                    let _ = tx.send(Ok(b)).await;
                }
            }
            Ok(Err(e)) => {
                let _ = tx.send(Ok(error_line(&e.message))).await;
            }
            Err(e) => {
                let _ = tx.send(Ok(error_line(&e.to_string()))).await;
            }
        }
    });
    Ok(resp)
}

/// `POST /images/create`: pull (`fromImage`) or import (`fromSrc`).
pub(crate) async fn create<B>(
    state: &Arc<State>,
    q: &Query,
    headers: &HeaderMap,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    if let Some(src) = q.non_empty("fromSrc") {
        return import(state, q, src, body).await;
    }
    let from = q
        .non_empty("fromImage")
        .ok_or_else(|| ApiError::bad_request("fromImage or fromSrc must be given"))?;
    let tag = q.non_empty("tag");
    let text = match tag {
        Some(t) if t.contains(':') => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_owned(),
    };
    let mut reference = Reference::parse(&text)?;
    if reference.tag().is_none() && reference.digest().is_none() {
        reference = reference.with_tag("latest")?;
    }
    let platform = match q.non_empty("platform") {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| ApiError::bad_request(chain(&e)))?,
        None => Platform::host(),
    };
    let client = client_for(state, headers, reference.registry())?;
    let store = state.store.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = skiff_image::PullOptions {
        max_concurrent_downloads: state.config.max_concurrent_downloads,
        cancel: Some(cancel.clone()),
    };
    let r = reference.clone();
    tracing::info!(image = %reference, "pull");
    let st = state.clone();
    progress_stream(
        2,
        cancel,
        move |send| {
            let res = skiff_image::pull_with(&store, &client, &r, &platform, &opts, send)
                .map_err(|e| pull_error(&r, e))?;
            st.events
                .publish("image", "pull", &r.familiar(), &[("name", &r.familiar())]);
            Ok(res)
        },
        |_| Vec::new(),
    )
    .await
}

/// Docker's answer to a pull the registry refused: 404 "pull access denied" (a 401 would
/// make the CLI prompt for a password).
fn pull_error(r: &Reference, e: skiff_image::Error) -> ApiError {
    if e.registry_error()
        .is_some_and(skiff_registry::Error::is_unauthorized)
    {
        return ApiError::not_found(format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': {}",
            r.repository(),
            chain(&e)
        ));
    }
    e.into()
}

/// `POST /images/create?fromSrc=-&repo=&tag=&message=`: a tar body as a new image.
async fn import<B>(
    state: &Arc<State>,
    q: &Query,
    src: &str,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    if src != "-" {
        return Err(ApiError::bad_request(
            "importing from a URL is not supported by skiffd: download the file and import it from standard input",
        ));
    }
    let config = crate::changes::config_from_changes(&q.all("changes"))?;
    let tag = match q.non_empty("repo") {
        Some(repo) => {
            let t = q.non_empty("tag").unwrap_or("latest");
            let r = Reference::parse(repo)?;
            Some(if r.tag().is_some() { r } else { r.with_tag(t)? })
        }
        None => None,
    };
    let opts = ImportOptions {
        tag: tag.clone(),
        config,
        message: q.non_empty("message").map(str::to_owned),
        architecture: q
            .non_empty("platform")
            .and_then(|p| p.parse::<Platform>().ok())
            .map(|p| p.architecture),
    };
    let reader = http::body_reader(body);
    let store = state.store.clone();
    let img = blocking(move || Ok(store.import(reader, Compression::Detect, &opts)?)).await?;
    let name = tag.map_or_else(|| img.id.to_string(), |t| t.familiar());
    state
        .events
        .publish("image", "import", &img.id.to_string(), &[("name", &name)]);
    let mut r = Response::new(http::full(line(&json!({"status": img.id.to_string()}))));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `POST /images/{name}/push?tag=`.
pub(crate) async fn push(
    state: &Arc<State>,
    name: &str,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let base = Reference::parse(name)?;
    let targets: Vec<Reference> = match q.non_empty("tag") {
        Some(t) => vec![Reference::parse(&format!("{}:{t}", base.name()))?],
        None if base.tag().is_some() || base.digest().is_some() => vec![base.clone()],
        None => {
            let mut v: Vec<Reference> = state
                .store
                .images()
                .into_iter()
                .flat_map(|i| i.repo_tags)
                .filter(|t| t.name() == base.name())
                .collect();
            v.sort_by_key(ToString::to_string);
            v
        }
    };
    if targets.is_empty() {
        return Err(ApiError::not_found(format!(
            "An image does not exist locally with the tag: {}",
            base.familiar()
        )));
    }
    for t in &targets {
        if state.store.image(&t.to_string()).is_err() {
            return Err(ApiError::not_found(format!(
                "An image does not exist locally with the tag: {}",
                t.familiar()
            )));
        }
    }
    let client = client_for(state, headers, base.registry())?;
    let store = state.store.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = skiff_image::PushOptions {
        max_concurrent_uploads: state.config.max_concurrent_uploads,
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let st = state.clone();
    progress_stream(
        2,
        cancel,
        move |send| {
            for t in &targets {
                tracing::info!(image = %t, "push");
                skiff_image::push_with(&store, &client, t, &t.to_string(), &opts, send)?;
                st.events
                    .publish("image", "push", &t.familiar(), &[("name", &t.familiar())]);
            }
            Ok(())
        },
        |_| Vec::new(),
    )
    .await
}

/// `GET /images/get?names=...` and `GET /images/{name}/get`: a `docker save` tar stream.
pub(crate) async fn save(
    state: &Arc<State>,
    names: Vec<String>,
) -> Result<Response<Body>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given (names=...)"));
    }
    for n in &names {
        state.store.image(n)?;
    }
    let (resp, tx) = http::streaming("application/x-tar");
    let store = state.store.clone();
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = http::ChannelWriter::new(tx);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        match store.save(&refs, &mut w) {
            Ok(()) => {
                for n in &names {
                    if let Ok(i) = store.image(n) {
                        st.events
                            .publish("image", "save", &i.id.to_string(), &[("name", n)]);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %chain(&e), "save failed while streaming");
                w.abort(std::io::Error::other(chain(&e)));
            }
        }
    });
    Ok(resp)
}

/// `POST /images/load?quiet=`: a `docker save` (or OCI) archive body.
pub(crate) async fn load<B>(
    state: &Arc<State>,
    _q: &Query,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let reader = http::body_reader(body);
    let store = state.store.clone();
    let images = blocking(move || Ok(store.load(reader)?)).await?;
    let mut out = Vec::new();
    for img in &images {
        if img.repo_tags.is_empty() {
            out.extend_from_slice(&line(
                &json!({"stream": format!("Loaded image ID: {}\n", img.id)}),
            ));
            state.events.publish(
                "image",
                "load",
                &img.id.to_string(),
                &[("name", &img.id.to_string())],
            );
        }
        for t in &img.repo_tags {
            out.extend_from_slice(&line(
                &json!({"stream": format!("Loaded image: {}\n", t.familiar())}),
            ));
            state.events.publish(
                "image",
                "load",
                &img.id.to_string(),
                &[("name", &t.familiar())],
            );
        }
    }
    let mut r = Response::new(http::full(out));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header() {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::URL_SAFE
            .encode(br#"{"username":"u","password":"p","serveraddress":"r"}"#);
        h.insert("x-registry-auth", v.parse().unwrap());
        assert_eq!(
            registry_auth(&h).unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        h.insert("x-registry-auth", "e30=".parse().unwrap());
        assert_eq!(registry_auth(&h).unwrap(), None);
        h.insert("x-registry-auth", "!!".parse().unwrap());
        assert!(registry_auth(&h).is_err());
    }
}
