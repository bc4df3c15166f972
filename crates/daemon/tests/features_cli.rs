//! Container features end to end with the real docker CLI: `exec -it`, healthchecks,
//! `docker update`, `--init`, restart-policy events.

mod world;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use world::*;

/// Runs `cmd` (a shell line) under a pseudo-terminal with `script`, the docker CLI pointed
/// at the world's skiffd; (exit success, output).
fn in_pty(w: &World, cmd: &str) -> (bool, String) {
    in_pty_typing(w, cmd, "")
}

/// [`in_pty`], typing `input` on the terminal.
fn in_pty_typing(w: &World, cmd: &str, input: &str) -> (bool, String) {
    let mut child = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "export DOCKER_HOST=unix://{} DOCKER_CONFIG={}; {cmd}",
            w.tmp.path().join("d.sock").display(),
            w.tmp.path().join("docker-config").display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Typed once the container runs (input that arrives while the CLI switches the terminal
    // to raw mode can be lost), and a hung session fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none()
        && w.try_docker(&["ps", "-q"], None).stdout.is_empty()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    )
}

/// Polls `f` until it returns Some, up to `secs`; panics with `what` otherwise.
fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw API call on the daemon's socket (for what the CLI cannot send on its own).
fn api(w: &World, method: &str, path: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(w.tmp.path().join("d.sock"))
        .args([
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn exec_with_a_tty() {
    if !can_run() {
        return;
    }
    let w = World::new();
    w.docker(&["run", "-d", "--name", "tt", IMAGE, "sleep", "1000"]);

    // exec -it: a real terminal of the size of ours, exit code passed through.
    let (ok, text) = in_pty(
        &w,
        "stty rows 33 cols 77; docker exec -it tt sh -c 'tty; stty size; exit 3'; echo rc=$?",
    );
    assert!(ok, "{text}");
    assert!(text.contains("/dev/pts/"), "{text:?}\n{}", w.log());
    assert!(text.contains("33 77"), "{text:?}");
    assert!(text.contains("rc=3"), "{text:?}");

    // Typed input reaches the process through the terminal (it echoes, too).
    let (ok, text) = in_pty_typing(
        &w,
        "docker exec -it tt sh -c 'read x; echo got:$x'",
        "hello\n",
    );
    assert!(ok, "{text}");
    assert!(text.contains("got:hello"), "{text:?}");

    // The resize endpoint changes the size of a running exec's terminal.
    let created = api(
        &w,
        "POST",
        "/containers/tt/exec",
        r#"{"Tty":true,"Cmd":["sh","-c","while [ \"$(stty size)\" != \"40 100\" ]; do sleep 0.1; done"]}"#,
    );
    let v: serde_json::Value = serde_json::from_str(&created).unwrap();
    let eid = v["Id"].as_str().expect("exec id").to_owned();
    api(
        &w,
        "POST",
        &format!("/exec/{eid}/start"),
        r#"{"Detach":true,"Tty":true}"#,
    );
    api(&w, "POST", &format!("/exec/{eid}/resize?h=40&w=100"), "");
    let code = until(20, "the resized exec to end", || {
        let v: serde_json::Value =
            serde_json::from_str(&api(&w, "GET", &format!("/exec/{eid}/json"), "")).ok()?;
        (v["Running"] == false).then(|| v["ExitCode"].clone())
    });
    assert_eq!(code, 0);

    // exec -i with piped stdin (no tty) still works, and so does exec -d.
    let out = w.docker_in(
        &["exec", "-i", "tt", "sh", "-c", "cat; echo done"],
        Some("piped\n"),
    );
    assert_eq!(out, "piped\ndone\n");
    w.docker(&["exec", "-d", "tt", "sh", "-c", "echo bg > /tmp/bg"]);
    until(20, "exec -d to write its file", || {
        let o = w.try_docker(&["exec", "tt", "cat", "/tmp/bg"], None);
        (String::from_utf8_lossy(&o.stdout) == "bg\n").then_some(())
    });
    // A missing binary under a tty: 126 and the reason.
    let (_, text) = in_pty(&w, "docker exec -it tt /nope; echo rc=$?");
    assert!(text.contains("rc=126"), "{text:?}");
    w.docker(&["rm", "-f", "tt"]);
}

/// The sha256 of `data` (coreutils' sha256sum: the tests carry no hashing crate).
fn sha256(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut si = c.stdin.take().unwrap();
    let d = data.to_vec();
    let t = std::thread::spawn(move || si.write_all(&d));
    let out = c.wait_with_output().unwrap();
    t.join().unwrap().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Loads (`docker load`) the world's busybox as `tag` with `config` as its image config's
/// `config` object.
fn load_image(w: &World, tag: &str, config: serde_json::Value) {
    let layer = busybox_tar();
    let cfg = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256(&layer))]},
    })
    .to_string();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [tag],
        "Layers": ["layer.tar"],
    }])
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("layer.tar", &layer[..]),
        ("config.json", cfg.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut h = hdr();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    let archive = tempfile::NamedTempFile::new_in(w.tmp.path()).unwrap();
    std::fs::write(archive.path(), b.into_inner().unwrap()).unwrap();
    w.docker(&["load", "-i", archive.path().to_str().unwrap()]);
}

