//! End-to-end tests of skiff-runtime: real containers (root), checked from the inside by the
//! probe and from the outside through /proc and /sys/fs/cgroup.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{cgroup_dirs, id, wait_until, Bundle, Rt};
use serde_json::json;

fn host_ns(name: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{name}"))
        .unwrap()
        .display()
        .to_string()
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn mount_at(probe: &serde_json::Value, target: &str) -> Option<String> {
    strs(&probe["mounts"])
        .into_iter()
        .find(|l| l.split(' ').nth(4) == Some(target))
}

#[test]
fn run_propagates_exit_codes_and_signals() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.args(&["sh", "-c", "echo out; echo err >&2; exit 7"]);
    let (code, out, err) = rt.run_bundle(&b, &id("exit7"));
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    // Killed from outside: the foreground `run` exits with 128+SIGKILL.
    b.args(&["sleep", "1000"]);
    let cid = id("killed");
    let child = rt
        .cmd()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &cid])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        || rt.run(&["state", &cid]).status.success() && rt.status(&cid) == "running",
        "running",
    );
    rt.ok(&["kill", &cid, "SIGKILL"]);
    assert_eq!(
        child.wait_with_output().unwrap().status.code(),
        Some(137),
        "128+SIGKILL"
    );
    // run removes the container afterwards: no state, no cgroup.
    assert!(std::fs::read_dir(rt.root.path()).unwrap().next().is_none());
    assert!(
        cgroup_dirs(&id("exit7")).is_empty(),
        "{:?}",
        cgroup_dirs(&id("exit7"))
    );
}

#[test]
fn the_probe_sees_an_isolated_container() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.set("/hostname", "probe-host".into())
        .set("/domainname", "example.org".into());
    b.set("/process/env", json!(["PATH=/bin", "FOO=bar"]));
    let p = rt.probe(&b, &id("iso"));
    assert_eq!(p["pid"], 1, "init is pid 1 of its own pid namespace");
    // This test process (like any Rust program) ignores SIGPIPE and ignored signals survive
    // execve: the container must start from the defaults (`yes | head` must end). Asked of
    // grep, not the probe, which as a Rust program ignores SIGPIPE itself.
    let mut g = Bundle::new();
    g.args(&["grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"]);
    let (code, out, err) = rt.run_bundle(&g, &id("sigs"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    assert_eq!(p["hostname"], "probe-host");
    assert_eq!(p["domainname"], "example.org");
    assert_eq!(p["cwd"], "/");
    assert!(p["uid"].as_str().unwrap().starts_with("0\t"));
    for ns in ["pid", "net", "mnt", "uts", "ipc", "cgroup"] {
        assert_ne!(
            p["ns"][ns].as_str().unwrap(),
            host_ns(ns),
            "{ns} namespace must be new"
        );
    }
    assert_eq!(
        p["ns"]["user"].as_str().unwrap(),
        host_ns("user"),
        "no user namespace asked for"
    );
    let env = strs(&p["env"]);
    assert!(
        env.contains(&"FOO=bar".to_string()) && env.contains(&"HOME=/root".to_string()),
        "{env:?}"
    );
    // runc's default spec: AUDIT_WRITE, KILL, NET_BIND_SERVICE = bits 29, 5, 10; no_new_privs.
    assert_eq!(
        p["cap_bnd"],
        format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10))
    );
    assert_eq!(p["cap_eff"], p["cap_bnd"]);
    assert_eq!(p["cap_inh"], "0000000000000000");
    assert_eq!(p["no_new_privs"], "1");
    assert_eq!(p["sig_blk"], "0000000000000000");
    assert_eq!(
        p["umask"], "0022",
        "runc's default umask when the spec has none"
    );
    assert!(strs(&p["limits"])
        .iter()
        .any(|l| l.starts_with("Max open files") && l.contains("1024                 1024")));
    // Mounts: proc, devpts, a read-only root, masked and read-only paths.
    assert!(mount_at(&p, "/proc").unwrap().contains(" - proc "));
    assert!(mount_at(&p, "/dev/pts").unwrap().contains(" - devpts "));
    assert!(
        mount_at(&p, "/")
            .unwrap()
            .split(' ')
            .nth(5)
            .unwrap()
            .starts_with("ro"),
        "readonly root"
    );
    assert!(mount_at(&p, "/proc/keys").is_some(), "masked path");
    assert!(mount_at(&p, "/proc/sys")
        .unwrap()
        .split(' ')
        .nth(5)
        .unwrap()
        .starts_with("ro"));
    assert!(mount_at(&p, "/sys/fs/cgroup").is_some());
    // Only stdio reaches the container (the probe's own readdir fd aside).
    let fds: Vec<String> = strs(&p["fds"])
        .into_iter()
        .filter(|f| !f.contains("/proc/"))
        .collect();
    assert_eq!(
        fds.len(),
        3,
        "no runtime fd leaks into the container: {fds:?}"
    );
}

