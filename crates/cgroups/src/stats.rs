//! Usage statistics, serialised exactly as the `data` of runc's `events --stats` (runc's
//! types/events.go: the same field names, and the same fields left out when zero or empty).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::mount::{Kind, Layout};
use crate::{fs, Error};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// runc's `types.Stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    /// Filled by the runtime from the container's network namespace; `null` here as in runc
    /// when it has none.
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServicedRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioQueueRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServiceTimeRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioWaitTimeRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioMergedRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioTimeRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "sectorsRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", default, skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime", default, skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// The memory.stat file.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub raw: HashMap<String, u64>,
}

/// Intel RDT is not managed by Skiff; always empty (`{}`), as runc without RDT.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntelRdt {}

/// Reads the stats of `cg`. Files of controllers that are absent read as zero.
pub(crate) fn collect(cg: &Cgroup) -> Result<Stats, Error> {
    let mut s = Stats::default();
    match cg.layout {
        Layout::Unified => {
            if let Some(d) = cg.unified() {
                v2_stats(&d.path, &mut s)?;
            }
        }
        Layout::Hybrid | Layout::Legacy => {
            v1_stats(cg, &mut s)?;
            if cg.v1_dir("hugetlb").is_none() {
                if let Some(d) = cg.unified().filter(|d| d.kind == Kind::Unified) {
                    s.hugetlb = v2_hugetlb(&d.path)?;
                }
            }
        }
    }
    Ok(s)
}

fn flat(dir: &Path, file: &str) -> Result<HashMap<String, u64>, Error> {
    match fs::read_opt(dir, file)? {
        Some(t) => Ok(fs::parse_flat_keyed(&dir.join(file), &t)?
            .into_iter()
            .collect()),
        None => Ok(HashMap::new()),
    }
}

/// Hugepage sizes the kernel offers, as its file names spell them ("2MB", "1GB").
fn hugepage_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            })
        })
        .collect();
    out.sort();
    out
}

fn v2_hugetlb(dir: &Path) -> Result<BTreeMap<String, Hugetlb>, Error> {
    let mut out = BTreeMap::new();
    for size in hugepage_sizes() {
        let Some(cur) = fs::read_opt(dir, &format!("hugetlb.{size}.current"))? else {
            continue;
        };
        let usage = fs::parse_u64(&dir.join(format!("hugetlb.{size}.current")), &cur)?;
        let failcnt = fs::keyed_value(dir, &format!("hugetlb.{size}.events"), "max")?.unwrap_or(0);
        out.insert(
            size,
            Hugetlb {
                usage,
                max: 0,
                failcnt,
            },
        );
    }
    Ok(out)
}

fn v2_stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let cpu = flat(dir, "cpu.stat")?;
    let g = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = g(&cpu, "usage_usec") * 1000;
    s.cpu.usage.user = g(&cpu, "user_usec") * 1000;
    s.cpu.usage.kernel = g(&cpu, "system_usec") * 1000;
    s.cpu.throttling.periods = g(&cpu, "nr_periods");
    s.cpu.throttling.throttled_periods = g(&cpu, "nr_throttled");
    s.cpu.throttling.throttled_time = g(&cpu, "throttled_usec") * 1000;

    let stat = flat(dir, "memory.stat")?;
    s.memory.cache = g(&stat, "file");
    s.memory.raw = stat;
    let events = flat(dir, "memory.events")?;
    s.memory.usage = MemoryEntry {
        usage: fs::read_u64_opt(dir, "memory.current")?,
        limit: fs::read_u64_opt(dir, "memory.max")?,
        max: fs::read_u64_opt(dir, "memory.peak")?,
        failcnt: g(&events, "max"),
    };
    // As runc: v1 reports memory+swap, so add memory to the v2 swap-only values.
    let swap_usage = fs::read_u64_opt(dir, "memory.swap.current")?;
    let swap_limit = fs::read_u64_opt(dir, "memory.swap.max")?;
    s.memory.swap = MemoryEntry {
        usage: swap_usage.saturating_add(s.memory.usage.usage),
        limit: if swap_limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit.saturating_add(s.memory.usage.limit)
        },
        max: 0,
        failcnt: 0,
    };

    s.pids.current = fs::read_u64_opt(dir, "pids.current")?;
    let limit = fs::read_u64_opt(dir, "pids.max")?;
    s.pids.limit = if limit == u64::MAX { 0 } else { limit };

    if let Some(t) = fs::read_opt(dir, "io.stat")? {
        for line in t.lines() {
            let mut it = line.split_whitespace();
            let Some((major, minor)) = it.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
                continue;
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse::<u64>() else {
                    continue;
                };
                let (op, bytes) = match k {
                    "rbytes" => ("Read", true),
                    "wbytes" => ("Write", true),
                    "dbytes" => ("Discard", true),
                    "rios" => ("Read", false),
                    "wios" => ("Write", false),
                    "dios" => ("Discard", false),
                    _ => continue,
                };
                let e = BlkioEntry {
                    major,
                    minor,
                    op: op.to_string(),
                    value,
                };
                if bytes {
                    s.blkio.io_service_bytes_recursive.push(e);
                } else {
                    s.blkio.io_serviced_recursive.push(e);
                }
            }
        }
    }
    s.hugetlb = v2_hugetlb(dir)?;
    if let Some(c) = fs::read_opt(dir, "cpuset.cpus.effective")? {
        s.cpuset.cpus = parse_list(&c);
    }
    if let Some(m) = fs::read_opt(dir, "cpuset.mems.effective")? {
        s.cpuset.mems = parse_list(&m);
    }
    Ok(())
}

