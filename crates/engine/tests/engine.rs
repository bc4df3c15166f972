//! The engine for real (root): a busybox image imported into a store, containers run
//! through skiff-monitor.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_engine::models::{ContainerConfig, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use skiff_engine::{CreateBody, Engine, EngineConfig, ErrorKind, LogsOptions, WaitCondition};
use skiff_store::{Compression, ImportOptions, Store, StoreOptions};

struct World {
    tmp: tempfile::TempDir,
    store: Store,
}

/// `<target>/<profile>/examples/NAME`, built with cargo when missing: `cargo test
/// --all-targets` compiles examples as test harnesses, not as the programs these tests run.
fn example_bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
    let p = profile_dir.join("examples").join(name);
    BUILT.call_once(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "--example",
            "skiff-monitor",
            "--example",
            "skiff-exec-helper",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(profile_dir.parent().unwrap());
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build --example");
        assert!(st.success(), "cargo build of the test monitor failed");
    });
    assert!(p.exists(), "{} is missing", p.display());
    p
}

fn monitor_bin() -> PathBuf {
    example_bin("skiff-monitor")
}

fn hdr() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn busybox_tar() -> Vec<u8> {
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static");
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32| {
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, p: &str, data: &[u8], mode: u32| {
        let mut h = hdr();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, p, data).unwrap();
    };
    for d in ["bin", "etc", "tmp", "w", "data", "proc", "sys", "dev"] {
        dir(&mut b, d, if d == "tmp" { 0o1777 } else { 0o755 });
    }
    file(&mut b, "bin/busybox", &std::fs::read(bb).unwrap(), 0o755);
    for a in [
        "sh", "echo", "cat", "sleep", "id", "pwd", "touch", "grep", "true", "false", "ls", "env",
    ] {
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/w:/bin/sh\n",
        0o644,
    );
    file(
        &mut b,
        "etc/group",
        b"root:x:0:\nbob:x:1000:\nwheel:x:10:bob\n",
        0o644,
    );
    file(&mut b, "data/seed", b"from the image\n", 0o644);
    b.into_inner().unwrap()
}

impl Drop for World {
    fn drop(&mut self) {
        // Every test stops its containers; what a failed test left running is killed and a
        // rootfs left mounted unmounted here, so the temp dir can go.
        let rt = skiff_container::Runtime::new(self.tmp.path().join("run/runtime"));
        for c in rt.list().unwrap_or_default() {
            let _ = rt.delete(&c.id, true);
        }
        for r in self.store.rootfs_list() {
            let _ = self.store.unmount_rootfs(&r.container_id);
        }
    }
}

impl World {
    fn new() -> World {
        assert!(nix::unistd::geteuid().is_root(), "these tests need root");
        let tmp = tempfile::Builder::new()
            .prefix("sk")
            .tempdir_in("/tmp")
            .unwrap();
        let store = Store::open(tmp.path().join("data"), StoreOptions::default()).unwrap();
        let config: oci_spec::image::Config = serde_json::from_value(json!({
            "Env": ["PATH=/bin", "FROM_IMAGE=yes", "B=image"],
            "Cmd": ["sh", "-c", "echo default cmd"],
            "WorkingDir": "/w",
        }))
        .unwrap();
        store
            .import(
                &busybox_tar()[..],
                Compression::None,
                &ImportOptions {
                    tag: Some("busybox:test".parse().unwrap()),
                    config: Some(config),
                    ..Default::default()
                },
            )
            .unwrap();
        World { tmp, store }
    }

    fn engine(&self) -> Engine {
        let cfg = EngineConfig::new(
            self.tmp.path().join("data"),
            self.tmp.path().join("run"),
            monitor_bin(),
            self.store.clone(),
        );
        Engine::open(cfg).unwrap()
    }
}

