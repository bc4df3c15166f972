//! Plumbing for `engines.rs`: a sandbox directory that owns the daemons started in it and cleans
//! up after them (daemons, shims, container processes, cgroups, mounts) even when a test panics;
//! a busybox image built from Debian's busybox-static; containerd and dockerd started privately;
//! commands run with a deadline so a hung engine fails the test instead of hanging CI.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

/// The skiff-runtime binary cargo built for these tests.
pub const RUNTIME: &str = env!("CARGO_BIN_EXE_skiff-runtime");
/// Where Debian's busybox-static puts its static binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The image name both engines import the busybox rootfs under.
pub const IMAGE: &str = "skiff-test/busybox:latest";

const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// Panics unless the tests run as root: they start daemons, mount and create cgroups.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the engine tests start containerd and dockerd: run them as root (sudo -E cargo test)"
    );
}

/// Finds `program` in PATH or panics naming the Debian package that provides it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is not installed: apt-get install -y {package} (the test script installs it)")
        })
}

/// A short name unique to this test process and call, usable as a containerd namespace, a
/// cgroup name and a container id.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "skiff-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a finished command did.
#[derive(Debug)]
pub struct Out {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The exit code; -1 when the command was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Panics with the whole output unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert!(self.status.success(), "{self}");
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with stdin from /dev/null, capturing its output; kills it and panics after
/// `timeout`.
#[track_caller]
pub fn run_for(cmd: &mut Command, timeout: Duration) -> Out {
    let what = describe(cmd);
    try_run_for(cmd, timeout)
        .unwrap_or_else(|| panic!("`{what}` did not finish within {timeout:?}"))
}

/// [`run_for`], but `None` when the command had to be killed at `timeout`.
#[track_caller]
pub fn try_run_for(cmd: &mut Command, timeout: Duration) -> Option<Out> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let reader = |mut s: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    Some(Out {
        what,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// [`run_for`] with the default deadline.
#[track_caller]
pub fn run(cmd: &mut Command) -> Out {
    run_for(cmd, CMD_TIMEOUT)
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mount points of every cgroup hierarchy (v1 controllers and the unified one).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .filter(|(_, fstype)| fstype == "cgroup" || fstype == "cgroup2")
        .map(|(mp, _)| mp)
        .collect()
}

/// The hierarchies in which the cgroup `rel` (e.g. "/ns/id") exists.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(rel.trim_start_matches('/')))
        .filter(|p| p.is_dir())
        .collect()
}

/// Mount points under `dir` (including `dir` itself).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .map(|(mp, _)| mp)
        .filter(|mp| mp.starts_with(dir))
        .collect()
}

/// (mount point, filesystem type) of every mount in our mount namespace, in mount order.
fn mountinfo() -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some((
                PathBuf::from(unescape(fields.get(4)?)),
                fields.get(sep + 1)?.to_string(),
            ))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(u8::is_ascii_digit));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A private directory for one test. Dropping it stops the daemons it owns, kills every
/// process that still names the directory on its command line (shims, a daemon's own
/// containerd, runtime calls), kills and removes the cgroups it owns, unmounts everything
/// under it and removes it. Drop never panics.
pub struct Sandbox {
    pub dir: PathBuf,
    daemons: Vec<(String, Child)>,
    cgroups: Vec<String>,
    // Dropped last: removes the directory once everything above is undone.
    _tmp: tempfile::TempDir,
}

