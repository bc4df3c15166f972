//! Value mapping and file writes against fake cgroup trees in a tempdir (no root needed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit,
    LinuxInterfacePriority, LinuxMemory, LinuxNetwork, LinuxPids, LinuxRdmaBuilder, LinuxResources,
    LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
};

use crate::{Cgroup, CgroupRoot, Error, Layout};

/// A tempdir laid out like `with_base` expects, with the hierarchy roots created.
fn fake(layout: Layout) -> (tempfile::TempDir, CgroupRoot) {
    let dir = tempfile::tempdir().unwrap();
    let root = CgroupRoot::with_base(layout, dir.path());
    for m in &root.mounts {
        std::fs::create_dir_all(&m.mountpoint).unwrap();
    }
    (dir, root)
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn full_resources() -> LinuxResources {
    let mut r = LinuxResources::default();
    let mut m = LinuxMemory::default();
    m.set_limit(Some(100 << 20));
    m.set_swap(Some(200 << 20));
    m.set_reservation(Some(50 << 20));
    m.set_swappiness(Some(10));
    m.set_disable_oom_killer(Some(true));
    m.set_kernel(Some(1 << 20));
    r.set_memory(Some(m));

    let mut c = LinuxCpu::default();
    c.set_shares(Some(512));
    c.set_quota(Some(50_000));
    c.set_period(Some(100_000));
    c.set_burst(Some(1000));
    c.set_idle(Some(1));
    c.set_cpus(Some("0-1".into()));
    c.set_mems(Some("0".into()));
    r.set_cpu(Some(c));

    let mut p = LinuxPids::default();
    p.set_limit(10);
    r.set_pids(Some(p));

    let mut b = LinuxBlockIo::default();
    b.set_weight(Some(500));
    let wd = LinuxWeightDeviceBuilder::default()
        .major(8)
        .minor(0)
        .weight(300u16)
        .build()
        .unwrap();
    b.set_weight_device(Some(vec![wd]));
    let t = |rate: u64| {
        LinuxThrottleDeviceBuilder::default()
            .major(8)
            .minor(0)
            .rate(rate)
            .build()
            .unwrap()
    };
    b.set_throttle_read_bps_device(Some(vec![t(1 << 20)]));
    b.set_throttle_write_iops_device(Some(vec![t(100)]));
    r.set_block_io(Some(b));

    let mut h = LinuxHugepageLimit::default();
    h.set_page_size("2MB".into());
    h.set_limit(4 << 20);
    r.set_hugepage_limits(Some(vec![h]));

    let rd = LinuxRdmaBuilder::default()
        .hca_handles(3u32)
        .hca_objects(100u32)
        .build()
        .unwrap();
    r.set_rdma(Some(HashMap::from([("mlx4_0".to_string(), rd)])));

    let mut deny = LinuxDeviceCgroup::default();
    deny.set_allow(false);
    deny.set_typ(Some(LinuxDeviceType::A));
    deny.set_access(Some("rwm".into()));
    r.set_devices(Some(vec![deny]));
    r
}

fn network() -> LinuxNetwork {
    let mut n = LinuxNetwork::default();
    n.set_class_id(Some(0x100001));
    let mut p = LinuxInterfacePriority::default();
    p.set_name("eth0".into());
    p.set_priority(5);
    n.set_priorities(Some(vec![p]));
    n
}

#[test]
fn v1_writes_every_limit() {
    let (tmp, root) = fake(Layout::Legacy);
    let base = tmp.path();
    let cg = Cgroup::new(&root, Some("/skiff/c1"), "c1").unwrap();
    cg.create().unwrap();
    // Always-joined hierarchies exist after create; on-demand ones do not.
    assert!(base.join("memory/skiff/c1").is_dir());
    assert!(base.join("systemd/skiff/c1").is_dir());
    assert!(!base.join("cpuset/skiff/c1").exists());
    // The parent's cpuset, which a new cpuset cgroup copies.
    std::fs::write(base.join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
    std::fs::write(base.join("cpuset/cpuset.mems"), "0\n").unwrap();

    let mut r = full_resources();
    r.set_network(Some(network()));
    cg.apply(&r).unwrap();

    let f = |p: &str| read(base.join(p));
    assert_eq!(f("memory/skiff/c1/memory.limit_in_bytes"), "104857600");
    assert_eq!(
        f("memory/skiff/c1/memory.memsw.limit_in_bytes"),
        "209715200"
    );
    assert_eq!(f("memory/skiff/c1/memory.soft_limit_in_bytes"), "52428800");
    assert_eq!(f("memory/skiff/c1/memory.swappiness"), "10");
    assert_eq!(f("memory/skiff/c1/memory.oom_control"), "1");
    assert!(!base
        .join("memory/skiff/c1/memory.kmem.limit_in_bytes")
        .exists());
    assert_eq!(f("cpu/skiff/c1/cpu.shares"), "512");
    assert_eq!(f("cpu/skiff/c1/cpu.cfs_quota_us"), "50000");
    assert_eq!(f("cpu/skiff/c1/cpu.cfs_period_us"), "100000");
    assert_eq!(f("cpu/skiff/c1/cpu.cfs_burst_us"), "1000");
    assert_eq!(f("cpu/skiff/c1/cpu.idle"), "1");
    assert_eq!(
        f("cpuset/skiff/cpuset.cpus"),
        "0-3",
        "copied into the new parent"
    );
    assert_eq!(f("cpuset/skiff/c1/cpuset.cpus"), "0-1");
    assert_eq!(f("cpuset/skiff/c1/cpuset.mems"), "0");
    assert_eq!(f("pids/skiff/c1/pids.max"), "10");
    assert_eq!(f("blkio/skiff/c1/blkio.weight"), "500");
    assert_eq!(f("blkio/skiff/c1/blkio.weight_device"), "8:0 300");
    assert_eq!(
        f("blkio/skiff/c1/blkio.throttle.read_bps_device"),
        "8:0 1048576"
    );
    assert_eq!(
        f("blkio/skiff/c1/blkio.throttle.write_iops_device"),
        "8:0 100"
    );
    assert_eq!(f("hugetlb/skiff/c1/hugetlb.2MB.limit_in_bytes"), "4194304");
    assert_eq!(
        f("rdma/skiff/c1/rdma.max"),
        "mlx4_0 hca_handle=3 hca_object=100"
    );
    assert_eq!(f("net_cls/skiff/c1/net_cls.classid"), "1048577");
    assert_eq!(f("net_prio/skiff/c1/net_prio.ifpriomap"), "eth0 5");
    let deny = f("devices/skiff/c1/devices.deny");
    let allow = f("devices/skiff/c1/devices.allow");
    assert_eq!(deny, "a");
    assert!(allow.lines().any(|l| l == "c 1:3 rwm"), "{allow}");
    assert!(allow.lines().any(|l| l == "c 136:* rwm"), "{allow}");

    // Processes join the always-used hierarchies and the on-demand ones that exist.
    cg.add_process(42).unwrap();
    assert_eq!(f("memory/skiff/c1/cgroup.procs"), "42");
    assert_eq!(f("cpuset/skiff/c1/cgroup.procs"), "42");
    assert_eq!(f("systemd/skiff/c1/cgroup.procs"), "42");

    // unified is v2-only.
    let mut u = LinuxResources::default();
    u.set_unified(Some(HashMap::from([("memory.high".into(), "1G".into())])));
    assert!(matches!(cg.apply(&u), Err(Error::Unsupported { .. })));

    cg.destroy().unwrap();
    assert!(!cg.exists());
    assert!(!base.join("cpuset/skiff/c1").exists());
    cg.destroy().unwrap();
}

#[test]
fn v1_unlimited_memory_and_pids() {
    let (tmp, root) = fake(Layout::Legacy);
    let cg = Cgroup::new(&root, Some("/u"), "u").unwrap();
    cg.create().unwrap();
    let mut r = LinuxResources::default();
    let mut m = LinuxMemory::default();
    m.set_limit(Some(-1));
    r.set_memory(Some(m));
    let mut p = LinuxPids::default();
    p.set_limit(-1);
    r.set_pids(Some(p));
    cg.apply(&r).unwrap();
    let base = tmp.path();
    assert_eq!(read(base.join("memory/u/memory.limit_in_bytes")), "-1");
    // Unlimited memory with swap unset makes swap unlimited too, as runc.
    assert_eq!(
        read(base.join("memory/u/memory.memsw.limit_in_bytes")),
        "-1"
    );
    assert_eq!(read(base.join("pids/u/pids.max")), "max");

    let mut bad = LinuxResources::default();
    let mut m = LinuxMemory::default();
    m.set_swappiness(Some(101));
    bad.set_memory(Some(m));
    let e = cg.apply(&bad).unwrap_err();
    assert!(e.to_string().contains("swappiness"), "{e}");
}

#[test]
fn v2_converts_and_writes_every_limit() {
    let (tmp, root) = fake(Layout::Unified);
    let base = tmp.path();
    std::fs::write(
        base.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma\n",
    )
    .unwrap();
    std::fs::write(base.join("cgroup.subtree_control"), "memory pids\n").unwrap();
    let cg = Cgroup::new(&root, Some("/skiff/c1"), "c1").unwrap();
    cg.create().unwrap();
    // Missing controllers are enabled at each level above the container.
    assert_eq!(
        read(base.join("cgroup.subtree_control")),
        "+cpuset +cpu +io +hugetlb +rdma"
    );
    assert_eq!(
        read(base.join("skiff/cgroup.subtree_control")),
        "+cpuset +cpu +io +memory +hugetlb +pids +rdma"
    );

    let mut r = full_resources();
    let mut u = HashMap::new();
    u.insert("memory.high".to_string(), "90000000".to_string());
    r.set_unified(Some(u));
    cg.apply(&r).unwrap();
    let f = |p: &str| read(base.join("skiff/c1").join(p));
    assert_eq!(f("memory.max"), "104857600");
    assert_eq!(
        f("memory.swap.max"),
        "104857600",
        "memory+swap minus memory"
    );
    assert_eq!(f("memory.low"), "52428800");
    assert_eq!(f("memory.high"), "90000000");
    assert_eq!(f("cpu.weight"), "59");
    assert_eq!(f("cpu.max"), "50000 100000");
    assert_eq!(f("cpu.max.burst"), "1000");
    assert_eq!(f("cpu.idle"), "1");
    assert_eq!(f("cpuset.cpus"), "0-1");
    assert_eq!(f("cpuset.mems"), "0");
    assert_eq!(f("pids.max"), "10");
    // io.weight: the device line was written last; the default weight 500 -> 4950.
    assert_eq!(
        f("io.weight"),
        format!("8:0 {}", crate::v2::blkio_weight_to_io(300))
    );
    assert_eq!(crate::v2::blkio_weight_to_io(500), 4950);
    assert_eq!(f("io.max"), "8:0 wiops=100");
    assert_eq!(f("hugetlb.2MB.max"), "4194304");
    assert_eq!(f("rdma.max"), "mlx4_0 hca_handle=3 hca_object=100");
    // v1-only knobs are not written on v2.
    assert!(!base.join("skiff/c1/memory.swappiness").exists());

    let mut rt = LinuxResources::default();
    let mut c = LinuxCpu::default();
    c.set_realtime_runtime(Some(1000));
    rt.set_cpu(Some(c));
    assert!(matches!(cg.apply(&rt), Err(Error::Unsupported { .. })));

    let mut quota_only = LinuxResources::default();
    let mut c = LinuxCpu::default();
    c.set_quota(Some(-1));
    quota_only.set_cpu(Some(c));
    cg.apply(&quota_only).unwrap();
    assert_eq!(f("cpu.max"), "max");

    let mut bad_key = LinuxResources::default();
    bad_key.set_unified(Some(HashMap::from([("../x".into(), "1".into())])));
    assert!(matches!(
        cg.apply(&bad_key),
        Err(Error::InvalidValue { .. })
    ));

    cg.add_process(7).unwrap();
    assert_eq!(f("cgroup.procs"), "7");
    assert_eq!(
        cg.mount_sources(),
        vec![(String::new(), base.join("skiff/c1"))]
    );
    cg.destroy().unwrap();
    assert!(!cg.exists());
    assert!(base.join("skiff").is_dir(), "ancestors are kept");
}

#[test]
fn hybrid_uses_unified_for_hugetlb_only() {
    let (tmp, mut root) = fake(Layout::Hybrid);
    // As on the development host: no v1 hugetlb hierarchy.
    root.mounts
        .retain(|m| !m.controllers.iter().any(|c| c == "hugetlb"));
    let base = tmp.path();
    let cg = Cgroup::new(&root, Some("/c1"), "c1").unwrap();
    cg.create().unwrap();
    assert!(base.join("unified/c1").is_dir());
    let mut h = LinuxHugepageLimit::default();
    h.set_page_size("2MB".into());
    h.set_limit(-1);
    let mut r = LinuxResources::default();
    r.set_hugepage_limits(Some(vec![h]));
    let mut m = LinuxMemory::default();
    m.set_limit(Some(1 << 30));
    r.set_memory(Some(m));
    r.set_unified(Some(HashMap::from([(
        "hugetlb.1GB.max".into(),
        "0".into(),
    )])));
    cg.apply(&r).unwrap();
    assert_eq!(
        read(base.join("unified/cgroup.subtree_control")),
        "+hugetlb"
    );
    assert_eq!(read(base.join("unified/c1/hugetlb.2MB.max")), "max");
    assert_eq!(read(base.join("unified/c1/hugetlb.1GB.max")), "0");
    assert_eq!(
        read(base.join("memory/c1/memory.limit_in_bytes")),
        "1073741824"
    );
    assert!(!base.join("unified/c1/memory.max").exists());

    let names: Vec<String> = cg.mount_sources().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"unified".to_string()));
    assert!(names.contains(&"memory".to_string()));
    assert!(names.contains(&"systemd".to_string()));

    let mut bad = LinuxHugepageLimit::default();
    bad.set_page_size("2MB/../x".into());
    let mut r = LinuxResources::default();
    r.set_hugepage_limits(Some(vec![bad]));
    assert!(cg.apply(&r).is_err());
    cg.destroy().unwrap();
}

