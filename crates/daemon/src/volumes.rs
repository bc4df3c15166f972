//! Local volumes (`docker volume`): `<data-root>/volumes/<name>/_data` plus a small
//! `opts.json` with the driver, labels, options and creation time.
//!
//! [`VolumeStore`] is `Clone + Send + Sync`; its methods are blocking (plain file system
//! calls) and short. The container side marks volumes in use with [`VolumeStore::acquire`]
//! and [`VolumeStore::release`] so that `remove` and `prune` leave them alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No volume has this name (Docker's wording).
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// The volume is used by containers.
    #[error("remove {name}: volume is in use - [{users}]")]
    InUse {
        /// The volume.
        name: String,
        /// The containers using it, comma-separated.
        users: String,
    },
    /// The name is not `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
    #[error("create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    /// A driver other than `local`, or options the local driver does not support.
    #[error("{0}")]
    Driver(String),
    /// A file system operation failed.
    #[error("{op} {path} failed")]
    Io {
        /// What was done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A volume's `opts.json` is corrupt.
    #[error("the metadata of volume {name} is not valid JSON")]
    Json {
        /// The volume.
        name: String,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
}

type Result<T, E = VolumeError> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// One volume, in the shape of Docker's `Volume` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    /// The name.
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// The host directory mounted into containers.
    pub mountpoint: PathBuf,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Driver options as given.
    pub options: BTreeMap<String, String>,
    /// Whether it was created without a name (a random one was given).
    #[serde(skip)]
    pub anonymous: bool,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    driver: String,
    created_at: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    anonymous: bool,
}

