//! Where the cgroup hierarchies are mounted, from /proc/self/mountinfo.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

const MOUNTINFO: &str = "/proc/self/mountinfo";
const SELF_CGROUP: &str = "/proc/self/cgroup";

/// How the kernel presents cgroups on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Pure cgroup v2: one hierarchy holding every controller.
    Unified,
    /// v1 controllers plus a cgroup2 mount (systemd's "hybrid" mode).
    Hybrid,
    /// v1 controllers only.
    Legacy,
}

/// Which kind of hierarchy a mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    V1,
    Unified,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub(crate) kind: Kind,
    /// v1: the controllers of this hierarchy (`cpu`, `memory`, `name=systemd`, ...); empty for
    /// the unified hierarchy.
    pub(crate) controllers: Vec<String>,
    pub(crate) mountpoint: PathBuf,
    /// The cgroup that is the root of this mount (the mountinfo "root" field; `/` unless the
    /// mount is a bind of a sub-cgroup or seen from inside a cgroup namespace).
    pub(crate) root: PathBuf,
}

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    pub(crate) layout: Layout,
    pub(crate) mounts: Vec<Mount>,
    /// A fake tree (tests): writes create the files they write.
    pub(crate) fake: bool,
}

/// The v1 hierarchies [`CgroupRoot::with_base`] lays out, each at `base/<dir>`.
const FAKE_V1: &[(&str, &str)] = &[
    ("cpu", "cpu"),
    ("cpuacct", "cpuacct"),
    ("cpuset", "cpuset"),
    ("memory", "memory"),
    ("devices", "devices"),
    ("freezer", "freezer"),
    ("blkio", "blkio"),
    ("pids", "pids"),
    ("net_cls", "net_cls"),
    ("net_prio", "net_prio"),
    ("hugetlb", "hugetlb"),
    ("rdma", "rdma"),
    ("name=systemd", "systemd"),
];

impl CgroupRoot {
    /// Reads /proc/self/mountinfo (one read, no other files).
    pub fn detect() -> Result<CgroupRoot, Error> {
        let text = std::fs::read_to_string(MOUNTINFO).map_err(|source| Error::Read {
            path: MOUNTINFO.into(),
            source,
        })?;
        Self::from_mountinfo(&text).ok_or_else(|| Error::NoHierarchy {
            mountinfo: MOUNTINFO.into(),
        })
    }

    /// Parses mountinfo text; `None` if no cgroup hierarchy is mounted.
    pub(crate) fn from_mountinfo(text: &str) -> Option<CgroupRoot> {
        let mut mounts: Vec<Mount> = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            if fields.len() < sep + 4 || sep < 5 {
                continue;
            }
            let fstype = fields[sep + 1];
            let root = PathBuf::from(unescape(fields[3]));
            let mountpoint = PathBuf::from(unescape(fields[4]));
            match fstype {
                "cgroup2" if !mounts.iter().any(|m| m.kind == Kind::Unified) => {
                    mounts.push(Mount {
                        kind: Kind::Unified,
                        controllers: Vec::new(),
                        mountpoint,
                        root,
                    });
                }
                "cgroup" => {
                    let controllers: Vec<String> = fields[sep + 3]
                        .split(',')
                        .filter(|o| is_v1_controller(o))
                        .map(str::to_string)
                        .collect();
                    // The same hierarchy can be mounted more than once: keep the first.
                    if controllers.is_empty()
                        || mounts
                            .iter()
                            .any(|m| m.kind == Kind::V1 && m.controllers == controllers)
                    {
                        continue;
                    }
                    mounts.push(Mount {
                        kind: Kind::V1,
                        controllers,
                        mountpoint,
                        root,
                    });
                }
                _ => {}
            }
        }
        let has_v1 = mounts
            .iter()
            .any(|m| m.kind == Kind::V1 && m.controllers.iter().any(|c| !c.starts_with("name=")));
        let has_v2 = mounts.iter().any(|m| m.kind == Kind::Unified);
        let layout = match (has_v1, has_v2) {
            (true, true) => Layout::Hybrid,
            (true, false) => Layout::Legacy,
            (false, true) => {
                // A stray named v1 hierarchy does not make a v2 host hybrid.
                mounts.retain(|m| m.kind == Kind::Unified);
                Layout::Unified
            }
            (false, false) => return None,
        };
        Some(CgroupRoot {
            layout,
            mounts,
            fake: false,
        })
    }

    /// A layout rooted at `base` for tests with fake trees in a tempdir: `Unified` is `base`
    /// itself; `Legacy` has one directory per v1 controller (`base/memory`, `base/cpu`, ...,
    /// `base/systemd`); `Hybrid` adds `base/unified`. Writes create the files they write.
    pub fn with_base(layout: Layout, base: &Path) -> CgroupRoot {
        let mut mounts = Vec::new();
        if layout != Layout::Unified {
            for (ctrl, dir) in FAKE_V1 {
                mounts.push(Mount {
                    kind: Kind::V1,
                    controllers: vec![(*ctrl).to_string()],
                    mountpoint: base.join(dir),
                    root: PathBuf::from("/"),
                });
            }
        }
        match layout {
            Layout::Unified => mounts.push(Mount {
                kind: Kind::Unified,
                controllers: Vec::new(),
                mountpoint: base.to_path_buf(),
                root: PathBuf::from("/"),
            }),
            Layout::Hybrid => mounts.push(Mount {
                kind: Kind::Unified,
                controllers: Vec::new(),
                mountpoint: base.join("unified"),
                root: PathBuf::from("/"),
            }),
            Layout::Legacy => {}
        }
        CgroupRoot {
            layout,
            mounts,
            fake: true,
        }
    }

    /// The host's cgroup layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }
}

