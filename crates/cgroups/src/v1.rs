//! linux.resources on cgroup v1 (legacy, and the v1 side of hybrid).

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxResources,
    LinuxThrottleDevice,
};

use crate::cgroup::{Cgroup, Dir};
use crate::mount::{Kind, Layout};
use crate::{devices, fs, Error};

/// Applies `r` on a legacy or hybrid host.
pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<(), Error> {
    if let Some(m) = r.memory() {
        memory(cg, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(cg, c)?;
    }
    if let Some(p) = r.pids() {
        if let Some(v) = pids_value(p.limit()) {
            let d = required(cg, "pids", "pids")?;
            fs::write(&d.path, "pids.max", &v, cg.fake)?;
        }
    }
    if let Some(b) = r.block_io() {
        blkio(cg, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        hugetlb(cg, h)?;
    }
    if let Some(n) = r.network() {
        network(cg, n)?;
    }
    if let Some(rdma) = r.rdma() {
        if !rdma.is_empty() {
            let d = on_demand(cg, "rdma", "rdma")?;
            for line in rdma_lines(rdma) {
                fs::write(&d.path, "rdma.max", &line, cg.fake)?;
            }
        }
    }
    if let Some(rules) = r.devices() {
        let d = required(cg, "devices", "devices")?;
        devices::apply_v1(d, rules, cg.fake)?;
    }
    if let Some(u) = r.unified() {
        if !u.is_empty() {
            let Some(d) = cg.unified().filter(|_| cg.layout == Layout::Hybrid) else {
                return Err(Error::Unsupported {
                    field: "unified",
                    version: "v1 (the host has no cgroup2 hierarchy)",
                });
            };
            crate::v2::unified_map(d, u, cg.fake)?;
        }
    }
    Ok(())
}

/// The directory of a controller every container joins.
fn required<'a>(
    cg: &'a Cgroup,
    controller: &'static str,
    field: &'static str,
) -> Result<&'a Dir, Error> {
    cg.v1_dir(controller)
        .ok_or(Error::ControllerMissing { field, controller })
}

/// The directory of an on-demand controller, created (and joined by the processes already in
/// the cgroup, for `update`) if it does not exist yet.
fn on_demand<'a>(
    cg: &'a Cgroup,
    controller: &'static str,
    field: &'static str,
) -> Result<&'a Dir, Error> {
    let d = required(cg, controller, field)?;
    if d.always {
        return Ok(d);
    }
    let created = fs::mkdir_p(&d.mountpoint, &d.path)?;
    if created.is_empty() {
        return Ok(d);
    }
    if d.has("cpuset") {
        // A new cpuset cgroup starts with empty cpus and mems, and no task can join it
        // until both are set: copy them down from the parent, level by level.
        for dir in &created {
            if let Some(parent) = dir.parent() {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let v = fs::read_opt(parent, file)?.unwrap_or_default();
                    let v = v.trim();
                    if !v.is_empty() {
                        fs::write(dir, file, v, cg.fake)?;
                    }
                }
            }
        }
    }
    cg.join_existing(d)?;
    Ok(d)
}

/// OCI pids.limit: > 0 a limit, < 0 unlimited, 0 unset (as runc).
pub(crate) fn pids_value(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".to_string()),
        l => Some(l.to_string()),
    }
}

/// A non-zero memory value (0 means unset, as in runc).
fn set(v: Option<i64>) -> Option<i64> {
    v.filter(|v| *v != 0)
}

fn check_memory_value(field: &'static str, v: i64) -> Result<(), Error> {
    if v < -1 {
        return Err(Error::InvalidValue {
            field,
            value: v.to_string(),
            reason: "must be -1 (unlimited) or a positive number of bytes".into(),
        });
    }
    Ok(())
}

/// Warns about memory fields the kernel no longer honours.
pub(crate) fn warn_kernel_memory(m: &LinuxMemory) {
    if m.kernel().is_some() {
        tracing::warn!("linux.resources.memory.kernel is ignored: kernel memory limits are deprecated and unsupported");
    }
    if m.kernel_tcp().is_some() {
        tracing::warn!("linux.resources.memory.kernelTCP is ignored: kernel memory limits are deprecated and unsupported");
    }
}

/// checkBeforeUpdate: refuse a limit below the current usage.
pub(crate) fn check_before_update(
    d: &Dir,
    usage_file: &str,
    limit: Option<i64>,
) -> Result<(), Error> {
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return Ok(());
    };
    let usage = fs::read_u64_opt(&d.path, usage_file)?;
    let limit_u = u64::try_from(limit).unwrap_or(0);
    if usage > limit_u {
        return Err(Error::InvalidValue {
            field: "memory.limit",
            value: limit.to_string(),
            reason: format!(
                "below the current usage of {usage} bytes ({}) and checkBeforeUpdate is set",
                d.path.join(usage_file).display()
            ),
        });
    }
    Ok(())
}