fn body(cmd: &[&str]) -> CreateBody {
    CreateBody {
        config: ContainerConfig {
            image: Some("busybox:test".into()),
            cmd: (!cmd.is_empty()).then(|| cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        },
        host_config: Some(HostConfig::default()),
        networking_config: None,
    }
}

fn with_hc(mut b: CreateBody, f: impl FnOnce(&mut HostConfig)) -> CreateBody {
    f(b.host_config.as_mut().unwrap());
    b
}

fn all_logs() -> LogsOptions {
    LogsOptions {
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

fn output(e: &Engine, id: &str) -> String {
    e.logs(id, all_logs()).unwrap().map(|l| l.line).collect()
}

/// Runs a container to its end; returns its exit code and output.
fn run(e: &Engine, b: CreateBody) -> (i64, String) {
    let id = e.create(None, b).unwrap();
    e.start(&id).unwrap();
    let code = e.wait(&id, WaitCondition::NotRunning).unwrap();
    (code, output(e, &id))
}

#[test]
fn logs_across_rotated_files() {
    let w = World::new();
    let e = w.engine();
    let b = with_hc(
        body(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 3000 ]; do echo line$i; i=$((i+1)); done",
        ]),
        |hc| {
            hc.log_config = Some(
                serde_json::from_value(json!({
                    "Type": "json-file",
                    "Config": {"max-size": "16k", "max-file": "4"}
                }))
                .unwrap(),
            );
        },
    );
    let id = e.create(None, b).unwrap();
    e.start(&id).unwrap();
    assert_eq!(e.wait(&id, WaitCondition::NotRunning).unwrap(), 0);
    let numbers = |opts: LogsOptions| -> Vec<u32> {
        e.logs(&id, opts)
            .unwrap()
            .map(|l| {
                l.line
                    .strip_prefix("line")
                    .and_then(|n| n.trim_end().parse().ok())
                    .unwrap_or_else(|| panic!("odd line {:?}", l.line))
            })
            .collect()
    };
    // Everything the kept files hold: consecutive, ending with the last line, and more than
    // the live file alone (the rotated files are read too, oldest first).
    let all = numbers(all_logs());
    assert_eq!(all.last(), Some(&2999));
    assert!(
        all.windows(2).all(|p| p[1] == p[0] + 1),
        "a gap or reordering"
    );
    assert!(
        all.len() > 400 && all.len() < 3000,
        "{} lines kept",
        all.len()
    );
    // A tail reaching into the rotated files, and one longer than the whole log.
    for n in [1, 250, all.len() - 1] {
        let t = numbers(LogsOptions {
            tail: Some(n),
            ..all_logs()
        });
        assert_eq!(t, all[all.len() - n..], "tail {n}");
    }
    assert_eq!(
        numbers(LogsOptions {
            tail: Some(100_000),
            ..all_logs()
        }),
        all
    );
    assert!(numbers(LogsOptions {
        tail: Some(0),
        ..all_logs()
    })
    .is_empty());
}

#[test]
fn run_wait_and_logs() {
    let w = World::new();
    let e = w.engine();
    let id = e
        .create(
            Some("logs"),
            body(&["sh", "-c", "echo out; echo err >&2; echo out2; exit 3"]),
        )
        .unwrap();
    assert_eq!(
        e.inspect("logs")
            .unwrap()
            .state
            .unwrap()
            .status
            .unwrap()
            .to_string(),
        "created"
    );
    e.start("logs").unwrap();
    assert_eq!(e.wait(&id, WaitCondition::NotRunning).unwrap(), 3);
    let st = e.inspect(&id[..10]).unwrap().state.unwrap();
    assert_eq!((st.exit_code, st.running), (Some(3), Some(false)));
    assert_eq!(st.status.unwrap().to_string(), "exited");
    assert!(st.finished_at.unwrap() > st.started_at.unwrap());
    let only = |stdout, stderr| -> String {
        e.logs(
            &id,
            LogsOptions {
                stdout,
                stderr,
                ..Default::default()
            },
        )
        .unwrap()
        .map(|l| l.line)
        .collect()
    };
    assert_eq!(only(true, false), "out\nout2\n");
    assert_eq!(only(false, true), "err\n");
    let tail: Vec<String> = e
        .logs(
            &id,
            LogsOptions {
                tail: Some(1),
                ..all_logs()
            },
        )
        .unwrap()
        .map(|l| l.render(true))
        .collect();
    // Docker's tail counts the log's last lines before the stream filter; which of the two
    // streams' last lines the monitor wrote last is up to the scheduler.
    assert_eq!(tail.len(), 1);
    assert!(
        (tail[0].ends_with("Z out2\n") || tail[0].ends_with("Z err\n"))
            && tail[0].starts_with("20"),
        "{tail:?}"
    );
    // Follow: lines arrive while it runs, the stream ends with the container.
    let id = e
        .create(
            None,
            body(&["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"]),
        )
        .unwrap();
    e.start(&id).unwrap();
    let t = Instant::now();
    let got: String = e
        .logs(
            &id,
            LogsOptions {
                follow: true,
                ..all_logs()
            },
        )
        .unwrap()
        .map(|l| l.line)
        .collect();
    assert_eq!(got, "1\n2\n3\n");
    assert!(t.elapsed() >= Duration::from_millis(300));
    let names: Vec<String> = e
        .list(true, &Default::default())
        .unwrap()
        .into_iter()
        .flat_map(|s| s.names.unwrap())
        .collect();
    assert!(names.contains(&"/logs".to_string()), "{names:?}");
    assert!(e.list(false, &Default::default()).unwrap().is_empty());
}

#[test]
fn image_config_merges_with_the_request() {
    let w = World::new();
    let e = w.engine();
    assert_eq!(run(&e, body(&[])), (0, "default cmd\n".into()));
    let mut b = body(&["sh", "-c", "echo $FROM_IMAGE $B; pwd; id -u; id -G"]);
    b.config.env = Some(vec!["B=request".into()]);
    b.config.user = Some("bob".into());
    assert_eq!(run(&e, b), (0, "yes request\n/w\n1000\n1000 10\n".into()));
    let mut b = body(&["hello"]);
    b.config.entrypoint = Some(vec!["echo".into(), "say".into()]);
    b.config.working_dir = Some("/tmp".into());
    assert_eq!(run(&e, b).1, "say hello\n");
    let mut b = body(&["cat", "/etc/hostname"]);
    b.config.hostname = Some("myhost".into());
    assert_eq!(run(&e, b).1, "myhost\n");
    let err = e
        .create(
            None,
            CreateBody {
                config: ContainerConfig {
                    image: Some("nope:1".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn docker_default_security_and_read_only() {
    let w = World::new();
    let e = w.engine();
    let (code, out) = run(
        &e,
        body(&[
            "grep",
            "-E",
            "^(CapEff|CapInh|Seccomp|NoNewPrivs):",
            "/proc/self/status",
        ]),
    );
    assert_eq!(code, 0);
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    let b = with_hc(
        body(&["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"]),
        |h| {
            h.security_opt = Some(vec![
                "seccomp=unconfined".into(),
                "no-new-privileges".into(),
            ]);
        },
    );
    let out = run(&e, b).1;
    assert!(
        out.contains("Seccomp:\t0") && out.contains("NoNewPrivs:\t1"),
        "{out}"
    );
    let b = with_hc(body(&["grep", "^Seccomp:", "/proc/self/status"]), |h| {
        h.privileged = Some(true)
    });
    assert!(run(&e, b).1.contains("Seccomp:\t0"));
    // /proc/kcore is masked.
    assert_eq!(run(&e, body(&["sh", "-c", "cat /proc/kcore | wc -c"])).0, 0);
    let b = with_hc(
        body(&[
            "sh",
            "-c",
            "touch /x 2>/dev/null && echo wrote; touch /tmp/y && echo tmpfs ok",
        ]),
        |h| {
            h.readonly_rootfs = Some(true);
            h.tmpfs = Some([("/tmp".to_string(), String::new())].into());
        },
    );
    assert_eq!(run(&e, b), (0, "tmpfs ok\n".into()));
}

#[test]
fn binds_and_named_volumes() {
    let w = World::new();
    let e = w.engine();
    let host = w.tmp.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "host file\n").unwrap();
    let b = with_hc(
        body(&[
            "sh",
            "-c",
            "cat /h/in; echo back > /h/out; cat /data/seed; echo kept > /data/new",
        ]),
        |h| {
            h.binds = Some(vec![format!("{}:/h", host.display()), "vol1:/data".into()]);
        },
    );
    assert_eq!(run(&e, b), (0, "host file\nfrom the image\n".into()));
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "back\n");
    let b = with_hc(
        body(&["sh", "-c", "cat /data/new; echo x 2>/dev/null > /h/in"]),
        |h| {
            h.binds = Some(vec![
                format!("{}:/h:ro", host.display()),
                "vol1:/data".into(),
            ]);
        },
    );
    let (code, out) = run(&e, b);
    assert_eq!(out, "kept\n");
    assert_ne!(code, 0, "a read-only bind is not writable");
    assert!(e.volumes().contains(&"vol1".to_string()));
    let v = w.tmp.path().join("data/volumes/vol1/_data/new");
    assert_eq!(std::fs::read_to_string(v).unwrap(), "kept\n");
}

#[test]
fn stop_kills_after_the_timeout() {
    let w = World::new();
    let e = w.engine();
    let id = e
        .create(
            None,
            body(&[
                "sh",
                "-c",
                "trap 'echo got TERM' TERM; while true; do sleep 0.1; done",
            ]),
        )
        .unwrap();
    e.start(&id).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    e.stop(&id, Some(1)).unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let st = e.inspect(&id).unwrap().state.unwrap();
    assert_eq!(st.exit_code, Some(137));
    assert!(output(&e, &id).contains("got TERM"));
    // A container that honours SIGTERM stops at once.
    let id = e
        .create(
            None,
            body(&[
                "sh",
                "-c",
                "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            ]),
        )
        .unwrap();
    e.start(&id).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    e.stop(&id, Some(10)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(e.wait(&id, WaitCondition::NotRunning).unwrap(), 0);
}

#[test]
fn on_failure_restarts_count() {
    let w = World::new();
    let e = w.engine();
    let b = with_hc(body(&["sh", "-c", "echo run; exit 2"]), |h| {
        h.restart_policy = Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(2),
        });
    });
    let id = e.create(None, b).unwrap();
    e.start(&id).unwrap();
    let t = Instant::now();
    loop {
        let r = e.record(&id).unwrap();
        if r.restart_count == 2 && r.state.status == skiff_engine::Status::Exited {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{:?} {}",
            r.state,
            r.restart_count
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let i = e.inspect(&id).unwrap();
    assert_eq!(i.restart_count, Some(2));
    assert_eq!(i.state.unwrap().exit_code, Some(2));
    assert_eq!(output(&e, &id), "run\nrun\nrun\n");
}

#[test]
fn a_new_engine_adopts_running_containers() {
    let w = World::new();
    let e = w.engine();
    let long = e.create(Some("long"), body(&["sleep", "1000"])).unwrap();
    let short = e
        .create(Some("short"), body(&["sh", "-c", "sleep 1; exit 7"]))
        .unwrap();
    e.start(&long).unwrap();
    e.start(&short).unwrap();
    let pid = e.inspect(&long).unwrap().state.unwrap().pid.unwrap();
    assert!(pid > 0);
    drop(e);
    std::thread::sleep(Duration::from_millis(1500));
    let e = w.engine();
    let st = e.inspect("long").unwrap().state.unwrap();
    assert_eq!((st.running, st.pid), (Some(true), Some(pid)));
    let st = e.inspect("short").unwrap().state.unwrap();
    assert_eq!((st.running, st.exit_code), (Some(false), Some(7)));
    // Watched again: stop works and sees the exit.
    e.stop("long", Some(1)).unwrap();
    assert_eq!(
        e.inspect("long").unwrap().state.unwrap().exit_code,
        Some(137)
    );
}

#[test]
fn remove_cleans_up_and_names_conflict() {
    let w = World::new();
    let e = w.engine();
    let id = e.create(Some("dup"), body(&["sleep", "1000"])).unwrap();
    let err = e.create(Some("dup"), body(&["true"])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(
        e.create(Some("-bad"), body(&["true"])).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    e.start(&id).unwrap();
    let err = e.remove("dup", false, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let rootfs = w.store.rootfs(&id).unwrap().path;
    e.remove("dup", true, true).unwrap();
    assert!(w.store.rootfs(&id).is_err());
    assert!(!rootfs.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount of the container is left");
    assert!(!w.tmp.path().join("data/containers").join(&id).exists());
    assert!(!w.tmp.path().join("run/m").join(&id).exists());
    assert_eq!(e.inspect("dup").unwrap_err().kind(), ErrorKind::NotFound);
    // The name is free again.
    let id2 = e.create(Some("dup"), body(&["true"])).unwrap();
    e.rename(&id2, "other").unwrap();
    assert!(e.inspect("other").is_ok());
    // --rm
    let b = with_hc(body(&["true"]), |h| h.auto_remove = Some(true));
    let id3 = e.create(None, b).unwrap();
    e.start(&id3).unwrap();
    e.wait(&id3, WaitCondition::Removed).unwrap();
    assert!(e.inspect(&id3).is_err());
}

#[test]
fn attach_before_start_sees_all_output() {
    let w = World::new();
    let e = w.engine();
    let id = e
        .create(None, body(&["sh", "-c", "echo hello; echo err >&2"]))
        .unwrap();
    let mut s = e.attach(&id).unwrap();
    e.start(&id).unwrap();
    let mut out = Vec::new();
    while let Some((kind, data)) = skiff_monitor::protocol::read_frame(&mut s).unwrap() {
        out.push((kind, String::from_utf8(data).unwrap()));
    }
    out.sort();
    assert_eq!(out, [(1, "hello\n".to_string()), (2, "err\n".to_string())]);
    assert_eq!(e.wait(&id, WaitCondition::NotRunning).unwrap(), 0);
}

#[test]
fn pause_top_stats_kill_and_init() {
    let w = World::new();
    let e = w.engine();
    let b = with_hc(body(&["sleep", "1000"]), |h| {
        h.memory = Some(64 << 20);
        h.pids_limit = Some(50);
        h.nano_cpus = Some(500_000_000);
    });
    let id = e.create(None, b).unwrap();
    e.start(&id).unwrap();
    // Right after start the runtime's own short-lived helper may still be in the cgroup.
    let t = Instant::now();
    let procs = loop {
        let procs = e.top(&id).unwrap().processes.unwrap();
        let settled = procs.len() == 1 && procs[0][3] == "sleep 1000";
        if settled || t.elapsed() > Duration::from_secs(3) {
            break procs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(procs.len(), 1, "{procs:?}");
    assert_eq!(procs[0][3], "sleep 1000");
    e.stats(&id).unwrap();
    e.pause(&id).unwrap();
    assert_eq!(
        e.record(&id).unwrap().state.status,
        skiff_engine::Status::Paused
    );
    assert_eq!(e.pause(&id).unwrap_err().kind(), ErrorKind::Conflict);
    e.unpause(&id).unwrap();
    e.kill(&id, Some("KILL")).unwrap();
    assert_eq!(e.wait(&id, WaitCondition::NotRunning).unwrap(), 137);
    assert_eq!(e.kill(&id, None).unwrap_err().kind(), ErrorKind::Conflict);
    // The cgroup limits reached the container.
    let b = with_hc(
        body(&[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max",
        ]),
        |h| {
            h.memory = Some(64 << 20);
            h.pids_limit = Some(50);
            h.nano_cpus = Some(500_000_000);
        },
    );
    let (code, out) = run(&e, b);
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!((code, out.as_str()), (0, "67108864\n50\n50000 100000\n"));
    } else {
        let b = with_hc(body(&["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"]), |h| {
            h.memory = Some(64 << 20);
            h.pids_limit = Some(50);
            h.nano_cpus = Some(500_000_000);
        });
        assert_eq!(run(&e, b), (0, "67108864\n50\n50000\n100000\n".into()));
    }
    // --init: skiff-init is pid 1, the command its child.
    if e.config().init_bin.is_some() {
        let b = with_hc(
            body(&[
                "sh",
                "-c",
                "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
            ]),
            |h| h.init = Some(true),
        );
        let (code, out) = run(&e, b);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("/sbin/docker-init -- sh"), "{out}");
        assert_ne!(out.lines().nth(1), Some("1"), "{out}");
    }
}

#[test]
fn anonymous_volumes_from_the_image_go_with_rm_v() {
    let w = World::new();
    let e = w.engine();
    let mut b = body(&["sh", "-c", "cat /data/seed; echo x > /data/y"]);
    b.config.volumes = Some([("/data".to_string(), Default::default())].into());
    let id = e.create(None, b).unwrap();
    e.start(&id).unwrap();
    assert_eq!(e.wait(&id, WaitCondition::NotRunning).unwrap(), 0);
    assert_eq!(output(&e, &id), "from the image\n");
    let mounts = e.inspect(&id).unwrap().mounts.unwrap();
    assert_eq!(mounts.len(), 1);
    let name = mounts[0].name.clone().unwrap();
    assert_eq!(name.len(), 64);
    assert!(e.volumes().contains(&name));
    e.remove(&id, false, true).unwrap();
    assert!(!e.volumes().contains(&name));
}

#[derive(Debug, Default)]
struct FakeNet {
    fail: bool,
    calls: std::sync::Mutex<Vec<String>>,
}

impl skiff_engine::NetworkHook for FakeNet {
    fn setup(&self, rec: &skiff_engine::Record, netns: &Path) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let theirs = std::fs::metadata(netns).map_err(|e| e.to_string())?.ino();
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        // The container exists but its process has not run yet: nothing logged.
        let logged = std::fs::metadata(&rec.log_path)
            .map(|m| m.len())
            .unwrap_or(0);
        self.calls.lock().unwrap().push(format!(
            "setup own-netns={} logged={logged}",
            theirs != ours
        ));
        if self.fail {
            return Err("no addresses left".into());
        }
        Ok(())
    }

    fn teardown(&self, id: &str) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("teardown {}", id.len()));
    }
}

#[test]
fn the_network_hook_runs_between_create_and_start() {
    let w = World::new();
    let net = std::sync::Arc::new(FakeNet::default());
    let mut cfg = EngineConfig::new(
        w.tmp.path().join("data"),
        w.tmp.path().join("run"),
        monitor_bin(),
        w.store.clone(),
    );
    cfg.network = Some(net.clone());
    let e = Engine::open(cfg.clone()).unwrap();
    assert_eq!(run(&e, body(&["echo", "hi"])), (0, "hi\n".into()));
    assert_eq!(
        *net.calls.lock().unwrap(),
        ["setup own-netns=true logged=0", "teardown 64"]
    );
    // The host network needs no hook.
    net.calls.lock().unwrap().clear();
    let b = with_hc(body(&["true"]), |h| h.network_mode = Some("host".into()));
    assert_eq!(run(&e, b).0, 0);
    assert_eq!(*net.calls.lock().unwrap(), ["teardown 64"]);
    drop(e);
    // A failing setup fails the start; the container does not run.
    let failing = std::sync::Arc::new(FakeNet {
        fail: true,
        ..Default::default()
    });
    cfg.network = Some(failing);
    let e = Engine::open(cfg).unwrap();
    let id = e.create(None, body(&["echo", "never"])).unwrap();
    let err = e.start(&id).unwrap_err();
    assert!(err.to_string().contains("no addresses left"), "{err}");
    let r = e.record(&id).unwrap();
    assert_eq!(r.state.status, skiff_engine::Status::Created);
    assert_eq!(output(&e, &id), "");
}

#[test]
fn exec_runs_in_the_container() {
    let w = World::new();
    let mut cfg = EngineConfig::new(
        w.tmp.path().join("data"),
        w.tmp.path().join("run"),
        monitor_bin(),
        w.store.clone(),
    );
    cfg.exec_helper = Some((example_bin("skiff-exec-helper"), vec![]));
    let e = Engine::open(cfg).unwrap();
    let mut b = body(&["sh", "-c", "echo inside > /tmp/mark; sleep 1000"]);
    b.config.env = Some(vec!["FROM_CTR=1".into()]);
    let id = e.create(None, b).unwrap();
    let ec = |cmd: &[&str]| skiff_engine::models::ExecConfig {
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    assert_eq!(
        e.exec(&id, &ec(&["true"])).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    e.start(&id).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut c = ec(&[
        "sh",
        "-c",
        "cat /tmp/mark; echo $FROM_CTR $X; pwd; id -u; echo oops >&2; exit 4",
    ]);
    c.env = Some(vec!["X=2".into()]);
    c.user = Some("bob".into());
    c.working_dir = Some("/tmp".into());
    let (code, out, err) = e.exec(&id, &c).unwrap().output().unwrap();
    assert_eq!(String::from_utf8_lossy(&err), "oops\n");
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (4, "inside\n1 2\n/tmp\n1000\n")
    );
    // stdin flows.
    let mut c = ec(&["cat"]);
    c.attach_stdin = Some(true);
    let mut p = e.exec(&id, &c).unwrap();
    use std::io::Write;
    p.stdin.as_mut().unwrap().write_all(b"typed\n").unwrap();
    let (code, out, _) = p.output().unwrap();
    assert_eq!((code, out), (0, b"typed\n".to_vec()));
    e.stop(&id, Some(0)).unwrap();
}

#[test]
fn a_command_that_cannot_run_fails_the_start() {
    let w = World::new();
    let e = w.engine();
    let id = e.create(None, body(&["/no/such/binary"])).unwrap();
    let err = e.start(&id).unwrap_err();
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
    let st = e.inspect(&id).unwrap().state.unwrap();
    assert_eq!(st.status.unwrap().to_string(), "created");
    assert!(st.error.unwrap().contains("/no/such/binary"));
    assert_eq!(st.exit_code, Some(127));
    assert!(!w.store.is_rootfs_mounted(&id).unwrap());
    e.remove(&id, false, false).unwrap();
}

#[test]
fn a_waiter_counts_exits_from_when_it_was_taken() {
    let w = World::new();
    let e = w.engine();
    let id = e.create(None, body(&["sh", "-c", "exit 4"])).unwrap();
    let waiter = e.waiter(&id, WaitCondition::NextExit).unwrap();
    assert_eq!(
        waiter.wait_timeout(Duration::from_millis(50)).unwrap(),
        None
    );
    e.start(&id).unwrap();
    // The exit happened before this call: it still counts.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        waiter.wait_timeout(Duration::from_secs(10)).unwrap(),
        Some(4)
    );
    e.remove(&id, true, false).unwrap();
}

#[test]
fn a_followed_log_ends_when_cancelled() {
    let w = World::new();
    let e = w.engine();
    let id = e
        .create(None, body(&["sh", "-c", "echo one; exec sleep 30"]))
        .unwrap();
    e.start(&id).unwrap();
    let t0 = Instant::now();
    let stream = e
        .logs(
            &id,
            LogsOptions {
                follow: true,
                ..all_logs()
            },
        )
        .unwrap()
        .cancel_when(move || t0.elapsed() > Duration::from_millis(500));
    let lines: Vec<String> = stream.map(|l| l.line).collect();
    assert_eq!(lines, ["one\n"]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    e.remove(&id, true, false).unwrap();
}
