//! The container manager.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bollard_stubs::models::{
    ContainerConfig, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    ContainerSummary, ContainerTopResponse, ExecConfig, HostConfig, NetworkSettings,
    NetworkingConfig, RestartPolicyNameEnum,
};
use nix::sys::signal::Signal;
use serde::Deserialize;
use skiff_container::Runtime;
use skiff_store::Store;

use crate::error::{io_err, rt_err, store_err, Error, Result};
use crate::exec::ExecProcess;
use crate::model::{now, CreateBody, Filters, Record, State, Status, WaitCondition};
use crate::monitor::{self, Handle};
use crate::volumes::{self, Volumes};
use crate::{logs, names, netmode, spec};

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `/var/lib/skiff`: containers/<id>/ (record, log, bundle, /etc files) and volumes/.
    pub data_root: PathBuf,
    /// `/run/skiff`: runtime/ (the runtime's state) and m/<id>/ (monitor socket, exit.json).
    pub run_root: PathBuf,
    /// The `skiff-monitor` binary.
    pub monitor_bin: PathBuf,
    pub store: Store,
    /// Default json-file rotation (`max-size` bytes, 0 = none; `max-file`).
    pub log_max_size: u64,
    pub log_max_file: u32,
    /// A static init for `--init` (skiff-init), bind-mounted at /sbin/docker-init.
    pub init_bin: Option<PathBuf>,
    /// Sets up (and tears down) the network of containers not on the host network.
    pub network: Option<Arc<dyn NetworkHook>>,
    /// The exec helper: a binary and its leading arguments (`skiff-monitor exec`) whose
    /// `main` calls [`crate::exec_helper_main`] with the remaining arguments.
    pub exec_helper: Option<(PathBuf, Vec<String>)>,
    /// Told of the container events the engine makes on its own (a policy restart's `die`
    /// and `start`, `health_status: ...`).
    pub events: Option<Arc<dyn EventHook>>,
}

/// Where the engine's own container events go (the daemon's `/events`).
pub trait EventHook: Send + Sync + std::fmt::Debug {
    fn container_event(&self, container_id: &str, action: &str, attrs: &[(&str, &str)]);
}

/// What the daemon plugs in to give containers their network (skiff-network): `setup`
/// runs once the container's namespaces exist and before its process runs; `teardown`
/// after each exit and at removal. Without a hook a container not on the host network
/// has a network namespace of its own with nothing configured (not even `lo` up).
pub trait NetworkHook: Send + Sync + std::fmt::Debug {
    /// `netns` is the container's network namespace (`/proc/<pid>/ns/net`); the hook may
    /// also rewrite the container's `hosts` and `resolv.conf` ([`Record::hosts_path`]...).
    fn setup(&self, rec: &Record, netns: &Path) -> std::result::Result<(), String>;
    fn teardown(&self, container_id: &str);
    /// Checks the network part of a create request (`HostConfig.NetworkMode`,
    /// `NetworkingConfig`, published ports) so that a bad one fails at create.
    fn validate(&self, _hc: &HostConfig, _nc: Option<&NetworkingConfig>) -> Result<()> {
        Ok(())
    }
    /// The container's `NetworkSettings` as inspect shows them (`None`: nothing to show).
    fn settings(&self, _rec: &Record) -> Option<NetworkSettings> {
        None
    }
}

impl EngineConfig {
    /// Defaults for the given roots: no rotation, [`default_init_bin`] as init.
    pub fn new(data_root: PathBuf, run_root: PathBuf, monitor_bin: PathBuf, store: Store) -> Self {
        EngineConfig {
            data_root,
            run_root,
            monitor_bin,
            store,
            log_max_size: 0,
            log_max_file: 1,
            init_bin: default_init_bin(),
            network: None,
            exec_helper: None,
            events: None,
        }
    }
}

/// `skiff-init` next to the running executable (or one directory up, for a test binary in
/// cargo's `deps/`), if it is there.
pub fn default_init_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let mut dirs = vec![dir.to_path_buf()];
    if dir.file_name().is_some_and(|n| n == "deps") {
        dirs.extend(dir.parent().map(Path::to_path_buf));
    }
    dirs.into_iter()
        .map(|d| d.join("skiff-init"))
        .find(|p| p.is_file())
}

pub(crate) struct CtrState {
    pub(crate) rec: Record,
    /// Exits seen by this engine (for `wait next-exit`).
    pub(crate) exits: u64,
    pub(crate) removed: bool,
    started: Option<Instant>,
}

pub(crate) struct Ctr {
    pub(crate) st: Mutex<CtrState>,
    pub(crate) cv: Condvar,
    /// Bumped for each healthcheck thread started (without the lock, which a caller may
    /// hold); older ones see it and stop.
    pub(crate) health_gen: std::sync::atomic::AtomicU64,
}

impl Ctr {
    pub(crate) fn lock(&self) -> MutexGuard<'_, CtrState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Shared {
    pub(crate) cfg: EngineConfig,
    ctrs: Mutex<HashMap<String, Arc<Ctr>>>,
    pub(crate) shutdown: AtomicBool,
    /// Readable (hung up) once the engine is dropped: wakes every watcher's poll.
    shutdown_rx: OwnedFd,
    shutdown_tx: Mutex<Option<OwnedFd>>,
    watchers: Mutex<Vec<JoinHandle<()>>>,
    vols: Volumes,
    pub(crate) rt: Runtime,
}

