//! The engines that run skiff-runtime: Debian's containerd 1.6 (through `ctr` and the
//! io.containerd.runc.v2 shim) and Debian's dockerd 20.10 (`--add-runtime skiff=...`), each
//! started privately by the test with its own directories and socket, on a busybox image built
//! here from busybox-static. Root only (CI runs as root); a missing package is a panic that
//! names it.
//!
//! Each test checks what the engine reports (output, exit codes, task status, metrics) and what
//! the host shows (skiff-runtime's state directory, the container's cgroup, mounts), and leaves
//! nothing behind: the `Sandbox` guard stops the daemons and sweeps processes, cgroups and
//! mounts on drop, also when an assertion fails.
//!
//! Engine commands go through a wrapper script that logs each skiff-runtime command line to
//! `runtime-calls.log`; failing assertions print it.

#[path = "common/engines_util.rs"]
mod engines_util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use engines_util::{
    cgroup_dirs, mounts_under, require, run, run_for, wait_until, Containerd, Dockerd, Out,
    Spawned, IMAGE,
};

const LONG: Duration = Duration::from_secs(30);

/// Asserts that container `id` left nothing behind: no skiff-runtime state directory, its
/// cgroup gone from every hierarchy, nothing mounted under its bundle.
#[track_caller]
fn assert_cleaned_up(state_dir: &Path, cgroup: &str, bundle: Option<&Path>, calls: &str) {
    // The shim's delete can trail the engine's reply by a few milliseconds.
    let clean = || !state_dir.exists() && cgroup_dirs(cgroup).is_empty();
    wait_until(Duration::from_secs(5), clean);
    assert!(
        !state_dir.exists(),
        "skiff-runtime state {} is still there\nruntime calls:\n{calls}",
        state_dir.display()
    );
    assert!(
        cgroup_dirs(cgroup).is_empty(),
        "the container's cgroup is still there: {:?}\nruntime calls:\n{calls}",
        cgroup_dirs(cgroup)
    );
    if let Some(b) = bundle {
        assert!(
            mounts_under(b).is_empty(),
            "still mounted: {:?}",
            mounts_under(b)
        );
    }
}

/// The cgroup `pid` is in, in the v1 hierarchy holding `controller`.
fn cgroup_of(pid: i32, controller: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
        .find(|(ctls, _)| ctls.split(',').any(|c| c == controller))
        .map(|(_, path)| path.to_string())
        .unwrap_or_default()
}

/// Asserts that a container is live where the cleanup checks look (so "gone" later is not
/// vacuous): its state directory, and a cgroup in the v1 hierarchies that matter; with `init`,
/// also that its init process really is in that cgroup.
#[track_caller]
fn assert_live(state_dir: &Path, cgroup: &str, init: Option<i32>) {
    assert!(
        state_dir.is_dir(),
        "no skiff-runtime state at {}",
        state_dir.display()
    );
    let dirs = cgroup_dirs(cgroup);
    for ctl in ["memory", "pids", "freezer", "cpuacct"] {
        assert!(
            dirs.iter()
                .any(|d| d.starts_with(format!("/sys/fs/cgroup/{ctl}"))),
            "no {ctl} cgroup at {cgroup}: {dirs:?}"
        );
        if let Some(pid) = init {
            assert_eq!(
                cgroup_of(pid, ctl),
                cgroup,
                "init {pid} is not in its {ctl} cgroup"
            );
        }
    }
}

/// The container's init pid, from the pid file the shim gave skiff-runtime.
fn init_pid(c: &Containerd, id: &str) -> i32 {
    let path = c.bundle(id).join("init.pid");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {}: {text:?}", path.display()))
}

/// Asserts `cond`, showing the engine command's output and every runtime call so far.
#[track_caller]
fn check(cond: bool, what: &str, out: &Out, calls: &str) {
    assert!(cond, "{what}\n{out}\nruntime calls:\n{calls}");
}

// ---------------------------------------------------------------------------------------------
// containerd

