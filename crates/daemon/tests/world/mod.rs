#![allow(dead_code)]
//! Shared by the end-to-end tests (`mod world;`): skiffd (built by cargo) on a temporary socket with
//! a temporary data root, skiff-monitor next to it, a busybox image imported into its store
//! and a local docker-registry for the pull-on-create path. Needs root, `docker` (the CLI
//! only: the system dockerd is never started), busybox-static and docker-registry; skipped
//! with a message when one is missing, unless SKIFF_REQUIRE_DOCKER is set.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_store::{Compression, ImportOptions, Store, StoreOptions};

pub const IMAGE: &str = "skiff-e2e/busybox:1";

pub fn on_path(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Whether everything needed is here; says why not (or panics under SKIFF_REQUIRE_DOCKER).
pub fn can_run() -> bool {
    let mut missing = Vec::new();
    if !nix_is_root() {
        missing.push("root");
    }
    if on_path("docker").is_none() {
        missing.push("the docker CLI (apt-get install docker.io)");
    }
    if on_path("docker-registry").is_none() {
        missing.push("docker-registry");
    }
    if busybox().is_none() {
        missing.push("busybox-static");
    }
    if on_path("script").is_none() {
        missing.push("script (util-linux)");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("docker CLI end-to-end test needs {}", missing.join(", "));
    assert!(
        std::env::var_os("SKIFF_REQUIRE_DOCKER").is_none(),
        "{msg}, and SKIFF_REQUIRE_DOCKER is set"
    );
    eprintln!("SKIPPED: {msg}");
    false
}

pub fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// skiffd, and skiff-monitor beside it (built here when cargo has not built it yet).
pub fn binaries() -> (PathBuf, PathBuf) {
    let skiffd = PathBuf::from(env!("CARGO_BIN_EXE_skiffd"));
    let dir = skiffd.parent().unwrap().to_owned();
    let monitor = dir.join("skiff-monitor");
    if !monitor.exists() {
        // <target>/<profile>/skiffd
        let target = dir.parent().unwrap();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "skiff-monitor", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target);
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build -p skiff-monitor");
        assert!(st.success(), "cargo build -p skiff-monitor failed");
    }
    assert!(monitor.exists(), "{} is missing", monitor.display());
    (skiffd, monitor)
}

pub fn hdr() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

pub fn busybox_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if d == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    let bb = std::fs::read(busybox().unwrap()).unwrap();
    let mut h = hdr();
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bb[..]).unwrap();
    // Every applet this busybox has (`busybox --list`), as a symlink in /bin.
    let list = Command::new(busybox().unwrap())
        .arg("--list")
        .output()
        .expect("busybox --list");
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();
    for a in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let mut h = hdr();
    h.set_mode(0o644);
    h.set_size(passwd.len() as u64);
    b.append_data(&mut h, "etc/passwd", &passwd[..]).unwrap();
    b.into_inner().unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 12];
            if s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_ok()
                && s.read(&mut buf).is_ok_and(|n| n > 0)
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing answered on 127.0.0.1:{port}");
}

pub fn spawn_skiffd(dir: &Path) -> Child {
    let (bin, _) = binaries();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("skiffd.log"))
        .unwrap();
    Command::new(bin)
        .arg("-H")
        .arg(format!("unix://{}", dir.join("d.sock").display()))
        .arg("--data-root")
        .arg(dir.join("root"))
        .arg("--exec-root")
        .arg(dir.join("run"))
        .arg("--config-file")
        .arg(dir.join("daemon.json"))
        .env("RUST_LOG", "skiff_daemon=debug,info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

pub struct World {
    pub tmp: tempfile::TempDir,
    pub skiffd: Child,
    pub registry: Child,
    pub port: u16,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("skd")
            .tempdir_in("/tmp")
            .unwrap();
        let root = tmp.path().join("root");
        {
            let store = Store::open(&root, StoreOptions::default()).unwrap();
            let config: oci_spec::image::Config = serde_json::from_value(serde_json::json!({
                "Env": ["PATH=/bin"],
                "Cmd": ["sh"],
            }))
            .unwrap();
            store
                .import(
                    &busybox_tar()[..],
                    Compression::None,
                    &ImportOptions {
                        tag: Some(IMAGE.parse().unwrap()),
                        config: Some(config),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        // A registry for the pull path.
        let port = free_port();
        let rdir = tmp.path().join("registry");
        std::fs::create_dir_all(&rdir).unwrap();
        std::fs::write(
            rdir.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: skiff-test\n",
                rdir.join("storage").display()
            ),
        )
        .unwrap();
        let registry = Command::new("docker-registry")
            .arg("serve")
            .arg(rdir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(rdir.join("log")).unwrap())
            .stderr(std::fs::File::create(rdir.join("err")).unwrap())
            .spawn()
            .unwrap();
        std::fs::write(tmp.path().join("daemon.json"), "{}").unwrap();
        let skiffd = spawn_skiffd(tmp.path());
        let w = World {
            tmp,
            skiffd,
            registry,
            port,
        };
        wait_http(port);
        w.wait_socket();
        w
    }

    pub fn wait_socket(&self) {
        let sock = self.tmp.path().join("d.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "skiffd did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops skiffd (SIGTERM) and starts it again on the same directories.
    pub fn restart_daemon(&mut self) {
        self.stop_daemon();
        self.skiffd = spawn_skiffd(self.tmp.path());
        self.wait_socket();
    }

    pub fn stop_daemon(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.skiffd.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.skiffd.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.skiffd.kill();
        let _ = self.skiffd.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("skiffd.log")).unwrap_or_default()
    }

    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.tmp.path().join("d.sock").display()),
            )
            .env("DOCKER_CONFIG", self.tmp.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        c
    }

    pub fn try_docker(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.docker_cmd(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("running docker");
        if let Some(input) = stdin {
            let mut si = child.stdin.take().unwrap();
            si.write_all(input.as_bytes()).unwrap();
        }
        // A hung CLI fails the test instead of hanging it.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "docker {args:?} hung; stdout {:?} stderr {:?}\nskiffd log:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// Runs docker; asserts success; returns stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        self.docker_in(args, None)
    }

    pub fn docker_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.try_docker(args, stdin);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}\nskiffd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let ids = self
            .try_docker(&["ps", "-aq"], None)
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>();
        for id in ids {
            let _ = self.try_docker(&["rm", "-f", &id], None);
        }
        self.stop_daemon();
        let _ = self.registry.kill();
        let _ = self.registry.wait();
        // Whatever a failed step left mounted under the temp dir.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let base = self.tmp.path().to_string_lossy().into_owned();
        for m in mounts.lines().rev() {
            if let Some(p) = m.split_whitespace().nth(1) {
                if p.starts_with(&base) {
                    let _ = Command::new("umount").arg("-l").arg(p).status();
                }
            }
        }
    }
}

/// skiff-init next to skiffd (built here when cargo has not built it yet), for `--init`:
/// call before [`World::new`], the daemon looks for it when it starts.
pub fn ensure_init() -> PathBuf {
    let (skiffd, _) = binaries();
    let dir = skiffd.parent().unwrap().to_owned();
    let init = dir.join("skiff-init");
    if !init.exists() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "skiff-init", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(dir.parent().unwrap());
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build -p skiff-init");
        assert!(st.success(), "cargo build -p skiff-init failed");
    }
    assert!(init.exists(), "{} is missing", init.display());
    init
}
