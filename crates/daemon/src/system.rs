//! `/version`, `/info`, `/events`, `/system/df`, `/auth`.

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{SystemVersion, SystemVersionPlatform};
use bytes::Bytes;
use hyper::Response;
use serde_json::json;

use crate::error::{chain, ApiError};
use crate::events::parse_timestamp;
use crate::http::{self, Body, Query};
use crate::router::{blocking, ok_json};
use crate::{State, API_VERSION, MIN_API_VERSION, VERSION};

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn kernel() -> String {
    read_trim("/proc/sys/kernel/osrelease")
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// `GET /version`.
pub(crate) fn version(_state: &State) -> Response<Body> {
    let details = [
        ("ApiVersion", API_VERSION),
        ("MinAPIVersion", MIN_API_VERSION),
        ("Os", "linux"),
        ("Arch", arch()),
        ("GitCommit", ""),
        ("Experimental", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
    .collect::<serde_json::Map<_, _>>();
    let v = SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: format!("Skiff Engine {VERSION}"),
        }),
        // bollard-stubs 1.47 types `Details` as a map of units, so the
        // components are filled in as JSON below.
        components: None,
        version: Some(VERSION.into()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(String::new()),
        go_version: Some("n/a (Rust)".into()),
        os: Some("linux".into()),
        arch: Some(arch().into()),
        kernel_version: Some(kernel()),
        experimental: Some(false),
        build_time: Some(String::new()),
    };
    let mut v = serde_json::to_value(&v).unwrap_or_default();
    v["Components"] = serde_json::json!([{
        "Name": "Engine",
        "Version": VERSION,
        "Details": details,
    }]);
    http::json(hyper::StatusCode::OK, &v)
}

fn os_pretty_name() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn os_release_field(key: &str) -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default()
}

/// The file system type of the mount holding `path` (Docker's "Backing Filesystem" names
/// ext2/3/4 `extfs`).
fn backing_fs(path: &std::path::Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut best: Option<(usize, String)> = None;
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(mp), Some(ty)) = (f.get(1), f.get(2)) else {
            continue;
        };
        let mp = mp.replace("\\040", " ");
        if path.starts_with(&mp) && best.as_ref().is_none_or(|(n, _)| mp.len() >= *n) {
            best = Some((mp.len(), (*ty).to_owned()));
        }
    }
    match best.map(|(_, t)| t).as_deref() {
        Some("ext2" | "ext3" | "ext4") => "extfs".into(),
        Some(t) => t.into(),
        None => "unknown".into(),
    }
}

/// Swap limits need `memory.memsw.*` on cgroup v1 (`swapaccount=1`); v2 has `memory.swap.max`
/// in child groups whenever swap is compiled in.
fn swap_limit() -> bool {
    if cgroup_version() == "2" {
        return true;
    }
    std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
}

/// This process's open fds and threads (Docker's NFd and NGoroutines).
fn fds_and_threads() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (fds, threads)
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

/// `GET /info`.
pub(crate) async fn info(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    let store = state.store.clone();
    let images = blocking(move || Ok(store.images().len())).await?;
    let engine = state.engine.clone();
    let states = blocking(move || {
        let all = engine.list(true, &skiff_engine::Filters::new())?;
        Ok(all.into_iter().filter_map(|c| c.state).collect::<Vec<_>>())
    })
    .await?;
    let count = |s: &str| states.iter().filter(|x| x.as_str() == s).count();
    let (running, paused) = (count("running"), count("paused"));
    let driver = match state.store.driver() {
        skiff_store::Driver::Overlay => "overlay2",
        skiff_store::Driver::Vfs => "vfs",
    };
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let driver_status = match state.store.driver() {
        skiff_store::Driver::Overlay => json!([
            ["Backing Filesystem", backing_fs(&state.config.data_root)],
            ["Supports d_type", "true"],
            ["Using metacopy", "false"],
            ["Native Overlay Diff", "true"],
            ["userxattr", "false"],
        ]),
        skiff_store::Driver::Vfs => json!([]),
    };
    let swap = swap_limit();
    let mut warnings = Vec::new();
    if !swap {
        warnings.push("WARNING: No swap limit support".to_owned());
    }
    let mut security = vec!["name=seccomp,profile=default".to_owned()];
    if cgroup_version() == "2" {
        security.push("name=cgroupns".into());
    }
    let (nfd, nthreads) = fds_and_threads();
    let cfg = &state.config;
    let mut insecure = vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()];
    insecure.extend(cfg.insecure_registries.iter().cloned());
    let v = json!({
        "ID": state.id,
        "Containers": states.len(), "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": states.len() - running - paused,
        "Images": images,
        "Driver": driver,
        "DriverStatus": driver_status,
        "Plugins": {"Volume": ["local"], "Network": [], "Authorization": null, "Log": []},
        "MemoryLimit": true, "SwapLimit": swap, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": true,
        "Debug": cfg.log_level == "debug" || cfg.log_level == "trace",
        "NFd": nfd, "NGoroutines": nthreads, "OomKillDisable": false,
        "SystemTime": crate::time::rfc3339(u64::try_from(crate::time::now().0).unwrap_or(0)),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": os_pretty_name(),
        "OSVersion": os_release_field("VERSION_ID"),
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": null,
            "AllowNondistributableArtifactsHostnames": null,
            "InsecureRegistryCIDRs": insecure,
            "IndexConfigs": {},
            "Mirrors": cfg.registry_mirrors,
        },
        "NCPU": ncpu,
        "MemTotal": mem_total(),
        "GenericResources": null,
        "DockerRootDir": cfg.data_root.display().to_string(),
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": read_trim("/proc/sys/kernel/hostname"),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": {"runc": {"path": "skiff-runtime"}},
        "DefaultRuntime": "runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": format!("skiff-runtime {VERSION}"), "Expected": format!("skiff-runtime {VERSION}")},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": security,
        "Warnings": warnings,
    });
    ok_json(&v)
}

