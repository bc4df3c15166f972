//! Integration tests on the real cgroup hierarchies of the machine (root only).
//!
//! On this development host they exercise the hybrid layout; `scripts/v2vm/run-cgroup-tests.sh`
//! runs the same binary inside a pure cgroup v2 VM. Each test places a helper process (this
//! same binary, re-executed with `SKIFF_CG_HELPER` set) in the cgroup before it starts its
//! work, so limits apply from its first instruction.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory, LinuxPids,
    LinuxResources,
};
use skiff_cgroups::{Cgroup, CgroupRoot, Layout};

/// The root, or `None` (with a printed reason) when these tests cannot run here.
fn root() -> Option<CgroupRoot> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: cgroup integration tests need root");
        return None;
    }
    match CgroupRoot::detect() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("SKIP: no cgroups here: {e}");
            None
        }
    }
}

fn name(test: &str) -> String {
    format!("/skiff-it-{}-{test}", std::process::id())
}

/// The host directory of the hierarchy `ctrl` ("" = v2), via mount_sources.
fn dir(cg: &Cgroup, ctrl: &str) -> PathBuf {
    let want = if cg.layout() == Layout::Unified {
        ""
    } else {
        ctrl
    };
    cg.mount_sources()
        .into_iter()
        .find(|(n, _)| n == want)
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no {ctrl} hierarchy in {:?}", cg.mount_sources()))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn v2(cg: &Cgroup) -> bool {
    cg.layout() == Layout::Unified
}

