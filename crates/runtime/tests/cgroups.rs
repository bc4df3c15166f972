//! Resource limits enforced on real containers, on this host's cgroups (hybrid here) and, in
//! the VM lane, on a pure cgroup v2 kernel: OOM kills and their events, pids, CPU throttling,
//! device rules, freezing, and no leftover cgroups.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{cgroup_dirs, id, wait_until, Bundle, Rt};
use serde_json::json;

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The container's cgroup dir for `controller` (v1), or its single dir (v2).
fn cg_dir(cid: &str, controller: &str) -> PathBuf {
    let dirs = cgroup_dirs(cid);
    if v2() {
        return dirs.into_iter().next().expect("the container's cgroup");
    }
    let prefix = format!("/sys/fs/cgroup/{controller}/");
    dirs.into_iter()
        .find(|d| d.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {controller} cgroup for {cid}"))
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn stat_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0)
}

#[test]
fn oom_kill_is_counted_and_streamed_as_an_event() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.set(
        "/linux/resources",
        json!({"memory": {"limit": 33554432, "swap": 33554432}}),
    );
    b.args(&["sh", "-c", "sleep 1; /probe alloc 200; sleep 1000"]);
    let cid = id("oomev");
    rt.bg(&["create", "--bundle", b.path().to_str().unwrap(), &cid]);
    let mut events = rt
        .cmd()
        .args(["events", "--interval", "200ms", &cid])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read the stream as it comes: on a loaded (or emulated) machine `events` may report the
    // kill well after the kernel counted it, and it stops reporting once the container is
    // deleted.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let seen = seen.clone();
        let out = events.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        })
    };
    rt.ok(&["start", &cid]);
    // The probe is OOM-killed; the shell goes on sleeping.
    let count = || {
        if v2() {
            stat_field(
                &read(cg_dir(&cid, "memory").join("memory.events")),
                "oom_kill ",
            )
        } else {
            stat_field(
                &read(cg_dir(&cid, "memory").join("memory.oom_control")),
                "oom_kill ",
            )
        }
    };
    wait_until(|| count() >= 1, "an OOM kill counted by the kernel");
    let is_oom = |l: &String| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|e| e["type"] == "oom" && e["id"] == cid.as_str())
    };
    wait_until(
        || seen.lock().unwrap().iter().any(is_oom),
        "an oom event from `events`",
    );
    rt.ok(&["delete", "--force", &cid]);
    let _ = events.wait();
    reader.join().unwrap();
    let lines: Vec<serde_json::Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|e| e["type"] == "stats"),
        "stats events too: {lines:?}"
    );
}

#[test]
fn a_cpu_quota_throttles_without_killing() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    b.set(
        "/linux/resources",
        json!({"cpu": {"quota": 20000, "period": 100000}}),
    );
    b.args(&["/probe", "busy", "1000"]);
    let cid = id("cpuq");
    rt.bg(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &cid]);
    let throttled = || stat_field(&read(cg_dir(&cid, "cpu").join("cpu.stat")), "nr_throttled ");
    wait_until(|| throttled() >= 3, "nr_throttled to grow");
    let before = throttled();
    std::thread::sleep(Duration::from_millis(500));
    assert!(throttled() > before, "still throttled");
    assert_eq!(rt.status(&cid), "running", "throttling never kills");
    let ev: serde_json::Value = serde_json::from_str(&rt.ok(&["events", "--stats", &cid])).unwrap();
    assert!(
        ev["data"]["cpu"]["throttling"]["throttledPeriods"]
            .as_u64()
            .unwrap()
            >= 3,
        "{ev}"
    );
    rt.ok(&["delete", "--force", &cid]);
}

#[test]
fn device_rules_deny_what_is_not_allowed() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    let caps = json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE"]);
    b.set(
        "/process/capabilities",
        json!({"bounding": caps, "effective": caps, "permitted": caps}),
    );
    b.set(
        "/linux/resources",
        json!({"devices": [{"allow": false, "access": "rwm"}]}),
    );
    // 1:11 is /dev/kmsg: writing a line to it is harmless, and it is not on the allow list.
    b.args(&["sh", "-c", "echo x > /dev/null && echo null-ok; mknod /dev/k c 1 11 && echo mknod-ok; echo skiff-test > /dev/k || echo kmsg-denied"]);
    let (code, out, err) = rt.run_bundle(&b, &id("devices"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "null-ok\nmknod-ok\nkmsg-denied\n", "stderr: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn pause_stops_a_counter_and_resume_continues_it() {
    let rt = Rt::new();
    let mut b = Bundle::new();
    let shared = b.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    b.push("/mounts", json!({"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind", "rw"]}));
    b.args(&["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /shared/n.tmp; mv /shared/n.tmp /shared/n; sleep 0.02; done"]);
    let cid = id("freeze");
    rt.bg(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &cid]);
    let n = || {
        std::fs::read_to_string(shared.join("n"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_until(|| n() >= 3, "the counter to run");
    rt.ok(&["pause", &cid]);
    assert_eq!(rt.status(&cid), "paused");
    let frozen = n();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(n(), frozen, "nothing runs while paused");
    rt.ok(&["resume", &cid]);
    wait_until(|| n() > frozen + 2, "the counter to go on after resume");
    rt.ok(&["delete", "--force", &cid]);
}