/// Every container with its `SizeRw` and `SizeRootFs`.
pub(crate) fn containers_with_sizes(
    engine: &skiff_engine::Engine,
) -> Result<Vec<bollard_stubs::models::ContainerSummary>, ApiError> {
    let mut all = engine.list(true, &skiff_engine::Filters::new())?;
    for c in &mut all {
        add_size(engine, c);
    }
    Ok(all)
}

/// Fills `SizeRw` and `SizeRootFs` of a container summary (left out if unknown).
pub(crate) fn add_size(
    engine: &skiff_engine::Engine,
    c: &mut bollard_stubs::models::ContainerSummary,
) {
    let Some(id) = c.id.as_deref() else { return };
    match engine.size(id) {
        Ok((rw, rootfs)) => {
            c.size_rw = Some(rw);
            c.size_root_fs = Some(rootfs);
        }
        Err(e) => tracing::debug!(container = id, "size: {e}"),
    }
}

/// `GET /system/df`: layers, images (with how many containers use each), containers with
/// their sizes, volumes with their usage.
pub(crate) async fn df(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    let store = state.store.clone();
    let volumes = state.volumes.clone();
    let engine = state.engine.clone();
    let v = blocking(move || {
        let containers = containers_with_sizes(&engine)?;
        let users = crate::containers::volume_users(&engine);
        let mut per_image: std::collections::HashMap<String, i64> = Default::default();
        for c in &containers {
            *per_image
                .entry(c.image_id.clone().unwrap_or_default())
                .or_default() += 1;
        }
        let mut images = crate::images::summaries(&store);
        for (s, _) in &mut images {
            s.containers = per_image.get(&s.id).copied().unwrap_or(0);
        }
        let mut seen = std::collections::HashSet::new();
        let mut layers_size = 0u64;
        for (_, img) in &images {
            for l in &img.layers {
                if seen.insert(l.chain_id.clone()) {
                    layers_size += store.snapshot(&l.chain_id).map_or(0, |s| s.size);
                }
            }
        }
        let vols: Vec<serde_json::Value> = volumes
            .list()?
            .into_iter()
            .map(|v| {
                let size = crate::volumes::dir_size(&v.mountpoint);
                let refs = users.get(&v.name).map_or(0, Vec::len);
                let mut j = crate::volumes_api::volume_json(&v);
                j["UsageData"] = json!({"Size": size, "RefCount": refs});
                j
            })
            .collect();
        Ok(json!({
            "LayersSize": layers_size,
            "Images": images.into_iter().map(|(s, _)| s).collect::<Vec<_>>(),
            "Containers": containers,
            "Volumes": vols,
            "BuildCache": [],
        }))
    })
    .await?;
    ok_json(&v)
}

/// Docker's `until` filter: a unix time, RFC 3339, or a Go duration back from now (`24h`,
/// `1h30m`); in seconds since the epoch.
pub(crate) fn parse_until(s: &str) -> Option<i64> {
    if let Some(ns) = parse_timestamp(s) {
        return Some(ns.div_euclid(1_000_000_000));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        num.clear();
        num.push_str(&rest[..digits]);
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let n: f64 = num.parse().ok()?;
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    if num.is_empty() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    let back = total as i64;
    Some(crate::time::now().0 - back)
}

/// Whether `labels` pass the `label` (all must match) and `label!` (none may match) filters.
pub(crate) fn labels_pass(
    filters: &crate::http::Filters,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    let has = |f: &String| match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(f.as_str()),
    };
    filters.get("label").iter().all(has) && !filters.get("label!").iter().any(has)
}