#[test]
fn containerd_runs_a_container_and_propagates_its_exit_code() {
    let c = Containerd::start("ctr-run");
    c.import_busybox();
    let id = "run-exit";
    let out = run(&mut c.run_cmd(
        &["--rm"],
        id,
        &[
            "sh",
            "-c",
            "echo hello from skiff; echo to-stderr >&2; exit 7",
        ],
    ));
    let calls = c.sb.runtime_calls();
    check(
        out.code() == 7,
        "ctr run must exit with the container's code 7",
        &out,
        &calls,
    );
    assert_eq!(out.stdout, "hello from skiff\n", "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    // It really went through skiff-runtime, the way the shim calls runc.
    let create = calls
        .lines()
        .find(|l| l.contains(" create "))
        .unwrap_or_default();
    assert!(
        create.contains("--log-format json")
            && create.contains("--pid-file")
            && create.ends_with(id),
        "no shim-style create call in:\n{calls}"
    );
    assert_cleaned_up(&c.state_dir(id), &c.cgroup(id), Some(&c.bundle(id)), &calls);
}

#[test]
fn containerd_task_exec_and_kill() {
    let c = Containerd::start("ctr-exec");
    c.import_busybox();
    let id = "exec-kill";
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done";
    let mut task = Spawned::start(&mut c.run_cmd(&["--rm"], id, &["sh", "-c", script]));
    task.expect_line("ready", LONG);
    assert_live(&c.state_dir(id), &c.cgroup(id), Some(init_pid(&c, id)));

    // exec: output, exit code, and it runs inside the container (sees its pid 1).
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo in-exec; cat /proc/1/cmdline; exit 5",
    ]);
    let calls = c.sb.runtime_calls();
    check(
        out.code() == 5,
        "ctr task exec must exit with the process's code 5",
        &out,
        &calls,
    );
    assert!(out.stdout.starts_with("in-exec\n"), "{out}");
    assert!(
        out.stdout.contains("echo ready"),
        "exec does not see the container's pid 1: {out}"
    );
    let ps = c.ctr(&["task", "ps", id]).ok();
    let pid = init_pid(&c, id).to_string();
    assert!(
        ps.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(pid.as_str())),
        "ctr task ps does not list init {pid}: {ps}"
    );

    // kill (SIGTERM by default): the container's trap runs and its code comes back.
    c.ctr(&["task", "kill", id]).ok();
    let out = task.finish(LONG);
    let calls = c.sb.runtime_calls();
    check(
        out.code() == 42,
        "ctr run must return the trap's exit code 42 after ctr task kill",
        &out,
        &calls,
    );
    assert!(out.stdout.contains("got-term"), "{out}");
    assert!(
        calls.lines().any(|l| l.ends_with(&format!("kill {id} 15"))),
        "no `kill {id} 15` in:\n{calls}"
    );
    assert_cleaned_up(&c.state_dir(id), &c.cgroup(id), Some(&c.bundle(id)), &calls);

    // kill --all with SIGKILL: 128 + 9.
    let id = "kill-all";
    let mut task =
        Spawned::start(&mut c.run_cmd(&["--rm"], id, &["sh", "-c", "echo ready; sleep 1000"]));
    task.expect_line("ready", LONG);
    c.ctr(&["task", "kill", "--all", "--signal", "SIGKILL", id])
        .ok();
    let out = task.finish(LONG);
    let calls = c.sb.runtime_calls();
    check(
        out.code() == 137,
        "SIGKILL must show as exit code 137",
        &out,
        &calls,
    );
    assert!(
        calls
            .lines()
            .any(|l| l.contains(&format!("kill --all {id} 9"))),
        "no `kill --all` in:\n{calls}"
    );
    assert_cleaned_up(&c.state_dir(id), &c.cgroup(id), Some(&c.bundle(id)), &calls);
}

/// cpuacct.usage of the container's cgroup, in ns.
fn cpu_usage(cgroup: &str) -> u64 {
    let path = format!("/sys/fs/cgroup/cpuacct{cgroup}/cpuacct.usage");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
        .trim()
        .parse()
        .expect("cpuacct.usage is a number")
}

