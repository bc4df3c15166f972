//! One container's cgroup across every hierarchy: path resolution, create, join, freeze,
//! destroy.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::mount::{own_cgroups, CgroupRoot, Kind, Layout, Mount};
use crate::stats::Stats;
use crate::{fs, oom::OomWatcher, Error};

/// v1 controllers whose hierarchy every container joins. The others (cpuset, net_cls, net_prio,
/// hugetlb, rdma, perf_event, misc) get a directory only when a limit needs them: a new cpuset
/// cgroup is unusable until cpus and mems are copied in from its parent, which costs four file
/// operations per level on every start for nothing when no cpuset is asked for.
const ALWAYS_V1: &[&str] = &[
    "cpu", "cpuacct", "memory", "devices", "freezer", "pids", "blkio",
];

/// How long destroy and freeze wait for the kernel before giving up.
const DEADLINE: Duration = Duration::from_secs(10);

/// One hierarchy's directory for this cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dir {
    pub(crate) kind: Kind,
    /// v1 controllers of the hierarchy (empty for the unified one).
    pub(crate) controllers: Vec<String>,
    pub(crate) mountpoint: PathBuf,
    /// This cgroup's directory.
    pub(crate) path: PathBuf,
    /// Created by [`Cgroup::create`] and joined by every process; otherwise made on demand by
    /// [`Cgroup::apply`] when a limit needs it.
    pub(crate) always: bool,
}

impl Dir {
    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The name under /sys/fs/cgroup in a container: the mountpoint's base name.
    fn name(&self) -> String {
        self.mountpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// One container's cgroup across all hierarchies.
///
/// [`Cgroup::new`] is deterministic for a given `cgroupsPath` when the path is absolute; a
/// relative path (and the default, `<container_id>` relative) depends on the caller's own cgroup,
/// as in runc. `Cgroup` is also `Serialize`/`Deserialize` so the runtime can keep the resolved
/// paths in its state instead of resolving them again from another cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub(crate) layout: Layout,
    pub(crate) dirs: Vec<Dir>,
    #[serde(default)]
    pub(crate) fake: bool,
}

/// The lexically cleaned cgroupsPath: whether it is absolute, and its components.
fn clean_path(cgroups_path: Option<&str>, container_id: &str) -> Result<(bool, PathBuf), Error> {
    let raw = match cgroups_path {
        Some(p) if !p.is_empty() => p,
        _ => container_id,
    };
    if raw.contains(':') {
        return Err(Error::SystemdPath {
            path: raw.to_string(),
        });
    }
    if raw.contains('\0') {
        return Err(Error::InvalidPath {
            path: raw.to_string(),
            reason: "it contains a NUL byte",
        });
    }
    let abs = raw.starts_with('/');
    // As runc's CleanPath: ".." never climbs above the start.
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(Error::InvalidPath {
            path: raw.to_string(),
            reason: "it names the hierarchy root, which a container cannot own",
        });
    }
    Ok((abs, parts.iter().collect()))
}

/// The caller's own cgroup in hierarchy `m`, as a path relative to the mount.
fn own_in(m: &Mount, own: &[(Vec<String>, String)]) -> Result<PathBuf, Error> {
    let found = own.iter().find(|(ctrls, _)| match m.kind {
        Kind::Unified => ctrls.is_empty(),
        Kind::V1 => {
            let mut a = ctrls.clone();
            let mut b = m.controllers.clone();
            a.sort();
            b.sort();
            a == b
        }
    });
    let Some((_, path)) = found else {
        return Err(Error::OwnCgroupUnknown {
            hierarchy: if m.kind == Kind::Unified {
                "unified".to_string()
            } else {
                m.controllers.join(",")
            },
        });
    };
    let path = Path::new(path);
    // Strip the mount's own root (bind mounts of a sub-cgroup).
    let rel = path.strip_prefix(&m.root).unwrap_or(path);
    Ok(rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect())
}

