//! Hiding the grace period of the first cgroup migration.
//!
//! Moving a process between cgroups (a write to `cgroup.procs`, v1 or v2) takes the kernel's
//! global `cgroup_threadgroup_rwsem` for writing. Unless the hierarchy is mounted with
//! `favordynmods`, that lock's first writer waits for an RCU grace period (`rcu_sync_enter`);
//! writers that follow within about one more grace period find it already passed. On a
//! 2-vCPU VM the wait is 5-15 ms, and it sits on the critical path of every container start
//! and every exec (runc and crun pay it too).
//!
//! A [`MigrationPrimer`] starts that grace period early: it writes the calling process's own
//! pid into the cgroup it is already in, a migration that moves nothing but takes the lock
//! the same way. A daemon calls it (off its request path) as soon as it knows a migration is
//! coming — when a container is created or an exec is set up — so the real migration a few
//! milliseconds later finds the wait over or partly over. Nothing is changed on the host; on
//! a kernel where writers never wait the priming is a no-op write.

use std::path::{Path, PathBuf};

use crate::cgroup::own_in;
use crate::mount::own_cgroups;
use crate::mount::{CgroupRoot, Kind};
use crate::Error;

/// Writes this process's pid into its own `cgroup.procs` (see the module docs).
#[derive(Debug, Clone)]
pub struct MigrationPrimer {
    procs: PathBuf,
    pid: String,
}

impl MigrationPrimer {
    /// Finds this process's own cgroup in one mounted hierarchy (a v1 one if there is any:
    /// on a hybrid host the v1 hierarchies are the ones every container joins).
    pub fn new(root: &CgroupRoot) -> Result<MigrationPrimer, Error> {
        let own = own_cgroups()?;
        let m = root
            .mounts
            .iter()
            .find(|m| m.kind == Kind::V1)
            .or_else(|| root.mounts.first())
            .ok_or_else(|| Error::NoHierarchy {
                mountinfo: PathBuf::from("/proc/self/mountinfo"),
            })?;
        let rel = own_in(m, &own)?;
        Ok(MigrationPrimer {
            procs: m.mountpoint.join(rel).join("cgroup.procs"),
            pid: std::process::id().to_string(),
        })
    }

    /// The `cgroup.procs` file written.
    pub fn path(&self) -> &Path {
        &self.procs
    }

    /// Moves this process into the cgroup it is in: blocks for as long as the kernel makes
    /// a migration wait (up to a grace period), so call it from a thread of its own.
    pub fn prime(&self) -> Result<(), Error> {
        std::fs::write(&self.procs, &self.pid).map_err(|source| Error::Write {
            path: self.procs.clone(),
            value: self.pid.clone(),
            source,
        })
    }
}
