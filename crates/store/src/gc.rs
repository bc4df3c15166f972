//! Garbage collection: content no image, container rootfs or lease references.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use skiff_reference::Digest;

use crate::error::{io_err, Result};
use crate::Store;

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Snapshots removed (by chain ID).
    pub snapshots: Vec<Digest>,
    /// Leftover temp files and dirs removed.
    pub temp_entries: u64,
    /// Bytes reclaimed (file sizes).
    pub bytes: u64,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Images deleted.
    pub images: Vec<Digest>,
    /// What the garbage collection after it removed.
    pub gc: GcReport,
}

/// Bytes of the files under `p` (or of `p`), not following symlinks.
pub(crate) fn tree_size(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return if m.is_file() { m.len() } else { 0 };
    }
    crate::snapshot::dir_size(p)
}

impl Store {
    /// Removes every blob and snapshot that no image, container rootfs or [`crate::Lease`]
    /// references, dangling short links, and temp files and dirs left by crashed or
    /// abandoned writes. Metadata changes wait while it runs.
    pub fn gc(&self) -> Result<GcReport> {
        let meta = self.meta();
        let mut blobs: HashSet<Digest> = HashSet::new();
        let mut snaps: HashSet<Digest> = HashSet::new();
        for img in meta.state.images.values() {
            blobs.insert(img.id.clone());
            blobs.insert(img.manifest.clone());
            // The index (manifest list) a multi-platform pull came through: its repo digest
            // names it, and push/save may want it again.
            blobs.extend(img.repo_digests.iter().filter_map(|r| r.digest().cloned()));
            for l in &img.layers {
                blobs.insert(l.blob.clone());
                snaps.insert(l.chain_id.clone());
            }
        }
        for c in meta.containers.values() {
            snaps.extend(c.chain_ids.iter().cloned());
        }
        let (lb, ls) = self.leased();
        blobs.extend(lb);
        snaps.extend(ls);

        let mut report = GcReport::default();
        let (n, bytes) = self.clean_temp()?;
        report.temp_entries = n;
        report.bytes += bytes;

        let blob_root = self.path("content/blobs");
        for alg in fs::read_dir(&blob_root).map_err(io_err("listing", &blob_root))? {
            let alg = alg.map_err(io_err("listing", &blob_root))?;
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            for e in fs::read_dir(alg.path()).map_err(io_err("listing", alg.path()))? {
                let e = e.map_err(io_err("listing", alg.path()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let keep = Digest::parse(&format!("{alg_name}:{name}"))
                    .map(|d| blobs.contains(&d))
                    .unwrap_or(false);
                if keep {
                    continue;
                }
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err("removing", e.path()))?;
                report.bytes += size;
                if let Ok(d) = Digest::parse(&format!("{alg_name}:{name}")) {
                    report.blobs.push(d);
                }
            }
        }

        let snap_root = self.path("snapshots");
        for e in fs::read_dir(&snap_root).map_err(io_err("listing", &snap_root))? {
            let e = e.map_err(io_err("listing", &snap_root))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "tmp" {
                continue;
            }
            match Digest::parse(&format!("sha256:{name}")) {
                Ok(d) if snaps.contains(&d) => {}
                Ok(d) => {
                    report.bytes += self.delete_snapshot(&d)?;
                    report.snapshots.push(d);
                }
                Err(_) => {
                    report.bytes += tree_size(&e.path());
                    crate::fsutil::remove_any(&e.path())?;
                    report.temp_entries += 1;
                }
            }
        }

        let links = self.path("l");
        for e in fs::read_dir(&links).map_err(io_err("listing", &links))? {
            let e = e.map_err(io_err("listing", &links))?;
            if e.file_name() != ".empty" && fs::metadata(e.path()).is_err() {
                crate::fsutil::remove_any(&e.path())?;
            }
        }
        // Temp files of atomic writes (images.json, rootfs.json) a crash left behind.
        let mut dirs = vec![self.root().to_owned()];
        dirs.extend(
            meta.containers
                .keys()
                .map(|c| self.path("containers").join(c)),
        );
        for d in dirs {
            for e in fs::read_dir(&d).map_err(io_err("listing", &d))?.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    report.bytes += e.metadata().map(|m| m.size()).unwrap_or(0);
                    crate::fsutil::remove_any(&e.path())?;
                    report.temp_entries += 1;
                }
            }
        }
        drop(meta);
        report.blobs.sort();
        report.snapshots.sort();
        tracing::debug!(
            blobs = report.blobs.len(),
            snapshots = report.snapshots.len(),
            bytes = report.bytes,
            "garbage collected"
        );
        Ok(report)
    }

    /// Deletes images nothing uses (`docker image prune`): with `dangling_only`, those
    /// without tags; otherwise every image no container rootfs uses. Then runs [`Store::gc`].
    pub fn prune(&self, dangling_only: bool) -> Result<PruneReport> {
        let mut images = Vec::new();
        {
            let mut meta = self.meta();
            let used: HashSet<Digest> = meta
                .containers
                .values()
                .map(|c| c.image_id.clone())
                .collect();
            let doomed: Vec<Digest> = meta
                .state
                .images
                .values()
                .filter(|i| !used.contains(&i.id))
                .filter(|i| !dangling_only || i.repo_tags.is_empty())
                .map(|i| i.id.clone())
                .collect();
            if !doomed.is_empty() {
                self.update(&mut meta, |state| {
                    for d in &doomed {
                        state.images.remove(d);
                    }
                    Ok(())
                })?;
            }
            images.extend(doomed);
        }
        let gc = self.gc()?;
        Ok(PruneReport { images, gc })
    }
}