/// "0-3,8" → [0,1,2,3,8]; malformed parts are skipped.
fn parse_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    out.push(v);
                }
            }
        }
    }
    out
}

fn v1_memory_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, Error> {
    let f = |name: &str| fs::read_u64_opt(dir, &format!("{prefix}.{name}"));
    Ok(MemoryEntry {
        usage: f("usage_in_bytes")?,
        max: f("max_usage_in_bytes")?,
        limit: f("limit_in_bytes")?,
        failcnt: f("failcnt")?,
    })
}

/// Blkio entries from a v1 "maj:min Op value" file; "Total" lines are skipped as in runc.
fn v1_blkio_file(dir: &Path, file: &str) -> Result<Vec<BlkioEntry>, Error> {
    let Some(t) = fs::read_opt(dir, file)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in t.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let Some((major, minor)) = f[0].split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(value)) = (major.parse(), minor.parse(), f[2].parse::<u64>())
        else {
            continue;
        };
        out.push(BlkioEntry {
            major,
            minor,
            op: f[1].to_string(),
            value,
        });
    }
    Ok(out)
}

fn ticks_to_ns(ticks: u64) -> u64 {
    // cpuacct.stat is in USER_HZ (100 on every Linux ABI).
    ticks.saturating_mul(10_000_000)
}