#[test]
fn user_groups_umask_cwd_and_capabilities_apply() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 63}),
    );
    b.set("/process/cwd", "/tmp/work".into());
    b.set("/process/noNewPrivileges", false.into());
    b.set("/process/oomScoreAdj", 345.into());
    b.set(
        "/process/rlimits",
        json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]),
    );
    let caps = json!(["CAP_CHOWN", "CAP_NET_RAW"]);
    b.set(
        "/process/capabilities",
        json!({"bounding": caps, "effective": caps, "permitted": caps}),
    );
    let p = rt.probe(&b, &id("user"));
    assert!(p["uid"].as_str().unwrap().starts_with("1000\t1000"));
    assert!(p["gid"].as_str().unwrap().starts_with("1000\t1000"));
    assert_eq!(p["groups"], "10 20");
    assert_eq!(p["umask"], "0077");
    assert_eq!(p["cwd"], "/tmp/work", "a missing cwd is created");
    assert_eq!(p["cap_bnd"], format!("{:016x}", 1u64 | (1 << 13)));
    assert_eq!(p["cap_inh"], "0000000000000000");
    assert_eq!(p["no_new_privs"], "0");
    assert_eq!(p["oom_score_adj"], "345");
    assert!(strs(&p["limits"])
        .iter()
        .any(|l| l.starts_with("Max open files") && l.contains("321") && l.contains("654")));
}

#[test]
fn lifecycle_create_start_pause_resume_kill_delete() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let cid = id("life");
    let pidfile = b.path().join("pid");
    rt.bg(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &cid,
    ]);
    let st = rt.state(&cid);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], cid.as_str());
    assert_eq!(st["bundle"], b.path().to_str().unwrap());
    assert_eq!(st["rootfs"], b.rootfs().to_str().unwrap());
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert_eq!(st["pid"], pid);
    // Already in its cgroup while created.
    let procs: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &cid])).unwrap();
    assert_eq!(procs, vec![pid]);
    assert!(!cgroup_dirs(&cid).is_empty());
    // A duplicate id is refused and the first container is untouched.
    let dup = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), &cid]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("container with id exists"));
    rt.ok(&["start", &cid]);
    assert_eq!(rt.status(&cid), "running");
    let again = rt.run(&["start", &cid]);
    assert!(!again.status.success(), "start twice");
    rt.ok(&["pause", &cid]);
    assert_eq!(rt.status(&cid), "paused");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(
        stat.contains(") S ") || stat.contains(") D "),
        "frozen task sleeps: {stat}"
    );
    rt.ok(&["resume", &cid]);
    assert_eq!(rt.status(&cid), "running");
    let list: serde_json::Value =
        serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], cid.as_str());
    assert!(rt.ok(&["list"]).lines().nth(1).unwrap().starts_with(&cid));
    let busy = rt.run(&["delete", &cid]);
    assert!(!busy.status.success(), "a running container needs --force");
    rt.ok(&["kill", &cid, "KILL"]);
    wait_until(|| rt.status(&cid) == "stopped", "stopped after SIGKILL");
    assert_eq!(rt.state(&cid)["pid"], 0);
    rt.ok(&["delete", &cid]);
    assert!(!rt.root.path().join(&cid).exists());
    assert!(
        cgroup_dirs(&cid).is_empty(),
        "cgroup removed: {:?}",
        cgroup_dirs(&cid)
    );
    let gone = rt.run(&["state", &cid]);
    assert!(
        !gone.status.success() && String::from_utf8_lossy(&gone.stderr).contains("does not exist")
    );
    assert!(
        rt.run(&["delete", "--force", &cid]).status.success(),
        "delete --force of a missing container is fine"
    );
}

