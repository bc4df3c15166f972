//! Container root filesystems: an overlay of the image's snapshots under a per-container
//! upper dir, or (vfs driver) a full copy.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};
use skiff_reference::Digest;

use crate::error::{io_err, Error, Result};
use crate::fsutil::{read_json, remove_any, sync_dir, write_atomic};
use crate::{Driver, Store};

/// The kernel copies at most one page of mount options.
const MAX_MOUNT_DATA: usize = 4095;

/// The on-disk record of a container rootfs (`containers/<id>/rootfs.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RootfsRecord {
    pub(crate) container_id: String,
    pub(crate) image_id: Digest,
    /// The image's layers, bottom first (kept so gc spares them even if the image goes).
    pub(crate) chain_ids: Vec<Digest>,
    pub(crate) driver: Driver,
}

/// A container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsHandle {
    /// The container.
    pub container_id: String,
    /// The image it was made from.
    pub image_id: Digest,
    /// How it is made.
    pub driver: Driver,
    /// The directory the container sees as `/` (the overlay mount point, or the vfs copy).
    pub path: PathBuf,
    /// The overlay's upper directory (the container's changes); `None` for vfs.
    pub upper: Option<PathBuf>,
}

pub(crate) fn load_records(root: &Path) -> Result<BTreeMap<String, RootfsRecord>> {
    let dir = root.join("containers");
    let mut out = BTreeMap::new();
    for e in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
        let e = e.map_err(io_err("listing", &dir))?;
        let p = e.path().join("rootfs.json");
        if e.file_name().to_string_lossy().starts_with(".tmp-") || !p.is_file() {
            continue;
        }
        let r: RootfsRecord = read_json(&p)?;
        out.insert(r.container_id.clone(), r);
    }
    Ok(out)
}

fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidContainerId(id.to_owned()))
    }
}

/// Whether `path` is a mount point (its device differs from its parent's).
fn is_mounted(path: &Path) -> bool {
    match (
        fs::symlink_metadata(path),
        path.parent().map(fs::symlink_metadata),
    ) {
        (Ok(m), Some(Ok(p))) => m.dev() != p.dev(),
        _ => false,
    }
}

impl Store {
    fn container_dir(&self, id: &str) -> PathBuf {
        self.path("containers").join(id)
    }

    fn handle(&self, r: &RootfsRecord) -> RootfsHandle {
        let dir = self.container_dir(&r.container_id);
        let (path, upper) = match r.driver {
            Driver::Overlay => (dir.join("merged"), Some(dir.join("upper"))),
            Driver::Vfs => (dir.join("rootfs"), None),
        };
        RootfsHandle {
            container_id: r.container_id.clone(),
            image_id: r.image_id.clone(),
            driver: r.driver,
            path,
            upper,
        }
    }

    /// Creates the root filesystem of container `container_id` from an image (by name or
    /// ID) with the store's driver. Not mounted yet: see [`Store::mount_rootfs`].
    pub fn create_rootfs(&self, container_id: &str, image: &str) -> Result<RootfsHandle> {
        check_id(container_id)?;
        let record = {
            let mut meta = self.meta();
            if meta.containers.contains_key(container_id) {
                return Err(Error::RootfsExists(container_id.to_owned()));
            }
            let img = {
                drop(meta);
                let img = self.image(image)?;
                meta = self.meta();
                if meta.containers.contains_key(container_id) {
                    return Err(Error::RootfsExists(container_id.to_owned()));
                }
                if !meta.state.images.contains_key(&img.id) {
                    return Err(Error::ImageNotFound(image.to_owned()));
                }
                img
            };
            let record = RootfsRecord {
                container_id: container_id.to_owned(),
                image_id: img.id.clone(),
                chain_ids: img.chain_ids(),
                driver: self.inner.opts.driver,
            };
            // Reserved in memory from here on: the image cannot be removed meanwhile.
            meta.containers
                .insert(container_id.to_owned(), record.clone());
            record
        };
        match self.build_rootfs(&record) {
            Ok(()) => Ok(self.handle(&record)),
            Err(e) => {
                self.meta().containers.remove(container_id);
                Err(e)
            }
        }
    }