#[test]
fn containerd_pause_resume_metrics_and_cleanup() {
    let c = Containerd::start("ctr-pause");
    c.import_busybox();
    let id = "pause";
    let busy = "while :; do i=0; while [ $i -lt 200 ]; do i=$((i+1)); done; done";
    let out = run(&mut c.run_cmd(&["-d"], id, &["sh", "-c", busy]));
    let calls = c.sb.runtime_calls();
    check(
        out.status.success(),
        "ctr run -d must succeed",
        &out,
        &calls,
    );
    assert_eq!(c.task_status(id).as_deref(), Some("RUNNING"));
    assert_live(&c.state_dir(id), &c.cgroup(id), Some(init_pid(&c, id)));
    let freezer = format!("/sys/fs/cgroup/freezer{}/freezer.state", c.cgroup(id));

    // pause: PAUSED, frozen cgroup, no CPU time consumed while frozen.
    c.ctr(&["task", "pause", id]).ok();
    assert_eq!(
        c.task_status(id).as_deref(),
        Some("PAUSED"),
        "calls:\n{}",
        c.sb.runtime_calls()
    );
    assert_eq!(
        std::fs::read_to_string(&freezer).unwrap_or_default().trim(),
        "FROZEN"
    );
    let before = cpu_usage(&c.cgroup(id));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        cpu_usage(&c.cgroup(id)),
        before,
        "a paused container must not run"
    );

    // resume: RUNNING again and burning CPU.
    c.ctr(&["task", "resume", id]).ok();
    assert_eq!(c.task_status(id).as_deref(), Some("RUNNING"));
    assert_eq!(
        std::fs::read_to_string(&freezer).unwrap_or_default().trim(),
        "THAWED"
    );
    let before = cpu_usage(&c.cgroup(id));
    assert!(
        wait_until(Duration::from_secs(5), || cpu_usage(&c.cgroup(id)) > before),
        "a resumed container must run again"
    );

    // metrics: the shim reads the cgroup skiff-runtime put the container in.
    let out = c.ctr(&["task", "metrics", "--format", "json", id]).ok();
    let m: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        m["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "pids.current: {m}"
    );
    assert!(
        m["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "memory usage: {m}"
    );
    assert!(
        m["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "cpu usage: {m}"
    );

    // kill, then the task and the container go, with everything skiff-runtime made.
    c.ctr(&["task", "kill", "--signal", "SIGKILL", id]).ok();
    assert!(
        wait_until(LONG, || c.task_status(id).as_deref() == Some("STOPPED")),
        "task not STOPPED after SIGKILL: {:?}",
        c.task_status(id)
    );
    c.ctr(&["task", "rm", id]).ok();
    c.ctr(&["container", "rm", id]).ok();
    let calls = c.sb.runtime_calls();
    for verb in [" pause ", " resume ", " delete "] {
        assert!(calls.contains(verb), "no {verb:?} call in:\n{calls}");
    }
    assert_cleaned_up(&c.state_dir(id), &c.cgroup(id), Some(&c.bundle(id)), &calls);
    let left: Vec<_> = std::fs::read_dir(c.runtime_root().join(&c.ns))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "skiff-runtime state left in its root: {left:?}"
    );
}

