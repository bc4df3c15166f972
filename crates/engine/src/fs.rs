//! A container's file system opened for the daemon (`docker cp`, `docker export`): a
//! directory fd that every path is resolved under with `openat2(RESOLVE_IN_ROOT)`, so that no
//! symlink or `..` in the container can lead outside it (CVE-2018-15664, CVE-2019-14271).
//!
//! A running container is reached through `/proc/<pid>/root`: its own mount namespace, so
//! its volumes, binds and tmpfs mounts are seen as the container sees them. A stopped one is
//! mounted on demand on a thread of its own in a private mount namespace (the way moby's
//! chrootarchive does it): the overlay, then its volumes and binds bind-mounted in place. All
//! of that disappears with the thread; nothing is mounted or left behind on the host.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bollard_stubs::models::MountPointTypeEnum;
use nix::mount::MsFlags;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Record;

/// Which file system of a container to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// As the container sees it: the root filesystem with its volumes and binds (`docker cp`).
    Container,
    /// The root filesystem alone, no mounts (`docker export`).
    Rootfs,
}

/// An opened container file system (see the module docs).
#[derive(Debug)]
pub struct ContainerFs {
    root: OwnedFd,
    /// What the caller named the container (for Docker's messages).
    pub(crate) name: String,
    /// The container's record when it was opened.
    pub(crate) rec: Record,
}

/// Per-container locks serialising the overlay mounts of a stopped container: the private
/// mount of [`Engine::with_fs`] (held for the whole operation) and the mount of a start. Two
/// overlays on one upper directory at once would not see each other's changes (Docker holds
/// the container lock during a copy the same way).
fn fs_locks() -> &'static Mutex<HashMap<String, Weak<Mutex<()>>>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Weak<Mutex<()>>>>> = OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

/// The mount lock of a container (see [`fs_locks`]); lock it with [`hold`].
pub(crate) fn mount_lock(id: &str) -> Arc<Mutex<()>> {
    let mut map = fs_locks().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = map.get(id).and_then(Weak::upgrade) {
        return l;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let l = Arc::new(Mutex::new(()));
    map.insert(id.to_owned(), Arc::downgrade(&l));
    l
}

pub(crate) fn hold(l: &Mutex<()>) -> MutexGuard<'_, ()> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

fn errno(what: impl Into<String>) -> impl FnOnce(Errno) -> Error {
    let what = what.into();
    move |e| Error::Io {
        what,
        source: e.into(),
    }
}

fn nix_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |e| Error::Io {
        what,
        source: std::io::Error::from_raw_os_error(e as i32),
    }
}

impl ContainerFs {
    /// The container's full id.
    pub fn id(&self) -> &str {
        &self.rec.id
    }