impl Cgroup {
    /// Resolves `linux.cgroupsPath` as runc's cgroupfs driver does:
    /// - absolute (`/a/b`): `<mount>/a/b` in every hierarchy;
    /// - relative (`a/b`): under the caller's own cgroup in each hierarchy (on pure v2 under its
    ///   parent, because a cgroup with processes cannot enable controllers for children);
    /// - `None` or empty: the relative path `<container_id>`;
    /// - `slice:prefix:name` (systemd driver): [`Error::SystemdPath`].
    ///
    /// Only a relative path reads /proc/self/cgroup; nothing is created.
    pub fn new(
        root: &CgroupRoot,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Cgroup, Error> {
        let (abs, inner) = clean_path(cgroups_path, container_id)?;
        let own = if abs { Vec::new() } else { own_cgroups()? };
        let mut dirs = Vec::with_capacity(root.mounts.len());
        for m in &root.mounts {
            let base = if abs {
                m.mountpoint.clone()
            } else {
                let mut rel = own_in(m, &own)?;
                if root.layout == Layout::Unified {
                    rel.pop();
                }
                m.mountpoint.join(rel)
            };
            let always = match m.kind {
                Kind::Unified => true,
                Kind::V1 => m
                    .controllers
                    .iter()
                    .any(|c| ALWAYS_V1.contains(&c.as_str()) || c.starts_with("name=")),
            };
            dirs.push(Dir {
                kind: m.kind,
                controllers: m.controllers.clone(),
                mountpoint: m.mountpoint.clone(),
                path: base.join(&inner),
                always,
            });
        }
        Ok(Cgroup {
            layout: root.layout,
            dirs,
            fake: root.fake,
        })
    }

    /// The host layout this cgroup lives in.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The v1 directory holding `controller`, if that controller is mounted as v1.
    pub(crate) fn v1_dir(&self, controller: &str) -> Option<&Dir> {
        self.dirs
            .iter()
            .find(|d| d.kind == Kind::V1 && d.has(controller))
    }

    /// The unified hierarchy's directory (pure v2, or hybrid).
    pub(crate) fn unified(&self) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.kind == Kind::Unified)
    }

    /// The container's directory in the unified hierarchy (pure v2, or the cgroup2 mount of
    /// a hybrid host), where a process can be born directly (`CLONE_INTO_CGROUP`) once
    /// [`Cgroup::create`] made it. `None` on a v1-only host.
    pub fn unified_dir(&self) -> Option<&Path> {
        (!self.fake)
            .then(|| self.unified().map(|d| d.path.as_path()))
            .flatten()
    }

    /// Whether any v1 hierarchy is used (legacy and hybrid hosts).
    pub fn has_v1(&self) -> bool {
        self.dirs.iter().any(|d| d.kind == Kind::V1)
    }

    /// Moves the calling thread into this cgroup in every v1 hierarchy (and in on-demand v1
    /// hierarchies whose directory exists) by writing `0` to `tasks`. The caller must be its
    /// process's only thread, so the process moves whole. Unlike a `cgroup.procs` write (or
    /// any write naming a pid), a thread moving itself does not take the kernel's global
    /// threadgroup lock, whose first writer waits for an RCU grace period (5-15 ms on a
    /// small VM). The unified hierarchy has no such path: a process
    /// is born there instead (`CLONE_INTO_CGROUP` into [`Cgroup::unified_dir`]).
    pub fn join_v1_self(&self) -> Result<(), Error> {
        for d in self.dirs.iter().filter(|d| d.kind == Kind::V1) {
            if d.always {
                fs::write(&d.path, "tasks", "0", self.fake)?;
            } else {
                fs::write_if_exists(&d.path, "tasks", "0", self.fake)?;
            }
        }
        Ok(())
    }

    /// The directory whose cgroup.procs lists the container's processes.
    fn main_dir(&self) -> Option<&Dir> {
        match self.layout {
            Layout::Unified => self.unified(),
            _ => self
                .v1_dir("memory")
                .or_else(|| self.v1_dir("pids"))
                .or_else(|| self.dirs.iter().find(|d| d.always)),
        }
    }

    /// The freezer: v1 `freezer` if mounted, else the unified hierarchy's `cgroup.freeze`.
    fn freezer(&self) -> Option<&Dir> {
        self.v1_dir("freezer").or_else(|| self.unified())
    }

    /// Creates the directory in every hierarchy used (mkdir -p). On pure v2 the controllers
    /// available at the top are enabled in each ancestor's `cgroup.subtree_control`.
    pub fn create(&self) -> Result<(), Error> {
        for d in self.dirs.iter().filter(|d| d.always) {
            if d.kind == Kind::Unified && self.layout == Layout::Unified {
                self.enable_controllers(d, None)?;
            }
            fs::mkdir_p(&d.mountpoint, &d.path)?;
        }
        Ok(())
    }

    /// Enables controllers for `d`'s cgroup in each ancestor's `cgroup.subtree_control`:
    /// `only` = these controllers, `None` = every controller the hierarchy root offers.
    /// Failures to enable are not errors here (as in runc: a nested or rootless parent may not
    /// delegate a controller); the limit write that needs it fails later, naming the file.
    pub(crate) fn enable_controllers(&self, d: &Dir, only: Option<&[&str]>) -> Result<(), Error> {
        let want: Vec<String> = match only {
            Some(list) => list.iter().map(|s| (*s).to_string()).collect(),
            None => match fs::read_opt(&d.mountpoint, "cgroup.controllers")? {
                Some(s) => s.split_whitespace().map(str::to_string).collect(),
                None => return Ok(()), // fake tree without the file
            },
        };
        if want.is_empty() {
            return Ok(());
        }
        let Some(parent) = d.path.parent() else {
            return Ok(());
        };
        // Fast path: the parent already delegates everything, so every ancestor does too.
        if let Some(s) = fs::read_opt(parent, "cgroup.subtree_control")? {
            if want.iter().all(|w| s.split_whitespace().any(|e| e == w)) {
                return Ok(());
            }
        }
        let rel = parent.strip_prefix(&d.mountpoint).unwrap_or(Path::new(""));
        let mut cur = d.mountpoint.clone();
        let mut levels = vec![cur.clone()];
        for c in rel.components() {
            cur.push(c);
            levels.push(cur.clone());
        }
        for level in levels {
            fs::mkdir(&level)?;
            let enabled = fs::read_opt(&level, "cgroup.subtree_control")?.unwrap_or_default();
            let missing: Vec<&String> = want
                .iter()
                .filter(|w| !enabled.split_whitespace().any(|e| e == w.as_str()))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let all: Vec<String> = missing.iter().map(|m| format!("+{m}")).collect();
            if fs::write(&level, "cgroup.subtree_control", &all.join(" "), self.fake).is_err() {
                for one in &all {
                    if let Err(e) = fs::write(&level, "cgroup.subtree_control", one, self.fake) {
                        tracing::debug!("{e}");
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies every limit that is set in `r` (also used for `update`).
    pub fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        match self.layout {
            Layout::Unified => crate::v2::apply(self, r),
            Layout::Hybrid | Layout::Legacy => crate::v1::apply(self, r),
        }
    }

    /// Moves `pid` into this cgroup in every hierarchy (and in on-demand v1 hierarchies whose
    /// directory exists).
    pub fn add_process(&self, pid: i32) -> Result<(), Error> {
        let value = pid.to_string();
        for d in &self.dirs {
            if d.always {
                fs::write(&d.path, "cgroup.procs", &value, self.fake)?;
            } else {
                fs::write_if_exists(&d.path, "cgroup.procs", &value, self.fake)?;
            }
        }
        Ok(())
    }

    /// Moves the processes already in the cgroup into a hierarchy just made on demand.
    pub(crate) fn join_existing(&self, d: &Dir) -> Result<(), Error> {
        for pid in self.procs()? {
            // A process may exit meanwhile.
            match fs::write(&d.path, "cgroup.procs", &pid.to_string(), self.fake) {
                Ok(()) => {}
                Err(Error::Write { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The pids in the cgroup (not its sub-cgroups); empty if it does not exist.
    pub fn procs(&self) -> Result<Vec<i32>, Error> {
        let Some(d) = self.main_dir() else {
            return Ok(Vec::new());
        };
        match fs::read_opt(&d.path, "cgroup.procs")? {
            Some(s) => fs::parse_pids(&d.path.join("cgroup.procs"), &s),
            None => Ok(Vec::new()),
        }
    }

    /// The pids in the cgroup and all its sub-cgroups.
    fn all_procs(dir: &Path, out: &mut Vec<i32>) -> Result<(), Error> {
        if let Some(s) = fs::read_opt(dir, "cgroup.procs")? {
            out.extend(fs::parse_pids(&dir.join("cgroup.procs"), &s)?);
        }
        for sub in fs::subdirs(dir)? {
            Self::all_procs(&sub, out)?;
        }
        Ok(())
    }

    /// Freezes every process of the cgroup and waits until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<(), Error> {
        let Some(d) = self.freezer() else {
            return Ok(());
        };
        let res = self.freeze_dir(d);
        if res.is_err() {
            // Do not leave it half frozen.
            let _ = self.set_frozen(d, false);
        }
        res
    }

    fn freeze_dir(&self, d: &Dir) -> Result<(), Error> {
        self.set_frozen(d, true)?;
        let start = Instant::now();
        let mut nap = Duration::from_micros(50);
        let mut tries = 0u32;
        while !self.dir_frozen(d)? {
            if start.elapsed() > DEADLINE {
                return Err(Error::Timeout {
                    path: d.path.clone(),
                    what: "the cgroup to freeze",
                    millis: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(10));
            tries += 1;
            // v1 can stay FREEZING when a task forks while freezing; asking again helps.
            if d.kind == Kind::V1 && tries.is_multiple_of(8) {
                self.set_frozen(d, true)?;
            }
        }
        Ok(())
    }

    fn set_frozen(&self, d: &Dir, frozen: bool) -> Result<(), Error> {
        match d.kind {
            Kind::V1 => fs::write(
                &d.path,
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
                self.fake,
            ),
            Kind::Unified => fs::write(
                &d.path,
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
                self.fake,
            ),
        }
    }

    fn dir_frozen(&self, d: &Dir) -> Result<bool, Error> {
        match d.kind {
            Kind::V1 => Ok(fs::read(&d.path, "freezer.state")?.trim() == "FROZEN"),
            Kind::Unified => {
                if self.fake {
                    return Ok(fs::read(&d.path, "cgroup.freeze")?.trim() == "1");
                }
                Ok(fs::keyed_value(&d.path, "cgroup.events", "frozen")? == Some(1))
            }
        }
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<(), Error> {
        match self.freezer() {
            Some(d) => self.set_frozen(d, false),
            None => Ok(()),
        }
    }

    /// Whether the cgroup is frozen (a cgroup still freezing is not).
    pub fn is_frozen(&self) -> Result<bool, Error> {
        match self.freezer() {
            Some(d) => match self.dir_frozen(d) {
                Err(Error::Read { source, .. }) if fs::is_not_found(&source) => Ok(false),
                r => r,
            },
            None => Ok(false),
        }
    }

    /// Usage statistics in runc's `events --stats` shape.
    pub fn stats(&self) -> Result<Stats, Error> {
        crate::stats::collect(self)
    }

    /// Watches for OOM kills in this cgroup.
    pub fn oom_watcher(&self) -> Result<OomWatcher, Error> {
        OomWatcher::new(self)
    }

    /// Kills whatever is left (thawing a frozen cgroup first), waits until it is empty and
    /// removes the directory in every hierarchy, sub-cgroups included. Idempotent. Ancestors
    /// are kept (as runc does): they may be shared, e.g. a pod's cgroup.
    pub fn destroy(&self) -> Result<(), Error> {
        if self.fake {
            // Fake trees hold ordinary files, which cgroupfs directories never do.
            for d in &self.dirs {
                match std::fs::remove_dir_all(&d.path) {
                    Err(e) if !fs::is_not_found(&e) => {
                        return Err(Error::Rmdir {
                            path: d.path.clone(),
                            source: e,
                        })
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        // Fast path: the container has exited, every rmdir succeeds at once.
        let mut busy = Vec::new();
        for d in &self.dirs {
            if !fs::rmdir(&d.path)? {
                busy.push(d);
            }
        }
        if busy.is_empty() {
            return Ok(());
        }
        self.kill_all()?;
        let start = Instant::now();
        for d in busy {
            self.remove_tree(&d.path, start)?;
        }
        Ok(())
    }

    /// SIGKILLs every process in the cgroup tree.
    fn kill_all(&self) -> Result<(), Error> {
        if self.layout == Layout::Unified {
            if let Some(d) = self.unified() {
                // cgroup.kill (5.14+) kills the whole subtree atomically, frozen or not.
                if fs::write_if_exists(&d.path, "cgroup.kill", "1", false)? {
                    return Ok(());
                }
            }
        }
        // Freeze so nothing forks between reading the list and the kills.
        let frozen = self.freeze().is_ok();
        let res = self.kill_listed();
        if frozen || self.freezer().is_some() {
            let _ = self.thaw();
        }
        res
    }

    fn kill_listed(&self) -> Result<(), Error> {
        let Some(d) = self.main_dir() else {
            return Ok(());
        };
        let mut pids = Vec::new();
        Self::all_procs(&d.path, &mut pids)?;
        for pid in pids {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    return Err(Error::Kill {
                        path: d.path.clone(),
                        pid,
                        source: e.into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// rmdir of `path` and its sub-cgroups, killing stragglers, until `DEADLINE` after `start`.
    fn remove_tree(&self, path: &Path, start: Instant) -> Result<(), Error> {
        let mut nap = Duration::from_micros(100);
        loop {
            if fs::rmdir(path)? {
                return Ok(());
            }
            for sub in fs::subdirs(path)? {
                self.remove_tree(&sub, start)?;
            }
            if fs::rmdir(path)? {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                return Err(Error::Timeout {
                    path: path.to_path_buf(),
                    what: "the last process to exit so the cgroup can be removed",
                    millis: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
            // Something may have been forked before the kill landed.
            if nap >= Duration::from_millis(20) {
                self.kill_all()?;
            }
        }
    }

    /// Whether the cgroup exists (its main directory).
    pub fn exists(&self) -> bool {
        self.main_dir().is_some_and(|d| d.path.is_dir())
    }

    /// For mounting cgroupfs inside the container: (name, host directory) per hierarchy, e.g.
    /// `("memory", /sys/fs/cgroup/memory/x/y)`, `("unified", /sys/fs/cgroup/unified/x/y)` on
    /// hybrid; on pure v2 a single `("", dir)`. An on-demand v1 hierarchy that was not created
    /// gives the caller's own cgroup there (where the container's processes are).
    pub fn mount_sources(&self) -> Vec<(String, PathBuf)> {
        if self.layout == Layout::Unified {
            return self
                .unified()
                .map(|d| vec![(String::new(), d.path.clone())])
                .unwrap_or_default();
        }
        let mut own: Option<Vec<(Vec<String>, String)>> = None;
        let mut out = Vec::with_capacity(self.dirs.len());
        for d in &self.dirs {
            let name = if d.kind == Kind::Unified {
                "unified".to_string()
            } else {
                d.name()
            };
            if d.always || d.path.is_dir() {
                out.push((name, d.path.clone()));
                continue;
            }
            if own.is_none() {
                own = Some(own_cgroups().unwrap_or_default());
            }
            let m = Mount {
                kind: d.kind,
                controllers: d.controllers.clone(),
                mountpoint: d.mountpoint.clone(),
                root: PathBuf::from("/"),
            };
            if let Ok(rel) = own_in(&m, own.as_deref().unwrap_or_default()) {
                out.push((name, d.mountpoint.join(rel)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths_like_runc() {
        assert_eq!(
            clean_path(Some("/a/../../b/./c"), "id").unwrap(),
            (true, PathBuf::from("b/c"))
        );
        assert_eq!(
            clean_path(Some("x/y"), "id").unwrap(),
            (false, PathBuf::from("x/y"))
        );
        assert_eq!(
            clean_path(None, "c1").unwrap(),
            (false, PathBuf::from("c1"))
        );
        assert_eq!(
            clean_path(Some(""), "c1").unwrap(),
            (false, PathBuf::from("c1"))
        );
        assert!(matches!(
            clean_path(Some("system.slice:skiff:c1"), "c1"),
            Err(Error::SystemdPath { .. })
        ));
        assert!(matches!(
            clean_path(Some("/.."), "c1"),
            Err(Error::InvalidPath { .. })
        ));
    }

    #[test]
    fn absolute_path_in_every_hierarchy() {
        let root = CgroupRoot::with_base(Layout::Hybrid, Path::new("/cg"));
        let cg = Cgroup::new(&root, Some("/skiff/c1"), "c1").unwrap();
        assert_eq!(
            cg.v1_dir("memory").unwrap().path,
            Path::new("/cg/memory/skiff/c1")
        );
        assert_eq!(
            cg.unified().unwrap().path,
            Path::new("/cg/unified/skiff/c1")
        );
        assert!(cg.v1_dir("memory").unwrap().always);
        assert!(!cg.v1_dir("cpuset").unwrap().always);
        assert!(cg.v1_dir("name=systemd").unwrap().always);
        let src = cg.mount_sources();
        assert!(src.contains(&("memory".to_string(), PathBuf::from("/cg/memory/skiff/c1"))));
        assert!(src.contains(&("unified".to_string(), PathBuf::from("/cg/unified/skiff/c1"))));
        let v2 = Cgroup::new(
            &CgroupRoot::with_base(Layout::Unified, Path::new("/cg")),
            Some("/a"),
            "x",
        )
        .unwrap();
        assert_eq!(
            v2.mount_sources(),
            vec![(String::new(), PathBuf::from("/cg/a"))]
        );
    }

    #[test]
    fn relative_path_uses_own_cgroup() {
        let m = Mount {
            kind: Kind::V1,
            controllers: vec!["cpu".into(), "cpuacct".into()],
            mountpoint: "/sys/fs/cgroup/cpu,cpuacct".into(),
            root: "/".into(),
        };
        let own = vec![
            (
                vec!["cpuacct".to_string(), "cpu".to_string()],
                "/a/b".to_string(),
            ),
            (vec![], "/u".to_string()),
        ];
        assert_eq!(own_in(&m, &own).unwrap(), PathBuf::from("a/b"));
        let bind = Mount {
            root: "/a".into(),
            ..m.clone()
        };
        assert_eq!(own_in(&bind, &own).unwrap(), PathBuf::from("b"));
    }

    #[test]
    fn serde_round_trip() {
        let root = CgroupRoot::with_base(Layout::Legacy, Path::new("/cg"));
        let cg = Cgroup::new(&root, Some("/x"), "x").unwrap();
        let json = serde_json::to_string(&cg).unwrap();
        assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cg);
    }
}