/// KNOWN FAILING because of a skiff-runtime bug (crates/container/src/container.rs `create`,
/// crates/container/src/init.rs `slow_path`): when a namespace is joined by path (pods, the
/// pause container's netns; `ctr run --with-ns`), the init is forked by an intermediate process
/// that does not wait for the runtime to put it in the cgroup. `create` adds the intermediate's
/// pid after the fact, so the real init usually stays in the runtime's own cgroup: no limits,
/// empty `ps`, metrics read from the wrong cgroup, and `create` still succeeds. runc blocks its
/// bootstrap process until the cgroup is applied, so every child is born inside it.
#[test]
fn containerd_containers_joining_a_netns_by_path_are_in_their_cgroup() {
    let c = Containerd::start("ctr-join");
    c.import_busybox();
    run(&mut c.run_cmd(&["-d"], "pod", &["sleep", "1000"])).ok();
    let pod_netns = format!("/proc/{}/ns/net", init_pid(&c, "pod"));
    let with_ns = format!("network:{pod_netns}");
    let mut misplaced = Vec::new();
    let members: Vec<String> = (0..5).map(|i| format!("member{i}")).collect();
    for id in &members {
        run(&mut c.run_cmd(&["-d", "--with-ns", &with_ns], id, &["sleep", "1000"])).ok();
        let pid = init_pid(&c, id);
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/net")).ok(),
            std::fs::read_link(&pod_netns).ok(),
            "{id} did not join the pod's network namespace"
        );
        let got = cgroup_of(pid, "pids");
        if got != c.cgroup(id) {
            misplaced.push(format!(
                "{id}: init {pid} in pids cgroup {got:?}, not {:?}",
                c.cgroup(id)
            ));
        }
    }
    let metrics = c
        .ctr(&["task", "metrics", "--format", "json", "member0"])
        .ok();
    let m: serde_json::Value = serde_json::from_str(&metrics.stdout).unwrap_or_default();
    assert!(
        misplaced.is_empty(),
        "containers that join a namespace by path must still be created inside their cgroup \
         (skiff-runtime forks the init from an intermediate process before placing it):\n{}\n\
         member0 metrics: pids.current = {}\nruntime calls:\n{}",
        misplaced.join("\n"),
        m["pids"]["current"],
        c.sb.runtime_calls()
    );
    for id in members.iter().map(String::as_str).chain(["pod"]) {
        c.ctr(&["task", "kill", "--signal", "SIGKILL", id]).ok();
        assert!(wait_until(LONG, || c.task_status(id).as_deref() == Some("STOPPED")));
        c.ctr(&["task", "rm", id]).ok();
        c.ctr(&["container", "rm", id]).ok();
        assert_cleaned_up(&c.state_dir(id), &c.cgroup(id), Some(&c.bundle(id)), "");
    }
}

