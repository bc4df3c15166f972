//! linux.resources on the unified (v2) hierarchy, converted from the v1-shaped OCI fields as
//! crun documents (cpu shares → cpu.weight, blkio weight → io.weight, swap → memory.swap.max).

use std::collections::HashMap;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::cgroup::{Cgroup, Dir};
use crate::v1::{
    check_before_update, check_blkio_weight, check_page_size, pids_value, rdma_lines,
    warn_kernel_memory,
};
use crate::{devices, fs, Error};

/// cpu.shares (2..262144, default 1024) to cpu.weight (1..10000, default 100) along the
/// quadratic in log2(shares) that runc (opencontainers/cgroups 0.0.3+) and crun use: it maps
/// the minimum, default and maximum exactly. 0 stays 0 (unset).
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            #[allow(clippy::cast_precision_loss)]
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            // Round away float noise before the ceiling so 1024 gives exactly 100.
            let w = (10f64.powf(exponent) * 1e6).round() / 1e6;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let w = w.ceil() as u64;
            w.clamp(1, 10_000)
        }
    }
}

/// blkio weight (10..1000) to io.weight (1..10000), crun's linear map.
pub(crate) fn blkio_weight_to_io(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// OCI memory.swap is memory+swap; memory.swap.max is swap alone (runc's
/// ConvertMemorySwapToCgroupV2Value). 0 = unset, -1 = unlimited.
pub(crate) fn swap_to_v2(swap: i64, memory: i64) -> Result<i64, Error> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    let bad = |reason: &str| Error::InvalidValue {
        field: "memory.swap",
        value: swap.to_string(),
        reason: reason.to_string(),
    };
    if memory == 0 || memory == -1 {
        return Err(bad("a swap limit needs a memory limit on cgroup v2"));
    }
    if memory < 0 || swap < memory {
        return Err(bad(&format!(
            "memory+swap must be at least the memory limit ({memory})"
        )));
    }
    Ok(swap - memory)
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// Applies `r` on a pure v2 host.
pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<(), Error> {
    let Some(d) = cg.unified() else {
        return Err(Error::ControllerMissing {
            field: "(any)",
            controller: "cgroup2",
        });
    };
    if let Some(p) = r.pids() {
        if let Some(v) = pids_value(p.limit()) {
            fs::write(&d.path, "pids.max", &v, cg.fake)?;
        }
    }
    if let Some(m) = r.memory() {
        memory(cg, d, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(cg, d, c)?;
    }
    if let Some(b) = r.block_io() {
        io(cg, d, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        hugetlb(cg, d, h, false)?;
    }
    if let Some(rdma) = r.rdma() {
        for line in rdma_lines(rdma) {
            fs::write(&d.path, "rdma.max", &line, cg.fake)?;
        }
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            tracing::warn!("linux.resources.network is ignored: cgroup v2 has no net_cls/net_prio");
        }
    }
    if let Some(rules) = r.devices() {
        devices::apply_v2(d, rules, cg.fake)?;
    }
    if let Some(u) = r.unified() {
        unified_map(d, u, cg.fake)?;
    }
    Ok(())
}

fn memory(cg: &Cgroup, d: &Dir, m: &LinuxMemory) -> Result<(), Error> {
    warn_kernel_memory(m);
    if m.swappiness().is_some() {
        tracing::warn!(
            "linux.resources.memory.swappiness is ignored: cgroup v2 has no per-cgroup swappiness"
        );
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!("linux.resources.memory.disableOOMKiller is ignored: cgroup v2 cannot disable the OOM killer");
    }
    let limit = m.limit().unwrap_or(0);
    if limit < -1 {
        return Err(Error::InvalidValue {
            field: "memory.limit",
            value: limit.to_string(),
            reason: "must be -1 (unlimited) or a positive number of bytes".into(),
        });
    }
    let swap = swap_to_v2(m.swap().unwrap_or(0), limit)?;
    if m.check_before_update() == Some(true) {
        check_before_update(d, "memory.current", Some(limit))?;
    }
    // Swap first, as runc: a missing memory.swap.max (no swap) only matters for a real limit.
    if swap != 0 {
        let v = max_or(swap);
        match fs::write(&d.path, "memory.swap.max", &v, cg.fake) {
            Ok(()) => {}
            Err(Error::Write { source, .. })
                if fs::is_not_found(&source) && (v == "max" || v == "0") => {}
            Err(e) => return Err(e),
        }
    }
    if limit != 0 {
        fs::write(&d.path, "memory.max", &max_or(limit), cg.fake)?;
    }
    if let Some(res) = m.reservation().filter(|r| *r != 0) {
        fs::write(&d.path, "memory.low", &max_or(res), cg.fake)?;
    }
    Ok(())
}

fn cpu(cg: &Cgroup, d: &Dir, c: &LinuxCpu) -> Result<(), Error> {
    if c.realtime_period().is_some_and(|p| p != 0) || c.realtime_runtime().is_some_and(|r| r != 0) {
        return Err(Error::Unsupported {
            field: "cpu.realtimePeriod/realtimeRuntime",
            version: "v2",
        });
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        let w = shares_to_weight(s);
        fs::write(&d.path, "cpu.weight", &w.to_string(), cg.fake)?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let mut v = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            v.push_str(&format!(" {period}"));
        }
        fs::write(&d.path, "cpu.max", &v, cg.fake)?;
    }
    if let Some(b) = c.burst() {
        fs::write(&d.path, "cpu.max.burst", &b.to_string(), cg.fake)?;
    }
    if let Some(i) = c.idle() {
        fs::write(&d.path, "cpu.idle", &i.to_string(), cg.fake)?;
    }
    if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        fs::write(&d.path, "cpuset.cpus", v, cg.fake)?;
    }
    if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        fs::write(&d.path, "cpuset.mems", v, cg.fake)?;
    }
    Ok(())
}