    fn build_rootfs(&self, r: &RootfsRecord) -> Result<()> {
        let containers = self.path("containers");
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&containers)
            .map_err(io_err("creating a temp dir in", &containers))?;
        let _active = self.activate(tmp.path().to_owned());
        for c in &r.chain_ids {
            self.snapshot(c)?;
        }
        match r.driver {
            Driver::Overlay => {
                for d in ["upper", "work", "merged"] {
                    let p = tmp.path().join(d);
                    fs::create_dir(&p).map_err(io_err("creating", &p))?;
                }
                fs::set_permissions(
                    tmp.path().join("upper"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .map_err(io_err("chmod", tmp.path()))?;
            }
            Driver::Vfs => {
                let rootfs = tmp.path().join("rootfs");
                fs::create_dir(&rootfs).map_err(io_err("creating", &rootfs))?;
                for c in &r.chain_ids {
                    let snap = self.snapshot(c)?;
                    crate::vfs::apply(&snap.path, &rootfs)?;
                }
            }
        }
        let json =
            serde_json::to_vec_pretty(r).map_err(crate::image::json_err("a rootfs record"))?;
        write_atomic(&tmp.path().join("rootfs.json"), &json)?;
        let dest = self.container_dir(&r.container_id);
        fs::rename(tmp.path(), &dest).map_err(io_err("renaming a rootfs to", &dest))?;
        let _ = tmp.keep();
        sync_dir(&containers)?;
        tracing::debug!(container = %r.container_id, image = %r.image_id, driver = ?r.driver, "rootfs created");
        Ok(())
    }

    /// The root filesystem of a container.
    pub fn rootfs(&self, container_id: &str) -> Result<RootfsHandle> {
        let meta = self.meta();
        let r = meta
            .containers
            .get(container_id)
            .ok_or_else(|| Error::RootfsNotFound(container_id.to_owned()))?;
        Ok(self.handle(r))
    }

    /// The image layers under a container's root filesystem, top first (the overlay's lower
    /// directories): what its upper directory is compared with for `docker diff`.
    pub fn rootfs_layers(&self, container_id: &str) -> Result<Vec<crate::Snapshot>> {
        let chain_ids = self
            .meta()
            .containers
            .get(container_id)
            .map(|r| r.chain_ids.clone())
            .ok_or_else(|| Error::RootfsNotFound(container_id.to_owned()))?;
        chain_ids.iter().rev().map(|c| self.snapshot(c)).collect()
    }

    /// All container root filesystems.
    pub fn rootfs_list(&self) -> Vec<RootfsHandle> {
        let meta = self.meta();
        meta.containers.values().map(|r| self.handle(r)).collect()
    }

    /// Whether a container's overlay is mounted (always false for vfs).
    pub fn is_rootfs_mounted(&self, container_id: &str) -> Result<bool> {
        let h = self.rootfs(container_id)?;
        Ok(h.driver == Driver::Overlay && is_mounted(&h.path))
    }

    /// The overlay mount options, relative to the data root (Docker's overlay2 form).
    pub(crate) fn overlay_options(&self, r: &RootfsRecord) -> Result<String> {
        let mut lower = Vec::new();
        for c in r.chain_ids.iter().rev() {
            lower.push(format!("l/{}", self.snapshot(c)?.link));
        }
        let dir = format!("containers/{}", r.container_id);
        let data = if lower.is_empty() {
            // An image without layers: an empty lower layer is not allowed, use upper only.
            let empty = self.path("l/.empty");
            fs::create_dir_all(&empty).map_err(io_err("creating", &empty))?;
            format!("lowerdir=l/.empty,upperdir={dir}/upper,workdir={dir}/work")
        } else {
            format!(
                "lowerdir={},upperdir={dir}/upper,workdir={dir}/work",
                lower.join(":")
            )
        };
        if data.len() > MAX_MOUNT_DATA {
            return Err(Error::TooManyLayers {
                image: r.image_id.to_string(),
                layers: r.chain_ids.len(),
                len: data.len(),
                max: MAX_MOUNT_DATA,
            });
        }
        Ok(data)
    }

    /// Mounts a container's overlay (a no-op for vfs, or if mounted); returns the path the
    /// container sees as `/`.
    pub fn mount_rootfs(&self, container_id: &str) -> Result<PathBuf> {
        let record = self
            .meta()
            .containers
            .get(container_id)
            .cloned()
            .ok_or_else(|| Error::RootfsNotFound(container_id.to_owned()))?;
        let h = self.handle(&record);
        let _serial = crate::lock(&self.inner.mounting);
        if record.driver == Driver::Vfs || is_mounted(&h.path) {
            return Ok(h.path);
        }
        let data = self.overlay_options(&record)?;
        let root = self.root().to_owned();
        let target = h.path.clone();
        // The options name the layers relative to the data root, so the mount must run with
        // the data root as working directory. A scoped thread unshares its fs attributes
        // (cwd, root, umask) from the rest of the process and changes only its own cwd.
        let res = std::thread::scope(|s| {
            s.spawn(|| -> io::Result<()> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
                let fd = rustix::fs::open(
                    &root,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rustix::process::fchdir(&fd)?;
                let data = std::ffi::CString::new(data.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                rustix::mount::mount("overlay", &target, "overlay", MountFlags::empty(), &*data)?;
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the mount thread panicked")))
        });
        res.map_err(io_err("mounting an overlay on", &h.path))?;
        tracing::debug!(
            container = container_id,
            layers = record.chain_ids.len(),
            "overlay mounted"
        );
        Ok(h.path)
    }

    /// Unmounts a container's overlay (a no-op if not mounted or vfs).
    pub fn unmount_rootfs(&self, container_id: &str) -> Result<()> {
        let h = self.rootfs(container_id)?;
        if h.driver == Driver::Vfs {
            return Ok(());
        }
        let _serial = crate::lock(&self.inner.mounting);
        while is_mounted(&h.path) {
            match rustix::mount::unmount(&h.path, UnmountFlags::empty()) {
                Ok(()) => {}
                Err(rustix::io::Errno::BUSY) => {
                    tracing::debug!(container = container_id, "overlay busy, detaching it");
                    rustix::mount::unmount(&h.path, UnmountFlags::DETACH)
                        .map_err(|e| io_err("unmounting", &h.path)(e.into()))?;
                }
                Err(rustix::io::Errno::INVAL) => break,
                Err(e) => return Err(io_err("unmounting", &h.path)(e.into())),
            }
        }
        Ok(())
    }

    /// Unmounts (if needed) and deletes a container's root filesystem.
    pub fn remove_rootfs(&self, container_id: &str) -> Result<()> {
        self.unmount_rootfs(container_id)?;
        let dir = self.container_dir(container_id);
        if is_mounted(&dir.join("merged")) {
            return Err(Error::RootfsMounted(container_id.to_owned()));
        }
        // Rename out of the way first (the record goes with it), then delete.
        let trash = self.path("tmp").join(format!("rm-{container_id}"));
        let _active = self.activate(trash.clone());
        remove_any(&trash)?;
        fs::rename(&dir, &trash).map_err(io_err("renaming", &dir))?;
        sync_dir(&self.path("containers"))?;
        self.meta().containers.remove(container_id);
        remove_any(&trash)?;
        tracing::debug!(container = container_id, "rootfs removed");
        Ok(())
    }
}
