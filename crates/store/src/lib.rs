//! The local image store of Skiff: what `docker pull`, `images`, `rmi`, `tag`, `save`, `load`,
//! `import`, `export` and the container root filesystems need on disk.
//!
//! # On-disk layout (under the data root, `/var/lib/skiff` for the daemon)
//!
//! ```text
//! lock                              flock(2)ed exclusively while a Store is open
//!                                   (content, snapshots, l, containers, tmp are mode 0700)
//! images.json                       all image metadata (see "Crash safety")
//! content/blobs/<alg>/<hex>         content-addressed blobs: manifests, configs, layers
//! content/tmp/                      blobs being written (temp files, renamed into place)
//! snapshots/<chain-id hex>/diff/    one unpacked layer, keyed by its OCI chain ID
//! snapshots/<chain-id hex>/meta.json  diffID, parent chain ID, sizes, short link name
//! snapshots/tmp/                    layers being unpacked, snapshots being deleted
//! l/<LINK>                          -> ../snapshots/<hex>/diff: 26-character short names
//! containers/<id>/rootfs.json       which image and layers a container rootfs uses
//! containers/<id>/{upper,work,merged}/   overlay driver;  containers/<id>/rootfs/  vfs
//! tmp/                              archives being loaded
//! ```
//!
//! # Crash safety of the metadata
//!
//! All image metadata (images, their layers, repo tags and repo digests) lives in ONE JSON
//! document, `images.json`, rewritten on every change with temp file + fsync + rename + fsync
//! of the directory. A rename is atomic, so after `kill -9` or a power cut the file holds
//! either the old or the new state; moving a tag from one image to another is a single
//! write, so a tag can never point to two images or dangle. Everything an image record
//! references (config, manifest and layer blobs, snapshots) is written and made durable
//! *before* the record, so a record never points to missing content; a crash can only
//! leave unreferenced content behind, which [`Store::gc`] removes. The raw config is not
//! copied into the document: it is the blob named by the image ID.
//!
//! Why not one file per image plus a tag index (Docker's imagedb + `repositories.json`)?
//! Then retagging touches two files and a crash between the writes needs repair logic.
//! Why not a database (redb, sqlite)? A node holds hundreds to a few thousand images, a few
//! hundred bytes each: rewriting the whole document costs well under a millisecond of
//! CPU plus one fsync, which is what a database commit costs too, and the file stays
//! readable with `jq`. Container rootfs records are one small file per container, written
//! atomically the same way (they are independent of each other).
//!
//! A Store is meant to be owned by one process (the daemon): `open` takes an exclusive
//! `flock` on `lock` and fails with [`Error::Locked`] otherwise. Within the process it is
//! `Clone + Send + Sync` (an `Arc` inside): blob writes and layer unpacks run in parallel;
//! metadata changes are serialised by a mutex.
//!
//! # Pulling (what the orchestrator does)
//!
//! ```no_run
//! use std::io::{self, Read};
//!
//! use skiff_store::{Compression, Digest, Reference, Store};
//!
//! /// Stores and unpacks one downloaded layer in a single pass; layers can run in parallel
//! /// threads (parents need not be unpacked first).
//! fn pull_layer(
//!     store: &Store,
//!     lease: &skiff_store::Lease,
//!     parent_chain: Option<&Digest>,
//!     blob: &Digest,
//!     diff_id: &Digest,
//!     download: impl Read + Send,
//! ) -> skiff_store::Result<()> {
//!     let chain = skiff_store::chain_id(parent_chain, diff_id);
//!     lease.protect_blob(blob);
//!     lease.protect_snapshot(&chain);
//!     let mut writer = store.blob_writer(Some(blob))?;
//!     let mut tee = writer.tee(download);
//!     store.unpack_layer(parent_chain, diff_id, &mut tee, Compression::Gzip)?;
//!     io::copy(&mut tee, &mut io::sink()).map_err(|e| skiff_store::Error::Io {
//!         op: "downloading",
//!         path: blob.to_string().into(),
//!         source: e,
//!     })?;
//!     writer.commit()?;
//!     Ok(())
//! }
//!
//! fn finish(store: &Store, manifest: &Digest, tag: &Reference) -> skiff_store::Result<()> {
//!     // The manifest and config blobs were stored with `put_blob`, under the same lease.
//!     let repo_digest: Reference = format!("{}@{manifest}", tag.name()).parse().unwrap();
//!     store.put_image(manifest, &[tag.clone()], &[repo_digest])?;
//!     Ok(())
//! }
//! ```
//!
//! # Snapshots and mounts
//!
//! Each layer is unpacked once (by `skiff-unpack`, whiteouts in overlayfs form) into
//! `snapshots/<chain ID>/diff`, shared by every image and container that has it. A
//! container's root filesystem is an overlay of those directories (top layer first) under
//! its own `upper`; the overlay is mounted with `lowerdir=l/<LINK>:...` relative to the
//! data root, like Docker's overlay2, from a short-lived thread that has unshared its
//! working directory (`unshare(CLONE_FS)` + `fchdir`), so the process's cwd never changes.
//! With 26-character links about 128 layers fit in the 4 KiB of mount options. The `vfs`
//! driver copies the layers into a plain directory instead.