/// Starts this test binary as a helper doing `action` once released.
fn spawn_helper(action: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env("SKIFF_CG_HELPER", action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn release(c: &mut Child) {
    let mut stdin = c.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
}

/// The line the helper prints as `RESULT <text>`.
fn result_line(c: Child) -> (std::process::ExitStatus, String) {
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or("")
        .to_string();
    if line.is_empty() {
        eprintln!("helper printed no RESULT line; its stdout was: {text:?}");
    }
    (out.status, line)
}

/// Not a test: the workload the other tests run inside their cgroups.
#[test]
fn helper() {
    let Ok(action) = std::env::var("SKIFF_CG_HELPER") else {
        return;
    };
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    match action.as_str() {
        "sleep" => std::thread::sleep(Duration::from_secs(60)),
        "alloc" => {
            // Touch 256 MiB page by page.
            let mut v: Vec<Vec<u8>> = Vec::new();
            for _ in 0..256 {
                v.push(vec![1u8; 1 << 20]);
            }
            println!("RESULT survived {}", v.len());
        }
        "fork" => {
            let mut ok = 0;
            let mut failed = 0;
            let mut kids = Vec::new();
            for _ in 0..20 {
                match Command::new("sleep").arg("2").spawn() {
                    Ok(k) => {
                        ok += 1;
                        kids.push(k);
                    }
                    Err(_) => failed += 1,
                }
            }
            for mut k in kids {
                let _ = k.kill();
                let _ = k.wait();
            }
            println!("RESULT ok={ok} failed={failed}");
        }
        "spin" => {
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(600) {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            println!("RESULT spun {x}");
        }
        "devices" => {
            let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
            let kmsg = std::fs::File::open("/dev/kmsg");
            println!(
                "RESULT null={} kmsg={}",
                null.is_ok(),
                kmsg.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
            );
        }
        other => panic!("unknown helper action {other}"),
    }
    std::process::exit(0);
}

fn memory(limit: i64, swap: Option<i64>) -> LinuxMemory {
    let mut m = LinuxMemory::default();
    m.set_limit(Some(limit));
    m.set_swap(swap);
    m
}

#[test]
fn lifecycle_limits_freeze_stats_destroy() {
    let Some(root) = root() else { return };
    let cg = Cgroup::new(&root, Some(&name("life")), "life").unwrap();
    cg.create().unwrap();
    assert!(cg.exists());

    let mut r = LinuxResources::default();
    r.set_memory(Some(memory(64 << 20, None)));
    let mut pids = LinuxPids::default();
    pids.set_limit(32);
    r.set_pids(Some(pids));
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(512));
    cpu.set_quota(Some(20_000));
    cpu.set_period(Some(100_000));
    r.set_cpu(Some(cpu));
    cg.apply(&r).unwrap();

    if v2(&cg) {
        let d = dir(&cg, "");
        assert_eq!(read(&d.join("memory.max")), "67108864");
        assert_eq!(read(&d.join("pids.max")), "32");
        assert_eq!(read(&d.join("cpu.max")), "20000 100000");
        assert_eq!(read(&d.join("cpu.weight")), "59");
    } else {
        assert_eq!(
            read(&dir(&cg, "memory").join("memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read(&dir(&cg, "pids").join("pids.max")), "32");
        assert_eq!(read(&dir(&cg, "cpu").join("cpu.cfs_quota_us")), "20000");
        assert_eq!(read(&dir(&cg, "cpu").join("cpu.shares")), "512");
    }

    let mut child = spawn_helper("sleep");
    let pid = i32::try_from(child.id()).unwrap();
    cg.add_process(pid).unwrap();
    assert_eq!(cg.procs().unwrap(), vec![pid]);
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(own.contains("/skiff-it-"), "{own}");

    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());

    // Let it run a little inside the cgroup (charges made before joining stay outside).
    release(&mut child);
    let mut stats = cg.stats().unwrap();
    for _ in 0..100 {
        if stats.cpu.usage.total > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        stats = cg.stats().unwrap();
    }
    assert!(stats.cpu.usage.total > 0, "{:?}", stats.cpu);
    assert!(stats.pids.current >= 1, "{stats:?}");
    assert_eq!(stats.pids.limit, 32);
    assert_eq!(stats.memory.usage.limit, 64 << 20);
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["memory"]["raw"].is_object());

    // update: raise the memory limit on the running process.
    let mut up = LinuxResources::default();
    up.set_memory(Some(memory(128 << 20, None)));
    cg.apply(&up).unwrap();
    assert_eq!(cg.stats().unwrap().memory.usage.limit, 128 << 20);

    // Frozen + alive: destroy must thaw, kill and remove everything.
    cg.freeze().unwrap();
    cg.destroy().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(!cg.exists());
    for (_, d) in cg.mount_sources() {
        let ours = d.to_string_lossy().contains("skiff-it-");
        assert!(!ours || !d.exists(), "{} left behind", d.display());
    }
    cg.destroy().unwrap(); // idempotent
}

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    let Some(root) = root() else { return };
    let cg = Cgroup::new(&root, Some(&name("oom")), "oom").unwrap();
    cg.create().unwrap();
    let mut r = LinuxResources::default();
    r.set_memory(Some(memory(32 << 20, Some(32 << 20))));
    cg.apply(&r).unwrap();
    let mut watcher = cg.oom_watcher().unwrap();
    let mut child = spawn_helper("alloc");
    cg.add_process(i32::try_from(child.id()).unwrap()).unwrap();
    release(&mut child);
    let (status, line) = result_line(child);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "helper said {line:?}"
    );
    let kills = watcher.wait(Duration::from_secs(5)).unwrap();
    assert!(kills >= 1, "no OOM kill seen");
    assert_eq!(watcher.wait(Duration::from_millis(50)).unwrap(), 0);
    let stats = cg.stats().unwrap();
    if v2(&cg) {
        // memory.events "max" counts the times the limit was hit.
        assert!(stats.memory.usage.failcnt > 0, "{:?}", stats.memory.usage);
    } else {
        // Recent kernels no longer count v1 failcnt on every failed charge; the peak shows
        // the limit was reached (the kill itself was seen above).
        assert_eq!(stats.memory.usage.max, 32 << 20, "{:?}", stats.memory.usage);
    }
    cg.destroy().unwrap();
    assert!(!cg.exists());
}

#[test]
fn pids_limit_makes_fork_fail_without_killing() {
    let Some(root) = root() else { return };
    let cg = Cgroup::new(&root, Some(&name("pids")), "pids").unwrap();
    cg.create().unwrap();
    let mut r = LinuxResources::default();
    let mut p = LinuxPids::default();
    p.set_limit(8);
    r.set_pids(Some(p));
    cg.apply(&r).unwrap();
    let mut child = spawn_helper("fork");
    cg.add_process(i32::try_from(child.id()).unwrap()).unwrap();
    release(&mut child);
    let (status, line) = result_line(child);
    assert!(status.success(), "{status:?} {line}");
    let failed: u32 = line
        .rsplit("failed=")
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failed > 0, "{line}");
    cg.destroy().unwrap();
}