fn memory(cg: &Cgroup, m: &LinuxMemory) -> Result<(), Error> {
    warn_kernel_memory(m);
    let limit = set(m.limit());
    let mut swap = set(m.swap());
    let reservation = set(m.reservation());
    let wants = limit.is_some()
        || swap.is_some()
        || reservation.is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true);
    if !wants {
        return Ok(());
    }
    let d = required(cg, "memory", "memory")?;
    for (f, v) in [("memory.limit", limit), ("memory.swap", swap)] {
        if let Some(v) = v {
            check_memory_value(f, v)?;
        }
    }
    if m.check_before_update() == Some(true) {
        check_before_update(d, "memory.usage_in_bytes", limit)?;
    }
    // Unlimited memory with swap unset: swap unlimited too (as runc), if accounted at all.
    let mut swap_optional = false;
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
        swap_optional = true;
    }
    let write_swap = |v: i64| -> Result<(), Error> {
        match fs::write_if_exists(
            &d.path,
            "memory.memsw.limit_in_bytes",
            &v.to_string(),
            cg.fake,
        )? {
            true => Ok(()),
            false if swap_optional => Ok(()),
            false => {
                tracing::warn!(
                    "linux.resources.memory.swap is ignored: {} does not exist (swap accounting is off)",
                    d.path.join("memory.memsw.limit_in_bytes").display()
                );
                Ok(())
            }
        }
    };
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memory <= memory+swap must hold after each write: raising both needs swap
            // first, lowering both needs memory first. Try the common (create) order first.
            match fs::write(&d.path, "memory.limit_in_bytes", &l.to_string(), cg.fake) {
                Ok(()) => write_swap(s)?,
                Err(Error::Write { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                    write_swap(s)?;
                    fs::write(&d.path, "memory.limit_in_bytes", &l.to_string(), cg.fake)?;
                }
                Err(e) => return Err(e),
            }
        }
        (Some(l), None) => fs::write(&d.path, "memory.limit_in_bytes", &l.to_string(), cg.fake)?,
        (None, Some(s)) => write_swap(s)?,
        (None, None) => {}
    }
    if let Some(v) = reservation {
        check_memory_value("memory.reservation", v)?;
        fs::write(
            &d.path,
            "memory.soft_limit_in_bytes",
            &v.to_string(),
            cg.fake,
        )?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::InvalidValue {
                field: "memory.swappiness",
                value: s.to_string(),
                reason: "must be between 0 and 100".into(),
            });
        }
        fs::write(&d.path, "memory.swappiness", &s.to_string(), cg.fake)?;
    }
    if m.disable_oom_killer() == Some(true) {
        fs::write(&d.path, "memory.oom_control", "1", cg.fake)?;
    }
    Ok(())
}

fn cpu(cg: &Cgroup, c: &LinuxCpu) -> Result<(), Error> {
    let quota = c.quota().filter(|q| *q != 0);
    let period = c.period().filter(|p| *p != 0);
    let needs_cpu = c.shares().is_some_and(|s| s != 0)
        || quota.is_some()
        || period.is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_period().is_some_and(|p| p != 0)
        || c.realtime_runtime().is_some_and(|r| r != 0);
    if needs_cpu {
        let d = required(cg, "cpu", "cpu")?;
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            fs::write(&d.path, "cpu.shares", &s.to_string(), cg.fake)?;
        }
        // A smaller period can be refused until the quota is lowered: retry it after.
        let mut period_pending = None;
        if let Some(p) = period {
            match fs::write(&d.path, "cpu.cfs_period_us", &p.to_string(), cg.fake) {
                Ok(()) => {}
                Err(Error::Write { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
                {
                    period_pending = Some(p);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(q) = quota {
            let q = if q < 0 { -1 } else { q };
            fs::write(&d.path, "cpu.cfs_quota_us", &q.to_string(), cg.fake)?;
        }
        if let Some(p) = period_pending {
            fs::write(&d.path, "cpu.cfs_period_us", &p.to_string(), cg.fake)?;
        }
        if let Some(b) = c.burst() {
            fs::write(&d.path, "cpu.cfs_burst_us", &b.to_string(), cg.fake)?;
        }
        if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
            fs::write(&d.path, "cpu.rt_period_us", &p.to_string(), cg.fake)?;
        }
        if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
            fs::write(&d.path, "cpu.rt_runtime_us", &r.to_string(), cg.fake)?;
        }
        if let Some(i) = c.idle() {
            fs::write(&d.path, "cpu.idle", &i.to_string(), cg.fake)?;
        }
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let d = on_demand(cg, "cpuset", "cpu.cpus")?;
        if let Some(v) = cpus {
            fs::write(&d.path, "cpuset.cpus", v, cg.fake)?;
        }
        if let Some(v) = mems {
            fs::write(&d.path, "cpuset.mems", v, cg.fake)?;
        }
    }
    Ok(())
}

/// "major:minor rate" lines for a throttle list.
pub(crate) fn throttle_lines(list: &[LinuxThrottleDevice]) -> Vec<String> {
    list.iter()
        .map(|t| format!("{}:{} {}", t.major(), t.minor(), t.rate()))
        .collect()
}

fn blkio(cg: &Cgroup, b: &LinuxBlockIo) -> Result<(), Error> {
    let d = required(cg, "blkio", "blockIO")?;
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        check_blkio_weight("blockIO.weight", w)?;
        if !fs::write_if_exists(&d.path, "blkio.weight", &w.to_string(), cg.fake)? {
            fs::write(&d.path, "blkio.bfq.weight", &w.to_string(), cg.fake)?;
        }
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        if !fs::write_if_exists(&d.path, "blkio.leaf_weight", &w.to_string(), cg.fake)? {
            tracing::warn!("linux.resources.blockIO.leafWeight is ignored: this kernel has no blkio.leaf_weight");
        }
    }
    for wd in b.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = wd.weight() {
            check_blkio_weight("blockIO.weightDevice.weight", w)?;
            let line = format!("{}:{} {}", wd.major(), wd.minor(), w);
            if !fs::write_if_exists(&d.path, "blkio.weight_device", &line, cg.fake)? {
                fs::write(&d.path, "blkio.bfq.weight_device", &line, cg.fake)?;
            }
        }
        if let Some(w) = wd.leaf_weight() {
            let line = format!("{}:{} {}", wd.major(), wd.minor(), w);
            if !fs::write_if_exists(&d.path, "blkio.leaf_weight_device", &line, cg.fake)? {
                tracing::warn!("linux.resources.blockIO.weightDevice.leafWeight is ignored: this kernel has no blkio.leaf_weight_device");
            }
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for line in throttle_lines(list.as_deref().unwrap_or_default()) {
            fs::write(&d.path, file, &line, cg.fake)?;
        }
    }
    Ok(())
}

pub(crate) fn check_blkio_weight(field: &'static str, w: u16) -> Result<(), Error> {
    if !(10..=1000).contains(&w) {
        return Err(Error::InvalidValue {
            field,
            value: w.to_string(),
            reason: "must be between 10 and 1000".into(),
        });
    }
    Ok(())
}

/// A hugepage size as the kernel names its files: digits then KB, MB or GB.
pub(crate) fn check_page_size(size: &str) -> Result<(), Error> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(unit, "KB" | "MB" | "GB")
    {
        return Err(Error::InvalidValue {
            field: "hugepageLimits.pageSize",
            value: size.to_string(),
            reason: "must look like 2MB or 1GB".into(),
        });
    }
    Ok(())
}