impl Sandbox {
    pub fn new(tag: &str) -> Sandbox {
        // Short paths: containerd's and dockerd's unix sockets live in here (108-byte limit).
        let tmp = tempfile::Builder::new()
            .prefix(&format!("skiff-{tag}-"))
            .tempdir_in("/tmp")
            .expect("cannot create a temporary directory in /tmp");
        let dir = tmp.path().canonicalize().expect("canonical temp dir");
        Sandbox {
            dir,
            daemons: Vec::new(),
            cgroups: Vec::new(),
            _tmp: tmp,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Takes `child` over: it is stopped (SIGTERM, then SIGKILL) when the sandbox drops.
    pub fn adopt_daemon(&mut self, name: &str, child: Child) {
        self.daemons.push((name.to_string(), child));
    }

    /// The cgroup `rel` (in every hierarchy) is removed, with whatever runs in it, on drop.
    pub fn own_cgroup(&mut self, rel: &str) {
        self.cgroups.push(rel.to_string());
    }

    /// Whether the daemon `name` is still running.
    pub fn daemon_alive(&mut self, name: &str) -> bool {
        self.daemons
            .iter_mut()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }

    /// A wrapper script that records every call (argv) in `runtime-calls.log`, then execs
    /// skiff-runtime: the engines are pointed at it, so a failure can show what they asked.
    /// `SKIFF_ENGINES_REFERENCE_RUNTIME=/usr/sbin/runc` runs the same tests on another runtime,
    /// to check the tests themselves.
    pub fn runtime_wrapper(&self) -> PathBuf {
        let path = self.path("skiff-runtime");
        if !path.exists() {
            let log = self.path("runtime-calls.log");
            let runtime = std::env::var("SKIFF_ENGINES_REFERENCE_RUNTIME")
                .unwrap_or_else(|_| RUNTIME.to_string());
            let script = format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{runtime}' \"$@\"\n",
                log.display()
            );
            std::fs::write(&path, script).expect("write the runtime wrapper");
            let mut perm = std::fs::metadata(&path)
                .expect("wrapper metadata")
                .permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&path, perm).expect("chmod the runtime wrapper");
        }
        path
    }

    /// Every runtime command line the engines used so far, one a line.
    pub fn runtime_calls(&self) -> String {
        std::fs::read_to_string(self.path("runtime-calls.log")).unwrap_or_default()
    }