#[test]
fn delete_force_and_kill_all_clean_up_running_containers() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.args(&["sh", "-c", "sleep 1000 & sleep 1000 & sleep 1000"]);
    let cid = id("force");
    rt.bg(&[
        "run",
        "--detach",
        "--bundle",
        b.path().to_str().unwrap(),
        &cid,
    ]);
    wait_until(
        || {
            rt.ok(&["ps", "--format", "json", &cid])
                .matches(',')
                .count()
                >= 2
        },
        "three processes",
    );
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &cid])).unwrap();
    rt.ok(&["kill", "--all", &cid, "9"]);
    wait_until(|| rt.status(&cid) == "stopped", "all killed");
    rt.ok(&["delete", &cid]);
    for p in pids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .unwrap()
                    .contains(") Z ")
        );
    }
    let cid2 = id("force2");
    rt.bg(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &cid2]);
    rt.ok(&["pause", &cid2]);
    rt.ok(&["delete", "--force", &cid2]);
    assert!(cgroup_dirs(&cid2).is_empty());
    assert!(!rt.root.path().join(&cid2).exists());
}

#[test]
fn exec_joins_every_namespace_and_the_cgroup() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let cid = id("exec");
    rt.bg(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &cid]);
    let init = rt.state(&cid)["pid"].as_i64().unwrap();
    let out = rt.ok(&[
        "exec",
        "--env",
        "X=1",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        &cid,
        "/probe",
    ]);
    let p: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for ns in ["pid", "net", "mnt", "uts", "ipc", "cgroup"] {
        let theirs = std::fs::read_link(format!("/proc/{init}/ns/{ns}"))
            .unwrap()
            .display()
            .to_string();
        assert_eq!(
            p["ns"][ns].as_str().unwrap(),
            theirs,
            "exec joins the {ns} namespace"
        );
    }
    assert_ne!(p["pid"], 1);
    assert_eq!(p["cwd"], "/tmp");
    assert!(p["uid"].as_str().unwrap().starts_with("1000\t"));
    assert!(strs(&p["env"]).contains(&"X=1".to_string()));
    // In the container's cgroup namespace, whose root is the container's cgroup (the detached
    // exec below checks the host's view).
    assert!(
        strs(&p["cgroup"]).iter().all(|l| l.ends_with(":/")),
        "{:?}",
        p["cgroup"]
    );
    // exit codes, --cap without inheritable (CVE-2022-29162), missing commands.
    let o = rt.run(&["exec", &cid, "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    let out = rt.ok(&["exec", "--cap", "CAP_SYS_ADMIN", &cid, "/probe"]);
    let p: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(p["cap_inh"], "0000000000000000");
    assert_ne!(
        u64::from_str_radix(p["cap_eff"].as_str().unwrap(), 16).unwrap() & (1 << 21),
        0
    );
    let o = rt.run(&["exec", &cid, "no-such-command"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("executable file not found in $PATH"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // --detach with --pid-file
    let pf = b.path().join("exec.pid");
    rt.bg(&[
        "exec",
        "-d",
        "--pid-file",
        pf.to_str().unwrap(),
        &cid,
        "sleep",
        "500",
    ]);
    let epid: i32 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &cid])).unwrap();
    assert!(pids.contains(&epid), "{epid} in {pids:?}");
    rt.ok(&["delete", "--force", &cid]);
    assert!(rt.run(&["exec", &cid, "true"]).status.code() != Some(0));
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing_behind() {
    let rt = Rt::new();
    let check = |b: &Bundle, cid: &str, words: &str| {
        let o = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), cid]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{cid} should fail");
        assert!(err.contains(words), "{cid}: expected {words:?} in {err:?}");
        assert!(
            !rt.root.path().join(cid).exists(),
            "{cid}: state dir left behind"
        );
        assert!(cgroup_dirs(cid).is_empty(), "{cid}: cgroup left behind");
    };
    let mut b = Bundle::new();
    std::fs::write(
        b.path().join("config.json"),
        b"{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .unwrap();
    check(&b, &id("badjson"), "config.json");
    b.save();
    b.set("/root/path", "nope".into());
    check(&b, &id("norootfs"), "nope");
    b.set("/root/path", "rootfs".into());
    b.push("/linux/namespaces", json!({"type": "bogus"}));
    check(&b, &id("badns"), "bogus");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .pop();
    b.args(&["no-such-binary"]);
    check(&b, &id("noexec"), "executable file not found in $PATH");
    b.args(&["/etc/passwd"]);
    check(&b, &id("noperm"), "permission denied");
    b.args(&["/probe"]);
    b.set("/hooks", json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-broke >&2; exit 1"]}]}));
    check(&b, &id("badhook"), "hook-broke");
    b.set("/hooks", json!({}));
    b.push("/mounts", json!({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]}));
    check(&b, &id("badmount"), "/no/such/dir");
    let o = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), "bad/id"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid container id"));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(b.path().to_str().unwrap()),
        "no stray mount of the bundle on the host"
    );
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    let log = b.path().join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo \"{name} $s\" >> {}", log.display())]});
    b.set("/hooks", json!({
        "prestart": [hook("prestart")], "createRuntime": [hook("createRuntime")],
        "createContainer": [hook("createContainer")], "startContainer": [hook("startContainer")],
        "poststart": [hook("poststart")], "poststop": [hook("poststop")]
    }));
    b.args(&["true"]);
    // startContainer runs inside the container: give it the bundle dir at the same path.
    let p = b.path().to_str().unwrap().to_string();
    b.push(
        "/mounts",
        json!({"destination": p, "type": "bind", "source": p, "options": ["rbind"]}),
    );
    let cid = id("hooks");
    let (code, _, err) = rt.run_bundle(&b, &cid);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    for l in text.lines() {
        let st: serde_json::Value = serde_json::from_str(l.split_once(' ').unwrap().1).unwrap();
        assert_eq!(st["id"], cid.as_str());
        assert_eq!(st["bundle"], b.path().to_str().unwrap());
    }
}