/// The volumes under `<data-root>/volumes`.
#[derive(Clone, Debug)]
pub struct VolumeStore {
    root: PathBuf,
    inner: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

/// The label Docker puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

impl VolumeStore {
    /// Opens (creating) the volume folder `<data_root>/volumes` (mode 0701, as Docker).
    pub fn open(data_root: &Path) -> Result<VolumeStore> {
        let root = data_root.join("volumes");
        fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
        fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o701))
            .map_err(io_err("chmod", &root))?;
        let store = VolumeStore {
            root,
            inner: Arc::new(Mutex::new(HashMap::new())),
        };
        // Volumes with mount options are mounted again after a reboot (or a lost mount).
        for v in store.list()?.into_iter().filter(|v| !v.options.is_empty()) {
            if !is_mount_point(&v.mountpoint) {
                if let Err(e) = mount_options(&v.mountpoint, &v.options) {
                    tracing::warn!(volume = %v.name, error = %e, "cannot mount the volume");
                }
            }
        }
        Ok(store)
    }

    fn users(&self) -> MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The host directory of volume `name` (whether or not it exists).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    /// Creates a volume; an empty `name` gets a random 64-hex one (an anonymous volume).
    /// Creating an existing volume returns it unchanged, as Docker does.
    pub fn create(
        &self,
        name: &str,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume> {
        if !(driver.is_empty() || driver == "local") {
            return Err(VolumeError::Driver(format!(
                "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        if let Some(k) = options
            .keys()
            .find(|k| !["type", "device", "o", "size"].contains(&k.as_str()))
        {
            return Err(VolumeError::Driver(format!(
                "create {name}: invalid option key: {k:?}"
            )));
        }
        if !options.is_empty() {
            // Docker's local driver: `type`, `device` and `o` are what mount(8) would take.
            if options.contains_key("size") {
                return Err(VolumeError::Driver(format!(
                    "create {name}: quota size requested but no quota support"
                )));
            }
            if !options.contains_key("device") {
                return Err(VolumeError::Driver(format!(
                    "create {name}: missing required option: \"device\""
                )));
            }
        }
        let anonymous = name.is_empty();
        let name = if anonymous {
            random_name()
        } else {
            name.to_owned()
        };
        if !valid_name(&name) {
            return Err(VolumeError::InvalidName(name));
        }
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let dir = self.root.join(&name);
        let tmp = self.root.join(format!(".tmp-{name}"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join("_data")).map_err(io_err("creating", &tmp))?;
        fs::set_permissions(
            tmp.join("_data"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(io_err("chmod", &tmp))?;
        let meta = Meta {
            driver: "local".into(),
            created_at: now_rfc3339(),
            labels,
            options,
            anonymous,
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(|source| VolumeError::Json {
            name: name.clone(),
            source,
        })?;
        let opts = tmp.join("opts.json");
        fs::write(&opts, text).map_err(io_err("writing", &opts))?;
        match fs::rename(&tmp, &dir) {
            Ok(()) => {}
            // Another request created it first.
            Err(_) if dir.exists() => {
                let _ = fs::remove_dir_all(&tmp);
                return self.get(&name);
            }
            Err(e) => return Err(io_err("renaming", &tmp)(e)),
        }
        if !meta.options.is_empty() {
            // Mounted now (a bad device is an error of the create, which leaves nothing).
            if let Err(e) = mount_options(&dir.join("_data"), &meta.options) {
                let _ = fs::remove_dir_all(&dir);
                return Err(VolumeError::Driver(format!("create {name}: {e}")));
            }
        }
        tracing::info!(volume = %name, "volume created");
        self.get(&name)
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        let dir = self.root.join(name);
        let opts = dir.join("opts.json");
        let text = match fs::read(&opts) {
            Ok(t) => t,
            // A volume the container engine made for a create request (`-v name:/path`,
            // an image's VOLUME): local, no labels, anonymous if its name is 64 hex.
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir.join("_data").is_dir() => {
                let created = fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                return Ok(Volume {
                    name: name.to_owned(),
                    driver: "local".into(),
                    mountpoint: dir.join("_data"),
                    created_at: crate::time::rfc3339(created),
                    labels: BTreeMap::new(),
                    options: BTreeMap::new(),
                    anonymous: name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_owned()))
            }
            Err(e) => return Err(io_err("reading", &opts)(e)),
        };
        let meta: Meta = serde_json::from_slice(&text).map_err(|source| VolumeError::Json {
            name: name.to_owned(),
            source,
        })?;
        Ok(Volume {
            name: name.to_owned(),
            driver: meta.driver,
            mountpoint: dir.join("_data"),
            created_at: meta.created_at,
            labels: meta.labels,
            options: meta.options,
            anonymous: meta.anonymous,
        })
    }

    /// All volumes, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err("listing", &self.root))? {
            let entry = entry.map_err(io_err("listing", &self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(volume = %name, error = %e, "skipping a broken volume"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Marks volume `name` as used by `container` (it must exist).
    pub fn acquire(&self, name: &str, container: &str) -> Result<()> {
        self.get(name)?;
        self.users()
            .entry(name.to_owned())
            .or_default()
            .insert(container.to_owned());
        Ok(())
    }

    /// Undoes [`VolumeStore::acquire`].
    pub fn release(&self, name: &str, container: &str) {
        let mut users = self.users();
        if let Some(s) = users.get_mut(name) {
            s.remove(container);
            if s.is_empty() {
                users.remove(name);
            }
        }
    }

    /// How many containers use volume `name`.
    pub fn ref_count(&self, name: &str) -> usize {
        self.users().get(name).map_or(0, HashSet::len)
    }

    /// Removes a volume and its data. A volume in use is refused unless `force`.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        self.get(name)?;
        if let Some(users) = self.users().get(name).filter(|u| !u.is_empty()) {
            if !force {
                let mut u: Vec<&String> = users.iter().collect();
                u.sort();
                return Err(VolumeError::InUse {
                    name: name.to_owned(),
                    users: u.into_iter().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        let dir = self.root.join(name);
        // A volume with mount options has its device mounted on _data: that goes first, so
        // the removal below can never reach into the device (a bind-mounted host directory).
        let data = dir.join("_data");
        if is_mount_point(&data) {
            nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
                VolumeError::Driver(format!(
                    "remove {name}: cannot unmount {}: {e}",
                    data.display()
                ))
            })?;
        }
        let trash = self.root.join(format!(".rm-{name}"));
        let _ = fs::remove_dir_all(&trash);
        fs::rename(&dir, &trash).map_err(io_err("renaming", &dir))?;
        fs::remove_dir_all(&trash).map_err(io_err("removing", &trash))?;
        self.users().remove(name);
        tracing::info!(volume = %name, "volume removed");
        Ok(())
    }

    /// Removes unused volumes that `keep` does not protect: only anonymous ones unless
    /// `all` (Docker ≥ 23). Returns the removed names and the bytes reclaimed.
    pub fn prune(&self, all: bool, keep: &dyn Fn(&Volume) -> bool) -> Result<(Vec<String>, u64)> {
        let mut names = Vec::new();
        let mut bytes = 0;
        for v in self.list()? {
            if (!all && !v.anonymous) || self.ref_count(&v.name) > 0 || keep(&v) {
                continue;
            }
            let size = dir_size(&v.mountpoint);
            self.remove(&v.name, false)?;
            bytes += size;
            names.push(v.name);
        }
        Ok((names, bytes))
    }
}

/// Mounts a local-driver volume's device on `target` as `docker volume create --opt type=…
/// --opt device=… --opt o=…` asks (what mount(8) would do: the flags of `o` become mount
/// flags, the rest the filesystem's data).
fn mount_options(target: &Path, options: &BTreeMap<String, String>) -> Result<(), String> {
    let device = options.get("device").map_or("", String::as_str);
    let fstype = options
        .get("type")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    let (flags, data) = parse_mount_flags(options.get("o").map_or("", String::as_str));
    nix::mount::mount(
        Some(device),
        target,
        fstype,
        flags,
        Some(data.as_str()).filter(|d| !d.is_empty()),
    )
    .map_err(|e| {
        format!(
            "failed to mount local volume: mount {device}:{} (type {}, options {:?}): {e}",
            target.display(),
            fstype.unwrap_or("none"),
            options.get("o").map_or("", String::as_str),
        )
    })
}

/// Splits mount(8)-style options into flags and the data string the filesystem gets.
fn parse_mount_flags(o: &str) -> (nix::mount::MsFlags, String) {
    use nix::mount::MsFlags as F;
    let mut flags = F::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|x| !x.is_empty()) {
        let (set, clear) = match opt {
            "defaults" | "rw" => (F::empty(), F::MS_RDONLY),
            "ro" => (F::MS_RDONLY, F::empty()),
            "nosuid" => (F::MS_NOSUID, F::empty()),
            "suid" => (F::empty(), F::MS_NOSUID),
            "nodev" => (F::MS_NODEV, F::empty()),
            "dev" => (F::empty(), F::MS_NODEV),
            "noexec" => (F::MS_NOEXEC, F::empty()),
            "exec" => (F::empty(), F::MS_NOEXEC),
            "sync" => (F::MS_SYNCHRONOUS, F::empty()),
            "async" => (F::empty(), F::MS_SYNCHRONOUS),
            "dirsync" => (F::MS_DIRSYNC, F::empty()),
            "noatime" => (F::MS_NOATIME, F::empty()),
            "atime" => (F::empty(), F::MS_NOATIME),
            "nodiratime" => (F::MS_NODIRATIME, F::empty()),
            "relatime" => (F::MS_RELATIME, F::empty()),
            "strictatime" => (F::MS_STRICTATIME, F::empty()),
            "bind" => (F::MS_BIND, F::empty()),
            "rbind" => (F::MS_BIND | F::MS_REC, F::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data.join(","))
}

/// Whether `path` is a mount point of this process's mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape_mount_path(m) == want)
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Docker's volume name rule.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Bytes of the regular files under `p`, not following symlinks.
pub fn dir_size(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_file() {
        return m.len();
    }
    if !m.is_dir() {
        return 0;
    }
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    rd.flatten().map(|e| dir_size(&e.path())).sum()
}

fn random_name() -> String {
    let mut buf = [0u8; 32];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = io::Read::read_exact(&mut f, &mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::time::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_like_mount8() {
        use nix::mount::MsFlags as F;
        let (f, d) = parse_mount_flags("size=1m,mode=0700,ro,nosuid");
        assert_eq!(f, F::MS_RDONLY | F::MS_NOSUID);
        assert_eq!(d, "size=1m,mode=0700");
        let (f, d) = parse_mount_flags("bind");
        assert_eq!((f, d.as_str()), (F::MS_BIND, ""));
        let (f, _) = parse_mount_flags("ro,rw,rbind");
        assert_eq!(f, F::MS_BIND | F::MS_REC);
        assert_eq!(unescape_mount_path("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mount_path("/x\\777"), "/x?");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }

    #[test]
    fn create_get_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let vs = VolumeStore::open(d.path()).unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("a".to_owned(), "b".to_owned());
        let v = vs
            .create("data1", "local", labels.clone(), BTreeMap::new())
            .unwrap();
        assert_eq!(v.mountpoint, d.path().join("volumes/data1/_data"));
        assert!(v.mountpoint.is_dir());
        assert_eq!(vs.get("data1").unwrap().labels, labels);
        // Idempotent.
        assert_eq!(
            vs.create("data1", "", BTreeMap::new(), BTreeMap::new())
                .unwrap(),
            v
        );
        let anon = vs
            .create("", "local", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        assert_eq!(anon.name.len(), 64);
        assert_eq!(vs.list().unwrap().len(), 2);
        vs.acquire("data1", "c1").unwrap();
        assert!(matches!(
            vs.remove("data1", false),
            Err(VolumeError::InUse { .. })
        ));
        vs.release("data1", "c1");
        let (pruned, _) = vs.prune(false, &|_| false).unwrap();
        assert_eq!(pruned, vec![anon.name]);
        vs.remove("data1", false).unwrap();
        assert!(matches!(vs.get("data1"), Err(VolumeError::NotFound(_))));
        assert!(vs.list().unwrap().is_empty());
    }

    #[test]
    fn names_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let vs = VolumeStore::open(d.path()).unwrap();
        for bad in ["../x", "a/b", "-x", "x"] {
            assert!(
                vs.create(bad, "local", BTreeMap::new(), BTreeMap::new())
                    .is_err(),
                "{bad}"
            );
        }
        assert!(vs
            .create("v", "nfs", BTreeMap::new(), BTreeMap::new())
            .is_err());
    }
}