fn v1_stats(cg: &Cgroup, s: &mut Stats) -> Result<(), Error> {
    if let Some(d) = cg.v1_dir("cpuacct") {
        let p = &d.path;
        s.cpu.usage.total = fs::read_u64_opt(p, "cpuacct.usage")?;
        let list = |f: &str| -> Result<Vec<u64>, Error> {
            Ok(fs::read_opt(p, f)?
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect())
        };
        s.cpu.usage.percpu = list("cpuacct.usage_percpu")?;
        s.cpu.usage.percpu_kernel = list("cpuacct.usage_percpu_sys")?;
        s.cpu.usage.percpu_user = list("cpuacct.usage_percpu_user")?;
        let st = flat(p, "cpuacct.stat")?;
        s.cpu.usage.user = ticks_to_ns(st.get("user").copied().unwrap_or(0));
        s.cpu.usage.kernel = ticks_to_ns(st.get("system").copied().unwrap_or(0));
    }
    if let Some(d) = cg.v1_dir("cpu") {
        let st = flat(&d.path, "cpu.stat")?;
        s.cpu.throttling.periods = st.get("nr_periods").copied().unwrap_or(0);
        s.cpu.throttling.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
        s.cpu.throttling.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
    }
    if let Some(d) = cg.v1_dir("cpuset") {
        let p = &d.path;
        if p.is_dir() {
            s.cpuset.cpus = parse_list(&fs::read_opt(p, "cpuset.cpus")?.unwrap_or_default());
            s.cpuset.mems = parse_list(&fs::read_opt(p, "cpuset.mems")?.unwrap_or_default());
            let f = |n: &str| fs::read_u64_opt(p, n);
            s.cpuset.cpu_exclusive = f("cpuset.cpu_exclusive")?;
            s.cpuset.mem_hardwall = f("cpuset.mem_hardwall")?;
            s.cpuset.mem_exclusive = f("cpuset.mem_exclusive")?;
            s.cpuset.memory_migrate = f("cpuset.memory_migrate")?;
            s.cpuset.memory_spread_page = f("cpuset.memory_spread_page")?;
            s.cpuset.memory_spread_slab = f("cpuset.memory_spread_slab")?;
            s.cpuset.memory_pressure = f("cpuset.memory_pressure")?;
            s.cpuset.sched_load_balance = f("cpuset.sched_load_balance")?;
            s.cpuset.sched_relax_domain_level = fs::read_opt(p, "cpuset.sched_relax_domain_level")?
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    if let Some(d) = cg.v1_dir("memory") {
        let p = &d.path;
        let stat = flat(p, "memory.stat")?;
        s.memory.cache = stat.get("cache").copied().unwrap_or(0);
        s.memory.raw = stat;
        s.memory.usage = v1_memory_entry(p, "memory")?;
        s.memory.swap = v1_memory_entry(p, "memory.memsw")?;
        s.memory.kernel = v1_memory_entry(p, "memory.kmem")?;
        s.memory.kernel_tcp = v1_memory_entry(p, "memory.kmem.tcp")?;
    }
    if let Some(d) = cg.v1_dir("pids") {
        s.pids.current = fs::read_u64_opt(&d.path, "pids.current")?;
        let limit = fs::read_u64_opt(&d.path, "pids.max")?;
        s.pids.limit = if limit == u64::MAX { 0 } else { limit };
    }
    if let Some(d) = cg.v1_dir("blkio") {
        let p = &d.path;
        // CFQ/BFQ files first, as runc; the throttle files always exist.
        let bytes = v1_blkio_file(p, "blkio.io_service_bytes_recursive")?;
        if bytes.is_empty() {
            s.blkio.io_service_bytes_recursive =
                v1_blkio_file(p, "blkio.throttle.io_service_bytes_recursive")?;
            s.blkio.io_serviced_recursive =
                v1_blkio_file(p, "blkio.throttle.io_serviced_recursive")?;
        } else {
            s.blkio.io_service_bytes_recursive = bytes;
            s.blkio.io_serviced_recursive = v1_blkio_file(p, "blkio.io_serviced_recursive")?;
            s.blkio.io_queued_recursive = v1_blkio_file(p, "blkio.io_queued_recursive")?;
            s.blkio.io_service_time_recursive =
                v1_blkio_file(p, "blkio.io_service_time_recursive")?;
            s.blkio.io_wait_time_recursive = v1_blkio_file(p, "blkio.io_wait_time_recursive")?;
            s.blkio.io_merged_recursive = v1_blkio_file(p, "blkio.io_merged_recursive")?;
            s.blkio.io_time_recursive = v1_blkio_file(p, "blkio.time_recursive")?;
            s.blkio.sectors_recursive = v1_blkio_file(p, "blkio.sectors_recursive")?;
        }
    }
    if let Some(d) = cg.v1_dir("hugetlb") {
        for size in hugepage_sizes() {
            let f = |n: &str| fs::read_u64_opt(&d.path, &format!("hugetlb.{size}.{n}"));
            s.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage: f("usage_in_bytes")?,
                    max: f("max_usage_in_bytes")?,
                    failcnt: f("failcnt")?,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_runc() {
        let mut s = Stats::default();
        s.memory.usage.limit = 5;
        s.memory.raw.insert("cache".into(), 1);
        s.pids.current = 3;
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        let want = serde_json::json!({
            "cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}},
            "cpuset": {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0,
                       "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                       "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0},
            "memory": {"usage": {"limit": 5, "failcnt": 0}, "swap": {"limit": 0, "failcnt": 0},
                       "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0},
                       "raw": {"cache": 1}},
            "pids": {"current": 3},
            "blkio": {},
            "hugetlb": {},
            "intel_rdt": {},
            "network_interfaces": null
        });
        assert_eq!(v, want);
    }

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert!(parse_list("").is_empty());
    }
}