#[test]
fn terminal_goes_to_the_console_socket() {
    use std::os::fd::AsFd;
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.set("/process/terminal", true.into());
    b.args(&[
        "sh",
        "-c",
        "readlink /proc/self/fd/0; test -t 1 && echo is-a-tty",
    ]);
    let sock_path = b.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let cid = id("tty");
    let child = rt
        .cmd()
        .args([
            "create",
            "--bundle",
            b.path().to_str().unwrap(),
            "--console-socket",
            sock_path.to_str().unwrap(),
            &cid,
        ])
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let master = skiff_sys::socket::recv_fd(conn.as_fd()).expect("pty master over SCM_RIGHTS");
    assert!(child.wait_with_output().unwrap().status.success());
    rt.ok(&["start", &cid]);
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 256];
    loop {
        use std::io::Read;
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("/dev/pts/0") && text.contains("is-a-tty"),
        "{text:?}"
    );
    rt.ok(&["delete", "--force", &cid]);
}

#[test]
fn foreground_run_forwards_signals() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.args(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    let mut child = rt
        .cmd()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id("sig")])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(42));
}

#[test]
fn cgroup_limits_are_applied_and_enforced() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    let cgpath = format!("/skiff-test/{}", id("limits"));
    b.set("/linux/cgroupsPath", cgpath.clone().into());
    b.set(
        "/linux/resources",
        json!({
            "memory": {"limit": 33554432, "swap": 33554432},
            "cpu": {"quota": 20000, "period": 100000, "shares": 512},
            "pids": {"limit": 20},
            "devices": [{"allow": false, "access": "rwm"}]
        }),
    );
    b.args(&["sleep", "1000"]);
    let cid = id("limits");
    rt.bg(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &cid]);
    // The same limits land in v1 files here (hybrid host) and in v2 files in the VM lane.
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let cg = |c: &str, f: &str| {
        let dir = if v2 {
            format!("/sys/fs/cgroup{cgpath}")
        } else {
            format!("/sys/fs/cgroup/{c}{cgpath}")
        };
        std::fs::read_to_string(format!("{dir}/{f}"))
            .unwrap()
            .trim()
            .to_string()
    };
    let mem = || {
        if v2 {
            cg("memory", "memory.max")
        } else {
            cg("memory", "memory.limit_in_bytes")
        }
    };
    assert_eq!(mem(), "33554432");
    if v2 {
        assert_eq!(cg("cpu", "cpu.max"), "20000 100000");
        assert_eq!(
            cg("cpu", "cpu.weight"),
            "59",
            "shares 512 converted as crun does"
        );
    } else {
        assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(cg("cpu", "cpu.shares"), "512");
    }
    assert_eq!(cg("pids", "pids.max"), "20");
    // update: raise the memory limit through --resources - and through a flag.
    let mut upd = rt
        .cmd()
        .args(["update", "--resources", "-", &cid])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    upd.stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory": {"limit": 67108864, "swap": 67108864}}"#)
        .unwrap();
    assert!(upd.wait().unwrap().success());
    assert_eq!(mem(), "67108864");
    rt.ok(&["update", "--pids-limit", "30", &cid]);
    assert_eq!(cg("pids", "pids.max"), "30");
    let ev: serde_json::Value = serde_json::from_str(&rt.ok(&["events", "--stats", &cid])).unwrap();
    assert_eq!(ev["type"], "stats");
    assert!(
        ev["data"]["memory"]["usage"]["limit"].as_u64().unwrap() == 67108864,
        "{ev}"
    );
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1);
    rt.ok(&["delete", "--force", &cid]);
    assert!(cgroup_dirs(&id("limits")).is_empty(), "cgroup removed");

    // Enforcement: past the memory limit the container is OOM-killed; pids limit fails fork.
    b.args(&["/probe", "alloc", "200"]);
    b.set(
        "/linux/resources/memory",
        json!({"limit": 33554432, "swap": 33554432}),
    );
    let (code, out, _) = rt.run_bundle(&b, &id("oom"));
    assert_eq!(code, 137, "OOM-killed: {out}");
    b.args(&["/probe", "fork", "50"]);
    b.set("/linux/resources/pids", json!({"limit": 10}));
    b.set("/linux/resources/memory", json!({"limit": 268435456}));
    let (code, out, _) = rt.run_bundle(&b, &id("pids"));
    assert_eq!(code, 0, "the container survives a failed fork");
    let started: usize = out
        .trim()
        .strip_prefix("started ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(started < 10, "pids.max=10 stops fork: {out}");
}

