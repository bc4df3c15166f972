//! Integration tests against a real registry: Debian's `docker-registry` (CNCF distribution
//! 2.8) started on 127.0.0.1 by each test, plain, with htpasswd basic auth, or with bearer
//! tokens from `fixtures/tokenserver.py`.
//!
//! Without `docker-registry`, `htpasswd`, `openssl` or `python3` the tests print why and pass
//! without checking anything, unless `SKIFF_REQUIRE_REGISTRY` is set.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_reference::{Digest, Reference};
use skiff_registry::{
    sha256_digest, Client, Config, Descriptor, Error, Platform, UploadMode, DOCKER_CONFIG,
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
use tempfile::TempDir;

const USER: &str = "testuser";
const PASS: &str = "testpass";

// ---------------------------------------------------------------- harness

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            fs::metadata(d.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Whether the tools are here; prints why not (or panics if SKIFF_REQUIRE_REGISTRY is set).
fn tools() -> bool {
    let missing: Vec<&str> = ["docker-registry", "htpasswd", "openssl", "python3"]
        .into_iter()
        .filter(|c| !on_path(c))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "registry integration test needs {} (apt-get install docker-registry apache2-utils \
         openssl python3)",
        missing.join(", ")
    );
    if std::env::var_os("SKIFF_REQUIRE_REGISTRY").is_some() {
        panic!("{msg}, and SKIFF_REQUIRE_REGISTRY is set");
    }
    // Straight to stderr, past the test harness's capture, so that the skip is seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    None,
    Basic,
    Token { ttl: u32 },
}

/// A registry (and token server) running for one test; killed on drop.
struct Registry {
    dir: TempDir,
    port: u16,
    children: Vec<Child>,
}

impl Registry {
    fn start(auth: Auth) -> Registry {
        Registry::start_with(auth, false)
    }

    /// With `tls`, HTTPS only, with a certificate for 127.0.0.1 signed by a CA (`ca.crt`).
    fn start_with(auth: Auth, tls: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut reg = Registry {
            dir,
            port,
            children: Vec::new(),
        };
        let d = reg.dir.path().to_owned();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\n  redirect:\n    disable: true\n  maintenance:\n    \
             uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: skiff-test\n",
            d.join("storage").display()
        );
        let mut auth_yaml = String::new();
        match auth {
            Auth::None => {}
            Auth::Basic => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", USER, PASS])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "htpasswd failed");
                fs::write(d.join("htpasswd"), out.stdout).unwrap();
                auth_yaml.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    d.join("htpasswd").display()
                ));
            }
            Auth::Token { ttl } => {
                let st = Command::new("openssl")
                    .args([
                        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    ])
                    .args(["-subj", "/CN=test-token-issuer", "-keyout"])
                    .arg(d.join("token.key"))
                    .arg("-out")
                    .arg(d.join("token.crt"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.success(), "openssl failed");
                let token_port = free_port();
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenserver.py");
                let child = Command::new("python3")
                    .arg(script)
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{token_port}"))
                    .arg("--key")
                    .arg(d.join("token.key"))
                    .arg("--cert")
                    .arg(d.join("token.crt"))
                    .args([
                        "--issuer",
                        "test-token-issuer",
                        "--service",
                        "test-registry",
                    ])
                    .args(["--user", USER, "--password", PASS])
                    .args(["--ttl", &ttl.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(fs::File::create(d.join("token.log")).unwrap())
                    .spawn()
                    .unwrap();
                reg.children.push(child);
                wait_for(token_port, "/token");
                auth_yaml.push_str(&format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    \
                     service: test-registry\n    issuer: test-token-issuer\n    rootcertbundle: {}\n",
                    d.join("token.crt").display()
                ));
            }
        }
        if tls {
            // a CA, and a server certificate for 127.0.0.1 signed by it
            let p = |name: &str| d.join(name).display().to_string();
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=skiff-test-ca",
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.crt"),
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &p("tls.key"),
                "-out",
                &p("tls.csr"),
            ]);
            fs::write(
                d.join("ext.cnf"),
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
            )
            .unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                &p("tls.csr"),
                "-CA",
                &p("ca.crt"),
                "-CAkey",
                &p("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &p("ext.cnf"),
                "-out",
                &p("tls.crt"),
            ]);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("tls.crt").display(),
                d.join("tls.key").display()
            ));
        }
        config.push_str(&auth_yaml);
        fs::write(d.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(fs::File::create(d.join("registry.log")).unwrap())
            .stderr(fs::File::create(d.join("registry.err")).unwrap())
            .spawn()
            .unwrap();
        reg.children.push(child);
        wait_for(port, "/v2/");
        reg
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn reference(&self, s: &str) -> Reference {
        Reference::parse(&format!("{}/{s}", self.host())).unwrap()
    }

    /// Token requests logged by the token server.
    fn token_log(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.dir.path().join("token.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn openssl(args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?} failed");
}

/// Waits until something answers HTTP on the port.
fn wait_for(port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.write_all(req.as_bytes()).is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing answered on 127.0.0.1:{port} within 20 s");
}

fn client_with(config_dir: &Path) -> Client {
    Client::new(Config {
        docker_config_dir: Some(config_dir.to_owned()),
        certs_dir: None,
        retry_delay: Duration::from_millis(20),
        ..Config::default()
    })
    .unwrap()
}

// ---------------------------------------------------------------- test images

struct Blob {
    bytes: Vec<u8>,
    digest: Digest,
    media_type: &'static str,
}

impl Blob {
    fn new(bytes: Vec<u8>, media_type: &'static str) -> Blob {
        Blob {
            digest: sha256_digest(&bytes),
            bytes,
            media_type,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.bytes.len(),
        })
    }
}