    /// The last `lines` lines of a file in the sandbox (a daemon's log).
    pub fn tail(&self, rel: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.path(rel)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn stop_daemons(&mut self) {
        for (_, child) in &mut self.daemons {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for (name, child) in &mut self.daemons {
            let stopped = wait_until(Duration::from_secs(20), || {
                !matches!(child.try_wait(), Ok(None))
            });
            if !stopped {
                eprintln!("{name} ignored SIGTERM for 20 s: killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// SIGKILLs every process whose command line names the sandbox (shims, a daemon's own
    /// containerd, runtime calls). A killed shim leaves its socket in the global
    /// `/run/containerd/s`, so that is removed too.
    fn kill_strays(&self) {
        let me = std::process::id();
        let needle = self.dir.to_string_lossy().into_owned();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if u32::try_from(pid).is_ok_and(|p| p == me) {
                continue;
            }
            let raw = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if argv.iter().any(|a| a.contains(&needle)) {
                eprintln!("killing stray process {pid}: {}", argv.join(" "));
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                if let Some(socket) = shim_socket(&argv) {
                    let _ = wait_until(Duration::from_secs(2), || !p.path().join("exe").exists());
                    let _ = std::fs::remove_file(socket);
                }
            }
        }
    }

    /// SIGKILLs every process named by a pid file the shims wrote in the sandbox (`init.pid`
    /// of each task, `<exec-id>.pid`): this catches containers that are not in their cgroup.
    fn kill_containers(&self) {
        let mut files = Vec::new();
        collect_pid_files(&self.dir, &mounts_under(&self.dir), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            if let Ok(pid) = text.trim().parse::<i32>() {
                if pid > 1 {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }

    /// Thaws the owned cgroups and SIGKILLs what runs in them: each step across all
    /// hierarchies before the next, since a frozen process only dies once the freezer
    /// hierarchy thaws it. Returns the cgroup directories, parents first.
    fn kill_cgroup_procs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for rel in &self.cgroups {
            for top in cgroup_dirs(rel) {
                collect_dirs(&top, &mut dirs);
            }
        }
        for d in &dirs {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        }
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        dirs
    }

    fn remove_cgroups(&self) {
        let dirs = self.kill_cgroup_procs();
        // Children before parents.
        let gone = wait_until(Duration::from_secs(5), || {
            dirs.iter()
                .rev()
                .all(|d| std::fs::remove_dir(d).is_ok() || !d.exists())
        });
        if !gone {
            let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
            eprintln!("cannot remove cgroups {left:?}");
        }
    }

    fn unmount_all(&self) {
        let mut mps = mounts_under(&self.dir);
        mps.reverse();
        for mp in mps {
            if let Err(e) = umount2(&mp, MntFlags::MNT_DETACH) {
                eprintln!("cannot unmount {}: {e}", mp.display());
            }
        }
    }
}

/// The socket of a containerd 1.6 runc shim, from its command line (`-namespace NS -id ID
/// -address ADDR`): `/run/containerd/s/<sha256 of ADDR/NS/ID>`.
fn shim_socket(argv: &[String]) -> Option<PathBuf> {
    if !argv.first()?.contains("containerd-shim") {
        return None;
    }
    let flag = |name: &str| {
        let i = argv.iter().position(|a| a == name)?;
        argv.get(i + 1).cloned()
    };
    let key = Path::new(&flag("-address")?)
        .join(flag("-namespace")?)
        .join(flag("-id")?);
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::io::Write::write_all(&mut child.stdin.take()?, key.to_string_lossy().as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .to_string();
    Some(Path::new("/run/containerd/s").join(hex))
}

/// `*.pid` files in the shims' task directories (`io.containerd.runtime.v2.task`) under `dir`,
/// not descending into `mounts` (container root filesystems).
fn collect_pid_files(dir: &Path, mounts: &[PathBuf], out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() && !mounts.contains(&path) {
            collect_pid_files(&path, mounts, out);
        } else if t.is_file()
            && path.extension().is_some_and(|x| x == "pid")
            && path
                .to_string_lossy()
                .contains("io.containerd.runtime.v2.task")
        {
            out.push(path);
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Containers first, so that daemons do not spend their stop timeouts on them.
        self.kill_containers();
        self.kill_cgroup_procs();
        self.stop_daemons();
        self.kill_strays();
        self.remove_cgroups();
        // Killed shims may leave the strays' children to be reaped; a second pass is cheap.
        self.kill_strays();
        self.unmount_all();
    }
}

/// Builds a busybox rootfs (the static binary plus a symlink per applet) and returns the path
/// of an uncompressed tar of it: the image layer for containerd, the `docker import` input.
pub fn busybox_layer(sb: &Sandbox) -> PathBuf {
    require("busybox", "busybox-static");
    let rootfs = sb.path("busybox-rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).expect("create the rootfs");
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap_or_else(|e| {
        panic!("cannot copy {BUSYBOX} (apt-get install -y busybox-static): {e}")
    });
    let list = run(Command::new(BUSYBOX).arg("--list")).ok().stdout;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        symlink("busybox", bin.join(applet)).expect("applet symlink");
    }
    for d in ["proc", "sys", "dev", "etc", "tmp", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("rootfs directory");
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
    let layer = sb.path("busybox-layer.tar");
    run(Command::new(require("tar", "tar"))
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&layer)
        .arg("."))
    .ok();
    layer
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new(require("sha256sum", "coreutils")).arg(path)).ok();
    out.stdout
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// Moves the file `src` into the OCI layout at `layout` as a blob; returns (digest, size).
fn put_blob(layout: &Path, src: &Path) -> (String, u64) {
    let hex = sha256(src);
    let size = std::fs::metadata(src).expect("blob size").len();
    std::fs::rename(src, layout.join("blobs/sha256").join(&hex)).expect("move the blob");
    (format!("sha256:{hex}"), size)
}

/// Packs `layer` as a one-layer OCI image archive named [`IMAGE`], for `ctr image import`.
pub fn oci_archive(sb: &Sandbox, layer: &Path) -> PathBuf {
    let layout = sb.path("oci-layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("create the OCI layout");
    let layer_copy = sb.path("layer.tmp");
    std::fs::copy(layer, &layer_copy).expect("copy the layer");
    let (layer_digest, layer_size) = put_blob(&layout, &layer_copy);
    let write_json = |name: &str, v: serde_json::Value| {
        let p = sb.path(name);
        std::fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("write json");
        p
    };
    let config = write_json(
        "config.tmp",
        json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }),
    );
    let (config_digest, config_size) = put_blob(&layout, &config);
    let manifest = write_json(
        "manifest.tmp",
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }],
        }),
    );
    let (manifest_digest, manifest_size) = put_blob(&layout, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {
                "io.containerd.image.name": IMAGE,
                "org.opencontainers.image.ref.name": "latest",
            },
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let archive = sb.path("busybox-oci.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."))
    .ok();
    archive
}

/// A private containerd (own root, state, socket; no CRI) and `ctr` pointed at it, running
/// containers through skiff-runtime in its own namespace and runtime root.
pub struct Containerd {
    pub sb: Sandbox,
    pub ns: String,
    sock: PathBuf,
    ctr: PathBuf,
}

impl Containerd {
    pub fn start(tag: &str) -> Containerd {
        require_root();
        let containerd = require("containerd", "containerd");
        require("containerd-shim-runc-v2", "containerd");
        let ctr = require("ctr", "containerd");
        let mut sb = Sandbox::new(tag);
        let sock = sb.path("containerd.sock");
        let disabled = [
            "io.containerd.grpc.v1.cri",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.internal.v1.tracing",
            "io.containerd.tracing.processor.v1.otlp",
        ];
        let config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = {:?}\n\n[grpc]\n  address = {:?}\n\n[debug]\n  level = \"info\"\n",
            sb.path("root").display().to_string(),
            sb.path("state").display().to_string(),
            disabled,
            sock.display().to_string(),
        );
        std::fs::write(sb.path("containerd.toml"), config).expect("write containerd.toml");
        let log = std::fs::File::create(sb.path("containerd.log")).expect("containerd.log");
        let child = Command::new(containerd)
            .arg("--config")
            .arg(sb.path("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("cannot start containerd");
        sb.adopt_daemon("containerd", child);
        let ns = unique(tag);
        // ctr puts containers in the cgroup /<namespace>/<id>.
        sb.own_cgroup(&format!("/{ns}"));
        let mut c = Containerd { sb, ns, sock, ctr };
        let up = wait_until(Duration::from_secs(15), || {
            c.sock.exists()
                && try_run_for(&mut c.cmd(&["version"]), Duration::from_secs(10))
                    .is_some_and(|o| o.status.success())
        });
        let alive = c.sb.daemon_alive("containerd");
        assert!(
            up && alive,
            "containerd did not come up:\n{}",
            c.sb.tail("containerd.log", 30)
        );
        c
    }

    /// `ctr --address <ours> --namespace <ours> args...`, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("--address")
            .arg(&self.sock)
            .arg("--namespace")
            .arg(&self.ns)
            .args(args);
        c
    }

    /// Runs `ctr args...`.
    #[track_caller]
    pub fn ctr(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args))
    }

    /// The runtime root the shim passes to skiff-runtime (`--root`).
    pub fn runtime_root(&self) -> PathBuf {
        self.sb.path("runtime-root")
    }

    /// skiff-runtime's state directory for container `id`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.runtime_root().join(&self.ns).join(id)
    }

