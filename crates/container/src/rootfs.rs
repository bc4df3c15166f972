//! Building the container's filesystem view inside its mount namespace (run by init).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::error::{Context, Error, Result};
use crate::mounts::{self, ensure, fd_path, parse_options, Kind};

/// What rootfs setup needs besides the spec.
pub struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub new_userns: bool,
    pub new_cgroupns: bool,
    /// Detached idmapped mounts by spec mount index, moved into place instead of binding.
    pub idmapped: &'a [Option<OwnedFd>],
}

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Mounts everything before pivot_root: the rootfs bind, every spec mount in order, /dev's
/// default devices and the spec's devices. Returns an fd of the rootfs.
///
/// `placed` is called once, before the first cgroup mount (or after the last mount): it waits
/// until the runtime has put us into our cgroup, which runs in parallel with the mounts before.
pub fn prepare(
    ctx: &RootfsContext<'_>,
    placed: &mut dyn FnMut() -> Result<Vec<(String, PathBuf)>>,
) -> Result<OwnedFd> {
    let mut waited = false;
    // (name, host dir) of the container's cgroup in each hierarchy, known once placed.
    let mut cgroups = Vec::new();
    let linux = ctx.spec.linux().as_ref();
    let prop = mounts::propagation_flags(linux.and_then(|l| l.rootfs_propagation().as_deref()))?;
    // rootfsPropagation for the whole tree (default rslave: nothing we mount propagates back
    // to the host).
    mount(None::<&str>, "/", None::<&str>, prop, None::<&str>)
        .ctx(|| "cannot set the propagation of /".into())?;
    if prop.contains(MsFlags::MS_SHARED) {
        // pivot_root refuses a new root whose parent mount is shared: make just that one
        // private (as runc does); the rootfs gets its propagation after pivot_root.
        let parent = parent_mount_point(ctx.rootfs)?;
        mount(
            None::<&str>,
            &parent,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .ctx(|| format!("cannot make {} private for pivot_root", parent.display()))?;
    }
    // pivot_root needs the rootfs to be a mount point.
    mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("cannot bind-mount the rootfs {}", ctx.rootfs.display()))?;
    let root: OwnedFd = std::fs::File::open(ctx.rootfs)
        .ctx(|| format!("cannot open rootfs {}", ctx.rootfs.display()))?
        .into();
    let mut dev_is_bind = false;
    for (i, m) in ctx.spec.mounts().iter().flatten().enumerate() {
        if !waited && matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            cgroups = placed()?;
            waited = true;
        }
        let idmapped = ctx
            .idmapped
            .get(i)
            .and_then(|f| f.as_ref())
            .map(|f| f.as_fd());
        mount_one(ctx, root.as_fd(), m, &cgroups, idmapped).map_err(|e| match e {
            Error::Other(msg) => {
                Error::Other(format!("mounts[{i}] {}: {msg}", m.destination().display()))
            }
            other => Error::Other(format!(
                "mounts[{i}] ({}): {}",
                m.destination().display(),
                crate::error::chain(&other)
            )),
        })?;
        if m.destination() == Path::new("/dev")
            && parse_options(m.options().as_deref().unwrap_or_default()).is_bind()
        {
            dev_is_bind = true;
        }
    }
    if !waited {
        placed()?;
    }
    if !dev_is_bind {
        default_devices(ctx, root.as_fd())?;
    }
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        create_device(ctx, root.as_fd(), d)?;
    }
    Ok(root)
}

