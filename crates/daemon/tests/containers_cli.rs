//! End to end with the real `docker` CLI: skiffd (built by cargo) on a temporary socket with
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

const IMAGE: &str = "skiff-e2e/busybox:1";

fn on_path(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Whether everything needed is here; says why not (or panics under SKIFF_REQUIRE_DOCKER).
fn can_run() -> bool {
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

fn nix_is_root() -> bool {
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
fn binaries() -> (PathBuf, PathBuf) {
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

fn hdr() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn busybox_tar() -> Vec<u8> {
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
    for a in [
        "sh", "echo", "cat", "sleep", "true", "ps", "ls", "env", "id",
    ] {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_http(port: u16) {
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

fn spawn_skiffd(dir: &Path) -> Child {
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

struct World {
    tmp: tempfile::TempDir,
    skiffd: Child,
    registry: Child,
    port: u16,
}

impl World {
    fn new() -> World {
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

    fn wait_socket(&self) {
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
    fn restart_daemon(&mut self) {
        self.stop_daemon();
        self.skiffd = spawn_skiffd(self.tmp.path());
        self.wait_socket();
    }

    fn stop_daemon(&mut self) {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("skiffd.log")).unwrap_or_default()
    }

    fn docker_cmd(&self, args: &[&str]) -> Command {
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

    fn try_docker(&self, args: &[&str], stdin: Option<&str>) -> Output {
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
    fn docker(&self, args: &[&str]) -> String {
        self.docker_in(args, None)
    }

    fn docker_in(&self, args: &[&str], stdin: Option<&str>) -> String {
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

#[test]
fn docker_cli_end_to_end() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let t0 = Instant::now();

    // run --rm: create, attach, wait(removed), start; output and exit code.
    let out = w.docker(&["run", "--rm", IMAGE, "echo", "hello"]);
    assert_eq!(out, "hello\n");
    assert_eq!(w.docker(&["ps", "-aq"]), "", "--rm left the container");

    // The exit code comes back through wait.
    let out = w.try_docker(
        &[
            "run",
            "--name",
            "three",
            IMAGE,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let st = w.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}} {{.Name}}",
        "three",
    ]);
    assert_eq!(st.trim(), "exited 3 /three");
    let lc = w.docker(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "three"]);
    assert_eq!(lc.trim(), "json-file");
    let logs = w.try_docker(&["logs", "three"], None);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "err\n");
    w.docker(&["rm", "three"]);

    // Stdin through attach, with the half-close reaching the container.
    let out = w.docker_in(&["run", "-i", "--rm", IMAGE, "cat"], Some("hi\n"));
    assert_eq!(out, "hi\n");

    // Detached: ps, logs, exec, stop, rm.
    let id = w
        .docker(&[
            "run",
            "-d",
            "--name",
            "bg",
            IMAGE,
            "sh",
            "-c",
            "echo started; exec sleep 60",
        ])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64, "{id}");
    let ps = w.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("bg Up"), "{ps}");
    let st = w.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}}",
        "bg",
    ]);
    assert_eq!(st.trim(), "running true");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = w.docker(&["logs", "bg"]);
        if logs == "started\n" {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = w.docker(&["exec", "bg", "sh", "-c", "echo in-container; id -u"]);
    assert_eq!(out, "in-container\n0\n");
    let out = w.try_docker(&["exec", "bg", "sh", "-c", "exit 7"], None);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let out = w.docker_in(&["exec", "-i", "bg", "cat"], Some("piped\n"));
    assert_eq!(out, "piped\n");
    let execs = w.docker(&["inspect", "-f", "{{len .ExecIDs}}", "bg"]);
    assert_eq!(execs.trim(), "3");
    w.docker(&["stop", "-t", "1", "bg"]);
    let st = w.docker(&["inspect", "-f", "{{.State.Status}}", "bg"]);
    assert_eq!(st.trim(), "exited");
    w.docker(&["rm", "bg"]);
    let out = w.try_docker(&["inspect", "bg"], None);
    assert!(!out.status.success());

    // The container events of a run --rm, in Docker's order.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let ev = w.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    let first: Vec<&str> = ev.lines().take(4).collect();
    assert_eq!(first, ["create", "start", "die", "destroy"], "{ev}");

    // create, then start -a.
    let id = w.docker(&["create", "--name", "later", IMAGE, "echo", "from create"]);
    assert_eq!(id.trim().len(), 64);
    let st = w.docker(&["inspect", "-f", "{{.State.Status}}", "later"]);
    assert_eq!(st.trim(), "created");
    let out = w.docker(&["start", "-a", "later"]);
    assert_eq!(out, "from create\n");
    w.docker(&["rm", "later"]);

    // An image only in the registry: create gets 404, the CLI pulls and retries.
    let remote = format!("127.0.0.1:{}/e2e/bb:1", w.port);
    w.docker(&["tag", IMAGE, &remote]);
    w.docker(&["push", &remote]);
    w.docker(&["rmi", &remote]);
    let out = w.docker(&["run", "--rm", &remote, "echo", "pulled"]);
    assert_eq!(out, "pulled\n");

    // A missing image that no registry has.
    let out = w.try_docker(&["create", "127.0.0.1:1/nope:1"], None);
    assert!(!out.status.success());
    if std::env::var_os("SKIFF_E2E_LOG").is_some() {
        eprintln!("{}", w.log());
    }

    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn docker_cli_lifecycle_commands() {
    if !can_run() {
        return;
    }
    let w = World::new();

    // A tty: raw output, no frame headers.
    let out = w.docker(&["run", "--rm", "-t", IMAGE, "echo", "tty"]);
    assert_eq!(out, "tty\r\n");

    // A missing executable: the CLI maps the start error to 127.
    let out = w.try_docker(&["run", "--rm", IMAGE, "/nonexistent"], None);
    assert_eq!(out.status.code(), Some(127), "{out:?}");

    w.docker(&[
        "run",
        "-d",
        "--name",
        "life",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ]);
    // logs -f streams while the container runs.
    let mut f = w.docker_cmd(&["logs", "-f", "life"]);
    let mut f = f
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = f.stdout.as_mut().unwrap().read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("tick 0"));
    let _ = f.kill();
    let _ = f.wait();
    let out = w.docker(&["logs", "--tail", "1", "life"]);
    assert!(
        out.starts_with("tick ") && out.lines().count() == 1,
        "{out}"
    );

    let info = w.docker(&["info", "--format", "{{.Containers}} {{.ContainersRunning}}"]);
    assert_eq!(info.trim(), "1 1");
    let top = w.docker(&["top", "life"]);
    assert!(top.contains("PID") && top.contains("sh -c"), "{top}");
    let stats = w.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        "life",
    ]);
    assert!(stats.starts_with("life "), "{stats}");

    w.docker(&["pause", "life"]);
    let st = w.docker(&["inspect", "-f", "{{.State.Status}}", "life"]);
    assert_eq!(st.trim(), "paused");
    w.docker(&["unpause", "life"]);
    w.docker(&["rename", "life", "life2"]);
    let st = w.docker(&["inspect", "-f", "{{.Name}} {{.State.Status}}", "life2"]);
    assert_eq!(st.trim(), "/life2 running");
    w.docker(&["restart", "-t", "5", "life2"]);
    let st = w.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.RestartCount}}",
        "life2",
    ]);
    assert!(st.starts_with("running"), "{st}");
    let out = w.try_docker(&["rm", "life2"], None);
    assert!(!out.status.success(), "rm of a running container must fail");
    w.docker(&["kill", "life2"]);
    let out = w.docker(&["wait", "life2"]);
    assert_eq!(out.trim(), "137");
    let out = w.docker(&["container", "prune", "-f"]);
    assert!(out.contains("Deleted Containers"), "{out}");
    assert_eq!(w.docker(&["ps", "-aq"]), "");
    let info = w.docker(&["info", "--format", "{{.Containers}}"]);
    assert_eq!(info.trim(), "0");
}