#[test]
fn freeze_and_thaw_on_fake_trees() {
    for layout in [Layout::Legacy, Layout::Unified] {
        let (_tmp, root) = fake(layout);
        let cg = Cgroup::new(&root, Some("/f"), "f").unwrap();
        cg.create().unwrap();
        assert!(!cg.is_frozen().unwrap());
        cg.freeze().unwrap();
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        assert!(!cg.is_frozen().unwrap());
        cg.destroy().unwrap();
        assert!(!cg.is_frozen().unwrap(), "a removed cgroup is not frozen");
    }
}

fn write_files(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (f, v) in files {
        std::fs::write(dir.join(f), v).unwrap();
    }
}

#[test]
fn v2_stats_from_files() {
    let (tmp, root) = fake(Layout::Unified);
    let cg = Cgroup::new(&root, Some("/s"), "s").unwrap();
    let d: PathBuf = tmp.path().join("s");
    write_files(
        &d,
        &[
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 300\n"),
            ("memory.stat", "anon 4096\nfile 8192\n"),
            ("memory.current", "12288\n"),
            ("memory.max", "max\n"),
            ("memory.peak", "20000\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("memory.swap.current", "100\n"),
            ("memory.swap.max", "max\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
            ("io.stat", "8:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n"),
        ],
    );
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 1_500_000);
    assert_eq!(s.cpu.usage.user, 1_000_000);
    assert_eq!(s.cpu.usage.kernel, 500_000);
    assert_eq!(s.cpu.throttling.throttled_periods, 4);
    assert_eq!(s.cpu.throttling.throttled_time, 300_000);
    assert_eq!(s.memory.cache, 8192);
    assert_eq!(s.memory.raw["anon"], 4096);
    assert_eq!(s.memory.usage.usage, 12288);
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.memory.usage.max, 20000);
    assert_eq!(s.memory.usage.failcnt, 3);
    assert_eq!(s.memory.swap.usage, 12388);
    assert_eq!(s.memory.swap.limit, u64::MAX);
    assert_eq!(s.pids.current, 2);
    assert_eq!(s.pids.limit, 0);
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 3);
    assert_eq!(s.blkio.io_service_bytes_recursive[1].op, "Write");
    assert_eq!(s.blkio.io_service_bytes_recursive[1].value, 1024);
    assert_eq!(s.blkio.io_serviced_recursive[0].value, 1);
}