fn health(w: &World, name: &str) -> serde_json::Value {
    let out = w.docker(&["inspect", "--format", "{{json .State.Health}}", name]);
    serde_json::from_str(out.trim()).unwrap()
}

fn wait_health(w: &World, name: &str, want: &str) -> serde_json::Value {
    until(40, &format!("{name} to be {want}"), || {
        let h = health(w, name);
        (h["Status"] == want).then_some(h)
    })
}

#[test]
fn healthchecks() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    let t0 = w.docker(&["version", "--format", "{{.Server.Os}}"]);
    assert_eq!(t0.trim(), "linux");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    // An image HEALTHCHECK: healthy once /tmp/ok exists.
    load_image(
        &w,
        "skiff-e2e/health:1",
        serde_json::json!({
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "Healthcheck": {"Test": ["CMD-SHELL", "cat /tmp/ok"], "Interval": 500_000_000i64, "Retries": 2},
        }),
    );
    w.docker(&[
        "run",
        "-d",
        "--name",
        "hc",
        "skiff-e2e/health:1",
        "sleep",
        "1000",
    ]);
    let h = health(&w, "hc");
    assert!(
        h["Status"] == "starting" || h["Status"] == "unhealthy",
        "{h}"
    );
    let h = wait_health(&w, "hc", "unhealthy");
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    assert_eq!(log[0]["ExitCode"], 1);
    assert!(log[0]["Start"].as_str().unwrap().starts_with("20"), "{h}");
    assert!(log[0]["End"].as_str().is_some(), "{h}");
    assert!(
        log[0]["Output"].as_str().unwrap().contains("can't open"),
        "{h}"
    );
    assert!(w
        .docker(&[
            "ps",
            "--filter",
            "health=unhealthy",
            "--format",
            "{{.Names}}"
        ])
        .contains("hc"));
    w.docker(&["exec", "hc", "sh", "-c", "echo fine > /tmp/ok"]);
    let h = wait_health(&w, "hc", "healthy");
    assert_eq!(h["FailingStreak"], 0);
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["Output"], "fine\n");
    let status = w.docker(&["ps", "--filter", "name=hc", "--format", "{{.Status}}"]);
    assert!(status.trim().ends_with("(healthy)"), "{status:?}");
    assert!(w
        .docker(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"])
        .contains("hc"));
    assert!(!w
        .docker(&[
            "ps",
            "--filter",
            "health=unhealthy",
            "--format",
            "{{.Names}}"
        ])
        .contains("hc"));

    // The flags: CMD form, a timeout, --no-healthcheck over the image's.
    w.docker(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "500ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let h = wait_health(&w, "slow", "unhealthy");
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    assert_eq!(
        h["Log"][0]["Output"],
        "Health check exceeded timeout (300ms)"
    );
    let cfg = w.docker(&[
        "inspect",
        "--format",
        "{{json .Config.Healthcheck}}",
        "slow",
    ]);
    let cfg: serde_json::Value = serde_json::from_str(cfg.trim()).unwrap();
    assert_eq!(cfg["Test"], serde_json::json!(["CMD-SHELL", "sleep 5"]));
    assert_eq!(cfg["Timeout"], 300_000_000);
    w.docker(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "skiff-e2e/health:1",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        w.docker(&["inspect", "--format", "{{json .State.Health}}", "none"])
            .trim(),
        "null"
    );
    assert!(w
        .docker(&["ps", "--filter", "health=none", "--format", "{{.Names}}"])
        .contains("none"));
    // A start period: failures in it do not count.
    w.docker(&[
        "run",
        "-d",
        "--name",
        "sp",
        "--health-cmd",
        "false",
        "--health-interval",
        "60s",
        "--health-start-period",
        "60s",
        "--health-start-interval",
        "300ms",
        "--health-retries",
        "1",
        IMAGE,
        "sleep",
        "1000",
    ]);
    until(20, "a probe in the start period", || {
        let h = health(&w, "sp");
        (h["Log"].as_array().is_some_and(|l| l.len() >= 2)).then_some(())
    });
    let h = health(&w, "sp");
    assert_eq!(h["Status"], "starting", "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let status = w.docker(&["ps", "--filter", "name=sp", "--format", "{{.Status}}"]);
    assert!(status.trim().ends_with("(health: starting)"), "{status:?}");
    // Bad values: Docker's 400, nothing created.
    let out = w.try_docker(
        &[
            "create",
            "--name",
            "bad",
            "--health-cmd",
            "true",
            "--health-interval",
            "10us",
            IMAGE,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Interval in Healthcheck cannot be less than 1ms"),
        "{out:?}"
    );
    assert!(!w
        .docker(&["ps", "-a", "--format", "{{.Names}}"])
        .contains("bad"));

    // The events of the changes.
    let until_t = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let ev = w.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until_t,
        "--format",
        "{{.Actor.ID}} {{.Action}}",
    ]);
    let hc_id = w.docker(&["inspect", "--format", "{{.Id}}", "hc"]);
    let hc_id = hc_id.trim();
    let mine: Vec<&str> = ev
        .lines()
        .filter(|l| l.starts_with(hc_id))
        .map(|l| l[hc_id.len()..].trim())
        .filter(|a| a.starts_with("health_status"))
        .collect();
    assert_eq!(
        mine,
        ["health_status: unhealthy", "health_status: healthy"],
        "{ev}"
    );

    // The checker comes back with the daemon.
    w.restart_daemon();
    w.docker(&["exec", "hc", "rm", "/tmp/ok"]);
    wait_health(&w, "hc", "unhealthy");
    for c in ["hc", "slow", "none", "sp"] {
        w.docker(&["rm", "-f", c]);
    }
}

/// Whether the host has cgroup v1 controllers (hybrid) rather than cgroup2 alone.
fn cgroup_v1() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory").is_dir()
}