/// Known v1 controllers and named hierarchies among a cgroup mount's super options.
fn is_v1_controller(opt: &str) -> bool {
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "blkio"
            | "pids"
            | "net_cls"
            | "net_prio"
            | "hugetlb"
            | "perf_event"
            | "rdma"
            | "misc"
    ) || opt.starts_with("name=")
}

/// mountinfo escapes space, tab, newline and backslash as octal `\ooo`.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(oct) = std::str::from_utf8(&b[i + 1..i + 4]) {
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The calling process's cgroups, from /proc/self/cgroup: (controllers, path) per line, with
/// the unified hierarchy as an empty controller list.
pub(crate) fn own_cgroups() -> Result<Vec<(Vec<String>, String)>, Error> {
    let text = std::fs::read_to_string(SELF_CGROUP).map_err(|source| Error::Read {
        path: SELF_CGROUP.into(),
        source,
    })?;
    Ok(parse_proc_cgroup(&text))
}

pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            let ctrls = if ctrls.is_empty() {
                Vec::new()
            } else {
                ctrls.split(',').map(str::to_string).collect()
            };
            Some((ctrls, path.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 /x /mnt/memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn detects_hybrid() {
        let r = CgroupRoot::from_mountinfo(HYBRID).unwrap();
        assert_eq!(r.layout(), Layout::Hybrid);
        assert_eq!(r.mounts.len(), 5, "duplicate memory mount is dropped");
        let mem = r
            .mounts
            .iter()
            .find(|m| m.controllers == ["memory"])
            .unwrap();
        assert_eq!(mem.mountpoint, Path::new("/sys/fs/cgroup/memory"));
        assert!(r.mounts.iter().any(|m| m.controllers == ["name=systemd"]));
    }

    #[test]
    fn detects_unified_and_legacy() {
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            CgroupRoot::from_mountinfo(v2).unwrap().layout(),
            Layout::Unified
        );
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let r = CgroupRoot::from_mountinfo(v1).unwrap();
        assert_eq!(r.layout(), Layout::Legacy);
        assert_eq!(r.mounts[0].controllers, ["cpu", "cpuacct"]);
        assert!(CgroupRoot::from_mountinfo("1 2 0:1 / / rw - ext4 /dev/sda rw\n").is_none());
    }

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn parses_proc_cgroup() {
        let v = parse_proc_cgroup("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(v[0], (vec!["memory".to_string()], "/a/b".to_string()));
        assert_eq!(v[1].0, ["cpu", "cpuacct"]);
        assert_eq!(v[2], (vec![], "/user.slice".to_string()));
    }
}
