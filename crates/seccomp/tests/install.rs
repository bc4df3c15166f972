//! Real filters installed in a child process: each test re-executes this test binary with
//! `SKIFF_SECCOMP_CHILD=<test>`; the child installs the filter, probes syscalls and exits 0 if
//! every verdict was as expected (or reports on stderr and exits 1). The filters never touch the
//! test runner itself. Installing needs no root: the child sets no_new_privs first.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use nix::errno::Errno;
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;
use skiff_seccomp::{compile, docker_default, Filter};
use skiff_sys::seccomp::{probe, set_no_new_privs};

const CHILD_ENV: &str = "SKIFF_SECCOMP_CHILD";

/// Runs `child` in a fresh process (this binary, only test `name`) and returns its output.
/// In that child process, runs `child` and exits.
fn isolated(name: &str, child: impl FnOnce() -> Result<(), String>) -> Output {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        let code = match child() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("child {name}: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .output()
        .expect("re-run test binary")
}

fn assert_child_ok(out: &Output) {
    assert!(
        out.status.success(),
        "child failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn filter(v: serde_json::Value) -> Filter {
    let s: LinuxSeccomp = serde_json::from_value(v).expect("valid profile");
    compile(&s).expect("compiles")
}

fn install(f: &Filter) -> Result<Option<std::os::fd::OwnedFd>, String> {
    set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    f.install().map_err(|e| format!("install: {e}"))
}

fn expect_errno<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, Errno>,
    want: Errno,
) -> Result<(), String> {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: expected {want}, got {other:?}")),
    }
}

fn io_errno<T>(r: std::io::Result<T>) -> Result<T, Errno> {
    r.map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("skiff-seccomp-{name}-{}", std::process::id()))
}

fn seccomp_mode(status: &str) -> Option<&str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim)
}

#[test]
fn errno_rules_give_their_errno() {
    let out = isolated("errno_rules_give_their_errno", || {
        let f = filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28},
                {"names": ["rmdir", "unlinkat"], "action": "SCMP_ACT_ERRNO"}
            ]
        }));
        let dir = scratch("errno");
        let _ = std::fs::create_dir(&dir); // before the filter: must work
        install(&f)?;
        expect_errno(
            "mkdir",
            io_errno(std::fs::create_dir(dir.join("sub"))),
            Errno::ENOSPC,
        )?;
        expect_errno("rmdir", io_errno(std::fs::remove_dir(&dir)), Errno::EPERM)
    });
    assert_child_ok(&out);
    let _ = std::fs::remove_dir(scratch("errno"));
}

#[test]
fn argument_filter_on_personality() {
    let out = isolated("argument_filter_on_personality", || {
        // Like Docker's profile: only the query personality(0xffffffff) is allowed.
        let f = filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 0, "value": 0xffff_ffff_u64, "op": "SCMP_CMP_NE"}]}
            ]
        }));
        install(&f)?;
        nix::sys::personality::get().map_err(|e| format!("personality(0xffffffff): {e}"))?;
        expect_errno(
            "personality(ADDR_NO_RANDOMIZE)",
            nix::sys::personality::set(nix::sys::personality::Persona::ADDR_NO_RANDOMIZE),
            Errno::EPERM,
        )
    });
    assert_child_ok(&out);
}

#[test]
fn kill_process_kills_with_sigsys() {
    let out = isolated("kill_process_kills_with_sigsys", || {
        let f = filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
        }));
        install(&f)?;
        let _ = std::os::unix::process::parent_id();
        Err("still alive after getppid".to_string())
    });
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSYS),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn notify_returns_a_listener() {
    let out = isolated("notify_returns_a_listener", || {
        let f = filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        if !f.needs_listener() {
            return Err("needs_listener() is false".into());
        }
        let fd = install(&f)?.ok_or("install returned no listener fd")?;
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .map_err(|e| e.to_string())?;
        if link.to_string_lossy() != "anon_inode:seccomp notify" {
            return Err(format!("listener fd is {link:?}"));
        }
        // With the listener closed, a notified syscall fails with ENOSYS instead of blocking.
        drop(fd);
        expect_errno(
            "mkdir without listener",
            io_errno(std::fs::create_dir(scratch("notify"))),
            Errno::ENOSYS,
        )
    });
    assert_child_ok(&out);
}

#[test]
fn tsync_log_spec_allow_flags() {
    let out = isolated("tsync_log_spec_allow_flags", || {
        let f = filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                      "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }));
        install(&f)?;
        // The test runner's main thread is another thread of this process: TSYNC put it under
        // the filter too.
        let mut tasks = 0;
        for task in std::fs::read_dir("/proc/self/task").map_err(|e| e.to_string())? {
            let path = task.map_err(|e| e.to_string())?.path().join("status");
            let status = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            if seccomp_mode(&status) != Some("2") {
                return Err(format!("{} is not in seccomp filter mode", path.display()));
            }
            tasks += 1;
        }
        if tasks < 2 {
            return Err(format!("expected several threads, found {tasks}"));
        }
        expect_errno(
            "mkdir",
            io_errno(std::fs::create_dir(scratch("tsync"))),
            Errno::EPERM,
        )
    });
    assert_child_ok(&out);
}

#[test]
fn docker_default_runs_work_and_denies_escapes() {
    let out = isolated("docker_default_runs_work_and_denies_escapes", || {
        let f = compile(&docker_default()).map_err(|e| e.to_string())?;
        install(&f)?;
        let status =
            std::fs::read_to_string("/proc/thread-self/status").map_err(|e| e.to_string())?;
        if seccomp_mode(&status) != Some("2") {
            return Err("not in seccomp filter mode".into());
        }
        // fork+exec still work (glibc's posix_spawn tries clone3, gets ENOSYS, uses clone).
        let st = Command::new("/bin/true")
            .status()
            .map_err(|e| format!("spawn /bin/true: {e}"))?;
        if !st.success() {
            return Err(format!("/bin/true: {st:?}"));
        }
        let out = Command::new("/bin/sh")
            .args(["-c", "echo hi | cat"])
            .output()
            .map_err(|e| format!("spawn sh: {e}"))?;
        if out.stdout != b"hi\n" {
            return Err(format!("sh pipeline printed {:?}", out.stdout));
        }
        expect_errno(
            "unshare(CLONE_NEWUSER)",
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER),
            Errno::EPERM,
        )?;
        expect_errno("keyctl", probe::keyctl_get_session_keyring(), Errno::EPERM)?;
        expect_errno("bpf", probe::bpf_null(), Errno::EPERM)?;
        expect_errno(
            "mount",
            nix::mount::mount(
                Some("none"),
                "/tmp",
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            ),
            Errno::EPERM,
        )
    });
    assert_child_ok(&out);
}