/// The container manager. Dropping it stops its watcher threads; the monitors (and so the
/// containers) keep running and a new engine on the same directories adopts them.
pub struct Engine {
    sh: Arc<Shared>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.sh.shutdown.store(true, Ordering::SeqCst);
        drop(lock(&self.sh.shutdown_tx).take());
        for c in lock(&self.sh.ctrs).values() {
            c.cv.notify_all();
        }
        let ws = std::mem::take(&mut *lock(&self.sh.watchers));
        for w in ws {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The image config fields the engine uses (the `config` object of an image config).
#[derive(Deserialize, Default)]
struct ImageConfigDoc {
    #[serde(default)]
    config: Option<ContainerConfig>,
}

fn not_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

/// Docker's merge of an image's config under a request's.
fn merge(img: ContainerConfig, mut c: ContainerConfig) -> ContainerConfig {
    let mut env: Vec<String> = img.env.clone().unwrap_or_default();
    for e in c.env.take().unwrap_or_default() {
        let key = e.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    c.env = Some(env);
    if c.entrypoint.is_none() {
        c.entrypoint = img.entrypoint;
        if !not_empty(&c.cmd) {
            c.cmd = img.cmd;
        }
    }
    for (mine, theirs) in [
        (&mut c.working_dir, img.working_dir),
        (&mut c.user, img.user),
        (&mut c.stop_signal, img.stop_signal),
    ] {
        if mine.as_deref().unwrap_or("").is_empty() {
            *mine = theirs;
        }
    }
    c.healthcheck = crate::health::merge(img.healthcheck, c.healthcheck.take());
    for (mine, theirs) in [
        (&mut c.exposed_ports, img.exposed_ports),
        (&mut c.volumes, img.volumes),
    ] {
        if let Some(t) = theirs {
            let m = mine.get_or_insert_with(HashMap::new);
            for (k, v) in t {
                m.entry(k).or_insert(v);
            }
        }
    }
    if let Some(l) = img.labels {
        let m = c.labels.get_or_insert_with(HashMap::new);
        for (k, v) in l {
            m.entry(k).or_insert(v);
        }
    }
    c
}

/// `10m` / `1g` / `512k` / bytes.
fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = match s.trim_end_matches('b').chars().last() {
        Some('k') => (&s[..s.find('k').unwrap_or(0)], 1u64 << 10),
        Some('m') => (&s[..s.find('m').unwrap_or(0)], 1 << 20),
        Some('g') => (&s[..s.find('g').unwrap_or(0)], 1 << 30),
        _ => (s.trim_end_matches('b'), 1),
    };
    num.parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| Error::InvalidInput(format!("invalid size: {s:?}")))
}

/// A signal by name (`SIGTERM`, `TERM`) or number.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || Error::InvalidInput(format!("invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

fn etc_hosts(extra: &[String]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for e in extra {
        if let Some((name, ip)) = e.split_once(':') {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    s
}

fn resolv_conf(hc: &HostConfig, host_net: bool) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut ns: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    for l in host.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                if let Some(a) = w.next() {
                    if host_net || !(a.starts_with("127.") || a == "::1") {
                        ns.push(a.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => search = w.map(String::from).collect(),
            Some("options") => opts.extend(w.map(String::from)),
            _ => {}
        }
    }
    if not_empty(&hc.dns) {
        ns = hc.dns.clone().unwrap_or_default();
    } else if ns.is_empty() {
        ns = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    if not_empty(&hc.dns_search) {
        search = hc.dns_search.clone().unwrap_or_default();
    }
    if not_empty(&hc.dns_options) {
        opts = hc.dns_options.clone().unwrap_or_default();
    }
    let mut s = String::new();
    for n in ns {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !opts.is_empty() {
        s.push_str(&format!("options {}\n", opts.join(" ")));
    }
    s
}

/// Docker's `units.HumanDuration` ("Up 5 seconds", "Exited (0) About a minute ago").
fn human_duration(secs: i64) -> String {
    let hours = (secs + 1800) / 3600; // Go rounds the hours: int(d.Hours() + 0.5)
    match secs {
        ..=0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", secs / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    skiff_container::state::write_atomic(path, data)
        .map_err(rt_err(format!("cannot write {}", path.display())))
}

impl Shared {
    fn ctr_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    fn mon_dir(&self, id: &str) -> PathBuf {
        self.cfg.run_root.join("m").join(id)
    }

    pub(crate) fn persist(&self, rec: &Record) -> Result<()> {
        let body = serde_json::to_vec_pretty(rec)
            .map_err(|e| Error::Internal(format!("cannot encode a container record: {e}")))?;
        write_atomic(&self.ctr_dir(&rec.id).join("config.json"), &body)
    }

    /// Runs a process in a running container: `docker exec` and healthcheck probes.
    pub(crate) fn exec_process(&self, name_or_id: &str, cfg: &ExecConfig) -> Result<ExecProcess> {
        let ctr = self.get(name_or_id)?;
        let st = ctr.lock();
        let id = st.rec.id.clone();
        match st.rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(Error::Conflict(format!(
                    "Container {id} is paused, unpause the container before exec"
                )))
            }
            _ => return Err(Error::Conflict(format!("Container {id} is not running"))),
        }
        let helper = self.cfg.exec_helper.as_ref().ok_or_else(|| {
            Error::Internal("exec is not available: no exec helper is configured".into())
        })?;
        let rootfs = self
            .cfg
            .store
            .rootfs(&id)
            .map_err(store_err("cannot find the rootfs"))?
            .path;
        let process = crate::exec::process(&self.rt, &id, &rootfs, cfg)?;
        drop(st);
        crate::exec::spawn(
            helper,
            &self.rt.root,
            &id,
            &process,
            cfg.attach_stdin.unwrap_or(false),
        )
    }

    /// Tells the event hook of a container event.
    pub(crate) fn event(&self, id: &str, action: &str, attrs: &[(&str, &str)]) {
        if let Some(h) = self.cfg.events.as_ref() {
            h.container_event(id, action, attrs);
        }
    }

    pub(crate) fn persist_logged(&self, rec: &Record) {
        if let Err(e) = self.persist(rec) {
            tracing::warn!(container = %rec.id, "{}", skiff_container::chain(&e));
        }
    }

    fn get(&self, name_or_id: &str) -> Result<Arc<Ctr>> {
        let ctrs = lock(&self.ctrs);
        if let Some(c) = ctrs.get(name_or_id) {
            return Ok(c.clone());
        }
        let want = format!("/{}", name_or_id.trim_start_matches('/'));
        for c in ctrs.values() {
            if c.lock().rec.name == want {
                return Ok(c.clone());
            }
        }
        let hits: Vec<&Arc<Ctr>> = if name_or_id.is_empty() {
            Vec::new()
        } else {
            ctrs.iter()
                .filter(|(id, _)| id.starts_with(name_or_id))
                .map(|(_, c)| c)
                .collect()
        };
        match hits.as_slice() {
            [c] => Ok((*c).clone()),
            [] => Err(Error::NoSuchContainer(name_or_id.to_string())),
            _ => Err(Error::InvalidInput(format!(
                "multiple containers found with provided prefix: {name_or_id}"
            ))),
        }
    }

    fn name_taken(&self, name: &str, except: &str) -> Option<String> {
        lock(&self.ctrs)
            .iter()
            .find_map(|(id, c)| (id != except && c.lock().rec.name == name).then(|| id.clone()))
    }

    /// Prepares the bundle and starts a monitor for a container (its record locked).
    fn spawn(&self, st: &mut CtrState, wait_start: bool) -> Result<Handle> {
        let id = st.rec.id.clone();
        let rootfs = {
            // Waits for a copy into the stopped container (its own mount) to finish.
            let lock = crate::fs::mount_lock(&id);
            let _held = crate::fs::hold(&lock);
            self.cfg
                .store
                .mount_rootfs(&id)
                .map_err(store_err(format!("cannot mount the rootfs of {id}")))?
        };
        let env = spec::SpecEnv {
            rootfs: &rootfs,
            init_bin: self.cfg.init_bin.as_deref(),
        };
        let mut spec = spec::build(&st.rec, &env)?;
        let mut join_err = None;
        if let Some(other) = netmode::joined(st.rec.host_config.network_mode.as_deref()) {
            // From its persisted record: taking the table lock here (a container locked)
            // would invert the lock order.
            let pid = std::fs::read(self.ctr_dir(other).join("config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                .filter(|r| r.state.status.is_running())
                .map_or(0, |r| r.state.pid);
            if pid <= 0 {
                join_err = Some(format!(
                    "cannot join network namespace of a non running container: {other}"
                ));
            }
            netmode::join_netns(&mut spec, Path::new(&format!("/proc/{pid}/ns/net")));
        }
        let bundle = self.ctr_dir(&id).join("bundle");
        std::fs::create_dir_all(&bundle)
            .map_err(io_err(format!("cannot create {}", bundle.display())))?;
        write_atomic(
            &bundle.join("config.json"),
            &serde_json::to_vec_pretty(&spec).unwrap_or_default(),
        )?;
        let _ = self.rt.delete(&id, true);
        let dir = self.mon_dir(&id);
        std::fs::create_dir_all(&dir)
            .map_err(io_err(format!("cannot create {}", dir.display())))?;
        let _ = std::fs::remove_file(dir.join(skiff_monitor::EXIT_FILE));
        let tty = st.rec.config.tty.unwrap_or(false);
        let hook = self
            .cfg
            .network
            .clone()
            .filter(|_| st.rec.host_config.network_mode.as_deref() != Some("host"));
        let res = match join_err {
            Some(msg) => Err(msg),
            None => monitor::spawn(&monitor::Spawn {
                bin: &self.cfg.monitor_bin,
                id: &id,
                bundle: &bundle,
                runtime_root: &self.rt.root,
                dir: &dir,
                log: Some(Path::new(&st.rec.log_path)).filter(|p| !p.as_os_str().is_empty()),
                log_max_size: st.rec.log_max_size,
                log_max_file: st.rec.log_max_file,
                tty,
                stdin: st.rec.config.open_stdin.unwrap_or(false),
                wait_start: wait_start || hook.is_some(),
            }),
        };
        // The network is set up between create and start, in the container's namespace.
        let res = match (res, hook) {
            (Ok((mut h, pid)), Some(hook)) => {
                let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
                let started = hook.setup(&st.rec, &netns).and_then(|()| {
                    if wait_start {
                        return Ok(());
                    }
                    monitor::command(&dir, "start")
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
                match started {
                    Ok(()) => {
                        h.mref.waiting = wait_start;
                        Ok((h, pid))
                    }
                    Err(msg) => {
                        hook.teardown(&id);
                        let _ = self.rt.delete(&id, true);
                        h.reap_blocking();
                        Err(format!("cannot set up the network: {msg}"))
                    }
                }
            }
            (res, _) => res,
        };
        match res {
            Ok((h, pid)) => {
                st.rec.monitor = Some(h.mref.clone());
                if !wait_start {
                    self.mark_running(st, pid);
                } else {
                    self.persist_logged(&st.rec);
                }
                Ok(h)
            }
            Err(msg) => {
                let _ = self.cfg.store.unmount_rootfs(&id);
                let code = if msg.contains("no such file")
                    || msg.contains("not found")
                    || msg.contains("No such file")
                {
                    127
                } else {
                    128
                };
                st.rec.state.exit_code = code;
                st.rec.state.error = msg.clone();
                st.rec.state.pid = 0;
                st.rec.monitor = None;
                if st.rec.state.status != Status::Created {
                    st.rec.state.status = Status::Exited;
                    st.rec.state.finished_at = now();
                }
                self.persist_logged(&st.rec);
                Err(Error::Start { id, msg })
            }
        }
    }

    fn mark_running(&self, st: &mut CtrState, pid: i32) {
        st.rec.state.status = Status::Running;
        st.rec.state.pid = i64::from(pid);
        st.rec.state.exit_code = 0;
        st.rec.state.error.clear();
        st.rec.state.oom_killed = false;
        st.rec.state.started_at = now();
        if let Some(m) = st.rec.monitor.as_mut() {
            m.waiting = false;
        }
        st.started = Some(Instant::now());
        crate::health::on_start(&mut st.rec);
        self.persist_logged(&st.rec);
    }
}

/// Restarts decided by a container's policy after an exit.
fn should_restart(rec: &Record) -> bool {
    if rec.manually_stopped {
        return false;
    }
    let Some(p) = rec.host_config.restart_policy.as_ref() else {
        return false;
    };
    match p.name {
        Some(RestartPolicyNameEnum::ALWAYS) | Some(RestartPolicyNameEnum::UNLESS_STOPPED) => true,
        Some(RestartPolicyNameEnum::ON_FAILURE) => {
            let max = p.maximum_retry_count.unwrap_or(0);
            rec.state.exit_code != 0 && (max == 0 || rec.restart_count < max)
        }
        _ => false,
    }
}

fn watch(sh: Arc<Shared>, ctr: Arc<Ctr>, mut handle: Handle) {
    let id = ctr.lock().rec.id.clone();
    let dir = sh.mon_dir(&id);
    let mut backoff = Duration::from_millis(100);
    loop {
        // Wait for the container's end (exit.json) or the monitor's death, woken by the
        // monitor itself: its `wait` connection closes once exit.json is written, its pidfd
        // turns readable when it exits, and the shutdown pipe when the engine is dropped.
        // Only without both (an old monitor, a kernel without pidfds) is exit.json polled.
        let pidfd = handle.pidfd();
        let mut waiter = monitor::subscribe_exit(&dir);
        let exit = loop {
            if sh.shutdown.load(Ordering::SeqCst) {
                return;
            }
            if let Some(e) = skiff_monitor::read_exit(&dir) {
                break Some(e);
            }
            if !handle.alive() {
                break skiff_monitor::read_exit(&dir);
            }
            use std::os::fd::AsFd;
            let mut fds = vec![nix::poll::PollFd::new(
                sh.shutdown_rx.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if let Some(fd) = &pidfd {
                fds.push(nix::poll::PollFd::new(
                    fd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
            if let Some(w) = &waiter {
                fds.push(nix::poll::PollFd::new(
                    w.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
            let timeout = if pidfd.is_some() && waiter.is_some() {
                nix::poll::PollTimeout::NONE
            } else {
                nix::poll::PollTimeout::from(25u16)
            };
            let _ = nix::poll::poll(&mut fds, timeout);
            drop(fds);
            if let Some(w) = &mut waiter {
                // Its `ok`, or the end: after the end (or an error) it is of no more use.
                let mut b = [0u8; 64];
                loop {
                    match std::io::Read::read(w, &mut b) {
                        Ok(0) => {
                            waiter = None;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            waiter = None;
                            break;
                        }
                    }
                }
            }
        };
        handle.reap_blocking();
        let mut st = ctr.lock();
        if st.removed {
            return;
        }
        match exit {
            Some(e) => {
                st.rec.state.exit_code = i64::from(e.exit_code);
                st.rec.state.oom_killed = e.oom_killed;
                st.rec.state.error = e.error;
                st.rec.state.finished_at = e.finished_at;
            }
            None => {
                // The monitor died without recording the end (killed): its container must not
                // live on unwatched, with no owner for its stdio and exit status, while it
                // shows as exited. Kill it and delete its runtime state (cgroup included), as
                // containerd does when a shim dies.
                if let Err(e) = sh.rt.delete(&id, true) {
                    tracing::warn!(container = %id, "cannot clean up after a dead monitor: {e}");
                }
                st.rec.state.exit_code = 128;
                st.rec.state.error = "the container's monitor ended unexpectedly".into();
                st.rec.state.finished_at = now();
            }
        }
        let was_waiting = st.rec.monitor.as_ref().is_some_and(|m| m.waiting);
        st.rec.state.status = if was_waiting && st.rec.state.started_at == crate::model::ZERO_TIME {
            Status::Created
        } else {
            Status::Exited
        };
        st.rec.state.pid = 0;
        st.rec.monitor = None;
        st.exits += 1;
        if let Some(n) = sh.cfg.network.as_ref() {
            n.teardown(&id);
        }
        let ran = st.started.take().map(|t| t.elapsed()).unwrap_or_default();
        let restart = should_restart(&st.rec);
        if restart {
            if ran >= Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            st.rec.state.status = Status::Restarting;
        }
        sh.persist_logged(&st.rec);
        // Before the waiters wake: a `stop` or `restart` reports after the `die`.
        let code = st.rec.state.exit_code.to_string();
        sh.event(&id, "die", &[("exitCode", code.as_str())]);
        ctr.cv.notify_all();
        let auto_remove = st.rec.host_config.auto_remove.unwrap_or(false);
        if !restart {
            // As Docker does, a stopped container's rootfs is not left mounted (under the
            // lock: a concurrent start mounts it again only after this).
            if let Err(e) = sh.cfg.store.unmount_rootfs(&id) {
                tracing::warn!(container = %id, "cannot unmount the rootfs: {e}");
            }
            drop(st);
            if auto_remove {
                if let Err(e) = remove_ctr(&sh, &ctr, false, true) {
                    tracing::warn!(container = %id, "auto-remove: {e}");
                }
            }
            return;
        }
        // Docker's backoff: 100 ms doubling, reset after 10 s of running.
        let deadline = Instant::now() + backoff;
        backoff = (backoff * 2).min(Duration::from_secs(60));
        while Instant::now() < deadline {
            if sh.shutdown.load(Ordering::SeqCst) {
                return;
            }
            let (g, _) = ctr
                .cv
                .wait_timeout(st, Duration::from_millis(25))
                .unwrap_or_else(|e| e.into_inner());
            st = g;
            if st.removed || st.rec.state.status != Status::Restarting {
                return;
            }
        }
        if st.rec.manually_stopped {
            st.rec.state.status = Status::Exited;
            sh.persist_logged(&st.rec);
            ctr.cv.notify_all();
            return;
        }
        st.rec.restart_count += 1;
        match sh.spawn(&mut st, false) {
            Ok(h) => {
                handle = h;
                sh.event(&id, "start", &[]);
            }
            Err(e) => {
                tracing::warn!(container = %id, "restart failed: {e}");
                st.rec.state.status = Status::Exited;
                sh.persist_logged(&st.rec);
                ctr.cv.notify_all();
                return;
            }
        }
        ctr.cv.notify_all();
    }
}

fn start_watcher(sh: &Arc<Shared>, ctr: &Arc<Ctr>, h: Handle) {
    crate::health::start_checker(sh, ctr);
    let (s2, c2) = (sh.clone(), ctr.clone());
    let j = std::thread::Builder::new()
        .name("skiff-watch".into())
        .spawn(move || watch(s2, c2, h));
    match j {
        Ok(j) => {
            let mut ws = lock(&sh.watchers);
            ws.retain(|w| !w.is_finished());
            ws.push(j);
        }
        Err(e) => tracing::error!("cannot start a watcher thread: {e}"),
    }
}

/// Waits until the container exited more than `gen` times (or is not running), bounded.
fn wait_exit<'a>(
    ctr: &'a Ctr,
    mut st: MutexGuard<'a, CtrState>,
    gen: u64,
    timeout: Duration,
) -> (MutexGuard<'a, CtrState>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if st.exits > gen || st.removed || !st.rec.state.status.is_running() {
            return (st, true);
        }
        let now = Instant::now();
        if now >= deadline {
            return (st, false);
        }
        let (g, _) = ctr
            .cv
            .wait_timeout(st, (deadline - now).min(Duration::from_millis(100)))
            .unwrap_or_else(|e| e.into_inner());
        st = g;
    }
}

fn remove_ctr(sh: &Arc<Shared>, ctr: &Arc<Ctr>, force: bool, volumes: bool) -> Result<()> {
    let mut st = ctr.lock();
    if st.removed {
        return Ok(());
    }
    let id = st.rec.id.clone();
    if st.rec.state.status == Status::Removing {
        return Err(Error::Conflict(format!(
            "removal of container {id} is already in progress"
        )));
    }
    let active = st.rec.state.status.is_running() || st.rec.state.status == Status::Restarting;
    if active && !force {
        return Err(Error::Conflict(format!(
            "You cannot remove a {} container {id}. Stop the container before attempting removal or force remove",
            st.rec.state.status.as_str()
        )));
    }
    st.rec.manually_stopped = true;
    if st.rec.state.status.is_running() || st.rec.monitor.is_some() {
        let gen = st.exits;
        drop(st);
        let _ = sh.rt.kill(&id, Signal::SIGKILL, true);
        let _ = sh.rt.delete(&id, true);
        st = wait_exit(ctr, ctr.lock(), gen, Duration::from_secs(15)).0;
    }
    st.rec.state.status = Status::Removing;
    let rec = st.rec.clone();
    // Out of the table first (lock order: table, then container), so that a waiter woken
    // by `removed` no longer finds it.
    drop(st);
    lock(&sh.ctrs).remove(&id);
    ctr.lock().removed = true;
    ctr.cv.notify_all();
    // Once, for every removal (`rm`, prune, AutoRemove): the container is gone from the API
    // now (waiters for `removed` answer on this event); its files go below.
    sh.event(&id, "destroy", &[]);
    let _ = sh.rt.delete(&id, true);
    if let Some(n) = sh.cfg.network.as_ref() {
        n.teardown(&id);
    }
    match sh.cfg.store.remove_rootfs(&id) {
        Ok(()) => {}
        Err(e) if e.kind() == skiff_store::ErrorKind::NotFound => {}
        Err(e) => return Err(store_err(format!("cannot remove the rootfs of {id}"))(e)),
    }
    let dir = sh.ctr_dir(&id);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(io_err(format!("cannot remove {}", dir.display())))?;
    }
    let _ = std::fs::remove_dir_all(sh.mon_dir(&id));
    if volumes {
        for v in &rec.anonymous_volumes {
            if let Err(e) = sh.vols.remove(v) {
                tracing::warn!("cannot remove volume {v}: {e}");
            }
        }
    }
    Ok(())
}

fn to_i64(t: &str) -> i64 {
    humantime::parse_rfc3339_weak(t.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

fn human_status(s: &State) -> String {
    let since = |t: &str| {
        let secs = (SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0) as i64
            - to_i64(t))
        .max(0);
        human_duration(secs)
    };
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", since(&s.started_at)),
        Status::Paused => format!("Up {} (Paused)", since(&s.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", s.exit_code, since(&s.finished_at)),
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code, since(&s.finished_at)),
        Status::Dead => "Dead".into(),
    }
}

impl Engine {
    /// Opens the engine: loads every container record and adopts running monitors.
    pub fn open(cfg: EngineConfig) -> Result<Engine> {
        for d in [
            cfg.data_root.join("containers"),
            cfg.data_root.join("volumes"),
            cfg.run_root.join("runtime"),
            cfg.run_root.join("m"),
        ] {
            std::fs::create_dir_all(&d)
                .map_err(io_err(format!("cannot create {}", d.display())))?;
        }
        let (shutdown_rx, shutdown_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::Internal(format!("cannot create a pipe: {e}")))?;
        let sh = Arc::new(Shared {
            shutdown_rx,
            shutdown_tx: Mutex::new(Some(shutdown_tx)),
            vols: Volumes::new(cfg.data_root.join("volumes")),
            rt: Runtime::new(cfg.run_root.join("runtime")),
            cfg,
            ctrs: Mutex::new(HashMap::new()),
            shutdown: AtomicBool::new(false),
            watchers: Mutex::new(Vec::new()),
        });
        let cdir = sh.cfg.data_root.join("containers");
        let mut to_restart = Vec::new();
        for e in std::fs::read_dir(&cdir)
            .map_err(io_err(format!("cannot list {}", cdir.display())))?
            .flatten()
        {
            let p = e.path().join("config.json");
            let Ok(raw) = std::fs::read(&p) else { continue };
            let mut rec: Record = match serde_json::from_slice(&raw) {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!("skipping {}: {err}", p.display());
                    continue;
                }
            };
            let id = rec.id.clone();
            let mut handle = None;
            if let Some(m) = rec.monitor.clone() {
                handle = Handle::adopt(&m, &sh.cfg.monitor_bin, &id);
                if handle.is_none() {
                    // The monitor ended while no engine watched it.
                    let exit = skiff_monitor::read_exit(&sh.mon_dir(&id));
                    match exit {
                        Some(x) => {
                            rec.state.exit_code = i64::from(x.exit_code);
                            rec.state.oom_killed = x.oom_killed;
                            rec.state.finished_at = x.finished_at;
                            rec.state.error = x.error;
                        }
                        None => {
                            rec.state.exit_code = 128;
                            rec.state.error =
                                "the container's monitor was gone when the engine started".into();
                            rec.state.finished_at = now();
                        }
                    }
                    if !m.waiting || rec.state.started_at != crate::model::ZERO_TIME {
                        rec.state.status = Status::Exited;
                    }
                    rec.state.pid = 0;
                    rec.monitor = None;
                    let _ = sh.rt.delete(&id, true);
                    sh.persist_logged(&rec);
                }
            } else if rec.state.status.is_running() || rec.state.status == Status::Restarting {
                rec.state.status = Status::Exited;
                sh.persist_logged(&rec);
            }
            if handle.is_none() && rec.state.status == Status::Exited {
                let policy = rec.host_config.restart_policy.as_ref().and_then(|p| p.name);
                if policy == Some(RestartPolicyNameEnum::ALWAYS)
                    || (policy == Some(RestartPolicyNameEnum::UNLESS_STOPPED)
                        && !rec.manually_stopped)
                {
                    to_restart.push(id.clone());
                }
            }
            let ctr = Arc::new(Ctr {
                st: Mutex::new(CtrState {
                    rec,
                    exits: 0,
                    removed: false,
                    started: handle.as_ref().map(|_| Instant::now()),
                }),
                cv: Condvar::new(),
                health_gen: std::sync::atomic::AtomicU64::new(0),
            });
            lock(&sh.ctrs).insert(id, ctr.clone());
            if let Some(h) = handle {
                start_watcher(&sh, &ctr, h);
            }
        }
        let engine = Engine { sh };
        for id in to_restart {
            if let Err(e) = engine.start(&id) {
                tracing::warn!(container = %id, "restart at engine start failed: {e}");
            }
        }
        Ok(engine)
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.sh.cfg
    }

    /// Creates a container; returns its id.
    pub fn create(&self, name: Option<&str>, body: CreateBody) -> Result<String> {
        let sh = &self.sh;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => names::validate(n)?,
            None => {
                let mut n = names::random_name(0);
                let mut retry = 0;
                while sh.name_taken(&format!("/{n}"), "").is_some() && retry < 10 {
                    retry += 1;
                    n = names::random_name(retry);
                }
                n
            }
        };
        let name = format!("/{name}");
        if let Some(other) = sh.name_taken(&name, "") {
            return Err(Error::Conflict(format!(
                "Conflict. The container name \"{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let mut req = body.config.clone();
        let mut hc = body.host_config.clone().unwrap_or_default();
        let image_name = req.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(Error::InvalidInput("no image was given".into()));
        }
        let image = match sh.cfg.store.image(&image_name) {
            Ok(i) => i,
            Err(e) if e.kind() == skiff_store::ErrorKind::NotFound => {
                return Err(Error::NoSuchImage(image_name))
            }
            Err(e) => return Err(store_err(format!("cannot look up image {image_name}"))(e)),
        };
        let raw = sh
            .cfg
            .store
            .raw_config(&image.id.to_string())
            .map_err(store_err("cannot read the image config"))?;
        let doc: ImageConfigDoc = serde_json::from_slice(&raw).unwrap_or_default();
        req.image = Some(image_name.clone());
        let config = merge(doc.config.unwrap_or_default(), req);
        if let Some(h) = config.healthcheck.as_ref() {
            crate::health::validate(h)?;
        }
        let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.cmd.clone().unwrap_or_default());
        if argv.is_empty() {
            return Err(Error::InvalidInput("No command specified".into()));
        }
        // A missing network or container is a 400 here, not a 404: on a 404 at create the
        // docker CLI assumes the image is missing and tries to pull it.
        let not_found_is_invalid = |e: Error| match e {
            Error::NotFound(m) => Error::InvalidInput(m),
            e @ Error::NoSuchContainer(_) => Error::InvalidInput(e.to_string()),
            e => e,
        };
        let mut net = hc.network_mode.clone().unwrap_or_default();
        if let Some(other) = netmode::joined(Some(&net)) {
            let other = sh
                .get(other)
                .map_err(not_found_is_invalid)?
                .lock()
                .rec
                .id
                .clone();
            net = format!("container:{other}");
            hc.network_mode = Some(net.clone());
        }
        match sh.cfg.network.as_ref() {
            Some(hook) => hook
                .validate(&hc, body.networking_config.as_ref())
                .map_err(not_found_is_invalid)?,
            None if !matches!(net.as_str(), "" | "default" | "bridge" | "none" | "host")
                && !net.starts_with("container:") =>
            {
                return Err(Error::InvalidInput(format!(
                    "network mode {net:?} is not supported without networking"
                )))
            }
            None => {}
        }
        if hc.network_mode.as_deref().unwrap_or("").is_empty() {
            hc.network_mode = Some("default".into());
        }
        // Checked now so a bad request fails at create, as with Docker.
        spec::capabilities(&hc)?;
        let (mut log_max_size, mut log_max_file) = (sh.cfg.log_max_size, sh.cfg.log_max_file);
        let log_driver = logs::driver(&hc)?;
        if log_driver == logs::LOCAL {
            (log_max_size, log_max_file) = logs::LOCAL_ROTATION;
        }
        hc.log_config.get_or_insert_with(Default::default).typ = Some(log_driver.to_owned());
        if let Some(lc) = &hc.log_config {
            for (k, v) in lc.config.iter().flatten() {
                match k.as_str() {
                    "max-size" => log_max_size = parse_size(v)?,
                    "max-file" => {
                        log_max_file = v
                            .parse()
                            .map_err(|_| Error::InvalidInput(format!("invalid max-file: {v}")))?
                    }
                    _ => {}
                }
            }
        }
        let id = names::new_id();
        let host_net = net == "host";
        let hostname = if host_net {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| id[..12].to_string())
        } else {
            config
                .hostname
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| id[..12].to_string())
        };
        let mut config = config;
        config.hostname = Some(hostname.clone());
        let handle = sh
            .cfg
            .store
            .create_rootfs(&id, &image.id.to_string())
            .map_err(store_err(format!("cannot create the rootfs of {id}")))?;
        let dir = sh.ctr_dir(&id);
        let cleanup = |sh: &Shared| {
            let _ = sh.cfg.store.remove_rootfs(&id);
            let _ = std::fs::remove_dir_all(sh.ctr_dir(&id));
        };
        let res = (|| -> Result<Record> {
            std::fs::create_dir_all(&dir)
                .map_err(io_err(format!("cannot create {}", dir.display())))?;
            // Mounted only to fill a new volume from the image: unmounting an overlay syncs
            // its upper filesystem, tens of ms on a busy disk.
            let mounted: std::cell::RefCell<Option<PathBuf>> = std::cell::RefCell::new(None);
            let rootfs = || -> Result<PathBuf> {
                if let Some(p) = mounted.borrow().as_ref() {
                    return Ok(p.clone());
                }
                let p = sh
                    .cfg
                    .store
                    .mount_rootfs(&id)
                    .map_err(store_err("cannot mount the rootfs"))?;
                *mounted.borrow_mut() = Some(p.clone());
                Ok(p)
            };
            let _ = &handle;
            let image_vols: Vec<String> = {
                let mut v: Vec<String> = config
                    .volumes
                    .as_ref()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                v.sort();
                v
            };
            let (mounts, anon) = volumes::resolve(&sh.vols, &rootfs, &hc, &image_vols)?;
            let hostname_path = dir.join("hostname");
            let hosts_path = dir.join("hosts");
            let resolv_path = dir.join("resolv.conf");
            write_atomic(&hostname_path, format!("{hostname}\n").as_bytes())?;
            let hosts = if host_net {
                std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| etc_hosts(&[]))
            } else {
                etc_hosts(hc.extra_hosts.as_deref().unwrap_or(&[]))
            };
            write_atomic(&hosts_path, hosts.as_bytes())?;
            write_atomic(&resolv_path, resolv_conf(&hc, host_net).as_bytes())?;
            let rec = Record {
                id: id.clone(),
                name: name.clone(),
                created: now(),
                path: argv[0].clone(),
                args: argv[1..].to_vec(),
                image_name: image_name.clone(),
                image: image.id.to_string(),
                config: config.clone(),
                host_config: hc.clone(),
                state: State::default(),
                mounts,
                anonymous_volumes: anon,
                restart_count: 0,
                log_path: logs::path(log_driver, &dir, &id)?,
                hostname_path: hostname_path.display().to_string(),
                hosts_path: hosts_path.display().to_string(),
                resolv_conf_path: resolv_path.display().to_string(),
                monitor: None,
                manually_stopped: false,
                log_max_size,
                log_max_file: log_max_file.max(1),
                networking_config: body.networking_config.clone(),
            };
            sh.persist(&rec)?;
            // Mounted again at start; an unstarted container holds no mount.
            if mounted.borrow().is_some() {
                if let Err(e) = sh.cfg.store.unmount_rootfs(&id) {
                    tracing::warn!(container = %id, "cannot unmount the rootfs: {e}");
                }
            }
            Ok(rec)
        })();
        let rec = match res {
            Ok(r) => r,
            Err(e) => {
                cleanup(sh);
                return Err(e);
            }
        };
        let mut ctrs = lock(&sh.ctrs);
        if let Some(other) = ctrs
            .iter()
            .find_map(|(oid, c)| (c.lock().rec.name == name).then(|| oid.clone()))
        {
            drop(ctrs);
            cleanup(sh);
            return Err(Error::Conflict(format!(
                "Conflict. The container name \"{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        ctrs.insert(
            id.clone(),
            Arc::new(Ctr {
                st: Mutex::new(CtrState {
                    rec,
                    exits: 0,
                    removed: false,
                    started: None,
                }),
                cv: Condvar::new(),
                health_gen: std::sync::atomic::AtomicU64::new(0),
            }),
        );
        tracing::info!(container = %id, %name, image = %image_name, "created");
        Ok(id)
    }

    /// The full id of a container named by id, id prefix or name.
    pub fn resolve(&self, name_or_id: &str) -> Result<String> {
        Ok(self.sh.get(name_or_id)?.lock().rec.id.clone())
    }

    /// Starts a container (a no-op if it runs). If a client attached to the created
    /// container, its waiting monitor is told to start.
    pub fn start(&self, name_or_id: &str) -> Result<()> {
        let ctr = self.sh.get(name_or_id)?;
        let mut st = ctr.lock();
        if st.removed {
            return Err(Error::NoSuchContainer(name_or_id.to_string()));
        }
        match st.rec.state.status {
            Status::Running => return Ok(()),
            Status::Paused => {
                return Err(Error::Conflict(
                    "cannot start a paused container, try unpause instead".into(),
                ))
            }
            Status::Removing => {
                return Err(Error::Conflict("the container is being removed".into()))
            }
            _ => {}
        }
        st.rec.manually_stopped = false;
        if st.rec.monitor.as_ref().is_some_and(|m| m.waiting) {
            let id = st.rec.id.clone();
            monitor::command(&self.sh.mon_dir(&id), "start").map_err(|e| Error::Start {
                id: id.clone(),
                msg: e.to_string(),
            })?;
            let pid = self.sh.rt.state(&id).map(|s| s.pid).unwrap_or(0);
            self.sh.mark_running(&mut st, pid);
            ctr.cv.notify_all();
            return Ok(());
        }
        if st.rec.state.status == Status::Restarting {
            // The watcher restarts it; a manual start just does it now.
            st.rec.state.status = Status::Exited;
            ctr.cv.notify_all();
        }
        let h = self.sh.spawn(&mut st, false)?;
        drop(st);
        ctr.cv.notify_all();
        start_watcher(&self.sh, &ctr, h);
        Ok(())
    }

    /// Connects to a container's monitor and attaches (Docker's stream framing, see
    /// `skiff_monitor::protocol`). A created container gets a waiting monitor first, so the
    /// client sees everything from the first byte once [`Engine::start`] runs.
    pub fn attach(&self, name_or_id: &str) -> Result<UnixStream> {
        let ctr = self.sh.get(name_or_id)?;
        let mut st = ctr.lock();
        let id = st.rec.id.clone();
        match st.rec.state.status {
            Status::Running | Status::Paused => {}
            Status::Created | Status::Exited if st.rec.monitor.is_none() => {
                let h = self.sh.spawn(&mut st, true)?;
                start_watcher(&self.sh, &ctr, h);
            }
            Status::Created => {}
            s => {
                return Err(Error::Conflict(format!(
                    "cannot attach to a {} container",
                    s.as_str()
                )))
            }
        }
        drop(st);
        monitor::command(&self.sh.mon_dir(&id), "attach")
    }

    /// Resizes a container's tty.
    pub fn resize(&self, name_or_id: &str, rows: u16, cols: u16) -> Result<()> {
        let id = self.resolve(name_or_id)?;
        monitor::command(&self.sh.mon_dir(&id), &format!("resize {rows} {cols}")).map(|_| ())
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout` seconds (default
    /// its `StopTimeout` or 10).
    pub fn stop(&self, name_or_id: &str, timeout: Option<i64>) -> Result<()> {
        let ctr = self.sh.get(name_or_id)?;
        let mut st = ctr.lock();
        let id = st.rec.id.clone();
        st.rec.manually_stopped = true;
        match st.rec.state.status {
            Status::Running | Status::Paused => {}
            Status::Restarting => {
                st.rec.state.status = Status::Exited;
                self.sh.persist_logged(&st.rec);
                ctr.cv.notify_all();
                return Ok(());
            }
            _ => {
                self.sh.persist_logged(&st.rec);
                return Ok(());
            }
        }
        self.sh.persist_logged(&st.rec);
        let sig = match st
            .rec
            .config
            .stop_signal
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            Some(s) => parse_signal(s)?,
            None => Signal::SIGTERM,
        };
        let secs = timeout.or(st.rec.config.stop_timeout).unwrap_or(10).max(-1);
        let paused = st.rec.state.status == Status::Paused;
        let gen = st.exits;
        drop(st);
        if secs != 0 {
            let _ = self.sh.rt.kill(&id, sig, false);
            if paused {
                let _ = self.sh.rt.resume(&id);
            }
        }
        let wait = if secs < 0 {
            Duration::from_secs(u64::MAX / 4)
        } else {
            Duration::from_secs(secs.unsigned_abs())
        };
        let (st, done) = wait_exit(&ctr, ctr.lock(), gen, wait);
        if done {
            return Ok(());
        }
        drop(st);
        tracing::info!(container = %id, "did not stop in {secs} s, killing it");
        let _ = self.sh.rt.kill(&id, Signal::SIGKILL, true);
        if paused {
            let _ = self.sh.rt.resume(&id);
        }
        let (g, done) = wait_exit(&ctr, ctr.lock(), gen, Duration::from_secs(30));
        drop(g);
        if done {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "container {id} did not die on SIGKILL"
            )))
        }
    }

    /// Sends a signal (`SIGKILL`, `TERM`, `9`...; default SIGKILL).
    pub fn kill(&self, name_or_id: &str, signal: Option<&str>) -> Result<()> {
        let ctr = self.sh.get(name_or_id)?;
        let st = ctr.lock();
        let id = st.rec.id.clone();
        if !st.rec.state.status.is_running() {
            return Err(Error::Conflict(format!("Container {id} is not running")));
        }
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(s)?,
            None => Signal::SIGKILL,
        };
        drop(st);
        self.sh
            .rt
            .kill(&id, sig, sig == Signal::SIGKILL)
            .map_err(rt_err(format!("cannot signal container {id}")))
    }

    /// Stops (if running) and starts a container.
    pub fn restart(&self, name_or_id: &str, timeout: Option<i64>) -> Result<()> {
        self.stop(name_or_id, timeout)?;
        self.start(name_or_id)
    }

    /// Blocks until the condition holds; returns the exit code.
    pub fn wait(&self, name_or_id: &str, cond: WaitCondition) -> Result<i64> {
        self.waiter(name_or_id, cond)?.wait()
    }

    /// A wait that counts exits from now on: an API layer takes it before it answers the
    /// client (which then starts the container) and blocks in [`Waiter::wait`] later, so a
    /// `next-exit` cannot miss a container that exits at once.
    pub fn waiter(&self, name_or_id: &str, cond: WaitCondition) -> Result<Waiter> {
        let ctr = self.sh.get(name_or_id)?;
        let gen = ctr.lock().exits;
        Ok(Waiter {
            sh: self.sh.clone(),
            ctr,
            gen,
            cond,
        })
    }
    /// Removes a container (a running one only with `force`), its rootfs and directories,
    /// and with `volumes` its anonymous volumes.
    pub fn remove(&self, name_or_id: &str, force: bool, volumes: bool) -> Result<()> {
        let ctr = self.sh.get(name_or_id)?;
        remove_ctr(&self.sh, &ctr, force, volumes)
    }

    fn summary(&self, rec: &Record) -> ContainerSummary {
        let mut command = vec![rec.path.clone()];
        command.extend(rec.args.iter().cloned());
        let (ports, network_settings) = self
            .sh
            .cfg
            .network
            .as_ref()
            .and_then(|n| n.settings(rec))
            .map(|ns| netmode::summary(&ns))
            .unwrap_or_default();
        ContainerSummary {
            network_settings: Some(network_settings),
            id: Some(rec.id.clone()),
            names: Some(vec![rec.name.clone()]),
            image: Some(rec.image_name.clone()),
            image_id: Some(rec.image.clone()),
            command: Some(command.join(" ")),
            created: Some(to_i64(&rec.created)),
            ports: Some(ports),
            labels: Some(rec.config.labels.clone().unwrap_or_default()),
            state: Some(rec.state.status.as_str().to_string()),
            status: Some(
                match crate::health::status_suffix(rec.state.health.as_ref()) {
                    Some(h) if rec.state.status == Status::Running => {
                        format!("{} {h}", human_status(&rec.state))
                    }
                    _ => human_status(&rec.state),
                },
            ),
            mounts: Some(rec.mounts.clone()),
            host_config: Some(bollard_stubs::models::ContainerSummaryHostConfig {
                network_mode: rec.host_config.network_mode.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `docker ps`: running containers (all with `all`), newest first, filtered by
    /// `status`, `name`, `id`, `label` (`k` or `k=v`), `ancestor`, `exited`.
    pub fn list(&self, all: bool, filters: &Filters) -> Result<Vec<ContainerSummary>> {
        // Summaries are made under each container's lock, from the record in place: cloning
        // every record was most of the time of a `ps -a` over a thousand containers.
        let ctrs: Vec<Arc<Ctr>> = lock(&self.sh.ctrs).values().cloned().collect();
        for v in filters.get("health").into_iter().flatten() {
            crate::health::filter_matches(None, v)?;
        }
        for k in filters.keys() {
            if ![
                "status", "name", "id", "label", "ancestor", "exited", "health",
            ]
            .contains(&k.as_str())
            {
                return Err(Error::InvalidInput(format!("invalid filter '{k}'")));
            }
        }
        let keep = |r: &Record| {
            (all || filters.contains_key("status") || r.state.status.is_running())
                && filters.iter().all(|(k, vs)| {
                    vs.iter().any(|v| match k.as_str() {
                        "status" => r.state.status.as_str() == v,
                        "name" => r
                            .name
                            .trim_start_matches('/')
                            .contains(v.trim_start_matches('/')),
                        "id" => r.id.starts_with(v.as_str()),
                        "ancestor" => &r.image_name == v || r.image.contains(v.as_str()),
                        "health" => crate::health::filter_matches(r.state.health.as_ref(), v)
                            .unwrap_or(false),
                        "exited" => {
                            r.state.status == Status::Exited
                                && v.parse::<i64>().ok() == Some(r.state.exit_code)
                        }
                        _ => {
                            let labels = r.config.labels.clone().unwrap_or_default();
                            match v.split_once('=') {
                                Some((lk, lv)) => labels.get(lk).is_some_and(|x| x == lv),
                                None => labels.contains_key(v),
                            }
                        }
                    })
                })
        };
        // Newest first. The containers are put in order before their summaries are made:
        // sorting the (large) summaries themselves moved megabytes for a thousand of them.
        let mut order: Vec<(String, &Arc<Ctr>)> = ctrs
            .iter()
            .map(|c| (c.lock().rec.created.clone(), c))
            .collect();
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        let mut out = Vec::with_capacity(order.len());
        for (_, c) in order {
            let st = c.lock();
            if keep(&st.rec) {
                out.push(self.summary(&st.rec));
            }
        }
        Ok(out)
    }

    /// Changes a container's `NetworkingConfig` (`docker network connect/disconnect`: the
    /// networks it joins at its next start) and persists it; returns the new record.
    pub fn update_networking(
        &self,
        name_or_id: &str,
        f: impl FnOnce(&mut NetworkingConfig),
    ) -> Result<Record> {
        let ctr = self.sh.get(name_or_id)?;
        let mut st = ctr.lock();
        let mut nc = st.rec.networking_config.take().unwrap_or_default();
        f(&mut nc);
        st.rec.networking_config = Some(nc);
        self.sh.persist(&st.rec)?;
        Ok(st.rec.clone())
    }

    /// The persisted record of a container.
    pub fn record(&self, name_or_id: &str) -> Result<Record> {
        Ok(self.sh.get(name_or_id)?.lock().rec.clone())
    }

    /// `docker inspect`.
    pub fn inspect(&self, name_or_id: &str) -> Result<ContainerInspectResponse> {
        let rec = self.record(name_or_id)?;
        let s = &rec.state;
        let status = match s.status {
            Status::Created => ContainerStateStatusEnum::CREATED,
            Status::Running => ContainerStateStatusEnum::RUNNING,
            Status::Paused => ContainerStateStatusEnum::PAUSED,
            Status::Restarting => ContainerStateStatusEnum::RESTARTING,
            Status::Removing => ContainerStateStatusEnum::REMOVING,
            Status::Exited => ContainerStateStatusEnum::EXITED,
            Status::Dead => ContainerStateStatusEnum::DEAD,
        };
        let driver = match self.sh.cfg.store.driver() {
            skiff_store::Driver::Overlay => "overlay2",
            skiff_store::Driver::Vfs => "vfs",
        };
        Ok(ContainerInspectResponse {
            id: Some(rec.id.clone()),
            created: Some(rec.created.clone()),
            path: Some(rec.path.clone()),
            args: Some(rec.args.clone()),
            state: Some(ContainerState {
                status: Some(status),
                running: Some(s.status.is_running()),
                paused: Some(s.status == Status::Paused),
                restarting: Some(s.status == Status::Restarting),
                oom_killed: Some(s.oom_killed),
                dead: Some(s.status == Status::Dead),
                pid: Some(s.pid),
                exit_code: Some(s.exit_code),
                error: Some(s.error.clone()),
                started_at: Some(s.started_at.clone()),
                finished_at: Some(s.finished_at.clone()),
                health: s.health.clone(),
            }),
            image: Some(rec.image.clone()),
            resolv_conf_path: Some(rec.resolv_conf_path.clone()),
            hostname_path: Some(rec.hostname_path.clone()),
            hosts_path: Some(rec.hosts_path.clone()),
            // Docker shows the path of a json-file log only.
            log_path: Some(
                if logs::driver(&rec.host_config).ok() == Some(logs::JSON_FILE) {
                    rec.log_path.clone()
                } else {
                    String::new()
                },
            ),
            name: Some(rec.name.clone()),
            restart_count: Some(rec.restart_count),
            driver: Some(driver.into()),
            platform: Some("linux".into()),
            mount_label: Some(String::new()),
            process_label: Some(String::new()),
            app_armor_profile: Some(String::new()),
            exec_ids: None,
            host_config: Some(rec.host_config.clone()),
            mounts: Some(rec.mounts.clone()),
            config: Some(rec.config.clone()),
            network_settings: self.sh.cfg.network.as_ref().and_then(|n| n.settings(&rec)),
            ..Default::default()
        })
    }

    /// A container's log lines; with `follow`, the iterator ends once the container does.
    pub fn logs(&self, name_or_id: &str, opts: crate::LogsOptions) -> Result<logs::LogStream> {
        let ctr = self.sh.get(name_or_id)?;
        logs::LogStream::open(ctr, self.sh.clone(), opts)
    }

    pub fn pause(&self, name_or_id: &str) -> Result<()> {
        let ctr = self.sh.get(name_or_id)?;
        let mut st = ctr.lock();
        let id = st.rec.id.clone();
        match st.rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(Error::Conflict(format!("Container {id} is already paused")))
            }
            _ => return Err(Error::Conflict(format!("Container {id} is not running"))),
        }
        self.sh
            .rt
            .pause(&id)
            .map_err(rt_err(format!("cannot pause container {id}")))?;
        st.rec.state.status = Status::Paused;
        self.sh.persist_logged(&st.rec);
        Ok(())
    }

    pub fn unpause(&self, name_or_id: &str) -> Result<()> {
        let ctr = self.sh.get(name_or_id)?;
        let mut st = ctr.lock();
        let id = st.rec.id.clone();
        if st.rec.state.status != Status::Paused {
            return Err(Error::Conflict(format!("Container {id} is not paused")));
        }
        self.sh
            .rt
            .resume(&id)
            .map_err(rt_err(format!("cannot unpause container {id}")))?;
        st.rec.state.status = Status::Running;
        self.sh.persist_logged(&st.rec);
        Ok(())
    }

    /// Renames a container.
    pub fn rename(&self, name_or_id: &str, new_name: &str) -> Result<()> {
        let ctr = self.sh.get(name_or_id)?;
        let name = format!("/{}", names::validate(new_name)?);
        let id = ctr.lock().rec.id.clone();
        let ctrs = lock(&self.sh.ctrs);
        if let Some(other) = ctrs
            .iter()
            .find_map(|(oid, c)| (*oid != id && c.lock().rec.name == name).then(|| oid.clone()))
        {
            return Err(Error::Conflict(format!(
                "Conflict. The container name \"{name}\" is already in use by container \"{other}\"."
            )));
        }
        let mut st = ctr.lock();
        st.rec.name = name;
        self.sh.persist(&st.rec)
    }

    /// `docker top`: UID, PID, PPID, CMD of every process of the container.
    pub fn top(&self, name_or_id: &str) -> Result<ContainerTopResponse> {
        let id = self.resolve(name_or_id)?;
        let pids = self
            .sh
            .rt
            .pids(&id)
            .map_err(|_| Error::Conflict(format!("Container {id} is not running")))?;
        let mut procs = Vec::new();
        for pid in pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .and_then(|v| v.split_whitespace().next())
                    .unwrap_or("")
                    .to_string()
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            procs.push(vec![field("Uid:"), pid.to_string(), field("PPid:"), cmd]);
        }
        Ok(ContainerTopResponse {
            titles: Some(vec![
                "UID".into(),
                "PID".into(),
                "PPID".into(),
                "CMD".into(),
            ]),
            processes: Some(procs),
        })
    }

    /// The container's cgroup statistics.
    pub fn stats(&self, name_or_id: &str) -> Result<skiff_cgroups::Stats> {
        let id = self.resolve(name_or_id)?;
        self.sh
            .rt
            .stats(&id)
            .map_err(|_| Error::Conflict(format!("Container {id} is not running")))
    }

    /// `docker update`: new limits (applied to the running cgroup) and restart policy,
    /// persisted; Docker's warnings.
    pub fn update(&self, name_or_id: &str, body: &crate::UpdateBody) -> Result<Vec<String>> {
        let ctr = self.sh.get(name_or_id)?;
        crate::update::update(&self.sh, &ctr, body)
    }

    /// Runs a process in a running container (`docker exec`); its stdio are pipes in the
    /// returned handle, or a terminal with `Tty`.
    pub fn exec(&self, name_or_id: &str, cfg: &ExecConfig) -> Result<ExecProcess> {
        self.sh.exec_process(name_or_id, cfg)
    }

    /// The names of the local volumes.
    pub fn volumes(&self) -> Vec<String> {
        self.sh.vols.list()
    }

    /// Removes a local volume unless a container uses it.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        let used: HashSet<String> = lock(&self.sh.ctrs)
            .values()
            .flat_map(|c| {
                c.lock()
                    .rec
                    .mounts
                    .iter()
                    .filter_map(|m| m.name.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        if used.contains(name) {
            return Err(Error::Conflict(format!("volume {name} is in use")));
        }
        if !self.sh.vols.data(name).exists() {
            return Err(Error::NotFound(format!("no such volume: {name}")));
        }
        self.sh.vols.remove(name)
    }
}

/// A pending [`Engine::waiter`].
pub struct Waiter {
    sh: Arc<Shared>,
    ctr: Arc<Ctr>,
    gen: u64,
    cond: WaitCondition,
}

impl Waiter {
    /// Blocks until the condition holds; returns the exit code.
    pub fn wait(self) -> Result<i64> {
        loop {
            if let Some(code) = self.wait_timeout(Duration::from_secs(3600))? {
                return Ok(code);
            }
        }
    }

    /// Like [`Waiter::wait`] for at most `timeout`: `None` if the condition does not hold
    /// yet (the waiter stays valid, so a caller can check whether its client is still
    /// there and wait again).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<i64>> {
        let (ctr, gen, cond) = (&self.ctr, self.gen, self.cond);
        let deadline = Instant::now() + timeout;
        let mut st = ctr.lock();
        loop {
            let done = match cond {
                WaitCondition::NotRunning => {
                    st.removed
                        || !(st.rec.state.status.is_running()
                            || st.rec.state.status == Status::Restarting)
                }
                WaitCondition::NextExit => st.exits > gen || st.removed,
                WaitCondition::Removed => st.removed,
            };
            if done {
                return Ok(Some(st.rec.state.exit_code));
            }
            if self.sh.shutdown.load(Ordering::SeqCst) {
                return Err(Error::Internal("the engine is shutting down".into()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            st = ctr
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_dockers() {
        for (secs, want) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86400, "2 weeks"),
            (60 * 86400, "2 months"),
            (800 * 86400, "2 years"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs} s");
        }
    }

    #[test]
    fn merge_follows_docker() {
        let img = ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            cmd: Some(vec!["sh".into()]),
            entrypoint: None,
            working_dir: Some("/w".into()),
            user: Some("bob".into()),
            ..Default::default()
        };
        let req = ContainerConfig {
            env: Some(vec!["A=2".into(), "B=3".into()]),
            ..Default::default()
        };
        let m = merge(img.clone(), req);
        assert_eq!(m.env.unwrap(), ["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(m.cmd.unwrap(), ["sh"]);
        assert_eq!(m.working_dir.unwrap(), "/w");
        let req = ContainerConfig {
            entrypoint: Some(vec!["echo".into()]),
            user: Some("0".into()),
            ..Default::default()
        };
        let m = merge(img, req);
        assert_eq!(m.cmd, None);
        assert_eq!(m.user.unwrap(), "0");
    }

    #[test]
    fn sizes_and_signals() {
        assert_eq!(parse_size("10m").unwrap(), 10 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
    }
}