/// A gzip layer holding `files` (path, content).
fn layer(files: &[(&str, Vec<u8>)], media_type: &'static str) -> Blob {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    Blob::new(gz.finish().unwrap(), media_type)
}

struct Image {
    config: Blob,
    layers: Vec<Blob>,
    manifest: Vec<u8>,
    media_type: &'static str,
}

/// An image for `platform` (`linux/arm64/v8`); Docker media types if `docker`.
fn image(platform: &str, docker: bool, big: bool) -> Image {
    let parts: Vec<&str> = platform.split('/').collect();
    let (layer_type, config_type, manifest_type) = if docker {
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            DOCKER_CONFIG,
            DOCKER_MANIFEST,
        )
    } else {
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            OCI_CONFIG,
            OCI_MANIFEST,
        )
    };
    // Incompressible-ish data so that layers span several upload chunks.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..if big { 300_000 } else { 5_000 })
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect();
    let layers = vec![
        layer(
            &[("etc/fixture-platform", format!("{platform}\n").into_bytes())],
            layer_type,
        ),
        layer(&[("data/noise.bin", noise)], layer_type),
    ];
    let mut config = serde_json::json!({
        "architecture": parts[1],
        "os": parts[0],
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    if let Some(v) = parts.get(2) {
        config["variant"] = (*v).into();
    }
    let config = Blob::new(serde_json::to_vec(&config).unwrap(), config_type);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    Image {
        config,
        layers,
        manifest: serde_json::to_vec(&manifest).unwrap(),
        media_type: manifest_type,
    }
}

/// Pushes an image's blobs (first layer monolithic, the rest chunked) and its manifest
/// under `tag`; returns the manifest digest.
fn push_image(client: &Client, reference: &Reference, img: &Image) -> Digest {
    for (i, blob) in std::iter::once(&img.config).chain(&img.layers).enumerate() {
        if client.blob_exists(reference, &blob.digest).unwrap() {
            continue;
        }
        let mode = if i == 1 {
            UploadMode::Monolithic
        } else {
            UploadMode::Chunked(64 * 1024)
        };
        client
            .push_blob(
                reference,
                &blob.digest,
                blob.bytes.len() as u64,
                &mut blob.bytes.as_slice(),
                mode,
            )
            .unwrap();
        assert!(client.blob_exists(reference, &blob.digest).unwrap());
    }
    client
        .put_manifest(reference, img.media_type, &img.manifest)
        .unwrap()
}

fn read_blob(client: &Client, reference: &Reference, d: &Descriptor) -> Vec<u8> {
    let mut out = Vec::new();
    client
        .fetch_blob(reference, d)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Checks that `reference` resolves to `img` for the host and that its blobs come back.
fn check_pull(client: &Client, reference: &Reference, img: &Image, digest: &Digest) {
    let r = client.resolve(reference, &Platform::host()).unwrap();
    assert_eq!(&r.digest, digest);
    assert_eq!(r.manifest.bytes, img.manifest);
    assert_eq!(r.manifest.media_type, img.media_type);
    assert_eq!(r.config.digest().as_ref(), img.config.digest.to_string());
    assert_eq!(r.layers.len(), img.layers.len());
    let config = client
        .fetch_blob_bytes(reference, &r.config, 1 << 20)
        .unwrap();
    assert_eq!(config, img.config.bytes);
    for (d, blob) in r.layers.iter().zip(&img.layers) {
        assert_eq!(read_blob(client, reference, d), blob.bytes);
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn plain_push_pull_mount_tags_delete() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::None);
    let cfg = tempfile::tempdir().unwrap();
    let client = client_with(cfg.path());
    let app = reg.reference("test/app:v1");
    let img = image("linux/amd64", false, true);
    assert!(
        img.layers[1].bytes.len() > 3 * 64 * 1024,
        "chunked upload needs several chunks"
    );
    assert!(!client.blob_exists(&app, &img.layers[0].digest).unwrap());

    let digest = push_image(&client, &app, &img);
    assert_eq!(digest, sha256_digest(&img.manifest));
    check_pull(&client, &app, &img, &digest);
    // by digest too
    let by_digest = reg.reference(&format!("test/app@{digest}"));
    assert_eq!(client.fetch_manifest(&by_digest).unwrap().digest, digest);

    // cross-repository mount, and a mount the registry must decline
    let other = reg.reference("other/app:v2");
    for blob in std::iter::once(&img.config).chain(&img.layers) {
        assert!(client.mount_blob(&other, &blob.digest, "test/app").unwrap());
    }
    let absent = sha256_digest(b"not there");
    assert!(!client.mount_blob(&other, &absent, "test/app").unwrap());
    client
        .put_manifest(&other, img.media_type, &img.manifest)
        .unwrap();
    check_pull(&client, &other, &img, &digest);

    // tags
    client
        .put_manifest(
            &app.with_tag("v1.1").unwrap(),
            img.media_type,
            &img.manifest,
        )
        .unwrap();
    let mut tags = client.list_tags(&app).unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v1.1"]);

    // not found: tag, repository, blob
    let err = client
        .fetch_manifest(&reg.reference("test/app:nope"))
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("MANIFEST_UNKNOWN"), "{err}");
    let err = client
        .resolve(&reg.reference("no/such:1"), &Platform::host())
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let missing: Descriptor =
        serde_json::from_value(Blob::new(b"x".to_vec(), OCI_CONFIG).descriptor()).unwrap();
    let err = client.fetch_blob(&app, &missing).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // delete by digest
    client
        .delete_manifest(&other.with_digest(digest.clone()))
        .unwrap();
    let err = client.fetch_manifest(&other).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // a bad chunked upload is refused before it is committed
    let wrong = sha256_digest(b"something else");
    let err = client
        .push_blob(&app, &wrong, 5, &mut &b"hello"[..], UploadMode::Chunked(2))
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    // and a bad monolithic one by the registry
    let err = client
        .push_blob(&app, &wrong, 5, &mut &b"hello"[..], UploadMode::Monolithic)
        .unwrap_err();
    assert!(err.to_string().contains("DIGEST_INVALID"), "{err}");
}

#[test]
fn platform_selection_from_oci_index_and_docker_list() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::None);
    let cfg = tempfile::tempdir().unwrap();
    let client = client_with(cfg.path());
    for docker in [false, true] {
        let reference = reg.reference(if docker { "multi:v2s2" } else { "multi:latest" });
        let platforms = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"];
        let mut entries = Vec::new();
        let mut digests = Vec::new();
        for p in platforms {
            let img = image(p, docker, false);
            let d = push_image(&client, &reference.with_tag("tmp").unwrap(), &img);
            let parts: Vec<&str> = p.split('/').collect();
            let mut platform = serde_json::json!({"os": parts[0], "architecture": parts[1]});
            // arm64 written without its (default) variant, as many images do
            if let Some(v) = parts.get(2).filter(|v| **v != "v8") {
                platform["variant"] = (*v).into();
            }
            entries.push(serde_json::json!({
                "mediaType": img.media_type,
                "digest": d.to_string(),
                "size": img.manifest.len(),
                "platform": platform,
            }));
            digests.push(d);
        }
        if !docker {
            // a BuildKit attestation manifest pointing at the amd64 image, listed first
            let att = image("linux/amd64", false, false);
            let mut att_manifest: serde_json::Value =
                serde_json::from_slice(&att.manifest).unwrap();
            att_manifest["layers"][0]["mediaType"] = "application/vnd.in-toto+json".into();
            let bytes = serde_json::to_vec(&att_manifest).unwrap();
            let d = client
                .put_manifest(&reference.with_tag("att").unwrap(), OCI_MANIFEST, &bytes)
                .unwrap();
            entries.insert(
                0,
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": d.to_string(),
                    "size": bytes.len(),
                    "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {
                        "vnd.docker.reference.type": "attestation-manifest",
                        "vnd.docker.reference.digest": digests[0].to_string(),
                    }
                }),
            );
        }
        let media_type = if docker {
            DOCKER_MANIFEST_LIST
        } else {
            OCI_INDEX
        };
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": entries,
        }))
        .unwrap();
        let index_digest = client.put_manifest(&reference, media_type, &index).unwrap();

        for (want, expected) in [
            ("linux/amd64", 0),
            ("linux/arm64", 1),
            ("linux/arm64/v8", 1),
            ("linux/arm", 2),
            ("linux/arm/v7", 2),
        ] {
            let r = client.resolve(&reference, &want.parse().unwrap()).unwrap();
            assert_eq!(r.digest, index_digest, "{want}");
            assert_eq!(r.manifest.digest, digests[expected], "{want}");
            assert_eq!(r.index.as_ref().unwrap().media_type, media_type);
            assert_eq!(r.platform.unwrap().to_string(), platforms[expected]);
            // the first layer says which platform it is
            let mut gz =
                flate2::read::GzDecoder::new(client.fetch_blob(&reference, &r.layers[0]).unwrap());
            let mut tar_bytes = Vec::new();
            gz.read_to_end(&mut tar_bytes).unwrap();
            let text = String::from_utf8_lossy(&tar_bytes);
            assert!(
                text.contains(&format!("{}\n", platforms[expected])),
                "{want}"
            );
        }
        // the host (linux/amd64 here) is the default
        if Platform::host().to_string() == "linux/amd64" {
            let r = client.resolve(&reference, &Platform::host()).unwrap();
            assert_eq!(r.manifest.digest, digests[0]);
        }
        let err = client
            .resolve(&reference, &"linux/s390x".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, Error::NoMatchingPlatform { .. }), "{err}");
        assert!(
            err.to_string()
                .ends_with("it has: linux/amd64, linux/arm64/v8, linux/arm/v7"),
            "{err}"
        );
    }
}

