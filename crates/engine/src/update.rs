//! `docker update`: new resource limits and restart policy for a container. They are
//! checked as Docker checks them, merged into the container's `HostConfig` (a zero leaves a
//! limit as it is), applied to the live cgroup of a running container and persisted, so
//! inspect and every later start see them. A limit the kernel refuses leaves the old
//! configuration in place.

use bollard_stubs::models::{HostConfig, Resources, RestartPolicy, RestartPolicyNameEnum};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::{Ctr, Shared};
use crate::error::{Error, Result};

/// Docker's smallest memory limit and reservation.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The body of `POST /containers/{id}/update`: resources beside `RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateBody {
    #[serde(flatten)]
    pub resources: Resources,
    #[serde(
        rename = "RestartPolicy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restart_policy: Option<RestartPolicy>,
}

/// The cgroup part of an OCI spec's `linux.resources` for a `HostConfig` (everything but
/// devices): what a container is created with and what an update applies.
pub(crate) fn resources(hc: &HostConfig) -> Value {
    let mut r = json!({});
    let mut mem = serde_json::Map::new();
    if let Some(m) = hc.memory.filter(|m| *m > 0) {
        mem.insert("limit".into(), json!(m));
        if let Some(s) = hc.memory_swap.filter(|s| *s != 0) {
            mem.insert("swap".into(), json!(s));
        }
    }
    if let Some(m) = hc.memory_reservation.filter(|m| *m > 0) {
        mem.insert("reservation".into(), json!(m));
    }
    if !mem.is_empty() {
        r["memory"] = Value::Object(mem);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(s) = hc.cpu_shares.filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(n) = hc.nano_cpus.filter(|n| *n > 0) {
        let period: i64 = 100_000;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(n * period / 1_000_000_000));
    } else {
        if let Some(q) = hc.cpu_quota.filter(|q| *q > 0) {
            cpu.insert("quota".into(), json!(q));
        }
        if let Some(p) = hc.cpu_period.filter(|p| *p > 0) {
            cpu.insert("period".into(), json!(p));
        }
    }
    if let Some(s) = hc.cpuset_cpus.as_deref().filter(|s| !s.is_empty()) {
        cpu.insert("cpus".into(), json!(s));
    }
    if let Some(s) = hc.cpuset_mems.as_deref().filter(|s| !s.is_empty()) {
        cpu.insert("mems".into(), json!(s));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = hc.pids_limit.filter(|p| *p != 0) {
        r["pids"] = json!({"limit": p});
    }
    if let Some(w) = hc
        .blkio_weight
        .filter(|w| *w > 0 && blkio_weight_supported())
    {
        r["blockIO"] = json!({"weight": w});
    }
    r
}

/// Docker's warning when the kernel has no block I/O weight (no CFQ/BFQ weight file).
const NO_BLKIO_WEIGHT: &str =
    "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.";

/// Whether the host's cgroups take a block I/O weight.
fn blkio_weight_supported() -> bool {
    let root = std::path::Path::new("/sys/fs/cgroup");
    if let Ok(c) = std::fs::read_to_string(root.join("cgroup.controllers")) {
        return c.split_whitespace().any(|c| c == "io");
    }
    ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .any(|f| root.join("blkio").join(f).exists())
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

/// A cpuset list (`0-2,4`): its CPUs.
fn cpuset(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The checks Docker makes on the resources of an update (`verifyContainerResources`).
pub(crate) fn validate(r: &Resources) -> Result<()> {
    let mem = r.memory.unwrap_or(0);
    let swap = r.memory_swap.unwrap_or(0);
    let resv = r.memory_reservation.unwrap_or(0);
    if mem != 0 && mem < MIN_MEMORY {
        return Err(bad("Minimum memory limit allowed is 6MB"));
    }
    if mem > 0 && swap > 0 && swap < mem {
        return Err(bad(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if resv != 0 && resv < MIN_MEMORY {
        return Err(bad("Minimum memory reservation allowed is 6MB"));
    }
    if mem > 0 && resv > 0 && mem < resv {
        return Err(bad(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    let nano = r.nano_cpus.unwrap_or(0);
    if nano > 0 && r.cpu_period.unwrap_or(0) > 0 {
        return Err(bad(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if nano > 0 && r.cpu_quota.unwrap_or(0) > 0 {
        return Err(bad(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max_nano = i64::try_from(ncpu).unwrap_or(i64::MAX) * 1_000_000_000;
    if nano < 0 || nano > max_nano {
        return Err(bad(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    let period = r.cpu_period.unwrap_or(0);
    if period != 0 && !(1000..=1_000_000).contains(&period) {
        return Err(bad(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    let quota = r.cpu_quota.unwrap_or(0);
    if quota > 0 && quota < 1000 {
        return Err(bad("CPU cfs quota can not be less than 1ms (i.e. 1000)"));
    }
    let w = r.blkio_weight.unwrap_or(0);
    if w > 0 && !(10..=1000).contains(&w) {
        return Err(bad("Range of blkio weight is from 10 to 1000"));
    }
    if let Some(s) = r.cpuset_cpus.as_deref().filter(|s| !s.is_empty()) {
        let cpus = cpuset(s).ok_or_else(|| bad(format!("Invalid value {s} for cpuset cpus")))?;
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
        if let Some(avail) = cpuset(online.trim()) {
            if cpus.iter().any(|c| !avail.contains(c)) {
                return Err(bad(format!(
                    "Requested CPUs are not available - requested {s}, available: {}",
                    online.trim()
                )));
            }
        }
    }
    if let Some(s) = r.cpuset_mems.as_deref().filter(|s| !s.is_empty()) {
        let mems = cpuset(s).ok_or_else(|| bad(format!("Invalid value {s} for cpuset mems")))?;
        let online = std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
        if let Some(avail) = cpuset(online.trim()) {
            if mems.iter().any(|m| !avail.contains(m)) {
                return Err(bad(format!(
                    "Requested memory nodes are not available - requested {s}, available: {}",
                    online.trim()
                )));
            }
        }
    }
    Ok(())
}

/// Docker's `UpdateContainer`: the update merged into `hc` (a zero or empty value keeps
/// the current one).
pub(crate) fn merge(hc: &mut HostConfig, u: &UpdateBody) -> Result<()> {
    let r = &u.resources;
    let set = |v: Option<i64>| v.filter(|v| *v != 0);
    if let Some(n) = r.nano_cpus.filter(|n| *n > 0) {
        if hc.cpu_period.unwrap_or(0) > 0 {
            return Err(bad(
                "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set",
            ));
        }
        if hc.cpu_quota.unwrap_or(0) > 0 {
            return Err(bad(
                "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set",
            ));
        }
        hc.nano_cpus = Some(n);
    }
    if let Some(p) = r.cpu_period.filter(|p| *p > 0) {
        if hc.nano_cpus.unwrap_or(0) > 0 {
            return Err(bad(
                "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set",
            ));
        }
        hc.cpu_period = Some(p);
    }
    if let Some(q) = r.cpu_quota.filter(|q| *q > 0) {
        if hc.nano_cpus.unwrap_or(0) > 0 {
            return Err(bad(
                "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set",
            ));
        }
        hc.cpu_quota = Some(q);
    }
    if let Some(s) = set(r.cpu_shares) {
        hc.cpu_shares = Some(s);
    }
    if let Some(w) = r.blkio_weight.filter(|w| *w != 0) {
        hc.blkio_weight = Some(w);
    }
    if let Some(s) = r.cpuset_cpus.as_ref().filter(|s| !s.is_empty()) {
        hc.cpuset_cpus = Some(s.clone());
    }
    if let Some(s) = r.cpuset_mems.as_ref().filter(|s| !s.is_empty()) {
        hc.cpuset_mems = Some(s.clone());
    }
    if let Some(m) = set(r.memory) {
        // A memory limit above the swap limit already set needs a new swap limit too.
        let cur_swap = hc.memory_swap.unwrap_or(0);
        if cur_swap > 0 && m > cur_swap && set(r.memory_swap).is_none() {
            return Err(bad("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"));
        }
        hc.memory = Some(m);
    }
    if let Some(s) = set(r.memory_swap) {
        hc.memory_swap = Some(s);
    }
    if let Some(m) = set(r.memory_reservation) {
        hc.memory_reservation = Some(m);
    }
    let (mem, swap) = (hc.memory.unwrap_or(0), hc.memory_swap.unwrap_or(0));
    if swap > 0 && mem > 0 && swap < mem {
        return Err(bad(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if mem > 0 && hc.memory_reservation.unwrap_or(0) > mem {
        return Err(bad(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if let Some(p) = r.pids_limit {
        // 0 and -1: unlimited.
        hc.pids_limit = Some(if p <= 0 { -1 } else { p });
    }
    if let Some(p) = u
        .restart_policy
        .as_ref()
        .filter(|p| !matches!(p.name, None | Some(RestartPolicyNameEnum::EMPTY)))
    {
        let retries = p.maximum_retry_count.unwrap_or(0);
        if retries < 0 {
            return Err(bad(
                "invalid restart policy: maximum retry count cannot be negative",
            ));
        }
        if retries > 0 && p.name != Some(RestartPolicyNameEnum::ON_FAILURE) {
            return Err(bad(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            ));
        }
        if hc.auto_remove == Some(true) && p.name != Some(RestartPolicyNameEnum::NO) {
            return Err(bad(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            ));
        }
        hc.restart_policy = Some(p.clone());
    }
    Ok(())
}

/// Applies an update to a container: checked, merged, put on the live cgroup when it runs,
/// persisted. Returns Docker's warnings.
pub(crate) fn update(sh: &Shared, ctr: &Ctr, u: &UpdateBody) -> Result<Vec<String>> {
    validate(&u.resources)?;
    let mut warnings = Vec::new();
    let mut u = u.clone();
    if u.resources.blkio_weight.unwrap_or(0) > 0 && !blkio_weight_supported() {
        warnings.push(NO_BLKIO_WEIGHT.to_string());
        u.resources.blkio_weight = None;
    }
    let u = &u;
    let mut st = ctr.lock();
    let id = st.rec.id.clone();
    let mut hc = st.rec.host_config.clone();
    merge(&mut hc, u)?;
    if st.rec.state.status.is_running() {
        let mut res = resources(&hc);
        if let Some(m) = res.get_mut("memory").and_then(Value::as_object_mut) {
            // A limit below what the container uses now is refused, not forced.
            m.insert("checkBeforeUpdate".into(), json!(true));
        }
        if hc.pids_limit == Some(-1) {
            res["pids"] = json!({"limit": -1});
        }
        let res: oci_spec::runtime::LinuxResources = serde_json::from_value(res)
            .map_err(|e| Error::Internal(format!("cannot build the cgroup resources: {e}")))?;
        if let Err(e) = sh.rt.update(&id, &res) {
            // What was applied before the failure goes back to the old values.
            if let Ok(old) = serde_json::from_value::<oci_spec::runtime::LinuxResources>(resources(
                &st.rec.host_config,
            )) {
                let _ = sh.rt.update(&id, &old);
            }
            return Err(bad(format!(
                "Cannot update container {id}: {}",
                skiff_container::chain(&e)
            )));
        }
    }
    let old = std::mem::replace(&mut st.rec.host_config, hc);
    if let Err(e) = sh.persist(&st.rec) {
        st.rec.host_config = old;
        return Err(e);
    }
    ctr.cv.notify_all();
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> UpdateBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_cli_body_parses_and_zeros_keep_values() {
        // What `docker update --memory 64m` sends: every other field zero or empty.
        let u = body(json!({
            "Memory": 67108864, "MemorySwap": 0, "MemoryReservation": 0, "CpuShares": 0,
            "CpusetCpus": "", "CpusetMems": "", "BlkioWeight": 0, "NanoCpus": 0,
            "Devices": null, "Ulimits": null, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
        }));
        let mut hc = HostConfig {
            cpu_shares: Some(512),
            memory: Some(32 << 20),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: Some(0),
            }),
            ..Default::default()
        };
        merge(&mut hc, &u).unwrap();
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(hc.cpu_shares, Some(512));
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
    }

    #[test]
    fn dockers_checks_and_messages() {
        let err = |v: Value| validate(&body(v).resources).unwrap_err().to_string();
        assert_eq!(
            err(json!({"Memory": 1 << 20})),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            err(json!({"MemoryReservation": 1 << 20})),
            "Minimum memory reservation allowed is 6MB"
        );
        assert_eq!(
            err(json!({"BlkioWeight": 5})),
            "Range of blkio weight is from 10 to 1000"
        );
        assert_eq!(
            err(json!({"CpuPeriod": 10})),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        );
        assert!(err(json!({"CpusetCpus": "a-b"})).contains("Invalid value a-b for cpuset cpus"));
        assert!(err(json!({"CpusetCpus": "9999"})).contains("Requested CPUs are not available"));
        let mut hc = HostConfig {
            memory_swap: Some(64 << 20),
            memory: Some(32 << 20),
            ..Default::default()
        };
        let e = merge(&mut hc, &body(json!({"Memory": 128 << 20}))).unwrap_err();
        assert!(e
            .to_string()
            .contains("update the memoryswap at the same time"));
        let mut hc = HostConfig {
            auto_remove: Some(true),
            ..Default::default()
        };
        let e = merge(&mut hc, &body(json!({"RestartPolicy": {"Name": "always"}}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
        );
    }

    #[test]
    fn resources_of_a_host_config() {
        let hc = HostConfig {
            memory: Some(64 << 20),
            memory_reservation: Some(32 << 20),
            nano_cpus: Some(500_000_000),
            cpuset_mems: Some("0".into()),
            pids_limit: Some(50),
            blkio_weight: Some(300),
            ..Default::default()
        };
        let r = resources(&hc);
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["reservation"], 32 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["mems"], "0");
        assert_eq!(r["pids"]["limit"], 50);
        if blkio_weight_supported() {
            assert_eq!(r["blockIO"]["weight"], 300);
        } else {
            assert!(r.get("blockIO").is_none());
        }
        assert!(serde_json::from_value::<oci_spec::runtime::LinuxResources>(r).is_ok());
    }
}