#[test]
fn cpu_quota_throttles() {
    let Some(root) = root() else { return };
    let cg = Cgroup::new(&root, Some(&name("cpu")), "cpu").unwrap();
    cg.create().unwrap();
    let mut r = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    cpu.set_quota(Some(20_000));
    cpu.set_period(Some(100_000));
    r.set_cpu(Some(cpu));
    cg.apply(&r).unwrap();
    let mut child = spawn_helper("spin");
    cg.add_process(i32::try_from(child.id()).unwrap()).unwrap();
    release(&mut child);
    let (status, _) = result_line(child);
    assert!(status.success());
    let t = cg.stats().unwrap().cpu.throttling;
    assert!(t.throttled_periods > 0, "{t:?}");
    assert!(t.throttled_time > 0, "{t:?}");
    cg.destroy().unwrap();
}

#[test]
fn device_rules_deny_and_allow() {
    let Some(root) = root() else { return };
    let cg = Cgroup::new(&root, Some(&name("dev")), "dev").unwrap();
    cg.create().unwrap();
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_typ(Some(LinuxDeviceType::A));
    deny_all.set_access(Some("rwm".into()));
    let mut r = LinuxResources::default();
    r.set_devices(Some(vec![deny_all]));
    cg.apply(&r).unwrap();
    if !v2(&cg) {
        let list = read(&dir(&cg, "devices").join("devices.list"));
        assert!(list.contains("c 1:3 rwm"), "{list}");
        assert!(!list.contains("a *:*"), "{list}");
    }
    let mut child = spawn_helper("devices");
    cg.add_process(i32::try_from(child.id()).unwrap()).unwrap();
    release(&mut child);
    let (status, line) = result_line(child);
    assert!(status.success());
    assert_eq!(line, format!("null=true kmsg={}", libc::EPERM));
    // Applying again (update) replaces the program rather than stacking a second one.
    cg.apply(&r).unwrap();
    if v2(&cg) {
        let d = std::fs::File::open(dir(&cg, "")).unwrap();
        let ids = skiff_sys::bpf::query_cgroup_device(std::os::fd::AsFd::as_fd(&d)).unwrap();
        assert_eq!(ids.len(), 1, "device programs attached: {ids:?}");
    }
    cg.destroy().unwrap();
}

#[test]
fn nested_and_relative_paths() {
    let Some(root) = root() else { return };
    let outer = Cgroup::new(&root, Some(&name("nest")), "outer").unwrap();
    let inner_path = format!("{}/inner", name("nest"));
    let inner = Cgroup::new(&root, Some(&inner_path), "inner").unwrap();
    outer.create().unwrap();
    let mut r = LinuxResources::default();
    r.set_memory(Some(memory(96 << 20, None)));
    outer.apply(&r).unwrap();
    inner.create().unwrap();
    r.set_memory(Some(memory(48 << 20, None)));
    inner.apply(&r).unwrap();
    let mut child = spawn_helper("sleep");
    inner
        .add_process(i32::try_from(child.id()).unwrap())
        .unwrap();
    assert_eq!(inner.procs().unwrap().len(), 1);
    assert!(outer.procs().unwrap().is_empty());
    // Destroying the outer cgroup takes the inner one (and its process) with it.
    outer.destroy().unwrap();
    child.wait().unwrap();
    assert!(!inner.exists() && !outer.exists());

    // Relative: under this process's own cgroup (its parent on pure v2).
    let rel = Cgroup::new(&root, None, &format!("skiff-rel-{}", std::process::id())).unwrap();
    rel.create().unwrap();
    assert!(rel.exists());
    rel.destroy().unwrap();
    assert!(!rel.exists());
}