#[test]
fn basic_auth_and_login() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Basic);
    let cfg = tempfile::tempdir().unwrap();
    let client = client_with(cfg.path());
    let app = reg.reference("secret/app:1");
    let img = image("linux/amd64", true, false);

    // no credentials
    let err = client.blob_exists(&app, &img.config.digest).unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    let err = client.fetch_manifest(&app).unwrap_err();
    assert!(err.is_unauthorized(), "{err}");

    // wrong password: refused, nothing written
    let err = client.login(&reg.host(), USER, "wrong").unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(!cfg.path().join("config.json").exists());

    let path = client.login(&reg.host(), USER, PASS).unwrap();
    assert_eq!(path, cfg.path().join("config.json"));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert!(saved["auths"][reg.host()]["auth"].is_string(), "{saved}");

    let digest = push_image(&client, &app, &img);
    // a new client reads the credentials file
    let fresh = client_with(cfg.path());
    check_pull(&fresh, &app, &img, &digest);
}

#[test]
fn token_auth_scopes_and_errors() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Token { ttl: 300 });
    let cfg = tempfile::tempdir().unwrap();
    let anon = client_with(cfg.path());
    let app = reg.reference("tok/app:1");
    let img = image("linux/amd64", false, false);

    // anonymous: pull-only tokens, so a push is refused
    assert!(!anon.blob_exists(&app, &img.config.digest).unwrap());
    let blob = &img.config;
    let err = anon
        .push_blob(
            &app,
            &blob.digest,
            blob.bytes.len() as u64,
            &mut blob.bytes.as_slice(),
            UploadMode::Monolithic,
        )
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");

    let err = anon.login(&reg.host(), USER, "wrong").unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    anon.login(&reg.host(), USER, PASS).unwrap();
    let digest = push_image(&anon, &app, &img);
    // cross-repository mount asks for both scopes in one token
    assert!(anon
        .mount_blob(
            &reg.reference("tok/copy:1"),
            &img.layers[0].digest,
            "tok/app"
        )
        .unwrap());

    // anonymous pull of the pushed image works (the token server grants pull)
    let other_cfg = tempfile::tempdir().unwrap();
    let puller = client_with(other_cfg.path());
    check_pull(&puller, &app, &img, &digest);

    let log = reg.token_log();
    let scopes: Vec<String> = log
        .iter()
        .flat_map(|r| r["scope"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    assert!(
        scopes.contains(&"repository:tok/app:pull,push".to_owned()),
        "{scopes:?}"
    );
    assert!(
        scopes.contains(&"repository:tok/app:pull".to_owned()),
        "{scopes:?}"
    );
    let mount = log
        .iter()
        .find(|r| r["scope"].as_array().is_some_and(|s| s.len() == 2))
        .expect("a token request with two scopes");
    assert_eq!(
        mount["scope"],
        serde_json::json!(["repository:tok/copy:pull,push", "repository:tok/app:pull"])
    );
    assert!(
        log.iter().any(|r| r["result"] == 401),
        "the wrong password was tried"
    );
    // tokens are cached: far fewer token requests than registry requests
    let pushes = log.iter().filter(|r| r["user"] == USER).count();
    assert!(pushes <= 6, "{pushes} token requests: {log:?}");
}

#[test]
fn token_refresh_after_expiry() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Token { ttl: 2 });
    let cfg = tempfile::tempdir().unwrap();
    let client = client_with(cfg.path());
    client.login(&reg.host(), USER, PASS).unwrap();
    let app = reg.reference("ttl/app:1");
    let img = image("linux/amd64", false, false);
    let digest = push_image(&client, &app, &img);
    let count = |reg: &Registry| {
        reg.token_log()
            .iter()
            .filter(|r| r["scope"] == serde_json::json!(["repository:ttl/app:pull"]))
            .count()
    };
    client.fetch_manifest(&app).unwrap();
    client.fetch_manifest(&app).unwrap();
    assert_eq!(count(&reg), 1, "the second fetch reuses the token");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(client.fetch_manifest(&app).unwrap().digest, digest);
    assert_eq!(count(&reg), 2, "an expired token is fetched again");
}