    /// The cgroup (relative to each hierarchy) ctr gives container `id`.
    pub fn cgroup(&self, id: &str) -> String {
        format!("/{}/{id}", self.ns)
    }

    /// The bundle directory containerd's shim gives container `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.sb
            .path("state/io.containerd.runtime.v2.task")
            .join(&self.ns)
            .join(id)
    }

    /// `ctr run <flags> IMAGE <id> <argv>` with skiff-runtime as the runc binary, its root and
    /// the FIFOs inside the sandbox; not yet run.
    pub fn run_cmd(&self, flags: &[&str], id: &str, argv: &[&str]) -> Command {
        let mut c = self.cmd(&["run"]);
        c.arg("--runc-binary")
            .arg(self.sb.runtime_wrapper())
            .arg("--runc-root")
            .arg(self.runtime_root())
            .arg("--fifo-dir")
            .arg(self.sb.path("fifo"))
            .args(flags)
            .arg(IMAGE)
            .arg(id)
            .args(argv);
        c
    }

    /// Builds the busybox OCI archive and imports it as [`IMAGE`].
    pub fn import_busybox(&self) {
        let layer = busybox_layer(&self.sb);
        let archive = oci_archive(&self.sb, &layer);
        let archive = archive.display().to_string();
        self.ctr(&["image", "import", &archive]).ok();
        let images = self.ctr(&["image", "ls", "-q"]).ok().stdout;
        assert!(
            images.lines().any(|l| l == IMAGE),
            "{IMAGE} not imported: {images}"
        );
    }

    /// The status column of `ctr task ls` for `id` (RUNNING, PAUSED, STOPPED...).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]).ok().stdout;
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&id))
            .and_then(|f| f.get(2).map(|s| s.to_string()))
    }
}

/// A private dockerd (own data root, exec root, socket and pid file; its own containerd; no
/// bridge, no iptables) with skiff-runtime registered as the runtime `skiff`.
pub struct Dockerd {
    pub sb: Sandbox,
    pub cgroup_parent: String,
    sock: PathBuf,
    docker: PathBuf,
}

