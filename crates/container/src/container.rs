//! The lifecycle operations behind runc's commands: create, start, state, kill, delete, exec,
//! pause, resume, ps, update, stats, list.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxIdMapping;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};
use skiff_cgroups::{Cgroup, CgroupRoot};
use skiff_sys::process::{clone_fork, Forked};

use crate::error::{chain, Context, Error, Result};
use crate::init::{self, InitArgs};
use crate::state::{self, HookState, Record, State, Status, CONFIG_FILE, FIFO_FILE, OCI_VERSION};
use crate::sync::{self, Msg};
use crate::{console, hooks, spec};

/// The runtime: a state directory holding one subdirectory per container.
pub struct Runtime {
    pub root: PathBuf,
}

/// Options of `create` (and of the create half of `run`).
#[derive(Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// A connected socket to send the console to (used by `run` in the foreground).
    pub console_fd: Option<OwnedFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// Options of `exec`.
pub struct ExecOptions {
    pub process: Process,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub console_fd: Option<OwnedFd>,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

fn ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Undoes a half-made container unless disarmed.
struct Cleanup<'a> {
    dir: &'a Path,
    cgroup: Option<&'a Cgroup>,
    pids: Vec<Pid>,
    pid_file: Option<&'a Path>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
            let _ = waitpid(*pid, None);
        }
        if let Some(cg) = self.cgroup {
            if let Err(e) = cg.destroy() {
                tracing::warn!("cleanup: {}", chain(&e));
            }
        }
        if let Some(p) = self.pid_file {
            let _ = fs::remove_file(p);
        }
        let _ = fs::remove_dir_all(self.dir);
    }
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime { root: root.into() }
    }

    fn cgroup_of(&self, rec: &Record) -> Result<Cgroup> {
        if rec.no_cgroup {
            return Err(Error::Other(format!(
                "container {} is rootless and has no cgroup (the user may not create one)",
                rec.id
            )));
        }
        if let Some(cg) = &rec.cgroup {
            return Ok(cg.clone());
        }
        let root = CgroupRoot::detect()?;
        Ok(Cgroup::new(&root, rec.cgroups_path.as_deref(), &rec.id)?)
    }

    fn saved_spec(&self, id: &str) -> Result<Spec> {
        let path = Record::dir(&self.root, id).join(CONFIG_FILE);
        let raw = fs::read(&path).ctx(|| format!("cannot read {}", path.display()))?;
        spec::parse(&raw, &path)
    }

    /// The container's status as runc reports it.
    pub fn status(&self, rec: &Record) -> Status {
        if !rec.init_alive() {
            return Status::Stopped;
        }
        if Record::dir(&self.root, &rec.id).join(FIFO_FILE).exists() {
            return Status::Created;
        }
        match self.cgroup_of(rec).and_then(|cg| Ok(cg.is_frozen()?)) {
            Ok(true) => Status::Paused,
            _ => Status::Running,
        }
    }

    pub fn state(&self, id: &str) -> Result<State> {
        let rec = Record::load(&self.root, id)?;
        Ok(self.state_of(&rec))
    }

    fn state_of(&self, rec: &Record) -> State {
        let status = self.status(rec);
        State {
            oci_version: OCI_VERSION.into(),
            id: rec.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                rec.pid
            },
            status,
            bundle: rec.bundle.clone(),
            rootfs: rec.rootfs.clone(),
            created: rec.created.clone(),
            owner: rec.owner.clone(),
            annotations: rec.annotations.clone(),
        }
    }

    pub fn list(&self) -> Result<Vec<State>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).ctx(|| format!("cannot list {}", self.root.display())),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(rec) = Record::load(&self.root, &name) {
                out.push(self.state_of(&rec));
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Creates the container: its init waits in `created` until `start`.
    pub fn create(&self, mut o: CreateOptions) -> Result<Record> {
        state::validate_id(&o.id)?;
        let bundle = spec::load(&o.bundle)?;
        let spec = &bundle.spec;
        let linux = spec.linux().as_ref().expect("validated: linux is set");
        fs::create_dir_all(&self.root)
            .ctx(|| format!("cannot create state root {}", self.root.display()))?;
        let cgroups_path = linux
            .cgroups_path()
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        // Declared before the guard that borrows it; made after clone (in parallel with the
        // init's first mounts).
        #[allow(clippy::needless_late_init)] // must outlive `guard`, which borrows it
        let cg: Cgroup;
        let dir = Record::dir(&self.root, &o.id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(o.id))
            }
            Err(e) => return Err(e).ctx(|| format!("cannot create {}", dir.display())),
        }
        let mut guard = Cleanup {
            dir: &dir,
            cgroup: None,
            pids: Vec::new(),
            pid_file: None,
            armed: true,
        };
        fs::write(dir.join(CONFIG_FILE), &bundle.raw)
            .ctx(|| format!("cannot save config in {}", dir.display()))?;
        let fifo_path = dir.join(FIFO_FILE);
        nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
            .ctx(|| format!("cannot create {}", fifo_path.display()))?;

        let seccomp = match linux.seccomp() {
            Some(s) => Some(compile_seccomp(s)?),
            None => None,
        };

        // Namespaces: new ones come from clone (fast path) or from unshare after joining the
        // ones given by path (slow path).
        let mut new_flags = CloneFlags::empty();
        let mut joins = Vec::new();
        let (mut new_userns, mut new_cgroupns, mut new_timens) = (false, false, false);
        for ns in linux.namespaces().iter().flatten() {
            match ns.path() {
                Some(p) => {
                    let f: OwnedFd = fs::File::open(p)
                        .ctx(|| format!("cannot open {} namespace {}", ns.typ(), p.display()))?
                        .into();
                    joins.push((ns_flag(ns.typ()), f));
                }
                None => match ns.typ() {
                    LinuxNamespaceType::Cgroup => new_cgroupns = true,
                    LinuxNamespaceType::Time => new_timens = true,
                    t => {
                        if t == LinuxNamespaceType::User {
                            new_userns = true;
                        }
                        new_flags |= ns_flag(t);
                    }
                },
            }
        }
        if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) && !new_timens {
            return Err(Error::Spec(
                "linux.timeOffsets needs a new time namespace".into(),
            ));
        }
        // Join the user namespace first: the others may be owned by it.
        joins.sort_by_key(|(f, _)| !f.contains(CloneFlags::CLONE_NEWUSER));
        let slow_path = !joins.is_empty();

        let console = match (&o.console_socket, o.console_fd.take()) {
            (Some(p), _) => Some(console::connect(p)?),
            (None, fd) => fd,
        };
        let (parent_chan, child_chan) = sync::pair()?;
        let process = spec.process().as_ref().expect("validated");
        let hooks = spec.hooks().as_ref();
        let wants_runtime_hooks = hooks.is_some_and(|h| {
            h.prestart().as_ref().is_some_and(|v| !v.is_empty())
                || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
        });
        if process.terminal().unwrap_or(false) && console.is_none() {
            return Err(Error::Spec(
                "process.terminal is true but no --console-socket was given".into(),
            ));
        }
        let idmapped = crate::idmap::prepare(spec, &bundle.dir)?;
        let croot = CgroupRoot::detect()?;
        cg = Cgroup::new(&croot, cgroups_path.as_deref(), &o.id)?;
        let rootless = !nix::unistd::geteuid().is_root();
        let self_join = !slow_path && !rootless && !new_userns;
        let args = InitArgs {
            join_v1: (self_join && cg.has_v1()).then(|| cg.clone()),
            idmapped,
            id: &o.id,
            spec,
            bundle: &bundle.dir,
            rootfs: &bundle.rootfs,
            chan: child_chan,
            fifo: fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&fifo_path)
                .ctx(|| format!("cannot open {}", fifo_path.display()))?,
            console,
            new_userns,
            new_cgroupns,
            new_timens,
            joins,
            unshare_flags: if slow_path {
                new_flags
            } else {
                CloneFlags::empty()
            },
            slow_path,
            dumpable_until_go: new_userns && !slow_path && !nix::unistd::geteuid().is_root(),
            no_pivot: o.no_pivot,
            no_new_keyring: o.no_new_keyring,
            preserve_fds: o.preserve_fds,
            seccomp,
            wants_runtime_hooks,
        };
        let clone_flags = if slow_path {
            CloneFlags::empty()
        } else {
            new_flags
        };
        // A cgroup migration that names a pid waits for an RCU grace period (5-15 ms on a
        // small VM). So, when we are root and the init is cloned straight into its namespaces:
        // the cgroup is made first, the init is born in its unified-hierarchy cgroup
        // (CLONE_INTO_CGROUP) and moves itself into the v1 hierarchies once told the cgroup is
        // ready (a thread moving itself takes no global lock). Otherwise (rootless, a new user
        // namespace, joined namespaces) the cgroup is made after the clone, in parallel with
        // the init's first mounts, and the init is moved into it.
        let born_in = match cg.unified_dir().filter(|_| self_join) {
            Some(path) => {
                guard.cgroup = Some(&cg);
                cg.create()?;
                Some(open_dir(path).ctx(|| format!("cannot open cgroup {}", path.display()))?)
            }
            None if self_join => {
                guard.cgroup = Some(&cg);
                cg.create()?;
                None
            }
            None => None,
        };
        let (forked, placed) = clone_in(born_in.as_ref(), clone_flags);
        let child =
            match forked.ctx(|| format!("cannot clone the container init with {clone_flags:?}"))? {
                Forked::Child => {
                    drop(parent_chan);
                    init::run(args)
                }
                Forked::Parent(pid) => pid,
            };
        drop(args);
        guard.pids.push(child);

        let fail = |msg: Option<Msg>| -> Error {
            match msg {
                Some(Msg::Error(m)) => Error::Init(m),
                Some(other) => Error::Other(format!(
                    "unexpected message from the container init: {other:?}"
                )),
                None => Error::Init("the container init exited before it was ready".into()),
            }
        };
        // A send fails when the init already gave up: its last message says why.
        let send = |m: &Msg| -> Result<()> {
            parent_chan.send(m).map_err(|e| match parent_chan.recv() {
                Ok(Some(Msg::Error(msg))) => Error::Init(msg),
                _ => e,
            })
        };
        // The process that creates the namespaces must be placed (id maps, cgroup) before it
        // forks anything, so every container process is born inside the cgroup.
        if slow_path {
            match parent_chan.recv()? {
                Some(Msg::Place) => {}
                other => return Err(fail(other)),
            }
        }
        if new_userns {
            write_id_maps(child, spec)?;
        }
        // The init is already mounting its rootfs in parallel; it waits for this before its
        // cgroup namespace and cgroup mounts.
        let no_cgroup = match if self_join { Ok(()) } else { cg.create() } {
            Err(e) if rootless && denied(&e) => {
                if asks_for_limits(linux) {
                    return Err(Error::Other(format!(
                        "rootless: {}; resource limits need a cgroup this user may write (a delegated cgroup v2 subtree named by linux.cgroupsPath)",
                        chain(&e)
                    )));
                }
                tracing::warn!("rootless: running without a cgroup ({})", chain(&e));
                true
            }
            r => {
                guard.cgroup = Some(&cg);
                r?;
                false
            }
        };
        if !no_cgroup {
            cg.apply(&with_device_rules(linux))?;
            // Unless the init joins by itself (and was born in its unified cgroup, if any).
            if !self_join || (cg.unified_dir().is_some() && !placed) {
                cg.add_process(child.as_raw())?;
            }
        }
        let annotations = spec.annotations().clone().unwrap_or_default();
        let hook_state = |pid: i32, status: Status| {
            serde_json::to_string(&HookState {
                oci_version: OCI_VERSION,
                id: &o.id,
                status,
                pid,
                bundle: &bundle.dir,
                annotations: &annotations,
            })
            .unwrap_or_default()
        };
        let init_pid = if slow_path {
            send(&Msg::Placed)?;
            let p = match parent_chan.recv()? {
                Some(Msg::Pid(p)) => Pid::from_raw(p),
                other => return Err(fail(other)),
            };
            guard.pids.push(p);
            let _ = waitpid(child, None);
            p
        } else {
            child
        };
        let mut go = hook_state(init_pid.as_raw(), Status::Creating);
        for (name, path) in cg.mount_sources().into_iter().filter(|_| !no_cgroup) {
            go.push_str(&format!("\n{name}\t{}", path.display()));
        }
        send(&Msg::Go(go))?;
        // Save the state while the init finishes its setup.
        let pid_start = match state::proc_stat(init_pid.as_raw()) {
            Some((_, start)) => start,
            // Gone already: its last message says why.
            None => return Err(fail(parent_chan.recv()?)),
        };
        let rec = Record {
            id: o.id.clone(),
            pid: init_pid.as_raw(),
            pid_start,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: state::now_rfc3339(),
            owner: String::new(),
            annotations: annotations.clone(),
            cgroups_path,
            cgroup: (!no_cgroup).then(|| cg.clone()),
            rootless,
            no_cgroup,
            poststart: hooks.is_some_and(|h| h.poststart().as_ref().is_some_and(|v| !v.is_empty())),
            poststop: hooks.is_some_and(|h| h.poststop().as_ref().is_some_and(|v| !v.is_empty())),
        };
        rec.save(&self.root)?;
        if let Some(p) = &o.pid_file {
            guard.pid_file = Some(p);
            state::write_atomic(p, init_pid.as_raw().to_string().as_bytes())?;
        }
        loop {
            match parent_chan.recv_fd()? {
                Some((Msg::SeccompFd, Some(fd))) => {
                    let sc = linux.seccomp().as_ref().expect("a filter was installed");
                    init::forward_listener(
                        sc,
                        &hook_state(init_pid.as_raw(), Status::Creating),
                        fd,
                    )?;
                }
                Some((Msg::Hooks, _)) => {
                    let st = hook_state(init_pid.as_raw(), Status::Creating);
                    hooks::run("prestart", hooks.and_then(|h| h.prestart().as_ref()), &st)?;
                    hooks::run(
                        "createRuntime",
                        hooks.and_then(|h| h.create_runtime().as_ref()),
                        &st,
                    )?;
                    send(&Msg::HooksDone)?;
                }
                Some((Msg::Ready, _)) => break,
                other => return Err(fail(other.map(|(m, _)| m))),
            }
        }
        guard.armed = false;
        Ok(rec)
    }

    /// Lets a created container exec its process.
    pub fn start(&self, id: &str) -> Result<()> {
        self.start_record(&Record::load(&self.root, id)?)
    }

    /// `start` for a record already in hand (`run` just created it).
    pub fn start_record(&self, rec: &Record) -> Result<()> {
        let id = rec.id.as_str();
        match self.status(rec) {
            Status::Created => {}
            Status::Stopped => {
                return Err(self.wrong(
                    rec,
                    Status::Stopped,
                    "cannot start a container that has stopped",
                ))
            }
            s => return Err(self.wrong(rec, s, "cannot start an already running container")),
        }
        let fifo = Record::dir(&self.root, id).join(FIFO_FILE);
        signal_start_and_wait_exec(&fifo)?;
        if !rec.poststart {
            return Ok(());
        }
        let spec = self.saved_spec(id)?;
        let st = rec.hook_state(Status::Running, rec.pid);
        if let Err(e) = hooks::run(
            "poststart",
            spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()),
            &st,
        ) {
            tracing::warn!("{}", chain(&e));
        }
        Ok(())
    }

    fn wrong(&self, rec: &Record, status: Status, what: &str) -> Error {
        Error::WrongState {
            id: rec.id.clone(),
            status: status.to_string(),
            what: what.to_string(),
        }
    }

    /// Sends `sig` to the init (or every process of the container with `all`).
    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let rec = Record::load(&self.root, id)?;
        let status = self.status(&rec);
        if status == Status::Stopped {
            return Err(self.wrong(&rec, status, "container not running"));
        }
        if all && !rec.no_cgroup {
            let cg = self.cgroup_of(&rec)?;
            for pid in cg.procs()? {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
            if status == Status::Paused && sig == Signal::SIGKILL {
                cg.thaw()?;
            }
            return Ok(());
        }
        signal_init(&rec, sig)
    }

    /// Removes a container; a running one only with `force` (it is killed first).
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        match Record::load(&self.root, id) {
            Ok(rec) => self.delete_record(&rec, force),
            Err(Error::NotExist(_)) if force => {
                let _ = fs::remove_dir_all(Record::dir(&self.root, id));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `delete` for a record already in hand (`run` after its container exited).
    pub fn delete_record(&self, rec: &Record, force: bool) -> Result<()> {
        let id = rec.id.as_str();
        let status = self.status(rec);
        let cg = if rec.no_cgroup {
            None
        } else {
            Some(self.cgroup_of(rec)?)
        };
        match status {
            Status::Stopped => {}
            Status::Created => {
                signal_init(rec, Signal::SIGKILL)?;
                wait_gone(rec, Duration::from_secs(10));
            }
            Status::Running | Status::Paused if !force => {
                return Err(self.wrong(
                    rec,
                    status,
                    "cannot delete a container that is not stopped (use --force)",
                ))
            }
            Status::Running | Status::Paused | Status::Creating => {
                for pid in cg.iter().flat_map(|c| c.procs().unwrap_or_default()) {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = signal_init(rec, Signal::SIGKILL);
                if let Some(cg) = cg.as_ref().filter(|_| status == Status::Paused) {
                    let _ = cg.thaw();
                }
                wait_gone(rec, Duration::from_secs(10));
            }
        }
        if let Some(cg) = &cg {
            cg.destroy()?;
        }
        if let Some(spec) = rec.poststop.then(|| self.saved_spec(id).ok()).flatten() {
            let st = rec.hook_state(Status::Stopped, 0);
            if let Err(e) = hooks::run(
                "poststop",
                spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()),
                &st,
            ) {
                tracing::warn!("{}", chain(&e));
            }
        }
        let dir = Record::dir(&self.root, id);
        fs::remove_dir_all(&dir).ctx(|| format!("cannot remove {}", dir.display()))
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let rec = Record::load(&self.root, id)?;
        match self.status(&rec) {
            Status::Running | Status::Created => Ok(self.cgroup_of(&rec)?.freeze()?),
            s => Err(self.wrong(&rec, s, "container not running")),
        }
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let rec = Record::load(&self.root, id)?;
        match self.status(&rec) {
            Status::Paused => Ok(self.cgroup_of(&rec)?.thaw()?),
            s => Err(self.wrong(&rec, s, "container not paused")),
        }
    }

    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let rec = Record::load(&self.root, id)?;
        Ok(self.cgroup_of(&rec)?.procs()?)
    }

    pub fn stats(&self, id: &str) -> Result<skiff_cgroups::Stats> {
        let rec = Record::load(&self.root, id)?;
        let status = self.status(&rec);
        if status == Status::Stopped {
            return Err(self.wrong(&rec, status, "container not running"));
        }
        Ok(self.cgroup_of(&rec)?.stats()?)
    }

    pub fn oom_watcher(&self, id: &str) -> Result<skiff_cgroups::OomWatcher> {
        let rec = Record::load(&self.root, id)?;
        Ok(self.cgroup_of(&rec)?.oom_watcher()?)
    }

    pub fn is_stopped(&self, id: &str) -> bool {
        Record::load(&self.root, id)
            .map(|r| self.status(&r) == Status::Stopped)
            .unwrap_or(true)
    }

    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let rec = Record::load(&self.root, id)?;
        let status = self.status(&rec);
        if status == Status::Stopped {
            return Err(self.wrong(&rec, status, "container not running"));
        }
        Ok(self.cgroup_of(&rec)?.apply(res)?)
    }

    /// The container's spec process, the base `exec` builds on.
    pub fn spec_process(&self, id: &str) -> Result<Process> {
        let spec = self.saved_spec(id)?;
        spec.process()
            .clone()
            .ok_or_else(|| Error::Spec("the container has no process".into()))
    }

    /// Runs a new process in a running container; returns its pid once it has exec'd.
    pub fn exec(&self, id: &str, mut o: ExecOptions) -> Result<i32> {
        let rec = Record::load(&self.root, id)?;
        let status = self.status(&rec);
        match status {
            Status::Running | Status::Created => {}
            Status::Paused if o.ignore_paused => {}
            Status::Paused => {
                return Err(self.wrong(&rec, status, "cannot exec in a paused container"))
            }
            _ => return Err(self.wrong(&rec, status, "cannot exec in a stopped container")),
        }
        if o.process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Spec("exec: args must not be empty".into()));
        }
        let spec = self.saved_spec(id)?;
        let linux = spec.linux().as_ref();
        let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(compile_seccomp(s)?),
            None => None,
        };
        let cg = if rec.no_cgroup {
            None
        } else {
            Some(self.cgroup_of(&rec)?)
        };
        // Namespace fds of the init, user first; only those that differ from ours.
        let mut nsfds: Vec<(CloneFlags, OwnedFd)> = Vec::new();
        for ns in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let name = ns_file(ns.typ());
            let theirs = format!("/proc/{}/ns/{name}", rec.pid);
            let f = fs::File::open(&theirs).ctx(|| format!("cannot open {theirs}"))?;
            let same = fs::metadata(format!("/proc/self/ns/{name}"))
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                == f.metadata()
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if !same {
                nsfds.push((ns_flag(ns.typ()), f.into()));
            }
        }
        nsfds.sort_by_key(|(f, _)| !f.contains(CloneFlags::CLONE_NEWUSER));
        // The init must still be the same process now that we hold its namespaces.
        if !rec.init_alive() {
            return Err(self.wrong(&rec, Status::Stopped, "cannot exec in a stopped container"));
        }
        let console = match (&o.console_socket, o.console_fd.take()) {
            (Some(p), _) => Some(console::connect(p)?),
            (None, fd) => fd,
        };
        if o.process.terminal().unwrap_or(false) && console.is_none() {
            return Err(Error::Spec(
                "exec: a terminal was asked for but no --console-socket was given".into(),
            ));
        }
        let (parent_chan, child_chan) = sync::pair()?;
        // Born in the container's unified-hierarchy cgroup, then joining the v1 ones by
        // itself: no migration that waits for a grace period (see `create`).
        let born_in = cg
            .as_ref()
            .and_then(Cgroup::unified_dir)
            .and_then(|p| open_dir(p).ok());
        let (forked, placed) = clone_in(born_in.as_ref(), CloneFlags::empty());
        drop(born_in);
        let child = match forked.ctx(|| "cannot fork for exec".into())? {
            Forked::Child => {
                drop(parent_chan);
                let r = exec_child(
                    cg.as_ref().map(|c| (c, placed)),
                    nsfds,
                    &o.process,
                    seccomp.clone(),
                    console,
                    &child_chan,
                    o.preserve_fds,
                );
                if let Err(e) = r {
                    let _ = child_chan.send(&Msg::Error(chain(&e)));
                }
                std::process::exit(1);
            }
            Forked::Parent(pid) => pid,
        };
        drop(child_chan);
        drop(console);
        let mut guard_pids = vec![child];
        let result = (|| {
            let pid = match parent_chan.recv()? {
                Some(Msg::Pid(p)) => Pid::from_raw(p),
                Some(Msg::Error(m)) => return Err(Error::Init(m)),
                other => return Err(Error::Other(format!("exec: unexpected message {other:?}"))),
            };
            guard_pids.push(pid);
            let _ = waitpid(child, None);
            loop {
                match parent_chan.recv_fd()? {
                    None => return Ok(pid),
                    Some((Msg::SeccompFd, Some(fd))) => {
                        let sc = linux
                            .and_then(|l| l.seccomp().as_ref())
                            .expect("a filter was installed");
                        let st = rec.hook_state(status, rec.pid);
                        init::forward_listener(sc, &st, fd)?;
                    }
                    Some((Msg::Error(m), _)) => return Err(Error::Init(m)),
                    Some((other, _)) => {
                        return Err(Error::Other(format!("exec: unexpected message {other:?}")))
                    }
                }
            }
        })();
        match result {
            Ok(pid) => {
                if let Some(p) = &o.pid_file {
                    state::write_atomic(p, pid.as_raw().to_string().as_bytes())?;
                }
                Ok(pid.as_raw())
            }
            Err(e) => {
                for p in guard_pids {
                    let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
                    let _ = waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                }
                Err(e)
            }
        }
    }
}