/// A cgroup file of a container (the engine's cgroupsPath is `/skiff/<id>`): the v1 file
/// of `controller`, or on cgroup2 alone the v2 file `v2`.
fn cg2(controller: &str, id: &str, file: &str, v2: &str) -> String {
    let p = if cgroup_v1() {
        format!("/sys/fs/cgroup/{controller}/skiff/{id}/{file}")
    } else {
        format!("/sys/fs/cgroup/skiff/{id}/{v2}")
    };
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .to_owned()
}

/// The v1 file (the same name on v2: pids.max, cpuset.cpus).
fn cg(controller: &str, id: &str, file: &str) -> String {
    cg2(controller, id, file, file)
}

/// The memory limit file (memory.limit_in_bytes / memory.max).
fn mem_limit(id: &str) -> String {
    cg2("memory", id, "memory.limit_in_bytes", "memory.max")
}

fn inspect(w: &World, name: &str, fmt: &str) -> String {
    w.docker(&["inspect", "--format", fmt, name])
        .trim()
        .to_owned()
}

#[test]
fn docker_update() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let id = w.docker(&[
        "run", "-d", "--name", "up", "--memory", "64m", IMAGE, "sleep", "1000",
    ]);
    let id = id.trim();
    assert_eq!(mem_limit(id), "67108864");
    let out = w.docker(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--memory-reservation",
        "32m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "50",
        "--cpuset-cpus",
        "0",
        "--restart",
        "on-failure:3",
        "up",
    ]);
    assert_eq!(out.trim(), "up");
    let live = |id: &str| {
        assert_eq!(mem_limit(id), "134217728");
        if cgroup_v1() {
            assert_eq!(cg("memory", id, "memory.memsw.limit_in_bytes"), "268435456");
            assert_eq!(cg("memory", id, "memory.soft_limit_in_bytes"), "33554432");
            assert_eq!(cg("cpu", id, "cpu.cfs_quota_us"), "50000");
            assert_eq!(cg("cpu", id, "cpu.shares"), "512");
        } else {
            // swap alone on v2; shares as crun maps them to a weight.
            assert_eq!(cg2("", id, "", "memory.swap.max"), "134217728");
            assert_eq!(cg2("", id, "", "memory.low"), "33554432");
            assert_eq!(cg2("", id, "", "cpu.max"), "50000 100000");
            assert_eq!(cg2("", id, "", "cpu.weight"), "59");
        }
        assert_eq!(cg("pids", id, "pids.max"), "50");
        assert_eq!(cg("cpuset", id, "cpuset.cpus"), "0");
    };
    live(id);
    assert_eq!(
        inspect(
            &w,
            "up",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.CpusetCpus}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "134217728 268435456 500000000 512 50 0 on-failure:3"
    );
    // A restart keeps them (the spec is made from the persisted config).
    w.docker(&["restart", "-t", "0", "up"]);
    live(id);

    // Docker's refusals: a 400 with its message, nothing changed.
    for (args, msg) in [
        (
            vec!["--memory", "1m"],
            "Minimum memory limit allowed is 6MB",
        ),
        (
            vec!["--memory", "512m"],
            "update the memoryswap at the same time",
        ),
        (
            vec!["--cpu-period", "10"],
            "CPU cfs period can not be less than 1ms",
        ),
        (
            vec!["--cpuset-cpus", "77"],
            "Requested CPUs are not available",
        ),
    ] {
        let mut a = vec!["update"];
        a.extend(args);
        a.push("up");
        let out = w.try_docker(&a, None);
        assert!(!out.status.success(), "{a:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{a:?}: {err}");
    }
    live(id);
    let out = w.try_docker(&["update", "--memory", "64m", "nosuch"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such container: nosuch"));

    // Below what the container uses: refused, the old limit stays.
    let hog = w.docker(&[
        "run",
        "-d",
        "--name",
        "hog",
        "--memory",
        "200m",
        IMAGE,
        "sh",
        "-c",
        "head -c 40000000 /dev/zero > /dev/shm/fill && touch /tmp/ready; sleep 1000",
    ]);
    let hog = hog.trim();
    until(30, "the hog to fill its memory", || {
        let o = w.try_docker(&["exec", "hog", "ls", "/tmp/ready"], None);
        o.status.success().then_some(())
    });
    let usage = cg2("memory", hog, "memory.usage_in_bytes", "memory.current");
    let out = w.try_docker(
        &["update", "--memory", "10m", "--memory-swap", "20m", "hog"],
        None,
    );
    assert!(!out.status.success(), "usage {usage}: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Cannot update container {hog}")),
        "{err}"
    );
    assert_eq!(mem_limit(hog), "209715200");
    assert_eq!(inspect(&w, "hog", "{{.HostConfig.Memory}}"), "209715200");

    // Unlimited pids; a stopped container gets its update at the next start.
    w.docker(&["update", "--pids-limit", "-1", "up"]);
    assert_eq!(cg("pids", id, "pids.max"), "max");
    w.docker(&["stop", "-t", "0", "up"]);
    w.docker(&["update", "--memory", "100m", "--memory-swap", "-1", "up"]);
    w.docker(&["start", "up"]);
    assert_eq!(mem_limit(id), "104857600");
    // Block I/O weight: applied, or discarded with Docker's warning on a kernel without it.
    let out = w.try_docker(&["update", "--blkio-weight", "300", "up"], None);
    assert!(out.status.success(), "{out:?}");
    if cgroup_v1()
        && !std::path::Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists()
        && !std::path::Path::new("/sys/fs/cgroup/blkio/blkio.bfq.weight").exists()
    {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Weight discarded"),
            "{out:?}"
        );
    }
    w.docker(&["rm", "-f", "up", "hog"]);
}

