//! In-process API tests: requests go straight to `Daemon::handle`, no socket.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use skiff_daemon::{Config, Daemon};

struct Fixture {
    _dir: tempfile::TempDir,
    daemon: Daemon,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path().join("root"), dir.path().join("s.sock"));
    let daemon = Daemon::new(cfg).unwrap();
    Fixture { _dir: dir, daemon }
}

async fn call(
    d: &Daemon,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, hyper::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = d.handle(req).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn ping_get_and_head() {
    let f = fixture();
    let (s, h, body) = call(&f.daemon, Method::GET, "/_ping", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, "OK");
    assert_eq!(h["api-version"], "1.47");
    assert_eq!(h["ostype"], "linux");
    assert_eq!(h["docker-experimental"], "false");
    assert_eq!(h["cache-control"], "no-cache, no-store, must-revalidate");
    assert_eq!(h["pragma"], "no-cache");
    assert!(h["server"].to_str().unwrap().starts_with("Docker/"));
    assert!(h.contains_key("builder-version"));
    let (s, h, body) = call(&f.daemon, Method::HEAD, "/v1.41/_ping", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, "");
    assert_eq!(h["api-version"], "1.47");
}

#[tokio::test]
async fn version_negotiation() {
    let f = fixture();
    for uri in ["/version", "/v1.24/version", "/v1.47/version"] {
        let (s, _, body) = call(&f.daemon, Method::GET, uri, "").await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ApiVersion"], "1.47");
        assert_eq!(v["MinAPIVersion"], "1.24");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Components"][0]["Name"], "Engine");
    }
    let (s, h, body) = call(&f.daemon, Method::GET, "/v1.50/version", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        body,
        r#"{"message":"client version 1.50 is too new. Maximum supported API version is 1.47"}"#
    );
    let (s, _, body) = call(&f.daemon, Method::GET, "/v1.12/info", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("is too old"), "{body}");
}

#[tokio::test]
async fn error_shapes() {
    let f = fixture();
    let (s, h, body) = call(&f.daemon, Method::GET, "/v1.47/images/nosuch/json", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(body, r#"{"message":"No such image: nosuch"}"#);
    let (s, _, body) = call(
        &f.daemon,
        Method::DELETE,
        "/images/localhost:5000/a/b:1",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, r#"{"message":"No such image: localhost:5000/a/b:1"}"#);
    let (s, _, body) = call(&f.daemon, Method::GET, "/volumes/nosuch", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, r#"{"message":"get nosuch: no such volume"}"#);
    let (s, _, body) = call(&f.daemon, Method::GET, "/plugins", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, r#"{"message":"page not found"}"#);
    let (s, _, body) = call(
        &f.daemon,
        Method::GET,
        "/images/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body, r#"{"message":"invalid filter 'bogus'"}"#);
    let (s, _, _) = call(&f.daemon, Method::POST, "/images/create", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, body) = call(
        &f.daemon,
        Method::POST,
        "/images/nosuch/tag?repo=x&tag=1",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn container_errors_use_docker_wording() {
    let f = fixture();
    let d = &f.daemon;
    let (s, _, body) = call(d, Method::GET, "/v1.47/containers/json?all=1", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, "[]");
    for (m, uri) in [
        (Method::GET, "/containers/nosuch/json"),
        (Method::POST, "/v1.47/containers/nosuch/start"),
        (Method::POST, "/containers/nosuch/wait?condition=next-exit"),
        (Method::DELETE, "/containers/nosuch?force=1"),
        (Method::GET, "/containers/nosuch/logs?stdout=1"),
    ] {
        let (s, _, body) = call(d, m, uri, "").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(body, r#"{"message":"No such container: nosuch"}"#, "{uri}");
    }
    // The CLI pulls on this 404 and retries.
    let (s, _, body) = call(
        d,
        Method::POST,
        "/containers/create?name=c1",
        r#"{"Image":"nosuch:1","Cmd":["true"],"ExposedPorts":{"80/tcp":{}},"Volumes":{"/data":{}}}"#,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body, r#"{"message":"No such image: nosuch:1"}"#);
    let (s, _, body) = call(d, Method::POST, "/containers/create", "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _, _) = call(d, Method::GET, "/exec/nosuch/json", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, body) = call(d, Method::POST, "/containers/prune", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, r#"{"ContainersDeleted":[],"SpaceReclaimed":0}"#);
}

#[tokio::test]
async fn volumes_and_events() {
    let f = fixture();
    let d = &f.daemon;
    let (s, _, body) = call(
        d,
        Method::POST,
        "/volumes/create",
        r#"{"Name":"data","Labels":{"app":"x"}}"#,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["app"], "x");
    assert!(v["Mountpoint"]
        .as_str()
        .unwrap()
        .ends_with("/volumes/data/_data"));
    let (s, _, body) = call(d, Method::POST, "/volumes/create", r#"{"Name":"bad/name"}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (_, _, body) = call(d, Method::POST, "/volumes/create", "{}").await;
    let anon: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (_, _, body) = call(
        d,
        Method::GET,
        "/volumes?filters=%7B%22label%22%3A%5B%22app%3Dx%22%5D%7D",
        "",
    )
    .await;
    let l: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(l["Volumes"].as_array().unwrap().len(), 1);
    assert_eq!(l["Volumes"][0]["Name"], "data");
    // Prune removes only the anonymous one by default.
    let (s, _, body) = call(d, Method::POST, "/volumes/prune", "").await;
    assert_eq!(s, StatusCode::OK);
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["VolumesDeleted"], serde_json::json!([anon["Name"]]));
    let (s, _, _) = call(d, Method::DELETE, "/volumes/data", "").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The events so far, then the stream ends at `until`.
    let (_, (secs, _)) = ((), skiff_daemon::time::now());
    let uri = format!(
        "/events?since=0&until={}&filters=%7B%22type%22%3A%5B%22volume%22%5D%7D",
        secs + 1
    );
    let (s, _, body) = call(d, Method::GET, &uri, "").await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<String> = body
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["Type"], "volume");
            assert_eq!(v["scope"], "local");
            v["Action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(actions, ["create", "create", "destroy", "destroy"]);
}

#[tokio::test]
async fn info_and_df() {
    let f = fixture();
    let (s, _, body) = call(&f.daemon, Method::GET, "/info", "").await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Images"], 0);
    assert_eq!(v["Containers"], 0);
    assert!(v["NCPU"].as_u64().unwrap() >= 1);
    assert!(v["MemTotal"].as_u64().unwrap() > 0);
    assert!(["overlay2", "vfs"].contains(&v["Driver"].as_str().unwrap()));
    assert!(["1", "2"].contains(&v["CgroupVersion"].as_str().unwrap()));
    assert_eq!(v["Swarm"]["LocalNodeState"], "inactive");
    assert!(v["DockerRootDir"].as_str().unwrap().ends_with("/root"));
    let (s, _, body) = call(&f.daemon, Method::GET, "/system/df", "").await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Images"], serde_json::json!([]));
    assert_eq!(v["LayersSize"], 0);
}