/// What `clone3` answers where `CLONE_INTO_CGROUP` cannot be used (an old kernel, a cgroup
/// that cannot take processes): then the process is forked and moved as before.
const CLONE3_UNSUPPORTED: [nix::errno::Errno; 5] = [
    nix::errno::Errno::ENOSYS,
    nix::errno::Errno::E2BIG,
    nix::errno::Errno::EINVAL,
    nix::errno::Errno::EOPNOTSUPP,
    nix::errno::Errno::EBUSY,
];

/// Forks with `flags`, born in the cgroup `born_in` (an open cgroup v2 directory) when there
/// is one and the kernel can: returns the fork's result and whether the child was born there.
fn clone_in(born_in: Option<&OwnedFd>, flags: CloneFlags) -> (nix::Result<Forked>, bool) {
    match born_in {
        Some(fd) => match skiff_sys::process::clone_into_cgroup(flags, fd.as_fd()) {
            Err(e) if CLONE3_UNSUPPORTED.contains(&e) => (clone_fork(flags), false),
            r => (r, true),
        },
        None => (clone_fork(flags), false),
    }
}

/// A directory opened for reading (what `CLONE_INTO_CGROUP` takes).
fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        fs::OpenOptions::new().read(true),
        libc::O_DIRECTORY,
    )
    .open(path)
    .map(OwnedFd::from)
}