fn mount_one(
    ctx: &RootfsContext<'_>,
    root: BorrowedFd<'_>,
    m: &Mount,
    cgroups: &[(String, PathBuf)],
    idmapped: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if typ == "bind" || opts.is_bind() {
        let src = match m.source() {
            Some(s) if s.is_absolute() => s.clone(),
            Some(s) => ctx.bundle.join(s),
            None => return Err(Error::Other("a bind mount needs a source".into())),
        };
        let meta = std::fs::metadata(&src)
            .ctx(|| format!("bind source {} cannot be used", src.display()))?;
        let target = ensure(
            root,
            dest,
            if meta.is_dir() { Kind::Dir } else { Kind::File },
            false,
        )?;
        if let Some(tree) = idmapped {
            // Onto the verified target fd itself (move_mount does not follow the magic link).
            rustix::mount::move_mount(
                tree,
                "",
                target.as_fd(),
                "",
                rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
                    | rustix::mount::MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
            )
            .map_err(|e| {
                Error::Other(format!(
                    "cannot move the idmapped mount of {} into place: {e}",
                    src.display()
                ))
            })?;
        } else {
            let mut flags = MsFlags::MS_BIND;
            if opts.flags.contains(MsFlags::MS_REC) {
                flags |= MsFlags::MS_REC;
            }
            mount(
                Some(&src),
                fd_path(target.as_fd()).as_str(),
                None::<&str>,
                flags,
                None::<&str>,
            )
            .ctx(|| format!("cannot bind {}", src.display()))?;
        }
        let remount = opts.remount_flags();
        if !remount.is_empty() || !opts.propagation.is_empty() {
            // Re-resolve: the fd still points below the new mount.
            let top =
                mounts::resolve(root, dest, false).ctx(|| "cannot reopen the bind mount".into())?;
            if !remount.is_empty() {
                mounts::remount_bind(&fd_path(top.as_fd()), remount)?;
            }
            propagate(&top, &opts.propagation)?;
        }
        return Ok(());
    }
    match typ {
        "cgroup" | "cgroup2" => return mount_cgroup(ctx, root, dest, &opts, cgroups),
        "" => return Err(Error::Other("mount type is missing".into())),
        _ => {}
    }
    // procfs and sysfs must land on a real directory, never through a symlink
    // (CVE-2019-16884, CVE-2023-27561, CVE-2023-28642).
    let strict = matches!(typ, "proc" | "sysfs");
    let target = ensure(root, dest, Kind::Dir, strict)?;
    if strict && !mounts::is_dir(target.as_fd()) {
        return Err(Error::Other(format!(
            "{typ} must be mounted on a directory"
        )));
    }
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| typ.to_string());
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let flags = opts.flags & !MsFlags::MS_REMOUNT;
    let path = fd_path(target.as_fd());
    match mount(Some(source.as_str()), path.as_str(), Some(typ), flags, data) {
        Ok(()) => {}
        // In a user namespace without its own netns/ipcns the kernel refuses sysfs/mqueue:
        // fall back to binding the host's, as runc does.
        Err(Errno::EPERM) if ctx.new_userns && matches!(typ, "sysfs" | "mqueue") => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            mount(
                Some(host),
                path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| format!("cannot bind {host} in place of {typ}"))?;
            let top = mounts::resolve(root, dest, true).ctx(|| "cannot reopen the mount".into())?;
            mounts::remount_bind(&fd_path(top.as_fd()), flags)?;
        }
        Err(e) => return Err(e).ctx(|| format!("cannot mount {typ} (data {:?})", opts.data)),
    }
    if !opts.propagation.is_empty() {
        let top = mounts::resolve(root, dest, strict).ctx(|| "cannot reopen the mount".into())?;
        propagate(&top, &opts.propagation)?;
    }
    Ok(())
}

