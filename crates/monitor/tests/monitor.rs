//! The monitor for real (root): busybox containers run through it, with logs, attach,
//! stdin, a tty, and an exit status, and it keeps memory bounded under a flood of output.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_monitor::logfile::{read_all, Stream};
use skiff_monitor::protocol::{read_frame, write_frame, RESIZE, STDIN, STDOUT};

const BIN: &str = env!("CARGO_BIN_EXE_skiff-monitor");

struct Setup {
    tmp: tempfile::TempDir,
}

impl Setup {
    fn new(args: &[&str], tty: bool) -> Setup {
        assert!(nix::unistd::geteuid().is_root(), "these tests need root");
        let tmp = tempfile::Builder::new()
            .prefix("skiff-mon-")
            .tempdir_in("/tmp")
            .unwrap();
        let rootfs = tmp.path().join("bundle/rootfs");
        for d in ["bin", "proc", "dev", "tmp", "sys"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let bb = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static");
        std::fs::copy(bb, rootfs.join("bin/busybox")).unwrap();
        for a in ["sh", "cat", "echo", "yes", "head", "tty", "stty", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        let config = json!({
            "ociVersion": "1.2.0",
            "process": {"terminal": tty, "user": {"uid": 0, "gid": 0}, "args": args,
                        "env": ["PATH=/bin"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "hostname": "mon",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}
            ],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]}
        });
        std::fs::write(
            tmp.path().join("bundle/config.json"),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
        Setup { tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("mon")
    }

    fn log(&self) -> PathBuf {
        self.tmp.path().join("c.log")
    }

    /// Starts the monitor; returns it and the readiness line.
    fn spawn(&self, id: &str, extra: &[&str]) -> (std::process::Child, String) {
        let (r, w) = nix::unistd::pipe().unwrap();
        let child = Command::new(BIN)
            .args(["--id", id, "--bundle"])
            .arg(self.tmp.path().join("bundle"))
            .arg("--runtime-root")
            .arg(self.tmp.path().join("rt"))
            .arg("--dir")
            .arg(self.dir())
            .arg("--log")
            .arg(self.log())
            .args(["--ready-fd", &w.as_raw_fd().to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        drop(w);
        let mut line = String::new();
        BufReader::new(std::fs::File::from(r))
            .read_line(&mut line)
            .unwrap();
        (child, line)
    }

    fn connect(&self, cmd: &str) -> (UnixStream, String) {
        let mut s = UnixStream::connect(self.dir().join(skiff_monitor::SOCKET)).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            reply.push(b[0]);
        }
        (s, String::from_utf8(reply).unwrap())
    }

    fn wait_exit(&self, child: &mut std::process::Child) -> skiff_monitor::ExitStatus {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Some(st) = skiff_monitor::read_exit(&self.dir()) {
                let _ = child.wait();
                return st;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the monitor did not record an exit");
    }
}

#[test]
fn output_goes_to_the_json_log_and_the_exit_code_is_recorded() {
    let s = Setup::new(
        &["sh", "-c", "echo out; echo err >&2; printf partial; exit 3"],
        false,
    );
    let (mut child, ready) = s.spawn("mon-log", &[]);
    assert!(ready.starts_with("ok "), "{ready}");
    // Its own session: a daemon's death (or its process group's) does not reach it.
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(child.id() as i32))).unwrap();
    assert_eq!(sid.as_raw(), child.id() as i32);
    let st = s.wait_exit(&mut child);
    assert_eq!(st.exit_code, 3);
    assert!(st.error.is_empty());
    let logs = read_all(&s.log(), 1).unwrap();
    let mut got: Vec<(String, Stream)> = logs.iter().map(|e| (e.log.clone(), e.stream)).collect();
    got.sort_by_key(|(l, _)| l.clone());
    assert_eq!(
        got,
        [
            ("err\n".into(), Stream::Stderr),
            ("out\n".into(), Stream::Stdout),
            ("partial".into(), Stream::Stdout)
        ]
    );
    // Nothing of the container is left in the runtime.
    assert!(
        std::fs::read_dir(s.tmp.path().join("rt"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

#[test]
fn attach_before_start_sees_everything_and_stdin_flows() {
    let s = Setup::new(&["sh", "-c", "echo first; cat; echo after-eof"], false);
    let (mut child, ready) = s.spawn("mon-attach", &["--wait-start", "--stdin"]);
    assert!(ready.starts_with("ok "), "{ready}");
    let (mut att, ok) = s.connect("attach");
    assert_eq!(ok, "ok");
    let (_, ok) = s.connect("start");
    assert_eq!(ok, "ok");
    write_frame(&mut att, STDIN, b"hello through stdin\n").unwrap();
    write_frame(&mut att, STDIN, b"").unwrap();
    let mut out = Vec::new();
    while let Some((kind, data)) = read_frame(&mut att).unwrap() {
        assert_eq!(kind, STDOUT);
        out.extend(data);
    }
    assert_eq!(
        String::from_utf8_lossy(&out),
        "first\nhello through stdin\nafter-eof\n"
    );
    assert_eq!(s.wait_exit(&mut child).exit_code, 0);
    let (_, again) = (0, s.dir().join(skiff_monitor::SOCKET).exists());
    assert!(!again, "the socket is removed at exit");
}

#[test]
fn a_tty_container_gets_its_size_and_a_pty() {
    let s = Setup::new(&["sh", "-c", "tty; stty size"], true);
    let (mut child, ready) = s.spawn("mon-tty", &["--wait-start", "--tty"]);
    assert!(ready.starts_with("ok "), "{ready}");
    let (mut att, ok) = s.connect("attach");
    assert_eq!(ok, "ok");
    write_frame(&mut att, RESIZE, &[0, 33, 0, 99]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let (_, ok) = s.connect("start");
    assert_eq!(ok, "ok");
    let mut out = Vec::new();
    while let Some((_, data)) = read_frame(&mut att).unwrap() {
        out.extend(data);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("/dev/console") || text.contains("/dev/pts/"),
        "{text}"
    );
    assert!(text.contains("33 99"), "{text}");
    assert_eq!(s.wait_exit(&mut child).exit_code, 0);
}

#[test]
fn a_flood_of_output_keeps_the_monitor_small_and_the_log_rotated() {
    let s = Setup::new(
        &[
            "sh",
            "-c",
            "yes 0123456789abcdef0123456789abcdef | head -c 20000000",
        ],
        false,
    );
    let (mut child, ready) = s.spawn(
        "mon-flood",
        &["--log-max-size", "1000000", "--log-max-file", "2"],
    );
    assert!(ready.starts_with("ok "), "{ready}");
    let pid = child.id();
    let mut peak_kb = 0u64;
    while skiff_monitor::read_exit(&s.dir()).is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for l in status.lines().filter(|l| l.starts_with("VmHWM:")) {
                peak_kb = l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(peak_kb);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.wait_exit(&mut child).exit_code, 0);
    assert!(
        peak_kb > 0 && peak_kb < 32 * 1024,
        "monitor peak RSS {peak_kb} kB"
    );
    for f in ["c.log", "c.log.1"] {
        let len = std::fs::metadata(s.tmp.path().join(f)).unwrap().len();
        assert!(len <= 1_000_000, "{f} is {len} bytes");
    }
    assert!(!s.tmp.path().join("c.log.2").exists());
}

#[test]
fn a_container_that_cannot_start_reports_why() {
    let s = Setup::new(&["/no/such/binary"], false);
    let (mut child, ready) = s.spawn("mon-bad", &[]);
    assert!(
        ready.starts_with("error ") && ready.contains("/no/such/binary"),
        "{ready}"
    );
    let st = s.wait_exit(&mut child);
    assert!(st.error.contains("/no/such/binary"), "{st:?}");
}