/// In the forked child of `exec`: join the cgroup (`(cgroup, born in its unified-hierarchy
/// directory)`) and namespaces, fork the process that will exec (so it is inside the pid
/// namespace), report its pid and exit.
fn exec_child(
    cg: Option<(&Cgroup, bool)>,
    nsfds: Vec<(CloneFlags, OwnedFd)>,
    p: &Process,
    seccomp: Option<skiff_seccomp::Filter>,
    console: Option<OwnedFd>,
    chan: &sync::Channel,
    preserve_fds: u32,
) -> Result<()> {
    // `placed`: born in the unified-hierarchy cgroup. We are single-threaded (just forked),
    // so we can move ourselves into the v1 hierarchies without the global lock.
    match cg {
        Some((cg, placed)) if placed || cg.unified_dir().is_none() => cg.join_v1_self()?,
        Some((cg, _)) => cg.add_process(nix::unistd::getpid().as_raw())?,
        None => {}
    }
    for (flag, fd) in &nsfds {
        nix::sched::setns(fd.as_fd(), *flag)
            .ctx(|| format!("cannot join the container's namespace {flag:?}"))?;
    }
    drop(nsfds);
    match clone_fork(CloneFlags::empty()).ctx(|| "cannot fork the exec process".into())? {
        Forked::Parent(pid) => {
            chan.send(&Msg::Pid(pid.as_raw()))?;
            std::process::exit(0);
        }
        Forked::Child => {}
    }
    nix::sys::prctl::set_dumpable(false).ctx(|| "cannot make the process non-dumpable".into())?;
    if p.terminal().unwrap_or(false) {
        nix::unistd::setsid().ctx(|| "cannot start a new session".into())?;
        let sock = console.ok_or_else(|| Error::Spec("no console socket".into()))?;
        let slave = console::setup_exec(&sock, p)?;
        console::make_controlling(slave)?;
    }
    let seccomp = seccomp.map(|filter| init::Seccomp { filter, chan });
    match init::finalize(p, seccomp.as_ref(), preserve_fds, true, || Ok(())) {
        Ok(never) => match never {},
        Err(e) => Err(e),
    }
}

