//! File-system syscalls that nix does not wrap: openat2 and close_range.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `RESOLVE_*` flags for [`openat2`].
pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)`: open `path` relative to `dirfd` with `resolve` restrictions. With
/// `RESOLVE_IN_ROOT`, `dirfd` acts as the root for absolute paths, `..` and symlinks, so a
/// path can never escape it (the basis of safe mounting into a container rootfs).
pub fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &str,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> nix::Result<OwnedFd> {
    let cpath = CString::new(path).map_err(|_| Errno::EINVAL)?;
    let how = OpenHow {
        flags: u64::from((flags | libc::O_CLOEXEC).cast_unsigned()),
        mode: u64::from(mode),
        resolve,
    };
    // With RESOLVE_IN_ROOT/BENEATH the kernel answers EAGAIN when a rename or mount anywhere
    // raced with a `..` step of the lookup; the lookup is then simply tried again.
    let mut tries = 0;
    let ret = loop {
        // SAFETY: `cpath` is NUL-terminated and `how` is a properly laid out `struct open_how`
        // whose size we pass; both outlive the call. The returned fd is new and owned by us.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                cpath.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            break ret;
        }
        let e = Errno::last();
        tries += 1;
        if e != Errno::EAGAIN || tries >= 128 {
            return Err(e);
        }
    };
    let fd = i32::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks every fd from `first` upwards close-on-exec (`close_range` with
/// `CLOSE_RANGE_CLOEXEC`), so nothing of the runtime leaks into the container (CVE-2024-21626).
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range only changes fd flags of this process; no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    Errno::result(ret).map(drop)
}

/// Clears close-on-exec on `fd` (for fds handed to the container with `--preserve-fds`).
pub fn clear_cloexec(fd: i32) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map(drop)
}

/// `MOUNT_ATTR_*` flags for [`mount_setattr`].
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)` on the mount `fd` refers to, and with `recursive` on every mount below
/// it: one call instead of a remount per mount.
pub fn mount_setattr(fd: BorrowedFd<'_>, recursive: bool, set: u64, clear: u64) -> nix::Result<()> {
    setattr(fd, recursive, set, clear, 0)
}

/// Makes the detached mount `fd` (from `open_tree(OPEN_TREE_CLONE)`) an idmapped mount with
/// the id mappings of the user namespace `userns`; with `recursive`, every mount below too.
pub fn mount_setattr_idmap(
    fd: BorrowedFd<'_>,
    recursive: bool,
    userns: BorrowedFd<'_>,
) -> nix::Result<()> {
    let ns = u64::try_from(userns.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    setattr(fd, recursive, MOUNT_ATTR_IDMAP, 0, ns)
}

fn setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clear: u64,
    userns_fd: u64,
) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let empty = c"";
    // SAFETY: the path is an empty NUL-terminated string (AT_EMPTY_PATH: operate on the fd),
    // `attr` is a valid `struct mount_attr` whose size we pass; both outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}