#![forbid(unsafe_code)]

mod archive;
mod blob;
mod commit;
mod error;
mod fsutil;
mod gc;
mod image;
mod rootfs;
mod snapshot;
mod tarball;
mod vfs;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use blob::{BlobWriter, Progress, Tee};
pub use commit::CommitOptions;
pub use error::{Error, ErrorKind, Result};
pub use gc::{GcReport, PruneReport};
pub use image::{HistoryEntry, Image, ImageDetails, Layer, Removed};
pub use rootfs::RootfsHandle;
pub use skiff_reference::{Digest, Reference};
pub use skiff_unpack::Compression;
pub use snapshot::{chain_id, chain_ids, Snapshot};
pub use tarball::ImportOptions;

use crate::error::io_err;
use crate::image::State;
use crate::rootfs::RootfsRecord;

/// How container root filesystems are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// An overlayfs mount of the layer snapshots (Docker's overlay2).
    Overlay,
    /// A full copy of the layers into a plain directory (Docker's vfs): slow, works anywhere.
    Vfs,
}

impl Driver {
    /// Overlay if the kernel lists overlayfs in `/proc/filesystems`, vfs otherwise.
    pub fn detect() -> Driver {
        match fs::read_to_string("/proc/filesystems") {
            Ok(s)
                if s.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay")) =>
            {
                Driver::Overlay
            }
            _ => Driver::Vfs,
        }
    }
}

/// How a [`Store`] is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The driver for new container root filesystems (existing ones keep theirs).
    pub driver: Driver,
    /// How layers are applied (ownership, xattrs).
    pub unpack: skiff_unpack::Options,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            driver: Driver::detect(),
            unpack: skiff_unpack::Options::default(),
        }
    }
}

/// The blobs and snapshots (chain IDs) one lease protects.
type LeaseSets = (HashSet<Digest>, HashSet<Digest>);

/// Metadata guarded by one mutex: images and container rootfs records.
pub(crate) struct Meta {
    pub(crate) state: State,
    pub(crate) containers: BTreeMap<String, RootfsRecord>,
}

pub(crate) struct Inner {
    root: PathBuf,
    opts: StoreOptions,
    meta: Mutex<Meta>,
    /// Temp files and dirs being written right now (gc leaves them alone).
    active: Mutex<HashSet<PathBuf>>,
    /// Content protected by live [`Lease`]s: lease id -> (blobs, snapshots).
    leases: Mutex<HashMap<u64, LeaseSets>>,
    next_lease: AtomicU64,
    /// Serialises mounts and unmounts (two threads must not stack two overlays).
    pub(crate) mounting: Mutex<()>,
    _lock: File,
}

/// The image store. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// Marks the directory where snapshots are unpacked as a "top directory" (`FS_TOPDIR_FL`), so
/// ext4's Orlov allocator spreads each new snapshot over the block groups instead of putting
/// it where the last deleted one was. On an ext4 without a journal the inode allocator skips
/// every inode freed in the last seconds (minutes while their inode-table block is dirty),
/// looking each one up: a pull right after `rmi` + `gc` went from 1.2 s to 4-6 s for a Debian
/// layer; with the flag it stays at 1.2 s. File systems without the flag just ignore this.
fn spread_new_snapshots(dir: &Path) {
    let Ok(f) = File::open(dir) else { return };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&f) {
        if !flags.contains(rustix::fs::IFlags::TOPDIR) {
            let _ = rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::TOPDIR);
        }
    }
}

const DIRS: &[&str] = &[
    "content/blobs/sha256",
    "content/blobs/sha384",
    "content/blobs/sha512",
    "content/tmp",
    "snapshots/tmp",
    "l",
    "containers",
    "tmp",
];