fn io(cg: &Cgroup, d: &Dir, b: &LinuxBlockIo) -> Result<(), Error> {
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        check_blkio_weight("blockIO.weight", w)?;
        // BFQ takes the blkio scale directly; otherwise convert to io.weight's.
        if !fs::write_if_exists(&d.path, "io.bfq.weight", &w.to_string(), false)? {
            let v = blkio_weight_to_io(w).to_string();
            fs::write(&d.path, "io.weight", &v, cg.fake)?;
        }
    }
    if b.leaf_weight().is_some() {
        tracing::warn!(
            "linux.resources.blockIO.leafWeight is ignored: cgroup v2 has no leaf weight"
        );
    }
    for wd in b.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = wd.weight() {
            check_blkio_weight("blockIO.weightDevice.weight", w)?;
            let bfq = format!("{}:{} {}", wd.major(), wd.minor(), w);
            if !fs::write_if_exists(&d.path, "io.bfq.weight", &bfq, false)? {
                let line = format!("{}:{} {}", wd.major(), wd.minor(), blkio_weight_to_io(w));
                fs::write(&d.path, "io.weight", &line, cg.fake)?;
            }
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for t in list.as_deref().unwrap_or_default() {
            let line = format!("{}:{} {}={}", t.major(), t.minor(), key, t.rate());
            fs::write(&d.path, "io.max", &line, cg.fake)?;
        }
    }
    Ok(())
}

/// hugetlb.<size>.max (and the reservation limit where the kernel has it). `enable`: on hybrid,
/// first delegate the hugetlb controller down the unified tree.
pub(crate) fn hugetlb(
    cg: &Cgroup,
    d: &Dir,
    limits: &[LinuxHugepageLimit],
    enable: bool,
) -> Result<(), Error> {
    if limits.is_empty() {
        return Ok(());
    }
    if enable {
        cg.enable_controllers(d, Some(&["hugetlb"]))?;
    }
    for l in limits {
        let size = l.page_size();
        check_page_size(size)?;
        let v = max_or(l.limit());
        fs::write(&d.path, &format!("hugetlb.{size}.max"), &v, cg.fake)?;
        fs::write_if_exists(&d.path, &format!("hugetlb.{size}.rsvd.max"), &v, false)?;
    }
    Ok(())
}

/// linux.resources.unified: raw v2 files, written last so they override converted values.
pub(crate) fn unified_map(d: &Dir, map: &HashMap<String, String>, fake: bool) -> Result<(), Error> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        if k.is_empty() || k.contains('/') || k.starts_with('.') || k.contains('\0') {
            return Err(Error::InvalidValue {
                field: "unified",
                value: k.clone(),
                reason: "a key must be a file name in the cgroup directory".into(),
            });
        }
        fs::write(&d.path, k, &map[k], fake)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_shares_like_runc_and_crun() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(shares_to_weight(2048), 174);
    }

    #[test]
    fn converts_blkio_weight() {
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
        assert_eq!(blkio_weight_to_io(500), 1 + 490 * 9999 / 990);
    }

    #[test]
    fn converts_swap() {
        assert_eq!(swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(swap_to_v2(0, 100).unwrap(), 0);
        assert_eq!(swap_to_v2(300, 100).unwrap(), 200);
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(50, 0).is_err());
    }
}