#[test]
fn namespaces_can_be_joined_by_path() {
    let rt = Rt::new();
    let mut a = Bundle::new();
    a.args(&["sleep", "1000"]);
    let ca = id("nsa");
    rt.bg(&["run", "-d", "--bundle", a.path().to_str().unwrap(), &ca]);
    let apid = rt.state(&ca)["pid"].as_i64().unwrap();
    let mut b = Bundle::new();
    let mut nss: Vec<serde_json::Value> =
        b.config["linux"]["namespaces"].as_array().unwrap().clone();
    for ns in nss.iter_mut() {
        let t = ns["type"].as_str().unwrap().to_string();
        if t == "network" || t == "ipc" || t == "uts" {
            let f = if t == "network" { "net" } else { t.as_str() };
            ns["path"] = format!("/proc/{apid}/ns/{f}").into();
        }
    }
    b.set("/linux/namespaces", nss.into());
    b.set("/hostname", serde_json::Value::Null);
    let p = rt.probe(&b, &id("nsb"));
    for (k, f) in [("net", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        let theirs = std::fs::read_link(format!("/proc/{apid}/ns/{f}"))
            .unwrap()
            .display()
            .to_string();
        assert_eq!(p["ns"][k].as_str().unwrap(), theirs, "{k} joined");
    }
    assert_ne!(
        p["ns"]["pid"].as_str().unwrap(),
        std::fs::read_link(format!("/proc/{apid}/ns/pid"))
            .unwrap()
            .display()
            .to_string()
    );
    assert_eq!(p["pid"], 1);
    // Detached, its init is inside its own cgroup (the intermediate process is placed before
    // it forks the init).
    b.args(&["sleep", "1000"]);
    let cb = id("nsb2");
    rt.bg(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &cb]);
    let bpid = rt.state(&cb)["pid"].as_i64().unwrap();
    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &cb])).unwrap();
    assert_eq!(pids, vec![bpid]);
    rt.ok(&["delete", "--force", &cb]);
    // A new user namespace while joining a network namespace by path (a pod with userns).
    b.args(&["/probe"]);
    b.set(
        "/linux/namespaces",
        json!([
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"},
            {"type": "network", "path": format!("/proc/{apid}/ns/net")}
        ]),
    );
    b.userns();
    let p = rt.probe(&b, &id("nsb3"));
    assert_eq!(
        p["uid_map"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(p["pid"], 1);
    rt.ok(&["delete", "--force", &ca]);
}

#[test]
fn user_namespace_maps_root() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.push("/linux/namespaces", json!({"type": "user"}));
    b.userns();
    let p = rt.probe(&b, &id("userns"));
    assert!(p["uid"].as_str().unwrap().starts_with("0\t"));
    assert_eq!(
        p["uid_map"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_ne!(p["ns"]["user"].as_str().unwrap(), host_ns("user"));
}

#[test]
fn time_namespace_offsets_apply() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.push("/linux/namespaces", json!({"type": "time"}));
    b.set(
        "/linux/timeOffsets",
        json!({"boottime": {"secs": 1000000, "nanosecs": 0}}),
    );
    let p = rt.probe(&b, &id("timens"));
    let up: f64 = p["uptime"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(up >= 1_000_000.0, "boottime offset applies inside: {up}");
    assert_ne!(p["ns"]["time"].as_str().unwrap(), host_ns("time"));
}

#[test]
fn mounts_devices_sysctls_and_readonly_binds() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    let host_dir = b.path().join("shared");
    std::fs::create_dir(&host_dir).unwrap();
    b.push("/mounts", json!({"destination": "/data/ro", "type": "bind", "source": host_dir, "options": ["rbind", "ro"]}));
    b.push("/mounts", json!({"destination": "/data/rw", "type": "bind", "source": host_dir, "options": ["bind", "rw"]}));
    b.push("/mounts", json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700", "noexec"]}));
    b.set("/linux/devices", json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]));
    b.set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"}));
    b.args(&["sh", "-c", "/probe write /data/ro/a; /probe write /data/rw/b; /probe write /scratch/c; /probe write /x; stat -c '%t:%T %a' /dev/fuse; cat /proc/sys/net/ipv4/ip_forward; wc -c < /proc/keys"]);
    let (code, out, err) = rt.run_bundle(&b, &id("mounts"));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "error 30", "read-only bind: EROFS");
    assert_eq!(lines[1], "ok");
    assert_eq!(lines[2], "ok");
    assert_eq!(lines[3], "error 30", "read-only rootfs");
    assert_eq!(lines[4], "a:e5 666", "spec device created with its mode");
    assert_eq!(lines[5], "1", "sysctl applied in the container's netns");
    assert_eq!(lines[6], "0", "/proc/keys is masked");
    assert!(host_dir.join("b").exists() && !host_dir.join("a").exists());
}