impl Store {
    /// Opens (creating if needed) the store under `root`, takes its lock, loads the
    /// metadata and removes temp files left by a crash.
    pub fn open(root: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let root = root.as_ref().to_owned();
        for d in DIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("creating directory", &p))?;
        }
        // Image contents (think /etc/shadow) are for root only, as under /var/lib/docker.
        for d in ["content", "snapshots", "l", "containers", "tmp"] {
            let p = root.join(d);
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io_err("chmod", &p))?;
        }
        spread_new_snapshots(&root.join("snapshots/tmp"));
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("opening", &lock_path))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::Locked(root)),
            Err(e) => return Err(io_err("locking", &lock_path)(e.into())),
        }
        let state = State::load(&root)?;
        let containers = rootfs::load_records(&root)?;
        let store = Store {
            inner: Arc::new(Inner {
                root,
                opts,
                meta: Mutex::new(Meta { state, containers }),
                active: Mutex::new(HashSet::new()),
                leases: Mutex::new(HashMap::new()),
                next_lease: AtomicU64::new(1),
                mounting: Mutex::new(()),
                _lock: lock,
            }),
        };
        // Nothing is in flight yet: every temp entry is left over from a crash.
        let cleaned = store.clean_temp()?;
        if cleaned.0 > 0 {
            tracing::debug!(
                entries = cleaned.0,
                bytes = cleaned.1,
                "removed leftover temp files"
            );
        }
        Ok(store)
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The driver used for new container root filesystems.
    pub fn driver(&self) -> Driver {
        self.inner.opts.driver
    }

    /// Takes a lease: content protected through it survives [`Store::gc`] until it is
    /// dropped. A pull holds one from its first blob write until [`Store::put_image`].
    pub fn lease(&self) -> Lease {
        let id = self.inner.next_lease.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.leases).insert(id, Default::default());
        Lease {
            store: self.clone(),
            id,
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.inner.root.join(rel)
    }

    pub(crate) fn meta(&self) -> MutexGuard<'_, Meta> {
        lock(&self.inner.meta)
    }

    /// Registers an in-flight temp path; gc skips it until the guard drops.
    pub(crate) fn activate(&self, path: PathBuf) -> ActiveGuard {
        lock(&self.inner.active).insert(path.clone());
        ActiveGuard {
            store: self.clone(),
            path,
        }
    }

    pub(crate) fn leased(&self) -> (HashSet<Digest>, HashSet<Digest>) {
        let leases = lock(&self.inner.leases);
        let mut blobs = HashSet::new();
        let mut snaps = HashSet::new();
        for (b, s) in leases.values() {
            blobs.extend(b.iter().cloned());
            snaps.extend(s.iter().cloned());
        }
        (blobs, snaps)
    }

    /// Removes temp entries nobody is writing: returns (entries, bytes).
    pub(crate) fn clean_temp(&self) -> Result<(u64, u64)> {
        let active = lock(&self.inner.active).clone();
        let mut n = 0;
        let mut bytes = 0;
        for dir in ["content/tmp", "snapshots/tmp", "tmp"] {
            let dir = self.path(dir);
            for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
                let entry = entry.map_err(io_err("listing", &dir))?;
                let p = entry.path();
                if active.contains(&p) {
                    continue;
                }
                bytes += gc::tree_size(&p);
                fsutil::remove_any(&p)?;
                n += 1;
            }
        }
        let dir = self.path("containers");
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with(".tmp-") && !active.contains(&p) {
                bytes += gc::tree_size(&p);
                fsutil::remove_any(&p)?;
                n += 1;
            }
        }
        Ok((n, bytes))
    }
}

/// Protects blobs and snapshots from [`Store::gc`] while it lives.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    id: u64,
}

impl Lease {
    /// Protects a blob (which may not exist yet).
    pub fn protect_blob(&self, digest: &Digest) {
        if let Some(e) = lock(&self.store.inner.leases).get_mut(&self.id) {
            e.0.insert(digest.clone());
        }
    }

    /// Protects a snapshot by chain ID (which may not exist yet).
    pub fn protect_snapshot(&self, chain_id: &Digest) {
        if let Some(e) = lock(&self.store.inner.leases).get_mut(&self.id) {
            e.1.insert(chain_id.clone());
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.store.inner.leases).remove(&self.id);
    }
}

/// Unregisters an in-flight temp path on drop.
pub(crate) struct ActiveGuard {
    store: Store,
    path: PathBuf,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        lock(&self.store.inner.active).remove(&self.path);
    }
}

/// Locks a mutex, ignoring poisoning (the guarded data is rewritten atomically, a panic
/// in another thread cannot leave it half-changed).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_owned_by_one_opener() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), StoreOptions::default()).unwrap();
        let err = Store::open(d.path(), StoreOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Locked(_)), "{err}");
        assert_eq!(err.kind(), ErrorKind::Conflict);
        drop(s);
        Store::open(d.path(), StoreOptions::default()).unwrap();
    }

    #[test]
    fn open_removes_leftover_temp_files() {
        let d = tempfile::tempdir().unwrap();
        drop(Store::open(d.path(), StoreOptions::default()).unwrap());
        fs::write(d.path().join("content/tmp/blob-x"), b"x").unwrap();
        fs::create_dir_all(d.path().join("snapshots/tmp/unpack-x/diff")).unwrap();
        fs::create_dir_all(d.path().join("containers/.tmp-x/upper")).unwrap();
        let _s = Store::open(d.path(), StoreOptions::default()).unwrap();
        for p in ["content/tmp", "snapshots/tmp"] {
            assert_eq!(fs::read_dir(d.path().join(p)).unwrap().count(), 0, "{p}");
        }
        assert!(!d.path().join("containers/.tmp-x").exists());
    }
}
