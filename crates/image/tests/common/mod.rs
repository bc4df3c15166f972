//! Shared test harness: a real `docker-registry` on 127.0.0.1 (as in skiff-registry's
//! tests) and small images built in memory.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_reference::{Digest, Reference};
use skiff_registry::{sha256_digest, Client, Config, Platform, UploadMode};
use skiff_store::{Driver, Store, StoreOptions};
use tempfile::TempDir;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            fs::metadata(d.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Whether docker-registry is installed; prints why not (or panics if
/// SKIFF_REQUIRE_REGISTRY is set).
pub fn have_registry() -> bool {
    if on_path("docker-registry") {
        return true;
    }
    let msg = "image integration test needs docker-registry (apt-get install docker-registry)";
    if std::env::var_os("SKIFF_REQUIRE_REGISTRY").is_some() {
        panic!("{msg}, and SKIFF_REQUIRE_REGISTRY is set");
    }
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

/// A registry without authentication, killed on drop.
pub struct Registry {
    pub dir: TempDir,
    pub port: u16,
    child: Child,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With `auth`, HTTP basic authentication for (user, password) (needs `htpasswd`).
    pub fn start_with(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\n  redirect:\n    disable: true\n  maintenance:\n    \
             uploadpurging:\n      enabled: false\nvalidation:\n  manifests:\n    urls:\n      \
             allow:\n        - ^http://127\\.0\\.0\\.1\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: skiff-test\n",
            d.join("storage").display()
        );
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            fs::write(d.join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                d.join("htpasswd").display()
            ));
        }
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
        wait_for(port);
        Registry { dir, port, child }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn reference(&self, s: &str) -> Reference {
        Reference::parse(&format!("{}/{s}", self.host())).unwrap()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_file(&self, d: &Digest) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }

    /// Number of `GET .../blobs/` requests in the access log so far.
    pub fn blob_gets(&self) -> usize {
        let mut n = 0;
        for f in ["registry.log", "registry.err"] {
            let s = fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            n += s
                .lines()
                .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
                .count();
        }
        n
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
            let mut buf = [0u8; 12];
            if s.write_all(req.as_bytes()).is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing answered on 127.0.0.1:{port} within 20 s");
}

pub fn client() -> Client {
    let dir = std::env::temp_dir().join("skiff-image-test-docker-config");
    Client::new(Config {
        docker_config_dir: Some(dir),
        retry_delay: Duration::from_millis(20),
        ..Config::default()
    })
    .unwrap()
}

/// A store in `dir`; overlay if the kernel has it, else vfs.
pub fn store(dir: &Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            driver: Driver::detect(),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

// ---------------------------------------------------------------- images

pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

impl Blob {
    pub fn new(bytes: Vec<u8>, media_type: &str) -> Blob {
        Blob {
            digest: sha256_digest(&bytes),
            bytes,
            media_type: media_type.to_owned(),
        }
    }

    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.bytes.len(),
        })
    }
}

/// What goes into a test layer.
pub enum Entry {
    Dir(&'static str),
    File(&'static str, Vec<u8>),
    Exe(&'static str, Vec<u8>),
    Symlink(&'static str, &'static str),
}

pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            Entry::File(p, data) | Entry::Exe(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if matches!(e, Entry::Exe(..)) {
                    0o755
                } else {
                    0o644
                });
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// An image: config, layers, and its manifest.
pub struct TestImage {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Blob,
}

/// Builds an image from (uncompressed tar, media type) layers.
pub fn image(layers: Vec<(Vec<u8>, &str)>, arch: &str) -> TestImage {
    let mut diff_ids = Vec::new();
    let mut blobs = Vec::new();
    for (tar, mt) in layers {
        diff_ids.push(sha256_digest(&tar).to_string());
        let bytes = if mt == GZIP {
            gzip(&tar)
        } else if mt == ZSTD {
            zstd(&tar)
        } else {
            tar
        };
        blobs.push(Blob::new(bytes, mt));
    }
    let config = serde_json::json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "test"}],
    });
    let config = Blob::new(serde_json::to_vec(&config).unwrap(), OCI_CONFIG);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": blobs.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(serde_json::to_vec_pretty(&manifest).unwrap(), OCI_MANIFEST);
    TestImage {
        config,
        layers: blobs,
        manifest,
    }
}

pub fn host_arch() -> String {
    Platform::host().architecture
}

/// busybox in a gzip layer, and a second layer (`second` media type) with a whiteout and
/// an opaque directory.
pub fn busybox_image(second: &str, arch: &str) -> TestImage {
    let bb = fs::read("/bin/busybox").expect("/bin/busybox");
    let l1 = tar(&[
        Entry::Dir("bin/"),
        Entry::Exe("bin/busybox", bb),
        Entry::Symlink("bin/sh", "busybox"),
        Entry::Symlink("bin/ls", "busybox"),
        Entry::Dir("etc/"),
        Entry::File("etc/hostname", b"skiff\n".to_vec()),
        Entry::File("etc/removeme", b"x".to_vec()),
        Entry::Dir("old/"),
        Entry::File("old/a", b"a".to_vec()),
        Entry::Dir("tmp/"),
    ]);
    let l2 = tar(&[
        Entry::Dir("etc/"),
        Entry::File("etc/.wh.removeme", Vec::new()),
        Entry::File("etc/added", arch.as_bytes().to_vec()),
        Entry::Dir("old/"),
        Entry::File("old/.wh..wh..opq", Vec::new()),
        Entry::File("old/b", b"b".to_vec()),
    ]);
    image(vec![(l1, GZIP), (l2, second)], arch)
}

/// Pushes blobs and the manifest with the registry client; returns the manifest digest.
pub fn push_image(client: &Client, r: &Reference, img: &TestImage) -> Digest {
    for b in img.layers.iter().chain([&img.config]) {
        if !client.blob_exists(r, &b.digest).unwrap() {
            client
                .push_blob(
                    r,
                    &b.digest,
                    b.bytes.len() as u64,
                    &mut &b.bytes[..],
                    UploadMode::Monolithic,
                )
                .unwrap();
        }
    }
    client
        .put_manifest(r, &img.manifest.media_type, &img.manifest.bytes)
        .unwrap()
}

/// Deterministic incompressible bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Number of entries in a store directory.
pub fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
}