#[test]
fn hugetlb_limit() {
    let Some(root) = root() else { return };
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        eprintln!("SKIP: no 2MB huge pages");
        return;
    }
    let cg = Cgroup::new(&root, Some(&name("huge")), "huge").unwrap();
    cg.create().unwrap();
    let mut l = LinuxHugepageLimit::default();
    l.set_page_size("2MB".into());
    l.set_limit(4 << 20);
    let mut r = LinuxResources::default();
    r.set_hugepage_limits(Some(vec![l]));
    cg.apply(&r).unwrap();
    let (ctrl, file) = match root.layout() {
        Layout::Legacy => ("hugetlb", "hugetlb.2MB.limit_in_bytes"),
        Layout::Hybrid => ("unified", "hugetlb.2MB.max"),
        Layout::Unified => ("", "hugetlb.2MB.max"),
    };
    assert_eq!(read(&dir(&cg, ctrl).join(file)), (4 << 20).to_string());
    cg.destroy().unwrap();
}

/// Lists every cgroup directory of every hierarchy (skipping other tests' cgroups).
fn tree(root: &CgroupRoot) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false)
                && !path.to_string_lossy().contains("skiff-it-")
            {
                out.push(path.clone());
                walk(&path, out);
            }
        }
    }
    let probe = Cgroup::new(root, Some("/x"), "x").unwrap();
    let mut out = Vec::new();
    for (_, d) in probe.mount_sources() {
        walk(d.parent().unwrap(), &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// No leaks over many cycles, and the timing of the start/delete path (printed, not asserted).
#[test]
fn cycles_leave_no_trace_and_timing() {
    let Some(root) = root() else { return };
    let cycles: usize = std::env::var("SKIFF_CG_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // Other processes on the machine create cgroups concurrently: compare only ours.
    let ours = |t: Vec<PathBuf>| -> Vec<PathBuf> {
        t.into_iter()
            .filter(|p| p.to_string_lossy().contains("skiff-leak-"))
            .collect()
    };
    let before = ours(tree(&root));
    let mut child = spawn_helper("sleep");
    let pid = i32::try_from(child.id()).unwrap();
    let mut times = Vec::with_capacity(cycles);
    let mut r = LinuxResources::default();
    r.set_memory(Some(memory(64 << 20, None)));
    let mut p = LinuxPids::default();
    p.set_limit(100);
    r.set_pids(Some(p));
    let home = Cgroup::new(&root, Some(&name("home")), "home").unwrap();
    home.create().unwrap();
    for i in 0..cycles {
        let id = format!("skiff-leak-{}-{i}", std::process::id());
        let t0 = Instant::now();
        let root = CgroupRoot::detect().unwrap();
        let cg = Cgroup::new(&root, Some(&format!("/{id}")), &id).unwrap();
        cg.create().unwrap();
        cg.apply(&r).unwrap();
        cg.add_process(pid).unwrap();
        let t1 = Instant::now();
        // Leave it again (the container's process exits in real life).
        home.add_process(pid).unwrap();
        cg.destroy().unwrap();
        times.push((t1 - t0, t1.elapsed()));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    home.destroy().unwrap();
    let after = ours(tree(&root));
    assert_eq!(before, after, "cgroup trees changed after {cycles} cycles");
    let mut start: Vec<Duration> = times.iter().map(|t| t.0).collect();
    let mut stop: Vec<Duration> = times.iter().map(|t| t.1).collect();
    start.sort();
    stop.sort();
    eprintln!(
        "TIMING {:?}: detect+new+create+apply+add_process median {:?} (p90 {:?}); destroy median {:?} (p90 {:?}) over {cycles} cycles",
        root.layout(),
        start[cycles / 2],
        start[cycles * 9 / 10],
        stop[cycles / 2],
        stop[cycles * 9 / 10],
    );
}

#[test]
fn systemd_path_is_a_clear_error() {
    let Some(root) = root() else { return };
    let e = Cgroup::new(&root, Some("system.slice:skiff:c1"), "c1").unwrap_err();
    assert!(e.to_string().contains("systemd"), "{e}");
}