    /// The root directory (an `O_PATH` fd).
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Opens `path` (absolute in the container) with every component resolved inside the
    /// root: symlinks and `..` cannot leave it.
    pub(crate) fn open(&self, path: &str, flags: OFlags) -> std::result::Result<OwnedFd, Errno> {
        let p = path.trim_start_matches('/');
        let p = if p.is_empty() { "." } else { p };
        rustix::fs::openat2(
            &self.root,
            p,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Docker's 404 for a path that is not there.
    pub(crate) fn not_found(&self, path: &str) -> Error {
        Error::NotFound(format!(
            "Could not find the file {path} in container {}",
            self.name
        ))
    }
}

impl Engine {
    /// Runs `f` on a container's file system (see [`View`]), running or not. For a stopped
    /// container `f` runs on a thread of its own, in the mount namespace made for it.
    pub fn with_fs<T, F>(&self, name_or_id: &str, view: View, f: F) -> Result<T>
    where
        F: FnOnce(&ContainerFs) -> Result<T> + Send,
        T: Send,
    {
        let rec = self.record(name_or_id)?;
        let name = name_or_id.to_owned();
        if view == View::Container && rec.state.status.is_running() && rec.state.pid > 0 {
            let proc_root = format!("/proc/{}/root", rec.state.pid);
            let root = rustix::fs::open(
                proc_root.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno(format!(
                "cannot open the root of running container {}",
                rec.id
            )))?;
            // The pid could have been reused since the record was read: the root must be
            // the container's own root filesystem (mounted on the host while it runs).
            let rootfs = self
                .config()
                .store
                .rootfs(&rec.id)
                .map_err(crate::error::store_err(format!(
                    "cannot find the rootfs of {}",
                    rec.id
                )))?;
            let seen = rustix::fs::fstat(&root).map_err(errno("cannot stat the container root"))?;
            let want = rustix::fs::stat(&rootfs.path)
                .map_err(errno(format!("cannot stat {}", rootfs.path.display())))?;
            if (seen.st_dev, seen.st_ino) != (want.st_dev, want.st_ino) {
                return Err(Error::Conflict(format!(
                    "container {} stopped during the request; try again",
                    rec.id
                )));
            }
            return f(&ContainerFs { root, name, rec });
        }
        let store = &self.config().store;
        let lock = mount_lock(&rec.id);
        std::thread::scope(|s| {
            s.spawn(move || -> Result<T> {
                // No start mounts the overlay meanwhile: one mounted already (the container
                // running, or started since the record was read) is shared, not doubled.
                let _held = hold(&lock);
                private_mount_ns()?;
                let merged = store
                    .mount_rootfs(&rec.id)
                    .map_err(crate::error::store_err(format!(
                        "cannot mount the rootfs of {}",
                        rec.id
                    )))?;
                let root = rustix::fs::open(
                    &merged,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno(format!("cannot open {}", merged.display())))?;
                let cfs = ContainerFs { root, name, rec };
                if view == View::Container {
                    mount_volumes(&cfs)?;
                }
                f(&cfs)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Internal(
                    "the container file system thread panicked".into(),
                ))
            })
        })
    }
}

/// Moves the calling thread into a mount namespace of its own whose mounts do not propagate
/// back to the host. Only for a thread that ends when the work is done.
fn private_mount_ns() -> Result<()> {
    use nix::sched::CloneFlags;
    nix::sched::unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .map_err(nix_err("cannot make a private mount namespace"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(nix_err("cannot make the private mount namespace private"))
}

/// Bind-mounts a stopped container's /etc files (hosts, hostname, resolv.conf), volumes and
/// binds at their destinations (created like the runtime would at start if missing),
/// read-only ones read-only.
fn mount_volumes(cfs: &ContainerFs) -> Result<()> {
    let rec = &cfs.rec;
    // The engine's own files first, then the container's mounts, as at start.
    let etc_rw = rec.host_config.readonly_rootfs != Some(true);
    let mut binds: Vec<(&str, &str, bool)> = vec![
        (rec.resolv_conf_path.as_str(), "/etc/resolv.conf", etc_rw),
        (rec.hostname_path.as_str(), "/etc/hostname", etc_rw),
        (rec.hosts_path.as_str(), "/etc/hosts", etc_rw),
    ];
    binds.retain(|(src, _, _)| !src.is_empty());
    for m in &rec.mounts {
        if m.typ == Some(MountPointTypeEnum::TMPFS) {
            continue;
        }
        if let (Some(src), Some(dest)) = (m.source.as_deref(), m.destination.as_deref()) {
            binds.push((src, dest, m.rw.unwrap_or(true)));
        }
    }
    for (src, dest, rw) in binds {
        let src = Path::new(src);
        let Ok(meta) = std::fs::metadata(src) else {
            tracing::debug!(container = %cfs.rec.id, source = %src.display(), "skipping a missing mount source");
            continue;
        };
        let target = ensure_target(cfs, dest, meta.is_dir())?;
        let fd_path = |fd: &OwnedFd| {
            use std::os::fd::AsRawFd;
            format!("/proc/thread-self/fd/{}", fd.as_raw_fd())
        };
        nix::mount::mount(
            Some(src),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(nix_err(format!(
            "cannot bind {} at {dest} in container {}",
            src.display(),
            cfs.rec.id
        )))?;
        if !rw {
            // The fd still names the directory under the new mount: open the mount itself.
            let top = cfs
                .open(dest, OFlags::PATH)
                .map_err(errno(format!("cannot reopen {dest}")))?;
            nix::mount::mount(
                None::<&str>,
                fd_path(&top).as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(nix_err(format!("cannot make {dest} read-only")))?;
        }
    }
    Ok(())
}

/// Opens (creating what is missing, inside the root) the mount point `dest`.
fn ensure_target(cfs: &ContainerFs, dest: &str, dir: bool) -> Result<OwnedFd> {
    match cfs.open(dest, OFlags::PATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(errno(format!("cannot open the mount point {dest}"))(e)),
    }
    let comps: Vec<&str> = dest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut prefix = String::new();
    let mut parent = cfs
        .open("/", OFlags::PATH | OFlags::DIRECTORY)
        .map_err(errno("cannot open the root"))?;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        prefix.push('/');
        prefix.push_str(c);
        let flags = if last && !dir {
            OFlags::PATH
        } else {
            OFlags::PATH | OFlags::DIRECTORY
        };
        match cfs.open(&prefix, flags) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(errno(format!("cannot open {prefix}"))(e)),
        }
        // The parent is a directory inside the root; the new entry is made right in it.
        let made = if last && !dir {
            rustix::fs::openat(
                &parent,
                *c,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&parent, *c, Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(errno(format!("cannot create the mount point {prefix}"))(e)),
        }
        parent = cfs
            .open(&prefix, flags)
            .map_err(errno(format!("cannot open {prefix}")))?;
    }
    Ok(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mount_lock_per_container_while_in_use() {
        let a = mount_lock("fs-test-a");
        let a2 = mount_lock("fs-test-a");
        let b = mount_lock("fs-test-b");
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &b));
        let held = hold(&a);
        assert!(
            a2.try_lock().is_err(),
            "the same container's lock is shared"
        );
        assert!(b.try_lock().is_ok());
        drop(held);
        drop((a, a2));
        // Unused locks are dropped from the table when the next one is made.
        let _c = mount_lock("fs-test-c");
        let map = fs_locks().lock().unwrap();
        assert!(!map.contains_key("fs-test-a"));
    }
}
