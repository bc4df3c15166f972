//! Shared helpers for the root integration tests: busybox bundles with the probe inside, and
//! running skiff-runtime against a private state root.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_skiff-runtime");

/// Applets linked into every test rootfs.
const APPLETS: &[&str] = &[
    "sh", "true", "false", "sleep", "cat", "echo", "ls", "id", "hostname", "mount", "ps", "kill",
    "tty", "test", "touch", "mkdir", "head", "tr", "stat", "readlink", "env", "pwd", "wc", "grep",
    "seq", "yes", "dd", "umask",
];

/// The probe, built once per test binary as a static executable.
pub fn probe() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        // A prebuilt probe (the cgroup v2 VM lane has no compiler).
        if let Some(p) = std::env::var_os("SKIFF_PROBE") {
            return PathBuf::from(p);
        }
        let out =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("probe-{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/probe.rs");
        let st = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .args([
                "-O",
                "-C",
                "target-feature=+crt-static",
                "--edition",
                "2021",
                "-o",
            ])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run rustc to build the probe");
        assert!(st.success(), "building the probe failed");
        out
    })
}

pub fn busybox() -> &'static str {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("busybox not found: install Debian's busybox-static (scripts/test.sh does)");
}

/// A bundle in a temp dir: rootfs with busybox and the probe, config.json from `spec`.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new() -> Bundle {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests need root (CI runs as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("skiff-bundle-")
            .tempdir_in("/tmp")
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "tmp", "etc", "proc", "sys", "dev"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::copy(probe(), rootfs.join("probe")).unwrap();
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::set_permissions(
            rootfs.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        let out = Command::new(BIN)
            .arg("spec")
            .arg("--bundle")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        let mut b = Bundle { dir, config };
        b.set("/process/terminal", false.into());
        b.set("/process/args", serde_json::json!(["/probe"]));
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Sets a JSON pointer in config.json (creating objects on the way) and saves it.
    pub fn set(&mut self, ptr: &str, v: Value) -> &mut Bundle {
        let mut cur = &mut self.config;
        let parts: Vec<&str> = ptr.split('/').skip(1).collect();
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                match cur {
                    Value::Array(a) => {
                        let idx: usize = p.parse().unwrap();
                        if idx == a.len() {
                            a.push(v.clone())
                        } else {
                            a[idx] = v.clone()
                        }
                    }
                    _ => cur[*p] = v.clone(),
                }
            } else {
                cur = match cur {
                    Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
                    _ => {
                        if cur.get(*p).is_none() {
                            cur[*p] = serde_json::json!({});
                        }
                        &mut cur[*p]
                    }
                };
            }
        }
        self.save();
        self
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Bundle {
        self.set("/process/args", serde_json::json!(args))
    }

    pub fn push(&mut self, ptr: &str, v: Value) -> &mut Bundle {
        let arr = self
            .config
            .pointer_mut(ptr)
            .and_then(|a| a.as_array_mut())
            .expect("array");
        arr.push(v);
        self.save();
        self
    }

    /// A new user namespace mapping container ids 0-65535 to host ids 100000-165535.
    pub fn userns(&mut self) -> &mut Bundle {
        let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        self.set("/linux/uidMappings", map.clone())
            .set("/linux/gidMappings", map)
    }

    pub fn save(&self) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

/// A private runtime state root, removed at the end.
pub struct Rt {
    pub root: tempfile::TempDir,
}

impl Rt {
    pub fn new() -> Rt {
        Rt {
            root: tempfile::Builder::new()
                .prefix("skiff-root-")
                .tempdir_in("/run")
                .unwrap(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Runs skiff-runtime with `args`, stdin closed.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "skiff-runtime {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// For commands that leave a container process behind (`create`, `run -d`, `exec -d`): the
    /// container inherits stdio, so give it none and read errors from the JSON log instead.
    pub fn bg(&self, args: &[&str]) {
        let log = self.root.path().join("bg-log.json");
        let _ = std::fs::remove_file(&log);
        let st = self
            .cmd()
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "skiff-runtime {args:?} failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `run` a bundle in the foreground and return (exit code, stdout, stderr).
    pub fn run_bundle(&self, b: &Bundle, id: &str) -> (i32, String, String) {
        let o = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(b.path())
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Runs the probe (the bundle's args) and parses its report.
    pub fn probe(&self, b: &Bundle, id: &str) -> Value {
        let (code, out, err) = self.run_bundle(b, id);
        assert_eq!(code, 0, "probe run failed: {out}{err}");
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("probe output is not JSON ({e}): {out}"))
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // Remove whatever a failed test left running.
        if let Ok(entries) = std::fs::read_dir(self.root.path()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.run(&["delete", "--force", &id]);
            }
        }
    }
}

/// Every cgroup directory named `id` under the host's hierarchies.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(dir: &Path, id: &str, depth: usize, found: &mut Vec<PathBuf>) {
        if depth > 4 {
            return;
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name() == id {
                    found.push(e.path());
                }
                walk(&e.path(), id, depth + 1, found);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), id, 0, &mut found);
    found
}

/// A unique container id for this test.
pub fn id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

pub fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    // Generous: the cgroup v2 VM lane runs under software emulation, ~8x slower.
    for _ in 0..3000 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}
