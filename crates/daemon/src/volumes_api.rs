//! `/volumes`: list, create, inspect, remove, prune.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::http::{self, Body, Query};
use crate::router::{blocking, ok_json};
use crate::volumes::{Volume, ANONYMOUS_LABEL};
use crate::State;

/// Docker's `Volume` object.
pub(crate) fn volume_json(v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": v.mountpoint.display().to_string(),
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
    })
}

/// `GET /volumes?filters=` (name, label, dangling, driver).
pub(crate) async fn list(state: &Arc<State>, q: &Query) -> Result<Response<Body>, ApiError> {
    let filters = q.filters()?;
    filters.check(&["name", "label", "dangling", "driver"])?;
    let dangling = filters.bool("dangling")?;
    let vs = state.volumes.clone();
    let vols = blocking(move || Ok(vs.list()?)).await?;
    let out: Vec<Value> = vols
        .iter()
        .filter(|v| {
            let names = filters.get("name");
            names.is_empty() || names.iter().any(|n| v.name.contains(n.as_str()))
        })
        .filter(|v| {
            let d = filters.get("driver");
            d.is_empty() || d.contains(&v.driver)
        })
        .filter(|v| filters.labels_match(|k| v.labels.get(k).map(String::as_str)))
        .filter(|v| dangling.is_none_or(|d| d == (state.volumes.ref_count(&v.name) == 0)))
        .map(volume_json)
        .collect();
    ok_json(&json!({"Volumes": out, "Warnings": null}))
}

/// `POST /volumes/create` `{Name, Driver, DriverOpts, Labels}` -> 201.
pub(crate) async fn create<B>(state: &Arc<State>, body: B) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let raw = http::read_body(body, 1 << 20).await?;
    let v: Value = if raw.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let map = |k: &str| -> BTreeMap<String, String> {
        v.get(k)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (name, driver, labels, opts) = (s("Name"), s("Driver"), map("Labels"), map("DriverOpts"));
    let mut labels = labels;
    if name.is_empty() {
        labels.insert(ANONYMOUS_LABEL.to_owned(), String::new());
    }
    let vs = state.volumes.clone();
    let vol = blocking(move || Ok(vs.create(&name, &driver, labels, opts)?)).await?;
    state
        .events
        .publish("volume", "create", &vol.name, &[("driver", "local")]);
    Ok(http::json(StatusCode::CREATED, &volume_json(&vol)))
}

/// `GET /volumes/{name}`.
pub(crate) async fn inspect(state: &Arc<State>, name: &str) -> Result<Response<Body>, ApiError> {
    let vs = state.volumes.clone();
    let name = name.to_owned();
    let v = blocking(move || Ok(vs.get(&name)?)).await?;
    ok_json(&volume_json(&v))
}

/// `DELETE /volumes/{name}?force=` -> 204.
pub(crate) async fn remove(
    state: &Arc<State>,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let vs = state.volumes.clone();
    let n = name.to_owned();
    let force = q.bool("force");
    let engine = state.engine.clone();
    blocking(move || {
        let users = crate::containers::volume_users(&engine);
        if let Some(ids) = users.get(&n).filter(|_| !force) {
            vs.get(&n)?;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("remove {n}: volume is in use - [{}]", ids.join(", ")),
            ));
        }
        Ok(vs.remove(&n, force)?)
    })
    .await?;
    state
        .events
        .publish("volume", "destroy", name, &[("driver", "local")]);
    Ok(http::status(StatusCode::NO_CONTENT))
}

/// `POST /volumes/prune?filters=` (label, all).
pub(crate) async fn prune(state: &Arc<State>, q: &Query) -> Result<Response<Body>, ApiError> {
    let filters = q.filters()?;
    filters.check(&["label", "label!", "all"])?;
    let all = filters.bool("all")?.unwrap_or(false);
    let vs = state.volumes.clone();
    let engine = state.engine.clone();
    let (names, bytes) = blocking(move || {
        let users = crate::containers::volume_users(&engine);
        let keep = |v: &Volume| {
            users.contains_key(&v.name)
                || !filters.labels_match(|k| v.labels.get(k).map(String::as_str))
                || filters
                    .get("label!")
                    .iter()
                    .any(|f| match f.split_once('=') {
                        Some((k, val)) => v.labels.get(k).map(String::as_str) == Some(val),
                        None => v.labels.contains_key(f.as_str()),
                    })
        };
        Ok(vs.prune(all, &keep)?)
    })
    .await?;
    for n in &names {
        state
            .events
            .publish("volume", "destroy", n, &[("driver", "local")]);
    }
    ok_json(&json!({"VolumesDeleted": names, "SpaceReclaimed": bytes}))
}