#[test]
fn preserve_fds_passes_extra_fds_and_nothing_else() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.args(&["sh", "-c", "cat <&3; ls /proc/self/fd | wc -l"]);
    let file = b.path().join("fd3");
    std::fs::write(&file, "through-fd-3\n").unwrap();
    // A shell opens fd 3 (without close-on-exec) and execs the runtime with it.
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("exec 3<{}; exec \"$0\" \"$@\"", file.display()))
        .arg(common::BIN)
        .arg("--root")
        .arg(rt.root.path())
        .args([
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            b.path().to_str().unwrap(),
            &id("fds"),
        ]);
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.starts_with("through-fd-3\n"), "{out}");
}

#[test]
fn no_pivot_and_version_and_features() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.args(&["cat", "/proc/self/mountinfo"]);
    let o = rt
        .cmd()
        .args([
            "run",
            "--no-pivot",
            "--bundle",
            b.path().to_str().unwrap(),
            &id("nopivot"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = rt.ok(&["--version"]);
    assert!(
        v.starts_with("skiff-runtime version ")
            && v.contains("\ncommit: ")
            && v.contains("\nspec: "),
        "{v}"
    );
    let f: serde_json::Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert!(strs(&f["linux"]["namespaces"]).contains(&"time".to_string()));
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);
    let o = rt.run(&["--systemd-cgroup", "list"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("systemd"));
}

#[test]
fn json_log_format_for_containerd() {
    let rt = Rt::new();
    let b = Bundle::new();
    let log = b.path().join("log.json");
    let o = rt
        .cmd()
        .args([
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "state",
            "nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let last = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"));
}

#[test]
fn many_create_delete_cycles_leak_nothing() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.args(&["true"]);
    let bundle = b.path().to_str().unwrap().to_string();
    let count_mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&bundle))
            .count()
    };
    // Any process still naming one of these containers (an init left waiting, a stray child).
    let prefix = id("cycle");
    let leftovers = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&prefix))
            .collect()
    };
    let m0 = count_mounts();
    let n: usize = std::env::var("SKIFF_TEST_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for i in 0..n {
        let cid = format!("{}-{i}", id("cycle"));
        rt.bg(&["create", "--bundle", b.path().to_str().unwrap(), &cid]);
        rt.ok(&["delete", "--force", &cid]);
    }
    assert_eq!(
        (m0, count_mounts()),
        (0, 0),
        "no container mount is visible on the host"
    );
    assert!(leftovers().is_empty(), "processes left: {:?}", leftovers());
    assert!(
        std::fs::read_dir(rt.root.path())
            .unwrap()
            .flatten()
            .all(|e| !e.path().is_dir()),
        "state dirs left"
    );
    assert!(cgroup_dirs(&format!("{}-0", id("cycle"))).is_empty());
    assert!(cgroup_dirs(&format!("{}-{}", id("cycle"), n - 1)).is_empty());
}