#[test]
fn v1_stats_from_files() {
    let (tmp, root) = fake(Layout::Legacy);
    let cg = Cgroup::new(&root, Some("/s"), "s").unwrap();
    let b = tmp.path();
    write_files(
        &b.join("cpuacct/s"),
        &[
            ("cpuacct.usage", "5000\n"),
            ("cpuacct.usage_percpu", "3000 2000 \n"),
            ("cpuacct.stat", "user 3\nsystem 1\n"),
        ],
    );
    write_files(
        &b.join("cpu/s"),
        &[(
            "cpu.stat",
            "nr_periods 7\nnr_throttled 2\nthrottled_time 999\n",
        )],
    );
    write_files(
        &b.join("memory/s"),
        &[
            ("memory.stat", "cache 100\nrss 200\n"),
            ("memory.usage_in_bytes", "300\n"),
            ("memory.max_usage_in_bytes", "400\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.failcnt", "5\n"),
        ],
    );
    write_files(
        &b.join("pids/s"),
        &[("pids.current", "1\n"), ("pids.max", "64\n")],
    );
    write_files(
        &b.join("blkio/s"),
        &[(
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
        )],
    );
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 5000);
    assert_eq!(s.cpu.usage.percpu, vec![3000, 2000]);
    assert_eq!(s.cpu.usage.user, 30_000_000);
    assert_eq!(s.cpu.usage.kernel, 10_000_000);
    assert_eq!(s.cpu.throttling.periods, 7);
    assert_eq!(s.cpu.throttling.throttled_time, 999);
    assert_eq!(s.memory.cache, 100);
    assert_eq!(s.memory.usage.usage, 300);
    assert_eq!(s.memory.usage.max, 400);
    assert_eq!(s.memory.usage.failcnt, 5);
    assert_eq!(s.pids.limit, 64);
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
    let json = serde_json::to_value(&s).unwrap();
    // Go's omitempty: a zero value is left out.
    assert_eq!(
        json["blkio"]["ioServiceBytesRecursive"][1],
        serde_json::json!({"major": 8, "op": "Write"})
    );
}