/// Lets the init exec and waits until it has (so poststart hooks run after the process
/// started, as the spec says). The init holds the fifo open read-write and blocks reading one
/// byte; its fd is close-on-exec, so once every writer is gone the init has exec'd (or died).
/// Our reader is opened before our writer, which makes the kernel report POLLHUP to it when the
/// last writer closes.
fn signal_start_and_wait_exec(fifo: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let open = |write: bool| {
        fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .ctx(|| format!("cannot open {}", fifo.display()))
    };
    let reader = open(false)?;
    open(true)?
        .write_all(b"0")
        .ctx(|| "cannot signal the container to start".into())?;
    fs::remove_file(fifo).ctx(|| format!("cannot remove {}", fifo.display()))?;
    loop {
        let mut fds = [nix::poll::PollFd::new(
            reader.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).ctx(|| "cannot wait for the container to start".into()),
        }
        let ev = fds[0].revents().unwrap_or(nix::poll::PollFlags::empty());
        if ev.contains(nix::poll::PollFlags::POLLHUP) {
            if ev.contains(nix::poll::PollFlags::POLLIN) {
                return Err(Error::Init(
                    "the container init died before it could start".into(),
                ));
            }
            return Ok(());
        }
        if ev.contains(nix::poll::PollFlags::POLLIN) {
            // The init has not taken the byte yet.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn signal_init(rec: &Record, sig: Signal) -> Result<()> {
    let pidfd = match skiff_sys::process::pidfd_open(Pid::from_raw(rec.pid)) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("cannot open pid {}", rec.pid)),
    };
    // The pidfd pins the process; check it is still our init and not a reused pid.
    if !rec.init_alive() {
        return Ok(());
    }
    skiff_sys::process::pidfd_send_signal(pidfd.as_fd(), sig as i32)
        .ctx(|| format!("cannot send {sig} to pid {}", rec.pid))
}

