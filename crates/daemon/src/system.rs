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
    let cfg = &state.config;
    let mut insecure = vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()];
    insecure.extend(cfg.insecure_registries.iter().cloned());
    let v = json!({
        "ID": state.id,
        "Containers": states.len(), "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": states.len() - running - paused,
        "Images": images,
        "Driver": driver,
        "DriverStatus": [["Data root", cfg.data_root.display().to_string()]],
        "Plugins": {"Volume": ["local"], "Network": [], "Authorization": null, "Log": []},
        "MemoryLimit": true, "SwapLimit": true, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": true,
        "Debug": cfg.log_level == "debug" || cfg.log_level == "trace",
        "NFd": 0, "NGoroutines": 0, "OomKillDisable": false,
        "SystemTime": crate::time::rfc3339(u64::try_from(crate::time::now().0).unwrap_or(0)),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": os_pretty_name(),
        "OSVersion": "",
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
        "InitBinary": "",
        "SecurityOptions": [],
        "Warnings": [],
    });
    ok_json(&v)
}

/// `GET /system/df`: images and volumes (containers come with the engine).
pub(crate) async fn df(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    let store = state.store.clone();
    let volumes = state.volumes.clone();
    let v = blocking(move || {
        let images = crate::images::summaries(&store);
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
                let refs = volumes.ref_count(&v.name);
                let mut j = crate::volumes_api::volume_json(&v);
                j["UsageData"] = json!({"Size": size, "RefCount": refs});
                j
            })
            .collect();
        Ok(json!({
            "LayersSize": layers_size,
            "Images": images.into_iter().map(|(s, _)| s).collect::<Vec<_>>(),
            "Containers": [],
            "Volumes": vols,
            "BuildCache": [],
        }))
    })
    .await?;
    ok_json(&v)
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
