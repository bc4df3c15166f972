//! End-to-end harness: the real `skiffd` binary on a temp socket and data root, a real
//! `docker-registry` on 127.0.0.1, and the real `docker` CLI.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            fs::metadata(d.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Whether the tools are there; prints why not (panics if SKIFF_REQUIRE_E2E is set).
pub fn have(tools: &[&str]) -> bool {
    let missing: Vec<&&str> = tools.iter().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("end-to-end test needs {missing:?} (apt-get install docker.io docker-registry apache2-utils)");
    if std::env::var_os("SKIFF_REQUIRE_E2E").is_some() {
        panic!("{msg}, and SKIFF_REQUIRE_E2E is set");
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

/// A docker-registry, killed on drop.
pub struct Registry {
    pub dir: TempDir,
    pub port: u16,
    child: Child,
}

impl Registry {
    /// With `auth`, HTTP basic authentication for (user, password).
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: skiff-test\n",
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { dir, port, child }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `skiffd`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Skiffd {
    pub dir: TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl Skiffd {
    pub fn start() -> Skiffd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/skiff.sock");
        fs::write(dir.path().join("daemon.json"), "{\"log-level\": \"debug\"}").unwrap();
        fs::create_dir_all(dir.path().join("docker-config")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiffd"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--config-file")
            .arg(dir.path().join("daemon.json"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("skiffd.log")).unwrap())
            .stderr(fs::File::create(dir.path().join("skiffd.err")).unwrap())
            .spawn()
            .unwrap();
        let mut d = Skiffd {
            dir,
            socket,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("skiffd exited with {st}: {}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "skiffd did not start: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("skiffd.err")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Runs the docker CLI against this daemon (with a private client config folder).
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: Option<&Path>) -> Output {
        // A hung CLI (an interactive prompt, a stuck stream) fails the test instead of
        // blocking it.
        let mut c = Command::new("timeout");
        c.args(["120", "docker"])
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        match stdin {
            Some(p) => c.stdin(fs::File::open(p).unwrap()),
            None => c.stdin(Stdio::null()),
        };
        c.output().unwrap()
    }

    /// Runs docker, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n--- skiffd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs docker, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// SIGTERM, and waits for the exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Skiffd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tar stream with a few files (a one-layer root filesystem).
pub fn rootfs_tar(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("etc/marker", marker.as_bytes().to_vec()),
        ("bin/hello", b"#!/bin/sh\necho hello\n".to_vec()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Puts a one-layer image at `reference` (in `registry`) with skiff's own libraries:
/// import into a scratch store, then push.
pub fn seed_image(reference: &str, marker: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = skiff_store::Store::open(dir.path(), skiff_store::StoreOptions::default()).unwrap();
    let r = skiff_reference::Reference::parse(reference).unwrap();
    let img = store
        .import(
            &rootfs_tar(marker)[..],
            skiff_store::Compression::None,
            &skiff_store::ImportOptions {
                tag: Some(r.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let cfg = skiff_registry::Config {
        docker_config_dir: Some(dir.path().join("cfg")),
        ..Default::default()
    };
    let client = skiff_registry::Client::new(cfg).unwrap();
    skiff_image::push(&store, &client, &r, &img.id.to_string(), &mut |_| {}).unwrap();
}
