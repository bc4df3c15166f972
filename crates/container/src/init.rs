//! The container's init before execve. Runs in the child the runtime cloned, single-threaded,
//! and reports any failure to the runtime over the sync channel in words a user can act on.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Process, Spec};

use crate::error::{chain, Context, Error, Result};
use crate::sync::{Channel, Msg};
use crate::{console, hooks, process, rootfs};

/// Everything init needs; built by the parent before clone.
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub chan: Channel,
    /// The exec fifo, opened read-write by the parent (so a user-namespaced init needs no
    /// access to the state directory).
    pub fifo: std::fs::File,
    pub console: Option<OwnedFd>,
    /// Detached idmapped mounts, by spec mount index (see `idmap`).
    pub idmapped: Vec<Option<OwnedFd>>,
    pub new_userns: bool,
    pub new_cgroupns: bool,
    pub new_timens: bool,
    /// Namespaces to join by path (slow path), user first.
    pub joins: Vec<(CloneFlags, OwnedFd)>,
    /// Namespaces still to create after joining (slow path only; the fast path got them from clone).
    pub unshare_flags: CloneFlags,
    pub slow_path: bool,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub seccomp: Option<skiff_seccomp::Filter>,
    pub wants_runtime_hooks: bool,
    /// A rootless runtime writes our id maps after clone, through /proc/<pid>/*_map, which it
    /// may only open while we are dumpable: become non-dumpable once it has (at Go).
    pub dumpable_until_go: bool,
    /// Our cgroup, to join in its v1 hierarchies by ourselves once the runtime says it is
    /// ready (at Go): see `Cgroup::join_v1_self`. `None`: the runtime moves us.
    pub join_v1: Option<skiff_cgroups::Cgroup>,
}

/// The child's entry point: never returns.
pub fn run(mut a: InitArgs<'_>) -> ! {
    let r = if a.slow_path {
        slow_path(&mut a)
    } else {
        Ok(true)
    };
    let r = match r {
        Ok(true) => init(&mut a),
        Ok(false) => std::process::exit(0),
        Err(e) => Err(e),
    };
    match r {
        Ok(never) => match never {},
        Err(e) => {
            let _ = a.chan.send(&Msg::Error(chain(&e)));
            std::process::exit(1)
        }
    }
}

/// Joins namespaces by path, unshares the new ones and forks the real init into them.
/// Returns true in the new init, false in the intermediate process (which then exits).
fn slow_path(a: &mut InitArgs<'_>) -> Result<bool> {
    for (flag, fd) in &a.joins {
        nix::sched::setns(fd.as_fd(), *flag).ctx(|| format!("cannot join namespace {flag:?}"))?;
    }
    let new_user = a.unshare_flags.contains(CloneFlags::CLONE_NEWUSER);
    if new_user {
        unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "cannot create the user namespace".into())?;
    }
    // Ask the parent to write our id maps and put us into the cgroup, then wait.
    a.chan.send(&Msg::Place)?;
    match a.chan.recv()? {
        Some(Msg::Placed) => {}
        other => {
            return Err(Error::Other(format!(
                "runtime went away during setup ({other:?})"
            )))
        }
    }
    if new_user {
        become_root()?;
    }
    let rest = a.unshare_flags - CloneFlags::CLONE_NEWUSER;
    if !rest.is_empty() {
        unshare(rest).ctx(|| format!("cannot create namespaces {rest:?}"))?;
    }
    match skiff_sys::process::clone_fork(CloneFlags::empty())
        .ctx(|| "cannot fork the container init".into())?
    {
        skiff_sys::process::Forked::Child => Ok(true),
        skiff_sys::process::Forked::Parent(pid) => {
            a.chan.send(&Msg::Pid(pid.as_raw()))?;
            Ok(false)
        }
    }
}

/// The runtime's go: the hook state JSON, then one "name\tpath" line per cgroup hierarchy.
struct Go {
    state: String,
    cgroups: Vec<(String, PathBuf)>,
}

fn wait_go(a: &InitArgs<'_>) -> Result<Go> {
    match a.chan.recv()? {
        Some(Msg::Go(text)) => {
            let mut lines = text.split('\n');
            let state = lines.next().unwrap_or_default().to_string();
            let cgroups = lines
                .filter_map(|l| l.split_once('\t'))
                .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
                .collect();
            // The cgroup exists with its limits: join it before anything else runs.
            if let Some(cg) = &a.join_v1 {
                cg.join_v1_self()?;
            }
            Ok(Go { state, cgroups })
        }
        other => Err(Error::Other(format!(
            "runtime went away during setup ({other:?})"
        ))),
    }
}

fn become_root() -> Result<()> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .ctx(|| "cannot become gid 0 in the user namespace".into())?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .ctx(|| "cannot become uid 0 in the user namespace".into())
}