/// Short-lived containers started side by side, as a busy host does: `start` must not mistake an
/// init that already exec'd and exited for one that died before exec.
///
/// KNOWN FAILING (most runs; it depends on load) because of a skiff-runtime bug in
/// `signal_start_and_wait_exec` (crates/container/src/container.rs): after writing the start
/// byte it polls the FIFO; on a wake-up with only POLLIN (byte not read yet) it sleeps 50 µs and
/// then treats `!init_alive()` (a zombie counts as dead) as "the container init died before it
/// could start". If in that window the init reads the byte, execs `true` and exits, `start`
/// fails although the container ran. runc's `start` does not wait for the exec, so it has no
/// such window; skiff-runtime should decide by whether the byte was consumed (poll once more:
/// POLLHUP without POLLIN means it exec'd).
#[test]
fn containerd_runs_short_lived_containers_side_by_side() {
    let c = Containerd::start("ctr-many");
    c.import_busybox();
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..3 {
            let (c, failures) = (&c, &failures);
            s.spawn(move || {
                for i in 0..20 {
                    let id = format!("short-{t}-{i}");
                    let out = run(&mut c.run_cmd(&["--rm"], &id, &["true"]));
                    if !out.status.success() {
                        let err = out.stderr.lines().last().unwrap_or_default().to_string();
                        failures.lock().expect("lock").push(format!("{id}: {err}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    assert!(
        failures.is_empty(),
        "{} of 60 `ctr run --rm IMAGE ID true` failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// dockerd

/// `docker run --runtime skiff`, in docker's default network mode (with `--bridge=none`, a new
/// network namespace with only loopback), so dockerd's default sysctls are in every spec.
const RUN: [&str; 3] = ["run", "--runtime", "skiff"];

fn args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

/// The id in a `--cidfile`.
fn cid(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no container id in {}: {e}", path.display()))
}

#[test]
fn docker_run_output_and_exit_codes() {
    let d = Dockerd::start("dk-run");
    d.import_busybox();
    let cidfile = d.sb.path("run.cid");
    let cidarg = cidfile.display().to_string();
    let out = d.docker(&args(
        &RUN,
        &[
            "--rm",
            "--cidfile",
            &cidarg,
            IMAGE,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    ));
    let calls = d.sb.runtime_calls();
    check(
        out.code() == 3,
        "docker run must exit with the container's code 3",
        &out,
        &calls,
    );
    assert_eq!(out.stdout, "out\n", "{out}");
    assert!(out.stderr.contains("err"), "{out}");
    let id = cid(&cidfile);
    assert!(
        calls
            .lines()
            .any(|l| l.contains(" create ") && l.ends_with(&id)),
        "not run by skiff-runtime:\n{calls}"
    );
    assert_cleaned_up(&d.state_dir(&id), &d.cgroup(&id), None, &calls);

    // dockerd maps the runtime's "executable file not found in $PATH" to 127.
    let out = d.docker(&args(&RUN, &["--rm", IMAGE, "no-such-command"]));
    let calls = d.sb.runtime_calls();
    check(
        out.code() == 127,
        "a missing command must give 127",
        &out,
        &calls,
    );
    assert!(
        out.stderr.contains("executable file not found in $PATH"),
        "{out}"
    );

    // ... and "permission denied" to 126.
    let out = d.docker(&args(&RUN, &["--rm", IMAGE, "/etc/passwd"]));
    let calls = d.sb.runtime_calls();
    check(
        out.code() == 126,
        "a non-executable command must give 126",
        &out,
        &calls,
    );
    assert!(out.stderr.contains("permission denied"), "{out}");
}

#[test]
fn docker_exec_and_logs() {
    let d = Dockerd::start("dk-exec");
    d.import_busybox();
    let script = "echo started; echo to-stderr >&2; while :; do sleep 0.1; done";
    let out = d.docker(&args(
        &RUN,
        &["-d", "--name", "c1", IMAGE, "sh", "-c", script],
    ));
    let calls = d.sb.runtime_calls();
    check(
        out.status.success(),
        "docker run -d must succeed",
        &out,
        &calls,
    );
    let id = out.stdout.trim().to_string();
    let pid = inspect(&d, "c1", "{{.State.Pid}}").parse().ok();
    assert_live(&d.state_dir(&id), &d.cgroup(&id), pid);

    let out = d.docker(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo from-exec; cat /proc/1/cmdline; exit 4",
    ]);
    let calls = d.sb.runtime_calls();
    check(
        out.code() == 4,
        "docker exec must exit with the process's code 4",
        &out,
        &calls,
    );
    assert!(out.stdout.starts_with("from-exec\n"), "{out}");
    assert!(
        out.stdout.contains("echo started"),
        "exec does not see the container's pid 1: {out}"
    );
    assert!(
        calls
            .lines()
            .any(|l| l.contains(" exec ") && l.ends_with(&id)),
        "no exec call:\n{calls}"
    );

    let out = d.docker(&[
        "exec",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "c1",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u):$(id -g)",
    ]);
    check(
        out.stdout == "bar /tmp 1000:1000\n",
        "exec must apply env, cwd and user",
        &out,
        &d.sb.runtime_calls(),
    );

    let logs = d.docker(&["logs", "c1"]).ok();
    assert_eq!(logs.stdout, "started\n", "{logs}");
    assert_eq!(logs.stderr, "to-stderr\n", "{logs}");

    d.docker(&["rm", "-f", "c1"]).ok();
    assert_cleaned_up(
        &d.state_dir(&id),
        &d.cgroup(&id),
        None,
        &d.sb.runtime_calls(),
    );
}

/// `docker inspect` of one field.
fn inspect(d: &Dockerd, name: &str, format: &str) -> String {
    d.docker(&["inspect", "--format", format, name])
        .ok()
        .stdout
        .trim()
        .to_string()
}

#[test]
fn docker_stop_sends_sigterm_then_sigkill() {
    let d = Dockerd::start("dk-stop");
    d.import_busybox();
    let trap = "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done";
    let out = d.docker(&args(
        &RUN,
        &["-d", "--name", "trap", IMAGE, "sh", "-c", trap],
    ));
    check(
        out.status.success(),
        "docker run -d must succeed",
        &out,
        &d.sb.runtime_calls(),
    );
    let trap_id = out.stdout.trim().to_string();
    // sleep as pid 1 has no SIGTERM handler, so the kernel ignores SIGTERM: only SIGKILL stops it.
    let out = d.docker(&args(
        &RUN,
        &["-d", "--name", "sleeper", IMAGE, "sleep", "1000"],
    ));
    check(
        out.status.success(),
        "docker run -d must succeed",
        &out,
        &d.sb.runtime_calls(),
    );
    let sleep_id = out.stdout.trim().to_string();
    assert!(
        wait_until(LONG, || d
            .docker(&["logs", "trap"])
            .stdout
            .contains("ready")),
        "the trap container never started"
    );

    let t = Instant::now();
    let out = d.docker(&["stop", "-t", "10", "trap"]);
    check(
        out.status.success(),
        "docker stop must succeed",
        &out,
        &d.sb.runtime_calls(),
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "SIGTERM was not delivered: stop took {:?}",
        t.elapsed()
    );
    assert_eq!(inspect(&d, "trap", "{{.State.ExitCode}}"), "0");
    assert!(d.docker(&["logs", "trap"]).ok().stdout.contains("got-term"));

    let t = Instant::now();
    let out = d.docker(&["stop", "-t", "1", "sleeper"]);
    check(
        out.status.success(),
        "docker stop must succeed",
        &out,
        &d.sb.runtime_calls(),
    );
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "stop did not wait for the grace period"
    );
    assert_eq!(
        inspect(&d, "sleeper", "{{.State.ExitCode}}"),
        "137",
        "SIGKILL after the timeout"
    );
    assert_eq!(inspect(&d, "sleeper", "{{.State.Running}}"), "false");

    d.docker(&["rm", "trap", "sleeper"]).ok();
    let calls = d.sb.runtime_calls();
    for id in [trap_id, sleep_id] {
        assert_cleaned_up(&d.state_dir(&id), &d.cgroup(&id), None, &calls);
    }
}

/// Runs `line` under `script`, which gives it a pty as its terminal.
fn in_pty(line: &str) -> Out {
    let script = require("script", "bsdutils");
    run_for(
        Command::new(script).args(["-q", "-e", "-c", line, "/dev/null"]),
        LONG,
    )
}

#[test]
fn docker_run_and_exec_with_a_tty() {
    let d = Dockerd::start("dk-tty");
    d.import_busybox();
    let check_tty = "tty; test -t 0 && test -t 1 && echo stdio-is-a-tty; exit 6";
    let line = d.shell_line(&args(&RUN, &["--rm", "-it", IMAGE, "sh", "-c", check_tty]));
    let out = in_pty(&line);
    let calls = d.sb.runtime_calls();
    check(
        out.code() == 6,
        "docker run -it must exit with the container's code 6",
        &out,
        &calls,
    );
    assert!(out.stdout.contains("/dev/pts/0"), "{out}");
    assert!(out.stdout.contains("stdio-is-a-tty"), "{out}");
    assert!(
        calls
            .lines()
            .any(|l| l.contains("create") && l.contains("--console-socket")),
        "no console socket:\n{calls}"
    );

    let out = d.docker(&args(&RUN, &["-d", "--name", "c1", IMAGE, "sleep", "1000"]));
    check(
        out.status.success(),
        "docker run -d must succeed",
        &out,
        &d.sb.runtime_calls(),
    );
    let id = out.stdout.trim().to_string();
    let line = d.shell_line(&[
        "exec",
        "-it",
        "c1",
        "sh",
        "-c",
        "tty; test -t 0 && echo exec-tty; exit 2",
    ]);
    let out = in_pty(&line);
    let calls = d.sb.runtime_calls();
    check(
        out.code() == 2,
        "docker exec -it must exit with the process's code 2",
        &out,
        &calls,
    );
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    assert!(out.stdout.contains("exec-tty"), "{out}");

    d.docker(&["rm", "-f", "c1"]).ok();
    assert_cleaned_up(
        &d.state_dir(&id),
        &d.cgroup(&id),
        None,
        &d.sb.runtime_calls(),
    );
}

/// dockerd 20.10 puts `net.ipv4.ip_unprivileged_port_start=0` and
/// `net.ipv4.ping_group_range=0 2147483647` in every container with its own network namespace.
/// They must be written before /proc/sys is made read-only (spec readonlyPaths), as runc does:
/// at commit db5d7a3 skiff-runtime did it the other way round and every such `docker run`
/// failed with EROFS.
#[test]
fn docker_run_in_a_network_namespace_applies_dockers_sysctls() {
    let d = Dockerd::start("dk-net");
    d.import_busybox();
    let out = d.docker(&[
        "run",
        "--runtime",
        "skiff",
        "--rm",
        IMAGE,
        "cat",
        "/proc/sys/net/ipv4/ping_group_range",
        "/proc/sys/net/ipv4/ip_unprivileged_port_start",
    ]);
    check(
        out.code() == 0,
        "docker run in its own network namespace failed (are linux.sysctl written before readonlyPaths?)",
        &out,
        &d.sb.runtime_calls(),
    );
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "2147483647", "0"], "{out}");
}

/// KNOWN FAILING because of the skiff-runtime bug described at
/// `containerd_containers_joining_a_netns_by_path_are_in_their_cgroup`: with `--network host`
/// dockerd 20.10 makes the container join `<exec-root>/netns/default` by path, so the init is
/// usually not in its cgroup: `-m` does not limit it, `docker top` is empty and `docker stats`
/// shows 0 PIDs and the memory of the cgroup dockerd's caller is in.
#[test]
fn docker_host_network_containers_are_in_their_cgroup() {
    let d = Dockerd::start("dk-cg");
    d.import_busybox();
    let mut misplaced = Vec::new();
    for i in 0..5 {
        let name = format!("c{i}");
        let out = d.docker(&args(
            &RUN,
            &[
                "--network",
                "host",
                "-d",
                "--name",
                &name,
                "-m",
                "64m",
                IMAGE,
                "sleep",
                "1000",
            ],
        ));
        check(
            out.status.success(),
            "docker run -d must succeed",
            &out,
            &d.sb.runtime_calls(),
        );
        let id = out.stdout.trim().to_string();
        let pid: i32 = inspect(&d, &name, "{{.State.Pid}}")
            .parse()
            .expect("State.Pid");
        let got = cgroup_of(pid, "memory");
        if got != d.cgroup(&id) {
            misplaced.push(format!(
                "{name}: init {pid} in memory cgroup {got:?}, not {:?}",
                d.cgroup(&id)
            ));
        }
    }
    let top = d.docker(&["top", "c0"]).ok();
    let stats = d
        .docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.PIDs}} {{.MemUsage}}",
            "c0",
        ])
        .ok();
    assert!(
        misplaced.is_empty(),
        "`docker run --network host` containers must be inside their cgroup \
         (skiff-runtime forks the init from an intermediate process before placing it):\n{}\n\
         docker top c0:\n{}docker stats c0: {}",
        misplaced.join("\n"),
        top.stdout,
        stats.stdout
    );
    assert!(
        top.stdout.lines().count() >= 2,
        "docker top c0 lists no process:\n{top}"
    );
    assert!(
        !stats.stdout.starts_with("0 "),
        "docker stats c0 sees no process: {stats}"
    );
    d.docker(&["rm", "-f", "c0", "c1", "c2", "c3", "c4"]).ok();
}
