//! CVE-2019-5736: a container must never reach the runtime's binary on the host.
//!
//! The container's init and every `exec` child are forks of the runtime, so until they call
//! `execve` their `/proc/<pid>/exe` is the runtime binary, and an entrypoint of
//! `#!/proc/self/exe` makes the kernel run that binary inside the container. A process that
//! gets hold of such an exe link could reopen it for writing once the runtime exits and
//! replace the host's runtime.
//!
//! [`ensure_sealed`] makes the runtime re-execute itself from a copy that cannot be written:
//! first a private, detached, read-only overlayfs whose lower layer is the binary's own
//! directory (no data is copied; the mount is not attached anywhere and disappears with the
//! last process using it; runc 1.2 does the same), or else a sealed memfd holding a copy of
//! the binary (for users who cannot mount overlayfs, such as rootless ones).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

const SELF_EXE: &str = "/proc/self/exe";
/// Set for the re-executed runtime only to stop a loop if sealing could not be verified.
const REEXEC_MARK: &str = "_SKIFF_EXE_SEALED";
const MEMFD_NAME: &str = "skiff-runtime";

/// Why the runtime binary could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error("cannot read the runtime's own binary {SELF_EXE}")]
    SelfExe(#[source] std::io::Error),
    #[error("cannot make a sealed copy of the runtime binary in a memfd")]
    Memfd(#[source] std::io::Error),
    #[error("cannot re-execute the runtime from its sealed copy")]
    Exec(#[source] nix::Error),
    #[error("the runtime was re-executed from a sealed copy but {SELF_EXE} is still not sealed")]
    NotSealed,
}

/// How the running binary is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// Runs from a read-only mount: our detached overlayfs, or a binary installed on a
    /// read-only filesystem (then no copy is needed at all).
    ReadOnlyMount,
    /// Runs from a memfd with write, grow and shrink seals.
    SealedMemfd,
    /// Runs straight from a writable file.
    None,
}

/// Tells how the running binary is protected.
pub fn sealing() -> Sealing {
    if let Ok(target) = std::fs::read_link(SELF_EXE) {
        if target.as_os_str().as_bytes().starts_with(b"/memfd:") {
            return match File::open(SELF_EXE) {
                Ok(f) if is_sealed_memfd(&f) => Sealing::SealedMemfd,
                _ => Sealing::None,
            };
        }
    }
    match nix::sys::statfs::statfs(SELF_EXE) {
        Ok(st) if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) => {
            Sealing::ReadOnlyMount
        }
        _ => Sealing::None,
    }
}

fn is_sealed_memfd(f: &File) -> bool {
    let need = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK;
    nix::fcntl::fcntl(f.as_raw_fd(), FcntlArg::F_GET_SEALS)
        .map(|s| SealFlag::from_bits_truncate(s).contains(need))
        .unwrap_or(false)
}

/// Returns when the running binary is sealed; otherwise re-executes it (same arguments and
/// environment) from a sealed copy and does not return. `scratch` is an existing directory
/// the runtime owns (its state root): overlayfs needs a second lower layer, which stays
/// below the binary's directory and is never written.
///
/// Call it while the process has one thread: it edits the environment.
pub fn ensure_sealed(scratch: &Path) -> Result<(), ExeError> {
    let reexecuted = std::env::var_os(REEXEC_MARK).is_some();
    if reexecuted {
        // Not for hooks or anything else this process starts.
        std::env::remove_var(REEXEC_MARK);
    }
    if sealing() != Sealing::None {
        return Ok(());
    }
    if reexecuted {
        return Err(ExeError::NotSealed);
    }
    let fd = match overlay_copy(scratch) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!(
                "read-only overlayfs for the runtime binary failed ({e}); using a sealed memfd"
            );
            memfd_copy()?
        }
    };
    let args: Vec<CString> = std::env::args_os().map(cstring).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != REEXEC_MARK)
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstring(kv)
        })
        .collect();
    env.push(cstring(OsString::from(format!("{REEXEC_MARK}=1"))));
    let err = nix::unistd::fexecve(fd.as_raw_fd(), &args, &env).unwrap_err();
    Err(ExeError::Exec(err))
}

fn cstring(s: OsString) -> CString {
    // Arguments and environment strings from the kernel never hold a NUL.
    CString::new(s.into_vec()).unwrap_or_default()
}

/// Escapes a path for overlayfs's `lowerdir` list.
fn escape_lowerdir(p: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(p.len());
    for &b in p.as_bytes() {
        if b == b'\\' || b == b':' {
            out.push(b'\\');
        }
        out.push(b);
    }
    OsString::from_vec(out)
}

/// Opens the runtime binary through a detached read-only overlayfs mount.
fn overlay_copy(scratch: &Path) -> std::io::Result<OwnedFd> {
    let real: PathBuf = std::fs::read_link(SELF_EXE)?;
    if real.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(std::io::Error::other("the runtime binary was deleted"));
    }
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
        return Err(std::io::Error::other("the runtime binary has no directory"));
    };
    let ctx = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let mut lower = escape_lowerdir(dir.as_os_str());
    lower.push(":");
    lower.push(escape_lowerdir(scratch.as_os_str()));
    rustix::mount::fsconfig_set_string(&ctx, "lowerdir", lower.as_os_str())?;
    // Avoids the kernel's xino warnings when the two layers are on different filesystems.
    let _ = rustix::mount::fsconfig_set_string(&ctx, "xino", "off");
    rustix::mount::fsconfig_create(&ctx)?;
    let mnt = rustix::mount::fsmount(
        &ctx,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )?;
    Ok(rustix::fs::openat(
        &mnt,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Copies the runtime binary into a memfd and seals it against every change.
fn memfd_copy() -> Result<OwnedFd, ExeError> {
    let mut src = File::open(SELF_EXE).map_err(ExeError::SelfExe)?;
    let name = CString::new(MEMFD_NAME).unwrap_or_default();
    let fd = memfd_create(
        &name,
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| ExeError::Memfd(e.into()))?;
    let mut dst = File::from(fd);
    std::io::copy(&mut src, &mut dst).map_err(ExeError::Memfd)?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    nix::fcntl::fcntl(dst.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))
        .map_err(|e| ExeError::Memfd(e.into()))?;
    Ok(OwnedFd::from(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_escaping() {
        assert_eq!(
            escape_lowerdir(OsStr::new(r"/a:b\c")),
            OsString::from(r"/a\:b\\c")
        );
    }

    #[test]
    fn test_binary_is_not_sealed() {
        // cargo runs tests from a plain file in target/.
        assert_eq!(sealing(), Sealing::None);
    }

    #[test]
    fn memfd_copy_is_sealed() {
        let fd = memfd_copy().unwrap();
        let f = File::from(fd);
        assert!(is_sealed_memfd(&f));
        use std::io::Write;
        assert!((&f).write(b"x").is_err(), "a sealed memfd took a write");
    }
}
