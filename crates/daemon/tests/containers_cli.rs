//! End to end with the real `docker` CLI: skiffd (built by cargo) on a temporary socket with
//! a temporary data root, skiff-monitor next to it, a busybox image imported into its store
//! and a local docker-registry for the pull-on-create path. Needs root, `docker` (the CLI
//! only: the system dockerd is never started), busybox-static and docker-registry; skipped
//! with a message when one is missing, unless SKIFF_REQUIRE_DOCKER is set.

mod world;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use world::*;

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

#[test]
fn docker_cli_local_volume_driver_options() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let mounted = |p: &Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*p.to_string_lossy()))
    };
    // tmpfs with size and mode: the container sees a tmpfs of that size.
    w.docker(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=2m,mode=0700",
        "tv",
    ]);
    let data = PathBuf::from(
        w.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "tv"])
            .trim(),
    );
    assert!(mounted(&data), "{} is not a mount point", data.display());
    let out = w.docker(&[
        "run", "--rm", "-v", "tv:/data", IMAGE, "sh", "-c",
        "stat -f -c %T /data; df -k /data | tail -1 | awk '{print $2}'; stat -c %a /data; echo hi > /data/f",
    ]);
    assert_eq!(out, "tmpfs\n2048\n700\n", "{out}");
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "hi\n");
    // A bind of a host directory: what the container writes lands there, and removing the
    // volume unmounts it without touching the directory's files.
    let host = w.tmp.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("keep"), "keep").unwrap();
    w.docker(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        &format!("device={}", host.display()),
        "bv",
    ]);
    w.docker(&[
        "run",
        "--rm",
        "-v",
        "bv:/b",
        IMAGE,
        "sh",
        "-c",
        "cat /b/keep > /b/copy",
    ]);
    assert_eq!(std::fs::read_to_string(host.join("copy")).unwrap(), "keep");
    let bdata = PathBuf::from(
        w.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "bv"])
            .trim(),
    );
    w.docker(&["volume", "rm", "bv", "tv"]);
    assert!(
        !mounted(&bdata) && !mounted(&data),
        "a volume mount was left"
    );
    assert!(!bdata.exists() && !data.exists());
    assert_eq!(std::fs::read_to_string(host.join("keep")).unwrap(), "keep");
    // A device that cannot be mounted is the create's error and leaves no volume.
    let err = w.try_docker(
        &[
            "volume",
            "create",
            "--opt",
            "type=ext4",
            "--opt",
            "device=/nonexistent/dev",
            "bad",
        ],
        None,
    );
    assert!(!err.status.success());
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(msg.contains("failed to mount local volume"), "{msg}");
    assert!(
        w.try_docker(&["volume", "inspect", "bad"], None)
            .status
            .code()
            != Some(0)
    );
    let err = w.try_docker(&["volume", "create", "--opt", "type=tmpfs", "nodev"], None);
    assert!(String::from_utf8_lossy(&err.stderr).contains("missing required option"));
}

/// Context switches of every thread of `pid` so far.
fn wakeups(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// A running container costs the daemon nothing while nothing happens: its watcher sleeps
/// until the monitor reports the end (a watcher polling every 25 ms made ~40 wake-ups a
/// second per container). Counted, not timed: the window only bounds how many could occur.
#[test]
fn an_idle_daemon_does_not_wake_up_for_running_containers() {
    if !can_run() {
        return;
    }
    let w = World::new();
    for i in 0..3 {
        w.docker(&[
            "run",
            "-d",
            "--name",
            &format!("idle{i}"),
            "--network",
            "none",
            IMAGE,
            "sleep",
            "1000",
        ]);
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = w.skiffd.id();
    let before = wakeups(pid);
    std::thread::sleep(Duration::from_secs(2));
    let woke = wakeups(pid).saturating_sub(before);
    assert!(
        woke < 30,
        "skiffd woke up {woke} times in 2 s with 3 idle containers"
    );
    // And the watchers still see the end at once.
    w.docker(&["kill", "idle0"]);
    assert_eq!(w.docker(&["wait", "idle0"]).trim(), "137");
}

/// The pid of the skiff-monitor of container `id`.
fn monitor_of(id: &str) -> Option<i32> {
    let needle = format!("--id\0{id}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains("skiff-monitor") && cmd.contains(&needle)).then_some(pid)
    })
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// A monitor killed with SIGKILL takes its container with it, as containerd does when a shim
/// dies: the container shows as exited (128), so it must not go on running unwatched in
/// its cgroup.
#[test]
fn a_killed_monitor_does_not_leave_its_container_running() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let id = w
        .docker(&["run", "-d", "--network", "none", IMAGE, "sleep", "1000"])
        .trim()
        .to_string();
    let pid: i32 = w
        .docker(&["inspect", "-f", "{{.State.Pid}}", &id])
        .trim()
        .parse()
        .expect("a pid");
    assert!(alive(pid), "the container's init {pid} runs");
    let mon = monitor_of(&id).expect("the container's monitor");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the monitor");
    let deadline = Instant::now() + Duration::from_secs(20);
    while (w
        .docker(&["inspect", "-f", "{{.State.Status}}", &id])
        .trim()
        != "exited"
        || alive(pid))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        w.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &id
        ])
        .trim(),
        "exited 128"
    );
    assert!(
        !alive(pid),
        "the container's init {pid} still runs unwatched"
    );
    w.docker(&["rm", &id]);
}