#[test]
fn seccomp_profiles_apply_to_the_container_and_exec() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.set("/linux/seccomp", json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    }));
    b.args(&[
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; mkdir /tmp/nope 2>&1; echo rc=$?",
    ]);
    let (code, out, err) = rt.run_bundle(&b, &id("seccomp"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        out.contains("Permission denied") && out.contains("rc=1"),
        "errnoRet 13 = EACCES: {out}"
    );
    // exec'd processes get the container's filter too.
    b.args(&["sleep", "1000"]);
    let cid = id("seccomp-exec");
    rt.bg(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &cid]);
    let o = rt.run(&["exec", &cid, "mkdir", "/tmp/nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    rt.ok(&["delete", "--force", &cid]);
}

#[test]
fn seccomp_notify_sends_the_listener_to_listener_path() {
    use std::os::fd::AsFd;
    let rt = Rt::new();
    let mut b = Bundle::new();
    let sock = b.path().join("seccomp.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "hello-agent",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    b.args(&["sh", "-c", "mkdir /tmp/x 2>&1; echo done"]);
    let cid = id("notify");
    let child = rt
        .cmd()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &cid])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut payload = [0u8; 4096];
    let (n, fd) = skiff_sys::socket::recv_with_fd(conn.as_fd(), &mut payload).unwrap();
    let fd = fd.expect("listener fd");
    let link = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .unwrap();
    assert!(link.to_string_lossy().contains("seccomp"), "{link:?}");
    let msg: serde_json::Value = serde_json::from_slice(&payload[..n]).unwrap();
    assert_eq!(msg["fds"], json!(["seccompFd"]));
    assert_eq!(msg["metadata"], "hello-agent");
    assert_eq!(msg["state"]["id"], cid.as_str());
    assert!(msg["pid"].as_i64().unwrap() > 0);
    // Closing the listener lets the trapped mkdir fail (ENOSYS) instead of hanging.
    drop(fd);
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("done"));
    // Without a listenerPath, NOTIFY is refused up front.
    b.set("/linux/seccomp", json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
    let (code, _, err) = rt.run_bundle(&b, &id("notify2"));
    assert_ne!(code, 0);
    assert!(err.contains("listenerPath"), "{err}");
}

