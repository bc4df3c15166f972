#![forbid(unsafe_code)]
//! cgroup v1, v2 and hybrid management for Skiff containers.
//!
//! [`CgroupRoot::detect`] finds where the hierarchies are mounted (pure v2, hybrid, legacy v1);
//! [`Cgroup::new`] resolves a container's `linux.cgroupsPath` the way runc's cgroupfs driver
//! does; [`Cgroup::create`], [`Cgroup::apply`], [`Cgroup::add_process`] put a container in its
//! cgroup with its limits, and [`Cgroup::destroy`] removes it again, killing what is left.
//!
//! On a hybrid host the v1 controllers are used wherever they are mounted and the unified
//! hierarchy for what only it holds (hugetlb on the development machine); every process is also
//! placed in the unified hierarchy so v2-aware tools see it.
//!
//! # Choices
//! - **Which v1 hierarchies.** cpu, cpuacct, memory, devices, freezer, pids, blkio (docker
//!   stats reads it) and named hierarchies such as `name=systemd` (runc joins it too) are
//!   created by [`Cgroup::create`] and joined by [`Cgroup::add_process`]. cpuset, hugetlb,
//!   net_cls, net_prio and rdma are created only by [`Cgroup::apply`] when a limit needs them:
//!   a new v1 cpuset cgroup must have cpus and mems copied from its parent (two reads and two
//!   writes per new level) before a task may join it, which would cost every start for nothing.
//!   When `apply` creates one later (`update`), the cgroup's processes are moved into it.
//!   `add_process` joins such a hierarchy only if its directory exists.
//! - **Identity.** [`Cgroup::new`] only computes paths (no file is touched for an absolute
//!   path); `Cgroup` is also `Serialize`/`Deserialize`, so the runtime may store it instead of
//!   recomputing it from another cgroup in later commands.
//! - **Joining without waiting.** A write to `cgroup.procs` (or any write naming a pid) takes
//!   the kernel's global threadgroup lock, whose first writer waits for an RCU grace period
//!   (5-15 ms on a small VM, on every container start). The runtime avoids it where it can:
//!   the process is born in its unified-hierarchy cgroup (`clone3` with `CLONE_INTO_CGROUP`
//!   into [`Cgroup::unified_dir`]) and, single-threaded, moves itself into the v1 hierarchies
//!   with [`Cgroup::join_v1_self`] (a thread writing `0` to `tasks` takes no global lock).
//!   [`Cgroup::add_process`] remains for the other cases (rootless, user namespaces, old
//!   kernels).
//! - **Removal.** [`Cgroup::destroy`] removes the container's own directory (sub-cgroups
//!   included) in every hierarchy but never its ancestors: like runc, since a parent such as a
//!   Kubernetes pod cgroup or `/docker` may be shared or carry its own limits.
//! - **Devices.** The OCI rules, then runc's default allow list, go through an emulation of
//!   the v1 kernel list; v1 gets the resulting writes, v2 an eBPF program compiled from the same
//!   result (loaded with the wrappers in `skiff_sys::bpf`). Rules from `linux.devices` are not
//!   added here: runc adds an `allow rwm` rule per spec device, the caller should append those
//!   to `resources.devices` before calling `apply`.

mod cgroup;
mod devices;
mod fs;
mod mount;
mod oom;
mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use cgroup::Cgroup;
pub use devices::default_device_rules;
pub use mount::{CgroupRoot, Layout};
pub use oom::OomWatcher;
pub use stats::{
    Blkio, BlkioEntry, Cpu, CpuSet, CpuUsage, Hugetlb, IntelRdt, Memory, MemoryEntry, Pids, Stats,
    Throttling,
};

/// Everything that can go wrong managing a cgroup. Messages name the file, path or value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create cgroup directory {path}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove cgroup directory {path}")]
    Rmdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error(
        "cgroupsPath {path:?} has the systemd form slice:prefix:name, which needs the systemd \
         cgroup driver; Skiff only has the cgroupfs driver so far (use a path like /skiff/<id>)"
    )]
    SystemdPath { path: String },
    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("no cgroup hierarchy is mounted (per {mountinfo})")]
    NoHierarchy { mountinfo: PathBuf },
    #[error("the process's own {hierarchy} cgroup is not listed in /proc/self/cgroup")]
    OwnCgroupUnknown { hierarchy: String },
    #[error(
        "linux.resources.{field} needs the {controller} cgroup controller, which is not mounted"
    )]
    ControllerMissing {
        field: &'static str,
        controller: &'static str,
    },
    #[error("linux.resources.{field} = {value}: {reason}")]
    InvalidValue {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("linux.resources.{field} is not supported on cgroup {version}")]
    Unsupported {
        field: &'static str,
        version: &'static str,
    },
    #[error("timed out after {millis} ms waiting for {what} in {path}")]
    Timeout {
        path: PathBuf,
        what: &'static str,
        millis: u128,
    },
    #[error("cannot install the device program on cgroup {path}")]
    Bpf {
        path: PathBuf,
        #[source]
        source: skiff_sys::bpf::BpfError,
    },
    #[error("cannot {what} for OOM events on {path}")]
    OomWatch {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send SIGKILL to pid {pid} in cgroup {path}")]
    Kill {
        path: PathBuf,
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {path} was removed")]
    Removed { path: PathBuf },
}
