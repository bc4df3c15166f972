//! Mount options and mounting into a container's rootfs without ever following a path out of
//! it: targets are resolved with `openat2(RESOLVE_IN_ROOT)` and mounted through the resulting
//! fd (`/proc/self/fd/N`), never through a path string an attacker could swap (CVE-2021-30465).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use skiff_sys::fs::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};

use crate::error::{Context, Error, Result};

/// Parsed `mounts[].options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Flags to clear on a remount (e.g. `rw`, `suid`), applied when remounting binds.
    pub cleared: MsFlags,
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data ("mode=755,size=65536k").
    pub data: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
        }
    }
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The flags a bind mount needs re-applied with MS_REMOUNT (bind itself ignores them).
    pub fn remount_flags(&self) -> MsFlags {
        self.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

/// Parses mount options as runc does: known flags become MsFlags, propagation options are
/// collected apart, everything else is passed to the filesystem as data.
pub fn parse_options(opts: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data = Vec::new();
    for opt in opts {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let mut f = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if opt.starts_with('r') {
                    f |= MsFlags::MS_REC;
                }
                o.propagation.push(f);
                continue;
            }
            // Idmapped and recursive-attribute options are not filesystem data.
            "idmap" | "ridmap" | "tmpcopyup" => continue,
            _ => {
                data.push(opt.as_str());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.cleared |= clear;
    }
    o.data = data.join(",");
    o
}

/// The flags for `rootfsPropagation` (default: rslave, as runc).
pub fn propagation_flags(name: Option<&str>) -> Result<MsFlags> {
    Ok(match name.unwrap_or("") {
        "" | "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(Error::Spec(format!(
                "linux.rootfsPropagation: unknown value {other:?}"
            )))
        }
    })
}

/// The path through which a syscall reaches what `fd` refers to.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// A container path made relative ("/a/../b" stays inside thanks to RESOLVE_IN_ROOT).
fn rel(path: &Path) -> String {
    let s: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    if s.is_empty() {
        ".".into()
    } else {
        s.join("/")
    }
}

/// Opens `path` inside `root` (O_PATH), never leaving it.
pub fn resolve(root: BorrowedFd<'_>, path: &Path, no_symlinks: bool) -> nix::Result<OwnedFd> {
    let mut how = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    if no_symlinks {
        how |= RESOLVE_NO_SYMLINKS;
    }
    openat2(root, &rel(path), libc::O_PATH, 0, how)
}

/// What kind of mount target to create when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Resolves `path` inside `root`, creating missing directories (and the final file) one
/// component at a time with *at calls on verified parent fds.
pub fn ensure(root: BorrowedFd<'_>, path: &Path, kind: Kind, no_symlinks: bool) -> Result<OwnedFd> {
    ensure_depth(root, path, kind, no_symlinks, 0)
}

fn ensure_depth(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: Kind,
    no_symlinks: bool,
    depth: u32,
) -> Result<OwnedFd> {
    match resolve(root, path, no_symlinks) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(Errno::ELOOP) if no_symlinks => {
            return Err(Error::Other(format!(
                "mount destination {} is or goes through a symlink; refusing",
                path.display()
            )))
        }
        Err(e) => return Err(e).ctx(|| format!("cannot resolve {} in the rootfs", path.display())),
    }
    let comps: Vec<_> = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    // Usually only the last component is missing: start from its parent when that exists.
    let mut start = 0;
    let mut sofar = std::path::PathBuf::from("/");
    let mut parent = match comps.split_last() {
        Some((_, dirs)) if !dirs.is_empty() => {
            let p: std::path::PathBuf = std::iter::once(Component::RootDir)
                .chain(dirs.iter().copied())
                .collect();
            match resolve(root, &p, no_symlinks) {
                Ok(fd) => {
                    start = dirs.len();
                    sofar = p;
                    Some(fd)
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    let mut parent = match parent.take() {
        Some(fd) => fd,
        None => {
            resolve(root, Path::new("/"), false).ctx(|| "cannot open the rootfs".to_string())?
        }
    };
    for (i, comp) in comps.iter().enumerate().skip(start) {
        let last = i + 1 == comps.len();
        sofar.push(comp);
        match resolve(root, &sofar, no_symlinks) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(e).ctx(|| format!("cannot resolve {} in the rootfs", sofar.display()))
            }
        }
        let name = comp.as_os_str();
        if last && kind == Kind::File {
            match nix::fcntl::openat(
                Some(parent.as_raw_fd()),
                name,
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            ) {
                Ok(fd) => drop(nix::unistd::close(fd)),
                Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("cannot create mount target {}", sofar.display()))
                }
            }
        } else {
            match nix::sys::stat::mkdirat(
                Some(parent.as_raw_fd()),
                name,
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("cannot create directory {}", sofar.display()))
                }
            }
        }
        match resolve(root, &sofar, no_symlinks) {
            Ok(fd) => parent = fd,
            Err(Errno::ENOENT) if depth < 40 => {
                // A dangling symlink: create what it points to (inside the root) instead.
                let target = nix::fcntl::readlinkat(Some(parent.as_raw_fd()), name)
                    .ctx(|| format!("cannot resolve {} in the rootfs", sofar.display()))?;
                let mut next = match Path::new(&target) {
                    t if t.is_absolute() => t.to_path_buf(),
                    t => sofar.parent().unwrap_or(Path::new("/")).join(t),
                };
                for c in &comps[i + 1..] {
                    next.push(c);
                }
                return ensure_depth(root, &next, kind, no_symlinks, depth + 1);
            }
            Err(e) => {
                return Err(e).ctx(|| format!("cannot resolve {} in the rootfs", sofar.display()))
            }
        }
    }
    Ok(parent)
}