impl Dockerd {
    pub fn start(tag: &str) -> Dockerd {
        require_root();
        let dockerd = require("dockerd", "docker.io");
        let docker = require("docker", "docker.io");
        require("containerd", "containerd");
        let mut sb = Sandbox::new(tag);
        let sock = sb.path("docker.sock");
        // Without this dockerd 20.10 writes /etc/docker/key.json.
        let config = json!({"deprecated-key-path": sb.path("key.json")});
        std::fs::write(sb.path("daemon.json"), config.to_string()).expect("daemon.json");
        std::fs::create_dir_all(sb.path("docker-cli")).expect("docker cli config dir");
        let cgroup_parent = format!("/{}", unique(tag));
        sb.own_cgroup(&cgroup_parent);
        let log = std::fs::File::create(sb.path("dockerd.log")).expect("dockerd.log");
        let child = Command::new(dockerd)
            .arg("--config-file")
            .arg(sb.path("daemon.json"))
            .arg("--data-root")
            .arg(sb.path("data"))
            .arg("--exec-root")
            .arg(sb.path("exec"))
            .arg("--pidfile")
            .arg(sb.path("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .args([
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
            ])
            .arg(format!("--cgroup-parent={cgroup_parent}"))
            .arg(format!(
                "--add-runtime=skiff={}",
                sb.runtime_wrapper().display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("cannot start dockerd");
        sb.adopt_daemon("dockerd", child);
        let mut d = Dockerd {
            sb,
            cgroup_parent,
            sock,
            docker,
        };
        let up = wait_until(Duration::from_secs(60), || {
            d.sock.exists()
                && try_run_for(
                    &mut d.cmd(&["version", "--format", "{{.Server.Version}}"]),
                    Duration::from_secs(20),
                )
                .is_some_and(|o| o.status.success())
        });
        let alive = d.sb.daemon_alive("dockerd");
        assert!(
            up && alive,
            "dockerd did not come up:\n{}",
            d.sb.tail("dockerd.log", 40)
        );
        d
    }

    /// `docker -H <ours> args...`, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.docker);
        c.env("DOCKER_CONFIG", self.sb.path("docker-cli"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        c
    }

    /// Runs `docker args...`.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args))
    }

    /// The docker command line (for `script -c`), with every word single-quoted.
    pub fn shell_line(&self, args: &[&str]) -> String {
        let c = self.cmd(args);
        let words = std::iter::once(c.get_program()).chain(c.get_args());
        let env = format!(
            "DOCKER_CONFIG={}",
            shell_quote(&self.sb.path("docker-cli").to_string_lossy())
        );
        std::iter::once(env)
            .chain(words.map(|w| shell_quote(&w.to_string_lossy())))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `docker import`s the busybox rootfs as [`IMAGE`].
    pub fn import_busybox(&self) {
        let layer = busybox_layer(&self.sb);
        let layer = layer.display().to_string();
        self.docker(&["import", "--change", "CMD [\"sh\"]", &layer, IMAGE])
            .ok();
    }

    /// skiff-runtime's state directory for container `id` (dockerd 20.10 gives every runc-like
    /// runtime the root `<exec-root>/runtime-runc/moby`).
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.sb.path("exec/runtime-runc/moby").join(id)
    }

    /// The cgroup (relative to each hierarchy) of container `id`.
    pub fn cgroup(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }
}

/// Quotes `s` for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command started in the background whose stdout is read line by line.
pub struct Spawned {
    pub what: String,
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Spawned {
    pub fn start(cmd: &mut Command) -> Spawned {
        let what = describe(cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Spawned {
            what,
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits for a stdout line equal to `want`; panics after `timeout` or at end of output.
    #[track_caller]
    pub fn expect_line(&mut self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line == want;
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => panic!(
                    "`{}`: no line {want:?} on stdout ({e}); got {:?}; exited: {:?}",
                    self.what,
                    self.seen,
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Waits for the command to exit; kills it and panics after `timeout`.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => panic!(
                    "`{}` did not exit within {timeout:?}; stdout so far {:?}",
                    self.what, self.seen
                ),
            }
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Out {
            what: self.what.clone(),
            status,
            stdout: self.seen.iter().map(|l| format!("{l}\n")).collect(),
            stderr,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