fn propagate(target: &OwnedFd, props: &[MsFlags]) -> Result<()> {
    for p in props {
        mount(
            None::<&str>,
            fd_path(target.as_fd()).as_str(),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .ctx(|| format!("cannot set mount propagation {p:?}"))?;
    }
    Ok(())
}

/// The container's own cgroup at `dest`: cgroup2 directly (or its cgroup dir bound when there
/// is no cgroup namespace), or on v1/hybrid a tmpfs with each hierarchy's dir bound below it.
fn mount_cgroup(
    ctx: &RootfsContext<'_>,
    root: BorrowedFd<'_>,
    dest: &Path,
    opts: &mounts::MountOptions,
    cgroups: &[(String, PathBuf)],
) -> Result<()> {
    let target = ensure(root, dest, Kind::Dir, true)?;
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let single_v2 = cgroups.len() == 1 && cgroups[0].0.is_empty();
    if single_v2 {
        let path = fd_path(target.as_fd());
        if ctx.new_cgroupns {
            mount(
                Some("cgroup2"),
                path.as_str(),
                Some("cgroup2"),
                flags,
                None::<&str>,
            )
            .ctx(|| "cannot mount cgroup2".into())?;
        } else {
            let src = &cgroups[0].1;
            mount(
                Some(src),
                path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(|| format!("cannot bind {}", src.display()))?;
            let top =
                mounts::resolve(root, dest, true).ctx(|| "cannot reopen cgroup mount".into())?;
            mounts::remount_bind(&fd_path(top.as_fd()), flags)?;
        }
        return Ok(());
    }
    let tmpfs_flags = flags & !MsFlags::MS_RDONLY;
    mount(
        Some("tmpfs"),
        fd_path(target.as_fd()).as_str(),
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .ctx(|| "cannot mount the tmpfs for cgroup hierarchies".into())?;
    for (name, src) in cgroups {
        let sub = dest.join(name);
        let t = ensure(root, &sub, Kind::Dir, true)?;
        mount(
            Some(src),
            fd_path(t.as_fd()).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("cannot bind cgroup {}", src.display()))?;
    }
    // One recursive mount_setattr gives the tmpfs and every hierarchy below it the options
    // (ro, nosuid, ...); kernels without it get a remount per mount.
    let top = mounts::resolve(root, dest, true).ctx(|| "cannot reopen cgroup tmpfs".into())?;
    let mut set = 0;
    for (ms, attr) in [
        (MsFlags::MS_RDONLY, skiff_sys::fs::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, skiff_sys::fs::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, skiff_sys::fs::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, skiff_sys::fs::MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(ms) {
            set |= attr;
        }
    }
    match skiff_sys::fs::mount_setattr(top.as_fd(), true, set, 0) {
        Ok(()) => {}
        Err(Errno::ENOSYS) => {
            for (name, _) in cgroups {
                let sub = mounts::resolve(root, &dest.join(name), true)
                    .ctx(|| "cannot reopen cgroup mount".into())?;
                mounts::remount_bind(&fd_path(sub.as_fd()), flags)?;
            }
            if ro {
                mount(
                    None::<&str>,
                    fd_path(top.as_fd()).as_str(),
                    None::<&str>,
                    MsFlags::MS_REMOUNT | flags,
                    Some("mode=755"),
                )
                .ctx(|| "cannot make the cgroup tmpfs read-only".into())?;
            }
        }
        Err(e) => return Err(e).ctx(|| "cannot set the options of the cgroup mounts".into()),
    }
    Ok(())
}

fn default_devices(ctx: &RootfsContext<'_>, root: BorrowedFd<'_>) -> Result<()> {
    let dev = ensure(root, Path::new("/dev"), Kind::Dir, true)?;
    for (name, major, minor) in DEFAULT_DEVICES {
        make_node(
            ctx,
            root,
            &Path::new("/dev").join(name),
            SFlag::S_IFCHR,
            major,
            minor,
            0o666,
            None,
            None,
        )?;
    }
    let devfd = std::fs::File::open(fd_path(dev.as_fd()))
        .ctx(|| "cannot open /dev of the rootfs".into())?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match nix::unistd::symlinkat(target, Some(devfd.as_raw_fd()), link) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("cannot create /dev/{link}")),
        }
    }
    Ok(())
}

fn create_device(ctx: &RootfsContext<'_>, root: BorrowedFd<'_>, d: &LinuxDevice) -> Result<()> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::Spec(format!(
                "linux.devices {}: type 'a' is only valid in cgroup rules",
                d.path().display()
            )))
        }
    };
    let mode = d.file_mode().unwrap_or(0o666);
    let major = u64::try_from(d.major())
        .map_err(|_| Error::Spec(format!("linux.devices {}: bad major", d.path().display())))?;
    let minor = u64::try_from(d.minor())
        .map_err(|_| Error::Spec(format!("linux.devices {}: bad minor", d.path().display())))?;
    make_node(
        ctx,
        root,
        d.path(),
        kind,
        major,
        minor,
        mode,
        d.uid(),
        d.gid(),
    )
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    ctx: &RootfsContext<'_>,
    root: BorrowedFd<'_>,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Spec(format!("bad device path {}", path.display())))?;
    let dir = ensure(root, parent, Kind::Dir, true)?;
    let dirf = std::fs::File::open(fd_path(dir.as_fd()))
        .ctx(|| format!("cannot open {}", parent.display()))?;
    if ctx.new_userns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        let t = ensure(root, path, Kind::File, true)?;
        return mount(
            Some(path),
            fd_path(t.as_fd()).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("cannot bind device {}", path.display()));
    }
    let _ = nix::unistd::unlinkat(
        Some(dirf.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    nix::sys::stat::mknodat(
        Some(dirf.as_raw_fd()),
        name,
        kind,
        Mode::from_bits_truncate(mode & 0o7777),
        nix::sys::stat::makedev(major, minor),
    )
    .ctx(|| format!("cannot create device {}", path.display()))?;
    // init runs with umask 0, so mknod gave the exact mode; now the owner.
    if uid.is_some() || gid.is_some() {
        nix::unistd::fchownat(
            Some(dirf.as_raw_fd()),
            name,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ctx(|| format!("cannot chown device {}", path.display()))?;
    }
    Ok(())
}

/// Switches the root to the rootfs: pivot_root (or MS_MOVE + chroot with `--no-pivot`), then
/// detaches the old root.
pub fn switch_root(rootfs: &Path, root: &OwnedFd, no_pivot: bool, spec: &Spec) -> Result<()> {
    nix::unistd::fchdir(root.as_raw_fd()).ctx(|| "cannot enter the rootfs".into())?;
    if no_pivot {
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .ctx(|| format!("cannot move {} to /", rootfs.display()))?;
        nix::unistd::chroot(".").ctx(|| "cannot chroot into the rootfs".into())?;
    } else {
        nix::unistd::pivot_root(".", ".")
            .ctx(|| format!("pivot_root into {}", rootfs.display()))?;
        // The old root is now stacked under "."; make sure its unmount does not propagate.
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| "cannot make the old root a slave".into())?;
        umount2(".", MntFlags::MNT_DETACH).ctx(|| "cannot detach the old root".into())?;
    }
    nix::unistd::chdir("/").ctx(|| "cannot chdir to /".into())?;
    // An explicit rootfsPropagation applies to the new root itself, now that pivot_root is done.
    if let Some(name) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        // Not recursive: the tree got it before the spec's mounts, whose own propagation
        // options must win.
        let prop = mounts::propagation_flags(Some(name))? - MsFlags::MS_REC;
        mount(None::<&str>, "/", None::<&str>, prop, None::<&str>)
            .ctx(|| format!("cannot apply rootfsPropagation {name}"))?;
    }
    Ok(())
}

