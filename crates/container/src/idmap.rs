//! Idmapped bind mounts: a spec mount with `uidMappings`/`gidMappings` (or the `idmap` /
//! `ridmap` option, which borrows the container's own mappings) shows its files with their
//! owners mapped, without touching the files (`mount_setattr(MOUNT_ATTR_IDMAP)`).
//!
//! The runtime makes these mounts on the host, before the init exists: a throwaway user
//! namespace carries the mapping, `open_tree(OPEN_TREE_CLONE)` detaches a copy of the source
//! and `mount_setattr` idmaps it. The init inherits the detached mounts and moves them into
//! place, which also works from inside the container's user namespace (where creating an
//! idmapped mount of a host path is not allowed).

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};
use rustix::mount::OpenTreeFlags;
use skiff_sys::process::{clone_fork, Forked};

use crate::error::{Context, Error, Result};

/// Whether the mount asks for an idmapped mount.
pub fn wanted(m: &Mount) -> bool {
    m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty())
        || m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty())
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "idmap" || o == "ridmap")
}

/// One detached, idmapped mount per spec mount that wants one (`None` for the others), in
/// the order of `spec.mounts`.
pub fn prepare(spec: &Spec, bundle: &Path) -> Result<Vec<Option<OwnedFd>>> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    if !mounts.iter().any(wanted) {
        return Ok(Vec::new());
    }
    let linux = spec.linux().as_ref();
    let mut namespaces: HashMap<(String, String), OwnedFd> = HashMap::new();
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        if !wanted(m) {
            out.push(None);
            continue;
        }
        let at =
            |msg: String| Error::Other(format!("mounts[{i}] {}: {msg}", m.destination().display()));
        let opts = m.options().as_deref().unwrap_or_default();
        let has = |o: &str| opts.iter().any(|x| x == o);
        if m.typ().as_deref() != Some("bind") && !has("bind") && !has("rbind") {
            return Err(at(
                "idmapped mounts are only possible for bind mounts".into()
            ));
        }
        let container_uids = linux.and_then(|l| l.uid_mappings().as_ref());
        let container_gids = linux.and_then(|l| l.gid_mappings().as_ref());
        let uids = m.uid_mappings().as_ref().or(container_uids);
        let gids = m.gid_mappings().as_ref().or(container_gids);
        let (Some(uids), Some(gids)) = (
            uids.filter(|v| !v.is_empty()),
            gids.filter(|v| !v.is_empty()),
        ) else {
            return Err(at(
                "an idmapped mount needs both uidMappings and gidMappings (on the mount, or the container's)".into(),
            ));
        };
        let key = (map_text(uids), map_text(gids));
        if !namespaces.contains_key(&key) {
            let ns = userns_with(&key.0, &key.1).map_err(|e| at(crate::error::chain(&e)))?;
            namespaces.insert(key.clone(), ns);
        }
        let src = match m.source() {
            Some(s) if s.is_absolute() => s.clone(),
            Some(s) => bundle.join(s),
            None => return Err(at("a bind mount needs a source".into())),
        };
        let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        if has("rbind") {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        let tree = rustix::mount::open_tree(rustix::fs::CWD, &src, flags).map_err(|e| {
            at(format!(
                "cannot clone {} for an idmapped mount: {e}",
                src.display()
            ))
        })?;
        skiff_sys::fs::mount_setattr_idmap(tree.as_fd(), has("ridmap"), namespaces[&key].as_fd())
            .map_err(|e| {
            at(format!(
                "cannot idmap {} ({e}; the filesystem may not support idmapped mounts)",
                src.display()
            ))
        })?;
        out.push(Some(tree));
    }
    Ok(out)
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A user namespace with these id maps, held by an fd (the process that made it is gone).
fn userns_with(uid_map: &str, gid_map: &str) -> Result<OwnedFd> {
    let pid = match clone_fork(CloneFlags::CLONE_NEWUSER)
        .ctx(|| "cannot create a user namespace for an idmapped mount".into())?
    {
        Forked::Child => loop {
            // Only waits to be killed: the namespace is all the parent needs.
            nix::unistd::pause();
        },
        Forked::Parent(pid) => pid,
    };
    struct Reap(Pid);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGKILL);
            let _ = waitpid(self.0, None);
        }
    }
    let _reap = Reap(pid);
    fs::write(format!("/proc/{pid}/uid_map"), uid_map)
        .ctx(|| format!("cannot write the idmap uid_map {uid_map:?}"))?;
    fs::write(format!("/proc/{pid}/gid_map"), gid_map)
        .ctx(|| format!("cannot write the idmap gid_map {gid_map:?}"))?;
    let ns = fs::File::open(format!("/proc/{pid}/ns/user"))
        .ctx(|| "cannot open the idmap user namespace".into())?;
    Ok(ns.into())
}