fn init(a: &mut InitArgs<'_>) -> Result<std::convert::Infallible> {
    // No one may ptrace or read our memory before execve (the runtime's secrets, fds).
    if !a.dumpable_until_go {
        nix::sys::prctl::set_dumpable(false).ctx(|| "cannot make init non-dumpable".into())?;
    }
    // Devices, directories and files the runtime creates get exactly the modes it asks for.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let spec = a.spec;
    let proc_ = spec.process().as_ref().expect("validated: process is set");
    // With a new user namespace nothing privileged works before the runtime wrote our id maps.
    // Otherwise we start mounting at once and wait for the runtime (cgroup placement) only
    // where it matters: before the cgroup namespace and cgroup mounts.
    let mut go: Option<Go> = None;
    if a.new_userns && !a.slow_path {
        go = Some(wait_go(a)?);
        become_root()?;
    }
    if a.new_timens {
        unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .ctx(|| "cannot create the time namespace".into())?;
        let mut offsets = String::new();
        for (clock, off) in spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().as_ref())
            .into_iter()
            .flatten()
        {
            offsets.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        if !offsets.is_empty() {
            std::fs::write("/proc/self/timens_offsets", offsets)
                .ctx(|| "cannot write linux.timeOffsets".into())?;
        }
        // unshare only moves our future children; enter the new namespace ourselves so the
        // container process is in it on every kernel (older ones do not switch at execve).
        let ns = std::fs::File::open("/proc/self/ns/time_for_children")
            .ctx(|| "cannot open the new time namespace".into())?;
        nix::sched::setns(
            ns.as_fd(),
            CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        )
        .ctx(|| "cannot enter the new time namespace".into())?;
    }
    if !a.no_new_keyring {
        match skiff_sys::process::join_session_keyring(&format!("_ses.{}", a.id)) {
            Ok(()) | Err(nix::errno::Errno::ENOSYS) | Err(nix::errno::Errno::EPERM) => {}
            Err(e) => return Err(e).ctx(|| "cannot create a session keyring".into()),
        }
    }
    let mut fifo = a
        .fifo
        .try_clone()
        .ctx(|| "cannot use the exec fifo".into())?;

    let ctx = rootfs::RootfsContext {
        spec,
        rootfs: a.rootfs,
        bundle: a.bundle,
        new_userns: a.new_userns,
        new_cgroupns: a.new_cgroupns,
        idmapped: &a.idmapped,
    };
    let mut placed = || -> Result<Vec<(String, PathBuf)>> {
        if go.is_none() {
            go = Some(wait_go(a)?);
            if a.dumpable_until_go {
                nix::sys::prctl::set_dumpable(false)
                    .ctx(|| "cannot make init non-dumpable".into())?;
            }
        }
        if a.new_cgroupns {
            unshare(CloneFlags::CLONE_NEWCGROUP)
                .ctx(|| "cannot create the cgroup namespace".into())?;
        }
        Ok(go.as_ref().map(|g| g.cgroups.clone()).unwrap_or_default())
    };
    let root = rootfs::prepare(&ctx, &mut placed)?;
    let state_json = go.take().map(|g| g.state).unwrap_or_default();
    // Like runc, create a missing working directory (inside the rootfs, never following a
    // symlink out of it).
    if matches!(
        crate::mounts::resolve(root.as_fd(), proc_.cwd(), false),
        Err(nix::errno::Errno::ENOENT)
    ) {
        crate::mounts::ensure(root.as_fd(), proc_.cwd(), crate::mounts::Kind::Dir, false)?;
    }
    if a.wants_runtime_hooks {
        a.chan.send(&Msg::Hooks)?;
        match a.chan.recv()? {
            Some(Msg::HooksDone) => {}
            other => {
                return Err(Error::Other(format!(
                    "runtime went away while running hooks ({other:?})"
                )))
            }
        }
    }
    hooks::run(
        "createContainer",
        spec.hooks()
            .as_ref()
            .and_then(|h| h.create_container().as_ref()),
        &state_json,
    )?;
    rootfs::switch_root(a.rootfs, &root, a.no_pivot, spec)?;
    drop(root);

    let console_slave =
        match (proc_.terminal().unwrap_or(false), a.console.take()) {
            (true, Some(sock)) => Some(console::setup_in_container(&sock, proc_)?),
            (true, None) => return Err(Error::Spec(
                "process.terminal is true but no console socket was given (use --console-socket)"
                    .into(),
            )),
            (false, _) => None,
        };
    // sysctls first: /proc/sys becomes read-only with the readonly paths.
    rootfs::sysctls(spec)?;
    rootfs::finish(spec)?;
    let linux = spec.linux().as_ref();
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).ctx(|| format!("cannot set hostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        skiff_sys::process::setdomainname(d).ctx(|| format!("cannot set domainname {d:?}"))?;
    }
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        let persona = match p.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0,
        };
        skiff_sys::process::set_personality(persona)
            .ctx(|| "cannot set linux.personality".into())?;
    }
    nix::unistd::setsid().ctx(|| "cannot start a new session".into())?;
    if let Some(slave) = console_slave {
        console::make_controlling(slave)?;
    }
    let seccomp = a.seccomp.take().map(|filter| Seccomp {
        filter,
        chan: &a.chan,
    });
    finalize(proc_, seccomp.as_ref(), a.preserve_fds, true, || {
        a.chan.send(&Msg::Ready)?;
        // Blocks until `start` writes to the fifo.
        let mut b = [0u8; 1];
        fifo.read_exact(&mut b)
            .ctx(|| "waiting for start failed".into())?;
        hooks::run(
            "startContainer",
            spec.hooks()
                .as_ref()
                .and_then(|h| h.start_container().as_ref()),
            &state_json,
        )
    })
}

