//! seccomp(2): installing a classic BPF filter, and the few raw calls around it.
//!
//! The compiler lives in `skiff-seccomp`; this module only hands a finished program to the kernel.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// One classic BPF instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const _: () =
    assert!(std::mem::size_of::<SockFilter>() == std::mem::size_of::<libc::sock_filter>());
const _: () =
    assert!(std::mem::align_of::<SockFilter>() == std::mem::align_of::<libc::sock_filter>());

/// The kernel's limit on the length of one classic BPF program (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// `SECCOMP_FILTER_FLAG_*` values of seccomp(2).
pub const FILTER_FLAG_TSYNC: u32 = 1 << 0;
pub const FILTER_FLAG_LOG: u32 = 1 << 1;
pub const FILTER_FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub const FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;
pub const FILTER_FLAG_TSYNC_ESRCH: u32 = 1 << 4;
pub const FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// What a successful `SECCOMP_SET_MODE_FILTER` produced.
#[derive(Debug)]
pub enum Installed {
    /// The filter is in place.
    Filter,
    /// The filter is in place and this is its user-notification listener
    /// (`SECCOMP_FILTER_FLAG_NEW_LISTENER` was set).
    Listener(OwnedFd),
    /// Nothing was installed: with `SECCOMP_FILTER_FLAG_TSYNC` (without `TSYNC_ESRCH`), this thread
    /// of the process could not be synchronized to the new filter.
    TsyncFailed(libc::pid_t),
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)` on the calling thread.
///
/// The caller must have set no_new_privs or hold CAP_SYS_ADMIN (the kernel answers `EACCES`).
pub fn set_mode_filter(flags: u32, program: &[SockFilter]) -> nix::Result<Installed> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer.
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `prog` points at `len` valid, initialized `SockFilter`s, which have the layout of
    // `struct sock_filter` (checked above at compile time); `program` and `prog` outlive the call
    // and the kernel copies the program before returning. The flags are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    if flags & FILTER_FLAG_NEW_LISTENER != 0 {
        let fd = RawFd::try_from(ret).map_err(|_| Errno::EBADF)?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns a new file descriptor
        // that nothing else in this process owns yet.
        return Ok(Installed::Listener(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ret > 0 {
        // TSYNC without TSYNC_ESRCH: the id of the thread that could not be synchronized.
        return Ok(Installed::TsyncFailed(
            libc::pid_t::try_from(ret).unwrap_or(libc::pid_t::MAX),
        ));
    }
    Ok(Installed::Filter)
}

/// `seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &action)`: whether the running kernel knows the return
/// action `action` (a `SECCOMP_RET_*` value without data).
pub fn action_available(action: u32) -> nix::Result<bool> {
    // SAFETY: the kernel reads one u32 through the pointer, which points at a live local.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL as libc::c_ulong,
            0 as libc::c_ulong,
            &action as *const u32,
        )
    };
    if ret == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::EOPNOTSUPP => Ok(false),
        e => Err(e),
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)` on the calling thread.
pub fn set_no_new_privs() -> nix::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes only integer arguments.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Errno::result(ret).map(drop)
}

/// Syscalls that a seccomp profile is expected to refuse, made with harmless arguments so that a
/// test or an in-container probe can see the verdict: `Ok` means the kernel ran the syscall (it may
/// still have failed for another reason than seccomp), `Err` carries the errno.
pub mod probe {
    use nix::errno::Errno;

    fn result(ret: libc::c_long) -> nix::Result<libc::c_long> {
        Errno::result(ret)
    }

    /// `keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)`: read-only, no pointers.
    pub fn keyctl_get_session_keyring() -> nix::Result<libc::c_long> {
        const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
        const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
        // SAFETY: all arguments are integers; the kernel dereferences no user memory.
        result(unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_GET_KEYRING_ID,
                KEY_SPEC_SESSION_KEYRING,
                0 as libc::c_long,
            )
        })
    }

    /// `bpf(BPF_PROG_LOAD, NULL, 0)`: denied by seccomp (`EPERM`) or refused by the kernel for the
    /// empty attribute (`EINVAL`/`EFAULT`) without side effects.
    pub fn bpf_null() -> nix::Result<libc::c_long> {
        const BPF_PROG_LOAD: libc::c_long = 5;
        // SAFETY: a null attribute pointer with size 0 is never dereferenced by the kernel.
        result(unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                std::ptr::null::<libc::c_void>(),
                0 as libc::c_long,
            )
        })
    }
}