fn hugetlb(cg: &Cgroup, limits: &[LinuxHugepageLimit]) -> Result<(), Error> {
    if limits.is_empty() {
        return Ok(());
    }
    for l in limits {
        check_page_size(l.page_size())?;
    }
    if cg.v1_dir("hugetlb").is_some() {
        let d = on_demand(cg, "hugetlb", "hugepageLimits")?;
        for l in limits {
            let size = l.page_size();
            let v = l.limit().to_string();
            fs::write(
                &d.path,
                &format!("hugetlb.{size}.limit_in_bytes"),
                &v,
                cg.fake,
            )?;
            fs::write_if_exists(
                &d.path,
                &format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                &v,
                false,
            )?;
        }
        return Ok(());
    }
    // Hybrid: hugetlb bound to the unified hierarchy only.
    match cg.unified().filter(|d| d.kind == Kind::Unified) {
        Some(d) => crate::v2::hugetlb(cg, d, limits, true),
        None => Err(Error::ControllerMissing {
            field: "hugepageLimits",
            controller: "hugetlb",
        }),
    }
}

fn network(cg: &Cgroup, n: &LinuxNetwork) -> Result<(), Error> {
    if let Some(id) = n.class_id() {
        match cg.v1_dir("net_cls") {
            Some(_) => {
                let d = on_demand(cg, "net_cls", "network.classID")?;
                fs::write(&d.path, "net_cls.classid", &id.to_string(), cg.fake)?;
            }
            None => tracing::warn!(
                "linux.resources.network.classID is ignored: the net_cls controller is not mounted"
            ),
        }
    }
    let prios = n.priorities().as_deref().unwrap_or_default();
    if !prios.is_empty() {
        match cg.v1_dir("net_prio") {
            Some(_) => {
                let d = on_demand(cg, "net_prio", "network.priorities")?;
                for p in prios {
                    let line = format!("{} {}", p.name(), p.priority());
                    fs::write(&d.path, "net_prio.ifpriomap", &line, cg.fake)?;
                }
            }
            None => tracing::warn!(
                "linux.resources.network.priorities is ignored: the net_prio controller is not mounted"
            ),
        }
    }
    Ok(())
}

/// rdma.max lines, one per device.
pub(crate) fn rdma_lines(
    rdma: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>,
) -> Vec<String> {
    let mut names: Vec<&String> = rdma.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let r = &rdma[name];
            let mut parts = vec![name.clone()];
            if let Some(h) = r.hca_handles() {
                parts.push(format!("hca_handle={h}"));
            }
            if let Some(o) = r.hca_objects() {
                parts.push(format!("hca_object={o}"));
            }
            (parts.len() > 1).then(|| parts.join(" "))
        })
        .collect()
}