/// The mount point holding `path` (the longest mount point that is `path` or above it).
fn parent_mount_point(path: &Path) -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "cannot read /proc/self/mountinfo".into())?;
    let mut best = PathBuf::from("/");
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        // mountinfo escapes space, tab, newline and backslash as octal.
        let mp = mp
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\");
        let mp = PathBuf::from(mp);
        if path.starts_with(&mp) && mp.components().count() > best.components().count() {
            best = mp;
        }
    }
    Ok(best)
}

/// After pivot_root: masked and read-only paths, the read-only root.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let root: OwnedFd = std::fs::File::open("/")
        .ctx(|| "cannot open /".into())?
        .into();
    let masked = linux.and_then(|l| l.masked_paths().as_ref());
    if masked.is_some_and(|m| !m.is_empty()) {
        // Mask with a verified /dev/null, never with whatever a path names (CVE-2025-31133).
        let null =
            std::fs::File::open("/dev/null").ctx(|| "cannot open /dev/null for masking".into())?;
        if mounts::char_dev(null.as_fd()) != Some((1, 3)) {
            return Err(Error::Other(
                "/dev/null in the container is not the null device; refusing to mask with it"
                    .into(),
            ));
        }
        for p in masked.into_iter().flatten() {
            let fd = match mounts::resolve(root.as_fd(), Path::new(p), true) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e).ctx(|| format!("cannot resolve masked path {p}")),
            };
            let target = fd_path(fd.as_fd());
            let r = if mounts::is_dir(fd.as_fd()) {
                mount(
                    Some("tmpfs"),
                    target.as_str(),
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    None::<&str>,
                )
            } else {
                mount(
                    Some(fd_path(null.as_fd()).as_str()),
                    target.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
            };
            r.ctx(|| format!("cannot mask {p}"))?;
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let fd = match mounts::resolve(root.as_fd(), Path::new(p), true) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).ctx(|| format!("cannot resolve read-only path {p}")),
        };
        let target = fd_path(fd.as_fd());
        mount(
            Some(target.as_str()),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("cannot bind read-only path {p}"))?;
        let top = mounts::resolve(root.as_fd(), Path::new(p), true)
            .ctx(|| format!("cannot reopen {p}"))?;
        mounts::remount_bind(
            &fd_path(top.as_fd()),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        mounts::remount_bind("/", MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

/// Writes `linux.sysctl` through the container's own procfs, after checking it is procfs.
pub fn sysctls(spec: &Spec) -> Result<()> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in map {
        if key.contains("..") || key.starts_with('/') {
            return Err(Error::Spec(format!("linux.sysctl: bad key {key:?}")));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        crate::procfs::write(&path, value).map_err(|e| {
            Error::Other(format!(
                "linux.sysctl {key}={value}: {}",
                crate::error::chain(&e)
            ))
        })?;
    }
    Ok(())
}