/// Whether `fd` is a directory.
pub fn is_dir(fd: BorrowedFd<'_>) -> bool {
    fstat(fd.as_raw_fd())
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locked on it (a bind of a
/// nosuid/nodev mount inside a user namespace must keep them).
pub fn remount_bind(target: &str, flags: MsFlags) -> Result<()> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(
        None::<&str>,
        target,
        None::<&str>,
        base | flags,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let st =
                nix::sys::statvfs::statvfs(target).ctx(|| format!("cannot statvfs {target}"))?;
            use nix::sys::statvfs::FsFlags;
            let mut locked = MsFlags::empty();
            let f = st.flags();
            for (fs, ms) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(fs) {
                    locked |= ms;
                }
            }
            mount(
                None::<&str>,
                target,
                None::<&str>,
                base | flags | locked,
                None::<&str>,
            )
            .ctx(|| format!("cannot remount {target} with {flags:?}"))
        }
        Err(e) => Err(e).ctx(|| format!("cannot remount {target} with {flags:?}")),
    }
}

/// `fstat` of an fd: (is char device, major, minor).
pub fn char_dev(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    let st = fstat(fd.as_raw_fd()).ok()?;
    (SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR).then(|| {
        (
            nix::sys::stat::major(st.st_rdev),
            nix::sys::stat::minor(st.st_rdev),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn o(list: &[&str]) -> MountOptions {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation_are_split() {
        let m = o(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(m.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(m.data, "mode=755,size=65536k");
        assert_eq!(m.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let m = o(&["ro", "rw", "rbind", "noexec", "exec"]);
        assert!(m.is_bind());
        assert!(m.flags.contains(MsFlags::MS_REC));
        assert!(!m.flags.contains(MsFlags::MS_RDONLY));
        assert!(!m.flags.contains(MsFlags::MS_NOEXEC));
        assert_eq!(m.remount_flags(), MsFlags::empty());
    }

    #[test]
    fn rootfs_propagation_names() {
        assert_eq!(
            propagation_flags(None).unwrap(),
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        );
        assert_eq!(
            propagation_flags(Some("rshared")).unwrap(),
            MsFlags::MS_SHARED | MsFlags::MS_REC
        );
        assert!(propagation_flags(Some("sideways")).is_err());
    }

    #[test]
    fn paths_are_made_relative() {
        assert_eq!(rel(Path::new("/")), ".");
        assert_eq!(rel(Path::new("/a/b")), "a/b");
        assert_eq!(rel(Path::new("/a/../../b")), "a/../../b");
    }

    #[test]
    fn resolution_never_leaves_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // A symlink pointing at the host's /tmp resolves inside the root instead.
        std::os::unix::fs::symlink("/tmp", root.join("etc/evil")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("up")).unwrap();
        let rfd: OwnedFd = std::fs::File::open(&root).unwrap().into();
        let fd = ensure(rfd.as_fd(), Path::new("/etc/evil/x"), Kind::Dir, false).unwrap();
        assert!(is_dir(fd.as_fd()));
        assert!(
            root.join("tmp/x").is_dir(),
            "created inside the root, not on the host"
        );
        let fd = ensure(rfd.as_fd(), Path::new("/up/f"), Kind::File, false).unwrap();
        assert!(!is_dir(fd.as_fd()));
        assert!(root.join("f").is_file());
        let err = ensure(rfd.as_fd(), Path::new("/etc/evil"), Kind::Dir, true).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }
}