/// Compiles the spec's filter; a notify action needs somewhere to send its listener.
fn compile_seccomp(s: &oci_spec::runtime::LinuxSeccomp) -> Result<skiff_seccomp::Filter> {
    let filter = skiff_seccomp::compile(s)?;
    if filter.needs_listener() && s.listener_path().is_none() {
        return Err(Error::Spec(
            "linux.seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into(),
        ));
    }
    Ok(filter)
}

/// Waits until the init process is gone (or a zombie), up to `max`.
fn wait_gone(rec: &Record, max: Duration) {
    let Ok(pidfd) = skiff_sys::process::pidfd_open(Pid::from_raw(rec.pid)) else {
        return;
    };
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(max.as_millis()).unwrap_or(u16::MAX);
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
}

/// The resources to apply: the spec's, plus an allow rule for each `linux.devices` entry (the
/// container must be able to use the devices it was given, as with runc).
fn with_device_rules(linux: &oci_spec::runtime::Linux) -> LinuxResources {
    let mut res = linux.resources().clone().unwrap_or_default();
    let devs = linux.devices().as_deref().unwrap_or_default();
    if !devs.is_empty() {
        let mut rules = res.devices().clone().unwrap_or_default();
        for d in devs {
            let typ = match d.typ() {
                oci_spec::runtime::LinuxDeviceType::B => oci_spec::runtime::LinuxDeviceType::B,
                _ => oci_spec::runtime::LinuxDeviceType::C,
            };
            let mut rule = oci_spec::runtime::LinuxDeviceCgroup::default();
            rule.set_allow(true)
                .set_typ(Some(typ))
                .set_major(Some(d.major()))
                .set_minor(Some(d.minor()))
                .set_access(Some("rwm".into()));
            rules.push(rule);
        }
        res.set_devices(Some(rules));
    }
    res
}

