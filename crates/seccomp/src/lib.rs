//! OCI seccomp profiles compiled to classic BPF, and installed with seccomp(2).
//!
//! [`compile`] turns a `linux.seccomp` object into a [`Filter`] (no libseccomp: the compiler is
//! in this crate); [`Filter::install`] loads it on the calling thread right before `execve`.
//! [`docker_default`] is Docker's default profile, shipped as JSON in this crate.
#![forbid(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use skiff_sys::seccomp as sys;
pub use skiff_sys::seccomp::SockFilter;

mod bpf;
mod compile;
mod docker;
mod syscalls;

#[cfg(test)]
mod interp;
#[cfg(test)]
mod tests;

pub use compile::{compile, syscall_number};
pub use docker::{docker_default, docker_default_for, DOCKER_DEFAULT_CAPS};

/// What `features` can report: the seccomp actions this crate compiles.
pub const SUPPORTED_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// The argument operators this crate compiles.
pub const SUPPORTED_OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architectures a filter compiled on this machine handles (others listed are skipped).
pub const SUPPORTED_ARCHES: &[&str] = &["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"];

/// The filter flags this crate passes to the kernel.
pub const SUPPORTED_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// Errors of compiling or installing a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("seccomp rule for syscall {syscall:?}: argument index {index} is out of range (syscalls have arguments 0 to 5)")]
    ArgIndexOutOfRange { syscall: String, index: usize },
    #[error("seccomp rule {rule:?}: SCMP_ACT_ERRNO errnoRet {errno} is larger than the largest errno (4095)")]
    ErrnoOutOfRange { rule: String, errno: u32 },
    #[error(
        "seccomp rule {rule:?}: SCMP_ACT_TRACE errnoRet {msg} does not fit in the 16-bit message"
    )]
    TraceMessageOutOfRange { rule: String, msg: u32 },
    #[error("SCMP_ACT_NOTIFY cannot be the seccomp defaultAction (every syscall, including the runtime's own, would wait for the agent)")]
    NotifyAsDefault,
    #[error("seccomp profile has more than 2^32 syscall rules")]
    TooManyRules,
    #[error(
        "seccomp filter has {instructions} BPF instructions, more than the kernel's limit of 4096"
    )]
    ProgramTooLong { instructions: usize },
    #[error("seccomp filters can only be compiled for x86_64, not for this machine's {0}")]
    UnsupportedNativeArch(&'static str),
    #[error("internal error in the seccomp compiler: {0}")]
    Internal(&'static str),
    #[error("the kernel refused to load the seccomp filter: the process has neither no_new_privs set nor CAP_SYS_ADMIN")]
    NoPrivilege(#[source] io::Error),
    #[error("the kernel refused the seccomp filter flags {flags} (unsupported by this kernel?)")]
    FlagsRefused {
        flags: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "thread {tid} could not be synchronized to the seccomp filter (SECCOMP_FILTER_FLAG_TSYNC)"
    )]
    TsyncFailed { tid: libc::pid_t },
    #[error(
        "a thread could not be synchronized to the seccomp filter (SECCOMP_FILTER_FLAG_TSYNC)"
    )]
    TsyncFailedUnknownThread(#[source] io::Error),
    #[error("loading the seccomp filter ({instructions} instructions, flags {flags}) failed")]
    Load {
        instructions: usize,
        flags: String,
        #[source]
        source: io::Error,
    },
    #[error("the kernel returned no listener fd for a seccomp filter with SCMP_ACT_NOTIFY rules")]
    NoListener,
}

/// A compiled seccomp filter, ready to install. Cheap to clone (the program is shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    program: Arc<[SockFilter]>,
    flags: u32,
    needs_listener: bool,
}

impl Filter {
    /// True if a rule uses `SCMP_ACT_NOTIFY`: [`install`](Self::install) then returns the
    /// listener fd, which the runtime hands to the seccomp agent (`listenerPath`).
    pub fn needs_listener(&self) -> bool {
        self.needs_listener
    }

    /// The BPF program.
    pub fn program(&self) -> &[SockFilter] {
        &self.program
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits passed to seccomp(2).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Installs the filter on the calling thread (on all threads with `SECCOMP_FILTER_FLAG_TSYNC`).
    ///
    /// Meant for the container init right before `execve`, after no_new_privs when the spec sets
    /// it (otherwise the caller needs CAP_SYS_ADMIN). Returns the notify listener fd when
    /// [`needs_listener`](Self::needs_listener). The fd is close-on-exec.
    pub fn install(&self) -> Result<Option<OwnedFd>, Error> {
        let flags = self.flags;
        let installed = sys::set_mode_filter(flags, &self.program)
            .map_err(io::Error::from)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EACCES) => Error::NoPrivilege(e),
                Some(libc::ESRCH) if flags & sys::FILTER_FLAG_TSYNC_ESRCH != 0 => {
                    Error::TsyncFailedUnknownThread(e)
                }
                Some(libc::EINVAL) if flags & !sys::FILTER_FLAG_NEW_LISTENER != 0 => {
                    Error::FlagsRefused {
                        flags: compile::flag_names(flags),
                        source: e,
                    }
                }
                _ => Error::Load {
                    instructions: self.program.len(),
                    flags: compile::flag_names(flags),
                    source: e,
                },
            })?;
        match installed {
            sys::Installed::Filter if self.needs_listener => Err(Error::NoListener),
            sys::Installed::Filter => Ok(None),
            sys::Installed::Listener(fd) => Ok(Some(fd)),
            sys::Installed::TsyncFailed(tid) => Err(Error::TsyncFailed { tid }),
        }
    }
}