#[test]
fn containers_outlive_a_daemon_restart() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    w.docker(&[
        "run",
        "-d",
        "--name",
        "keep",
        IMAGE,
        "sh",
        "-c",
        "echo before; exec sleep 60",
    ]);
    let out = w.try_docker(&["exec", "keep", "/nonexistent"], None);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nonexistent"),
        "{out:?}"
    );
    w.restart_daemon();
    let st = w.docker(&["inspect", "-f", "{{.State.Status}}", "keep"]);
    assert_eq!(st.trim(), "running", "{}", w.log());
    assert_eq!(w.docker(&["logs", "keep"]), "before\n");
    assert_eq!(w.docker(&["exec", "keep", "echo", "after"]), "after\n");
    w.docker(&["rm", "-f", "keep"]);
    assert_eq!(w.docker(&["ps", "-aq"]), "");
}

#[test]
fn docker_cli_volumes_env_and_log_options() {
    if !can_run() {
        return;
    }
    let w = World::new();
    w.docker(&[
        "run",
        "--rm",
        "-v",
        "data1:/data",
        IMAGE,
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let out = w.docker(&[
        "run",
        "--rm",
        "-v",
        "data1:/data:ro",
        IMAGE,
        "cat",
        "/data/f",
    ]);
    assert_eq!(out, "kept\n");
    let out = w.docker(&["volume", "ls", "-q"]);
    assert_eq!(out.trim(), "data1");
    let out = w.docker(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi there",
        "-w",
        "/tmp",
        "--user",
        "0:0",
        IMAGE,
        "sh",
        "-c",
        "echo $GREETING; pwd; id -u",
    ]);
    assert_eq!(out, "hi there\n/tmp\n0\n");
    let out = w.docker(&[
        "run", "--rm", "-p", "18080:80", "--expose", "90", IMAGE, "echo", "ports",
    ]);
    assert_eq!(out, "ports\n");
    w.docker(&["run", "--name", "again", IMAGE, "sh", "-c", "echo run"]);
    let out = w.docker(&["start", "-a", "again"]);
    assert_eq!(out, "run\n");
    let logs = w.docker(&["logs", "-t", "again"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(
        lines[0].starts_with("20") && lines[0].ends_with("Z run"),
        "{logs}"
    );
    let out = w.docker(&["logs", "--since", "2099-01-01T00:00:00Z", "again"]);
    assert_eq!(out, "");
    w.docker(&["rm", "again"]);
    w.docker(&[
        "create",
        "--name",
        "holder",
        "-v",
        "data1:/data",
        IMAGE,
        "true",
    ]);
    let out = w.try_docker(&["volume", "rm", "data1"], None);
    assert!(!out.status.success(), "a volume in use was removed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("volume is in use"),
        "{out:?}"
    );
    w.docker(&["rm", "holder"]);
    w.docker(&["volume", "rm", "data1"]);
    assert_eq!(w.docker(&["volume", "ls", "-q"]), "");
}

#[test]
fn docker_cli_interactive_tty_and_start_ai() {
    if !can_run() {
        return;
    }
    let w = World::new();
    // docker run -it under a pseudo-terminal (script): raw stream both ways, resize.
    let sock = w.tmp.path().join("d.sock");
    let out = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty cols 77 rows 22; DOCKER_HOST=unix://{} DOCKER_CONFIG={} docker run -it --rm {IMAGE} sh -c 'busybox stty size; read x; echo got:$x'",
            sock.display(),
            w.tmp.path().join("docker-config").display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::thread::sleep(Duration::from_millis(1500));
            c.stdin.take().unwrap().write_all(b"typed\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("22 77"), "{text:?} {}", w.log());
    assert!(text.contains("got:typed"), "{text:?}");
    assert!(out.status.success(), "{out:?}");

    // docker create -i, then start -ai with piped stdin.
    w.docker(&[
        "create",
        "-i",
        "--name",
        "ai",
        IMAGE,
        "sh",
        "-c",
        "read x; echo read:$x",
    ]);
    let out = w.docker_in(&["start", "-ai", "ai"], Some("line\n"));
    assert_eq!(out, "read:line\n");
    w.docker(&["rm", "ai"]);
}