fn write_id_maps(pid: Pid, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref().expect("validated");
    let uids = linux.uid_mappings().as_deref().unwrap_or_default();
    let gids = linux.gid_mappings().as_deref().unwrap_or_default();
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        write_map(pid, "uid_map", uids)?;
        return write_map(pid, "gid_map", gids);
    }
    // Rootless. A user may map just itself (after denying setgroups, for the gid map); any
    // other mapping goes through the setuid helpers, which check /etc/subuid and /etc/subgid.
    let egid = nix::unistd::getegid();
    let just_me = |maps: &[LinuxIdMapping], me: u32| {
        maps.len() == 1 && maps[0].host_id() == me && maps[0].size() == 1
    };
    if just_me(uids, euid.as_raw()) {
        write_map(pid, "uid_map", uids)?;
    } else {
        newidmap("newuidmap", pid, uids)?;
    }
    if just_me(gids, egid.as_raw()) {
        fs::write(format!("/proc/{pid}/setgroups"), "deny")
            .ctx(|| "cannot deny setgroups in the user namespace".into())?;
        write_map(pid, "gid_map", gids)
    } else {
        newidmap("newgidmap", pid, gids)
    }
}

fn write_map(pid: Pid, file: &str, maps: &[LinuxIdMapping]) -> Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    fs::write(format!("/proc/{pid}/{file}"), &text).ctx(|| format!("cannot write {file} {text:?}"))
}