#[test]
fn init_reaps_forwards_and_passes_exit_codes() {
    if !can_run() {
        return;
    }
    ensure_init();
    let w = World::new();
    // PID 1 is skiff-init, bound read-only at /sbin/docker-init, the command its child.
    let out = w.docker(&[
        "run",
        "--rm",
        "--init",
        IMAGE,
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$; grep ' /sbin/docker-init ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("/sbin/docker-init -- sh -c "), "{out}");
    assert_ne!(lines[1], "1", "{out}");
    assert_eq!(lines[2], "ro", "{out}");

    // With a terminal the command's group is the foreground one: it can read the terminal.
    let (ok, text) = in_pty_typing(
        &w,
        &format!("docker run -it --rm --init {IMAGE} sh -c 'read x; echo got:$x'"),
        "typed\n",
    );
    assert!(ok && text.contains("got:typed"), "{text:?}");

    // Exit codes pass through; a signal's is 128+N.
    let code = |args: &[&str]| {
        let mut a = vec!["run", "--rm", "--init", IMAGE];
        a.extend_from_slice(args);
        w.try_docker(&a, None).status.code()
    };
    assert_eq!(code(&["sh", "-c", "exit 7"]), Some(7));
    assert_eq!(code(&["sh", "-c", "kill -KILL $$"]), Some(137));
    assert_eq!(code(&["/nope"]), Some(127));

    // Zombies: a shell orphans two children, then becomes `sleep`, which never waits.
    // Without an init the orphans (children of PID 1 = that sleep) stay zombies; with it
    // they are re-parented to the init and reaped.
    let procs = |name: &str| {
        w.docker(&["exec", name, "ps", "-o", "stat,args"])
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    let orphans = "(sleep 0.1 &); (sleep 0.1 &); exec sleep 1000";
    w.docker(&["run", "-d", "--name", "noinit", IMAGE, "sh", "-c", orphans]);
    until(20, "two zombies without an init", || {
        let p = procs("noinit");
        (p.iter().filter(|l| l.starts_with('Z')).count() == 2).then_some(())
    });
    w.docker(&[
        "run", "-d", "--init", "--name", "withinit", IMAGE, "sh", "-c", orphans,
    ]);
    let orphan = |l: &String| l.ends_with(" sleep 0.1");
    until(20, "the orphans to end", || {
        (!procs("withinit").iter().any(orphan)).then_some(())
    });
    let p = procs("withinit");
    assert!(!p.iter().any(|l| l.starts_with('Z')), "zombies: {p:?}");
    w.docker(&["rm", "-f", "noinit", "withinit"]);

    // SIGTERM reaches the command (a shell as PID 2 dies of it): docker stop is quick and
    // the status is 143, not the 137 of the kill after the grace period.
    w.docker(&[
        "run", "-d", "--init", "--name", "ini", IMAGE, "sleep", "1000",
    ]);
    let t = Instant::now();
    w.docker(&["stop", "-t", "30", "ini"]);
    assert!(
        t.elapsed() < Duration::from_secs(25),
        "docker stop waited for the grace period"
    );
    assert_eq!(inspect(&w, "ini", "{{.State.ExitCode}}"), "143");
    w.docker(&["rm", "ini"]);
}

/// The actions of `id`'s events between `since` and now (`docker events --until`).
fn actions(w: &World, id: &str, since: &str) -> Vec<String> {
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    w.docker(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--format",
        "{{.Actor.ID}} {{.Action}}",
    ])
    .lines()
    .filter_map(|l| l.strip_prefix(id))
    .map(|a| a.trim().to_owned())
    .collect()
}

#[test]
fn restart_policy_events() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    // on-failure:2: three runs, each a start and a die, RestartCount 2.
    let id = w.docker(&[
        "run",
        "-d",
        "--name",
        "rp",
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    let id = id.trim().to_owned();
    until(30, "the policy to give up", || {
        let s = inspect(
            &w,
            "rp",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
        );
        (s == "exited 2 3").then_some(())
    });
    let acts: Vec<String> = actions(&w, &id, &since)
        .into_iter()
        .filter(|a| a == "start" || a.starts_with("die"))
        .collect();
    assert_eq!(
        acts,
        ["start", "die", "start", "die", "start", "die"],
        "{}",
        w.log()
    );
    let ev = w.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1)
        .to_string(),
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    ]);
    assert!(ev.lines().take(3).all(|c| c == "3"), "{ev}");

    // always: restarted after a clean exit too; an explicit restart says so.
    let id2 = w.docker(&[
        "run",
        "-d",
        "--name",
        "al",
        "--restart",
        "always",
        IMAGE,
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    let id2 = id2.trim().to_owned();
    until(30, "a policy restart", || {
        (inspect(&w, "al", "{{.RestartCount}}") != "0").then_some(())
    });
    w.docker(&["update", "--restart", "no", "al"]);
    until(30, "the last run to end", || {
        (inspect(&w, "al", "{{.State.Status}}") == "exited").then_some(())
    });
    let since2 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    w.docker(&["run", "-d", "--name", "ex", IMAGE, "sleep", "1000"]);
    let id3 = w.docker(&["inspect", "--format", "{{.Id}}", "ex"]);
    w.docker(&["restart", "-t", "0", "ex"]);
    let acts = actions(&w, id3.trim(), &since2);
    let tail: Vec<&str> = acts
        .iter()
        .map(String::as_str)
        .skip_while(|a| *a != "die")
        .collect();
    assert_eq!(tail, ["die", "stop", "start", "restart"], "{acts:?}");
    let acts = actions(&w, &id2, &since);
    assert!(
        acts.iter().filter(|a| *a == "start").count() >= 2,
        "{acts:?}"
    );
    w.docker(&["rm", "-f", "rp", "al", "ex"]);
}

#[test]
fn log_drivers_and_logs_until() {
    if !can_run() {
        return;
    }
    let w = World::new();
    // none: the container runs, nothing is kept, reading is Docker's error.
    w.docker(&[
        "run",
        "--name",
        "nolog",
        "--log-driver",
        "none",
        IMAGE,
        "echo",
        "lost",
    ]);
    let out = w.try_docker(&["logs", "nolog"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("configured logging driver does not support reading"),
        "{out:?}"
    );
    assert_eq!(
        inspect(&w, "nolog", "{{.HostConfig.LogConfig.Type}} [{{.LogPath}}]"),
        "none []"
    );
    // local: readable, local's rotation defaults.
    w.docker(&[
        "run",
        "--name",
        "loc",
        "--log-driver",
        "local",
        IMAGE,
        "sh",
        "-c",
        "echo one; echo two >&2",
    ]);
    assert_eq!(w.docker(&["logs", "loc"]), "one\n");
    let out = w.try_docker(&["logs", "loc"], None);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "two\n");
    assert_eq!(
        inspect(&w, "loc", "{{.HostConfig.LogConfig.Type}}"),
        "local"
    );
    // An unknown driver: Docker's 400, nothing created.
    let out = w.try_docker(
        &["create", "--name", "bad", "--log-driver", "nosuch", IMAGE],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("logger: no log driver named 'nosuch' is registered"));
    assert!(!w
        .docker(&["ps", "-a", "--format", "{{.Names}}"])
        .contains("bad"));

    // logs --until: only what came before; with --follow it ends at that time.
    w.docker(&[
        "run",
        "-d",
        "--name",
        "ticker",
        IMAGE,
        "sh",
        "-c",
        "echo early; sleep 2; echo late; sleep 1000",
    ]);
    until(20, "the first line", || {
        (w.docker(&["logs", "ticker"]) == "early\n").then_some(())
    });
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    until(20, "the second line", || {
        w.docker(&["logs", "ticker"]).contains("late").then_some(())
    });
    let cut = format!("{cut:.3}");
    assert_eq!(w.docker(&["logs", "--until", &cut, "ticker"]), "early\n");
    // Following up to a time just ahead: the CLI returns by itself.
    let soon = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let out = w.docker(&["logs", "--follow", "--until", &soon, "ticker"]);
    assert_eq!(out, "early\nlate\n");
    w.docker(&["rm", "-f", "nolog", "loc", "ticker"]);
}