#[test]
fn docker_io_mirrors_in_order() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::None);
    let cfg = tempfile::tempdir().unwrap();
    let img = image("linux/amd64", true, false);
    let pusher = client_with(cfg.path());
    let digest = push_image(&pusher, &reg.reference("library/mirrored:1"), &img);

    let dead = free_port();
    let client = Client::new(Config {
        docker_config_dir: Some(cfg.path().to_owned()),
        certs_dir: None,
        mirrors: vec![
            format!("http://127.0.0.1:{dead}"),
            format!("http://{}/", reg.host()),
        ],
        ..Config::default()
    })
    .unwrap();
    // `mirrored` is docker.io/library/mirrored: served by the second mirror
    let reference = Reference::parse("mirrored:1").unwrap();
    check_pull(&client, &reference, &img, &digest);
}

#[test]
fn https_with_a_certs_d_ca() {
    if !tools() {
        return;
    }
    let reg = Registry::start_with(Auth::None, true);
    let cfg = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    fs::create_dir(certs.path().join(reg.host())).unwrap();
    fs::copy(
        reg.dir.path().join("ca.crt"),
        certs.path().join(reg.host()).join("ca.crt"),
    )
    .unwrap();
    let client = Client::new(Config {
        docker_config_dir: Some(cfg.path().to_owned()),
        certs_dir: Some(certs.path().to_owned()),
        ..Config::default()
    })
    .unwrap();
    // the registry speaks only HTTPS: this works only if the CA file is trusted
    let app = reg.reference("tls/app:1");
    let img = image("linux/amd64", false, false);
    let digest = push_image(&client, &app, &img);
    check_pull(&client, &app, &img, &digest);

    // without the CA: HTTPS fails, the plain-HTTP fallback gets a 400, and the HTTPS error
    // is the one reported
    let untrusting = client_with(cfg.path());
    let err = untrusting.fetch_manifest(&app).unwrap_err();
    match &err {
        Error::Http { url, .. } => assert!(url.starts_with("https://"), "{err}"),
        other => panic!("expected the HTTPS error, got {other}"),
    }
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    eprintln!("untrusted HTTPS registry: {chain}");
}

#[test]
fn client_is_shared_across_threads() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::None);
    let cfg = tempfile::tempdir().unwrap();
    let client = client_with(cfg.path());
    let app = reg.reference("threads/app:1");
    let img = image("linux/amd64", false, true);
    let digest = push_image(&client, &app, &img);
    let r = client.resolve(&app, &Platform::host()).unwrap();
    assert_eq!(r.digest, digest);
    let handles: Vec<_> = r
        .layers
        .iter()
        .cloned()
        .map(|d| {
            let (client, app) = (client.clone(), app.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                client
                    .fetch_blob(&app, &d)
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
                sha256_digest(&out)
            })
        })
        .collect();
    let got: Vec<Digest> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let want: Vec<Digest> = img.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(got, want);
}