#[test]
fn rootfs_and_mount_propagation_apply() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    let shared = b.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    // A shared mount on the host (this host's / is private), so a slave has a master.
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    mount(
        Some(&shared),
        &shared,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(shared.clone());
    mount(
        None::<&str>,
        &shared,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    b.push("/mounts", json!({"destination": "/data", "type": "bind", "source": shared, "options": ["rbind", "rslave"]}));
    b.push(
        "/mounts",
        json!({"destination": "/priv", "type": "tmpfs", "source": "tmpfs", "options": ["private"]}),
    );
    // mountinfo: the fields after the 6th, up to " - ", are the propagation fields.
    let optional = |p: &serde_json::Value, target: &str| {
        let line = mount_at(p, target).unwrap_or_else(|| panic!("{target} not mounted"));
        line.split(" - ")
            .next()
            .unwrap()
            .split(' ')
            .skip(6)
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Default (rslave): a slave bind receives the host's mounts, a private tmpfs nothing.
    let p = rt.probe(&b, &id("propagation"));
    assert!(
        optional(&p, "/data").contains("master:"),
        "rslave bind: {}",
        optional(&p, "/data")
    );
    assert_eq!(
        optional(&p, "/priv"),
        "",
        "private tmpfs has no propagation"
    );
    assert!(
        !optional(&p, "/").contains("shared:"),
        "{}",
        optional(&p, "/")
    );
    // rootfsPropagation rshared: the container's root is shared (and pivot_root still works).
    b.set("/linux/rootfsPropagation", "rshared".into());
    let p = rt.probe(&b, &id("propagation2"));
    assert!(
        optional(&p, "/").contains("shared:"),
        "rootfsPropagation rshared: {}",
        optional(&p, "/")
    );
    b.set("/linux/rootfsPropagation", "sideways".into());
    let (code, _, err) = rt.run_bundle(&b, &id("badprop"));
    assert_ne!(code, 0);
    assert!(err.contains("rootfsPropagation"), "{err}");
}

#[test]
fn no_capabilities_in_the_spec_means_none_at_all() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.config["process"]
        .as_object_mut()
        .unwrap()
        .remove("capabilities");
    b.save();
    let p = rt.probe(&b, &id("nocaps"));
    for set in ["cap_bnd", "cap_eff", "cap_prm", "cap_inh", "cap_amb"] {
        assert_eq!(p[set], "0000000000000000", "{set}");
    }
}