/// The tail shared with `exec`: oom_score_adj, rlimits, LSM, user and capabilities,
/// no_new_privs, seccomp, cwd, executable lookup, closing fds; then `before_exec` (the
/// handshake) and execve.
pub fn finalize<F>(
    p: &Process,
    seccomp: Option<&Seccomp<'_>>,
    preserve_fds: u32,
    set_groups: bool,
    before_exec: F,
) -> Result<std::convert::Infallible>
where
    F: FnOnce() -> Result<()>,
{
    if let Some(adj) = p.oom_score_adj() {
        crate::procfs::write("/proc/self/oom_score_adj", &adj.to_string())?;
    }
    process::rlimits(p)?;
    process::lsm(p)?;
    let plan = process::cap_plan(p);
    let nnp = p.no_new_privileges().unwrap_or(false);
    let cwd = p.cwd();
    // Change directory while still root (the target may be root-only), again after the user switch.
    let early_cwd = nix::unistd::chdir(cwd.as_path());
    if nnp {
        nix::sys::prctl::set_no_new_privs().ctx(|| "cannot set no_new_privs".into())?;
    }
    if !nnp {
        // Without no_new_privs the filter must go in while we still have CAP_SYS_ADMIN.
        if let Some(sc) = seccomp {
            sc.install()?;
        }
    }
    process::user_and_caps(p, plan, set_groups)?;
    if early_cwd.is_err() {
        nix::unistd::chdir(cwd.as_path())
            .ctx(|| format!("cannot change directory to process.cwd {}", cwd.display()))?;
    }
    // CVE-2024-21626: the cwd must be inside the container, never a leaked host directory.
    let here = nix::unistd::getcwd().ctx(|| "cannot read the working directory".into())?;
    if !here.starts_with("/") || here.starts_with("/proc/self/fd") {
        return Err(Error::Other(format!(
            "process.cwd {} resolves outside the container",
            cwd.display()
        )));
    }
    let env_list = p.env().clone().unwrap_or_default();
    let args = p.args().clone().unwrap_or_default();
    let path = process::lookup(&args[0], &env_list).map_err(Error::Other)?;
    let env = process::environment(p);
    // The spec's umask, or 0022 as runc gives when there is none.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        p.user().umask().unwrap_or(0o022),
    ));
    skiff_sys::fs::cloexec_from(3 + preserve_fds).ctx(|| "cannot mark fds close-on-exec".into())?;
    for fd in 3..3 + preserve_fds {
        let _ = skiff_sys::fs::clear_cloexec(i32::try_from(fd).unwrap_or(i32::MAX));
    }
    skiff_sys::process::reset_signal_dispositions();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .ctx(|| "cannot reset the signal mask".into())?;
    // As late as possible: from here on only the handshake and execve run under the filter.
    if nnp {
        if let Some(sc) = seccomp {
            sc.install()?;
        }
    }
    before_exec()?;
    let cpath: CString = path;
    let err = process::execve(&cpath, &args, &env);
    // Past the start handshake the runtime may be gone: say it on the process's own stderr
    // too (an interpreter missing from the rootfs fails only here).
    eprintln!("skiff-runtime: unable to start container process: {err}");
    Err(Error::Other(err))
}

/// A compiled seccomp filter, and the channel its notify listener fd goes back on (the
/// runtime forwards it to `listenerPath`, which the container cannot see).
pub struct Seccomp<'a> {
    pub filter: skiff_seccomp::Filter,
    pub chan: &'a Channel,
}

impl Seccomp<'_> {
    fn install(&self) -> Result<()> {
        match self.filter.install()? {
            Some(fd) => self.chan.send_fd(&Msg::SeccompFd, fd.as_fd()),
            None => Ok(()),
        }
    }
}

/// In the runtime: hands a container's notify listener fd to `listenerPath` over SCM_RIGHTS
/// with the runtime-spec ContainerProcessState, as runc does.
pub fn forward_listener(
    spec: &oci_spec::runtime::LinuxSeccomp,
    state_json: &str,
    fd: OwnedFd,
) -> Result<()> {
    let path = spec.listener_path().as_ref().ok_or_else(|| {
        Error::Spec("linux.seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into())
    })?;
    let state: serde_json::Value = serde_json::from_str(state_json).unwrap_or_default();
    let msg = serde_json::json!({
        "ociVersion": crate::state::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": state.get("pid").cloned().unwrap_or_default(),
        "metadata": spec.listener_metadata().clone().unwrap_or_default(),
        "state": state,
    });
    let sock = std::os::unix::net::UnixStream::connect(path)
        .ctx(|| format!("cannot connect to the seccomp listener {}", path.display()))?;
    skiff_sys::socket::send_fd(sock.as_fd(), msg.to_string().as_bytes(), fd.as_fd())
        .ctx(|| format!("cannot send the seccomp listener fd to {}", path.display()))
}