/// Runs `newuidmap`/`newgidmap` (shadow's `uidmap` package) for a rootless multi-range map.
fn newidmap(tool: &str, pid: Pid, maps: &[LinuxIdMapping]) -> Result<()> {
    let mut cmd = std::process::Command::new(tool);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let out = cmd.output().map_err(|e| {
        Error::Other(format!(
            "this rootless id mapping needs {tool} (apt-get install uidmap) and it cannot run: {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{tool} failed ({}): {}; is the range in /etc/sub{}id?",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if tool == "newuidmap" { "u" } else { "g" }
        )));
    }
    Ok(())
}

/// Permission to create the cgroup was refused (a rootless user outside a delegated subtree).
fn denied(e: &skiff_cgroups::Error) -> bool {
    let io = match e {
        skiff_cgroups::Error::Mkdir { source, .. } | skiff_cgroups::Error::Write { source, .. } => {
            source
        }
        _ => return false,
    };
    matches!(
        io.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS)
    )
}

/// Whether `linux.resources` asks for any limit (device rules alone do not count: a rootless
/// container cannot have them enforced and gets the host's device access anyway).
fn asks_for_limits(linux: &oci_spec::runtime::Linux) -> bool {
    let Some(r) = linux.resources() else {
        return false;
    };
    r.memory().is_some()
        || r.cpu().is_some()
        || r.pids().is_some()
        || r.block_io().is_some()
        || r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty())
        || r.network().is_some()
        || r.rdma().as_ref().is_some_and(|m| !m.is_empty())
        || r.unified().as_ref().is_some_and(|m| !m.is_empty())
}