/// `POST /containers/prune?filters=`: removes every container that is not running and
/// matches the `label`, `label!` and `until` filters; reports their size as reclaimed.
pub(crate) async fn prune_containers(
    state: &Arc<State>,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let filters = q.filters()?;
    filters.check(&["label", "label!", "until"])?;
    let until = match filters.get("until") {
        [] => None,
        [u] => Some(
            parse_until(u)
                .ok_or_else(|| ApiError::bad_request(format!("invalid until filter {u:?}")))?,
        ),
        _ => return Err(ApiError::bad_request("more than one until filter")),
    };
    let engine = state.engine.clone();
    let (removed, reclaimed) = blocking(move || {
        let mut removed = Vec::new();
        let mut reclaimed = 0i64;
        for c in engine.list(true, &skiff_engine::Filters::new())? {
            let Some(id) = c.id else { continue };
            let Ok(rec) = engine.record(&id) else {
                continue;
            };
            if rec.state.status.is_running() || rec.state.status == skiff_engine::Status::Restarting
            {
                continue;
            }
            let labels = rec.config.labels.clone().unwrap_or_default();
            if !labels_pass(&filters, &labels) {
                continue;
            }
            let created = crate::time::parse_rfc3339(&rec.created).unwrap_or(0);
            if until.is_some_and(|u| created >= u) {
                continue;
            }
            let size = engine.size(&id).map_or(0, |(rw, _)| rw);
            match engine.remove(&id, false, false) {
                Ok(()) => {
                    reclaimed += size;
                    removed.push(id);
                }
                Err(e) => tracing::warn!(container = %id, "prune: {e}"),
            }
        }
        Ok((removed, reclaimed))
    })
    .await?;
    for id in &removed {
        state.execs.forget_container(id);
    }
    if !removed.is_empty() {
        state.events.publish(
            "container",
            "prune",
            "",
            &[("reclaimed", &reclaimed.to_string())],
        );
    }
    ok_json(&json!({ "ContainersDeleted": removed, "SpaceReclaimed": reclaimed }))
}

/// `POST /build/prune`: skiffd keeps no build cache (the legacy builder's steps are images).
pub(crate) fn build_prune() -> Result<Response<Body>, ApiError> {
    ok_json(&json!({ "CachesDeleted": [], "SpaceReclaimed": 0 }))
}

/// `GET /events?since=&until=&filters=`: past events since `since`, then live ones until
/// `until` (or forever), headers flushed at once.
pub(crate) fn events(state: &Arc<State>, q: &Query) -> Result<Response<Body>, ApiError> {
    let filters = q.filters()?;
    let ts = |k: &str| -> Result<Option<i64>, ApiError> {
        match q.non_empty(k) {
            None => Ok(None),
            Some(s) => parse_timestamp(s)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid {k} timestamp {s:?}"))),
        }
    };
    let since = ts("since")?;
    let until = ts("until")?;
    let (past, mut rx) = state.events.subscribe(since);
    let (resp, tx) = http::streaming("application/json");
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let send = |e: &crate::events::Event| {
            let mut s = serde_json::to_vec(&e.to_json()).unwrap_or_default();
            s.push(b'\n');
            Bytes::from(s)
        };
        for e in past {
            if until.is_some_and(|u| e.time_nano > u) {
                return;
            }
            if e.matches(&filters) && tx.send(Ok(send(&e))).await.is_err() {
                return;
            }
        }
        let deadline = until.map(|u| {
            let now = crate::time::now().1;
            Duration::from_nanos(u64::try_from(u.saturating_sub(now)).unwrap_or(0))
        });
        let sleep = tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(u64::MAX / 4)));
        tokio::pin!(sleep);
        if *shutdown.borrow() {
            return;
        }
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
                r = rx.recv() => match r {
                    Ok(e) => {
                        if e.matches(&filters) && tx.send(Ok(send(&e))).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "an events listener fell behind");
                    }
                    Err(_) => return,
                }
            }
        }
    });
    Ok(resp)
}

/// `POST /auth`: checks credentials against a registry (nothing is stored by the daemon;
/// the CLI keeps them).
pub(crate) async fn auth<B>(state: &Arc<State>, body: B) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let raw = http::read_body(body, 1 << 20).await?;
    let v: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (user, pass) = (field("username"), field("password"));
    let server = match field("serveraddress") {
        s if s.is_empty() => "docker.io".to_owned(),
        s => s,
    };
    let mut cfg = state.registry.clone();
    let scratch = tempfile_dir(&state.config.data_root)?;
    cfg.docker_config_dir = Some(scratch.clone());
    let result = blocking(move || {
        let client = skiff_registry::Client::new(cfg)?;
        let r = client.login(&server, &user, &pass);
        let _ = std::fs::remove_dir_all(&scratch);
        r.map_err(|e| {
            let mut a: ApiError = e.into();
            if a.status == hyper::StatusCode::UNAUTHORIZED
                || a.status == hyper::StatusCode::FORBIDDEN
            {
                a.message = format!("login attempt to {server} failed: {}", a.message);
            }
            a
        })?;
        Ok(())
    })
    .await;
    result?;
    ok_json(&json!({"Status": "Login Succeeded", "IdentityToken": ""}))
}

/// A fresh private folder for a login's throw-away `config.json`.
fn tempfile_dir(root: &std::path::Path) -> Result<std::path::PathBuf, ApiError> {
    let base = root.join("tmp");
    let (_, n) = crate::time::now();
    let p = base.join(format!("auth-{n}"));
    std::fs::create_dir_all(&p)
        .map_err(|e| ApiError::internal(format!("creating {}: {}", p.display(), chain(&e))))?;
    Ok(p)
}