#[test]
fn join_v1_self_writes_zero_to_every_v1_tasks_file_only() {
    let (tmp, root) = fake(Layout::Hybrid);
    let base = tmp.path();
    let cg = Cgroup::new(&root, Some("/skiff/c1"), "c1").unwrap();
    cg.create().unwrap();
    assert!(cg.has_v1());
    cg.join_v1_self().unwrap();
    // Every always-joined v1 hierarchy got "0" (the calling thread) in `tasks`...
    for h in ["memory", "pids", "cpu", "freezer", "devices", "systemd"] {
        assert_eq!(read(base.join(h).join("skiff/c1/tasks")), "0", "{h}");
    }
    // ...an on-demand one that was never made is skipped, and the unified hierarchy (where a
    // process is born with CLONE_INTO_CGROUP instead) is not written.
    assert!(!base.join("cpuset/skiff/c1").exists());
    assert!(!base.join("unified/skiff/c1/tasks").exists());
    assert!(!base.join("unified/skiff/c1/cgroup.procs").exists());
    // Fake trees have no unified directory to be born in.
    assert_eq!(cg.unified_dir(), None);

    let (_tmp2, v2) = fake(Layout::Unified);
    let cg2 = Cgroup::new(&v2, Some("/skiff/c2"), "c2").unwrap();
    assert!(!cg2.has_v1());
    cg2.join_v1_self().unwrap();
}
