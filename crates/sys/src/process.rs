//! Process creation and signalling that nix does not wrap.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// What `clone_fork` returned in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the new process.
    Child,
    /// We are the caller; the new process has this pid (in the caller's pid namespace).
    Parent(Pid),
}

/// `clone(2)` with fork semantics: the child continues on a copy of the caller's stack, exactly
/// like `fork()`, but new namespaces can be requested at the same time (`CLONE_NEWUSER`,
/// `CLONE_NEWPID`, ...). SIGCHLD is delivered to the parent on exit.
///
/// Like `fork()`, this is only sound in a single-threaded process, or if the child restricts
/// itself to async-signal-safe work. The runtime calls it before any thread exists.
pub fn clone_fork(flags: CloneFlags) -> nix::Result<Forked> {
    let flags = libc::c_ulong::from((flags.bits() | libc::SIGCHLD).cast_unsigned());
    // SAFETY: the raw clone syscall with a NULL stack duplicates the calling thread like
    // fork(2); no pointers are passed (parent_tid, child_tid and tls are NULL/0 and unused
    // because no CLONE_*TID / CLONE_SETTLS flag is set). Callers are single-threaded.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(
            i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?,
        ))),
    }
}

/// `struct clone_args` of `clone3(2)`, up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// [`clone_fork`] through `clone3(2)` with `CLONE_INTO_CGROUP`: the child is born in the
/// cgroup v2 directory `cgroup` (an fd opened on it) instead of the caller's, so nobody has
/// to migrate it afterwards (a migration waits for an RCU grace period; being born there
/// does not). Fails with `ENOSYS`/`E2BIG`/`EINVAL` on kernels without it (before 5.7) and
/// with the cgroup's own errors (`EBUSY` for a cgroup with controllers enabled for its
/// children, `EOPNOTSUPP` for a domain-invalid one); callers fall back to `clone_fork`.
///
/// The same single-threaded rule as [`clone_fork`] applies.
pub fn clone_into_cgroup(flags: CloneFlags, cgroup: BorrowedFd<'_>) -> nix::Result<Forked> {
    let fd = u64::try_from(cgroup.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let args = CloneArgs {
        flags: u64::from(flags.bits().cast_unsigned()) | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: fd,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 reads `size_of::<CloneArgs>()` bytes from a valid, initialised struct
    // that lives across the call. No stack is given and CLONE_VM is not set (the caller's
    // flags are namespace flags), so the child continues on a copy of the caller's stack and
    // address space, exactly like fork(2); no tid/pidfd pointers are set, so the kernel
    // writes nothing into our memory. Callers are single-threaded (see clone_fork).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(&args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(
            i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?,
        ))),
    }
}

/// `pidfd_open(2)`: a file descriptor that refers to `pid` and cannot be confused with a later
/// process that reuses the number.
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0 as libc::c_uint) };
    if ret < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)` without siginfo.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> nix::Result<()> {
    // SAFETY: the fd is a valid pidfd borrowed for the call; siginfo is NULL, which the
    // kernel accepts; flags are 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// `setdomainname(2)`.
pub fn setdomainname(name: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe the bytes of `name`, valid for the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}

/// `setrlimit(2)` by raw resource number (the OCI spec names every RLIMIT_* the kernel has).
pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> nix::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call; the resource number is
    // checked by the kernel (EINVAL for unknown ones).
    let ret = unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, &lim) };
    Errno::result(ret).map(drop)
}

/// `personality(2)`.
pub fn set_personality(persona: u64) -> nix::Result<()> {
    // SAFETY: personality takes an integer and returns the previous persona or -1.
    let ret = unsafe { libc::personality(persona as libc::c_ulong) };
    Errno::result(ret).map(drop)
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`: give the container its own session keyring so
/// it cannot read the host's.
pub fn join_session_keyring(name: &str) -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let c = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the name is a valid NUL-terminated string for the duration of the call.
    let ret = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) };
    Errno::result(ret).map(drop)
}

/// The kernel's `struct sigaction` (x86_64 and arm64 share this layout), for signals 32 and
/// 33, which glibc's wrappers refuse to touch.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Resets the disposition of every catchable signal to `SIG_DFL`. Ignored signals survive
/// execve (Rust programs ignore SIGPIPE, shells ignore SIGQUIT for background jobs), and a
/// container process must start from the defaults (`yes | head` needs SIGPIPE).
pub fn reset_signal_dispositions() {
    let dfl = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid kernel sigaction installing SIG_DFL (no handler
        // code, no restorer needed), no old-action pointer, and the kernel's 8-byte sigset
        // size; `dfl` outlives the call. Invalid signal numbers just return EINVAL.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
}

/// Gives the heap's free memory back to the kernel (glibc's `malloc_trim(0)`).
///
/// A long-lived process that did its big allocations once at start (skiff-monitor parsing a
/// spec and creating a container) keeps those pages dirty otherwise. A no-op where the C
/// library is not glibc.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes a plain integer and only walks the allocator's own arenas
    // under their locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns the main thread's stack pages below the current frame (less a 16 KiB margin) to
/// the kernel (`madvise(MADV_DONTNEED)`): they read as zeros when touched again.
///
/// For a long-lived process whose deep call chains ran once at start (skiff-monitor creating
/// a container). Call it from a shallow frame of the main thread; a no-op elsewhere.
pub fn release_unused_stack() {
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some((lo, hi)) = maps
        .lines()
        .filter(|l| l.ends_with("[stack]"))
        .filter_map(|l| {
            let (lo, hi) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                usize::from_str_radix(lo, 16).ok()?,
                usize::from_str_radix(hi, 16).ok()?,
            ))
        })
        .next()
    else {
        return;
    };
    if sp <= lo || sp >= hi {
        return; // not on the main thread's stack
    }
    let end = sp.saturating_sub(16 * 1024) & !4095;
    if end <= lo {
        return;
    }
    // SAFETY: [lo, end) is the part of this thread's own stack mapping that lies more than
    // 16 KiB below the current frame; on a downward-growing stack nothing live is there
    // (every frame of ours is above `sp`, and this process handles signals through signalfd,
    // not handlers that could be running below it). MADV_DONTNEED on private anonymous memory
    // only drops the pages; the next touch maps zero pages. No Rust reference points there.
    let _ = unsafe { libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED) };
}

/// Makes the child of `cmd` start with no blocked signals.
///
/// A parent that blocks signals to read them from a signalfd (skiff-init) would otherwise
/// pass the block on: the command could then not be stopped with SIGTERM.
pub fn spawn_unblocked(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let unblock = || -> std::io::Result<()> {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; pthread_sigmask reads that
        // initialised set and writes nothing back (NULL old set). Both are async-signal-safe.
        let rc = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    };
    // SAFETY: the hook runs in the forked child before exec; it allocates nothing, takes no
    // lock and only makes the two async-signal-safe calls above.
    unsafe {
        cmd.pre_exec(unblock);
    }
}
