//! What the runtime remembers about a container between commands: `<root>/<id>/state.json`,
//! plus the container's status as runc reports it.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// File names inside a container's state directory.
pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const FIFO_FILE: &str = "exec.fifo";

/// The lifecycle states of the runtime spec, plus runc's `paused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The persisted record of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The init process's pid in the runtime's pid namespace (0 once known dead).
    pub pid: i32,
    /// The init's start time (field 22 of /proc/<pid>/stat), to tell a reused pid apart.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// `linux.cgroupsPath` as given in the spec.
    #[serde(default)]
    pub cgroups_path: Option<String>,
    /// The container's cgroup as created (a relative path depends on the creator's own
    /// cgroup, so later commands must not recompute it).
    #[serde(default)]
    pub cgroup: Option<skiff_cgroups::Cgroup>,
    #[serde(default)]
    pub rootless: bool,
    /// A rootless container that runs without a cgroup (the user may not create one and the
    /// spec asks for no resource limits), as runc does.
    #[serde(default)]
    pub no_cgroup: bool,
    /// Whether the spec has poststart / poststop hooks (so start and delete need not parse it).
    #[serde(default)]
    pub poststart: bool,
    #[serde(default)]
    pub poststop: bool,
}

/// runc's `state` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// The state passed to hooks on stdin (runtime-spec `state` schema).
#[derive(Debug, Clone, Serialize)]
pub struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

pub const OCI_VERSION: &str = "1.2.0";

/// Checks a container id the way runc does.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

impl Record {
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join(id)
    }

    /// Loads the record of `id`, or `Error::NotExist`.
    pub fn load(root: &Path, id: &str) -> Result<Record> {
        validate_id(id)?;
        let path = Self::dir(root, id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotExist(id.to_string()))
            }
            Err(e) => return Err(e).ctx(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_slice(&data)
            .map_err(|e| Error::Other(format!("corrupt state file {}: {e}", path.display())))
    }

    /// Writes the record atomically (temp file + rename).
    pub fn save(&self, root: &Path) -> Result<()> {
        let dir = Self::dir(root, &self.id);
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec(self).map_err(|e| Error::Other(e.to_string()))?;
        let mut f = fs::File::create(&tmp).ctx(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&data)
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, dir.join(STATE_FILE))
            .ctx(|| format!("cannot save state in {}", dir.display()))
    }

    /// The runtime-spec state JSON given to hooks and seccomp agents.
    pub fn hook_state(&self, status: Status, pid: i32) -> String {
        serde_json::to_string(&HookState {
            oci_version: OCI_VERSION,
            id: &self.id,
            status,
            pid,
            bundle: &self.bundle,
            annotations: &self.annotations,
        })
        .unwrap_or_default()
    }

    /// Whether the init process recorded here is still alive (not a zombie, same start time).
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && matches!(proc_stat(self.pid), Some((state, start)) if start == self.pid_start && state != 'Z' && state != 'X')
    }
}

/// Reads (state, starttime) from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // After the state come fields 4.. ; starttime is field 22 overall, i.e. index 19 here.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Now as RFC 3339 with nanoseconds, as runc prints `created`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// Writes `contents` to `path` atomically (used for pid files, which others poll).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    fs::write(&tmp, contents).ctx(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["a", "abc-123_x.y+z", "A"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "..", "é"] {
            assert!(
                matches!(validate_id(bad), Err(Error::InvalidId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn own_stat_is_readable_and_alive() {
        let me = std::process::id() as i32;
        let (state, start) = proc_stat(me).expect("stat of self");
        assert!(state == 'R' || state == 'S', "{state}");
        let rec = Record {
            id: "x".into(),
            pid: me,
            pid_start: start,
            bundle: "/".into(),
            rootfs: "/".into(),
            created: now_rfc3339(),
            owner: String::new(),
            annotations: HashMap::new(),
            cgroups_path: None,
            cgroup: None,
            rootless: false,
            no_cgroup: false,
            poststart: false,
            poststop: false,
        };
        assert!(rec.init_alive());
        let reused = Record {
            pid_start: start + 1,
            ..rec
        };
        assert!(
            !reused.init_alive(),
            "a different start time means a reused pid"
        );
    }

    #[test]
    fn record_roundtrip_and_missing_is_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Record::load(dir.path(), "nope"),
            Err(Error::NotExist(_))
        ));
        fs::create_dir(dir.path().join("c1")).unwrap();
        let rec = Record {
            id: "c1".into(),
            pid: 42,
            pid_start: 7,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            owner: String::new(),
            annotations: HashMap::from([("k".to_string(), "v".to_string())]),
            cgroups_path: Some("/x/y".into()),
            cgroup: None,
            rootless: false,
            no_cgroup: false,
            poststart: false,
            poststop: false,
        };
        rec.save(dir.path()).unwrap();
        let back = Record::load(dir.path(), "c1").unwrap();
        assert_eq!(back.pid, 42);
        assert_eq!(back.annotations["k"], "v");
        assert_eq!(back.cgroups_path.as_deref(), Some("/x/y"));
    }

    #[test]
    fn rfc3339_has_nanoseconds() {
        let t = now_rfc3339();
        assert!(
            t.ends_with('Z') && t.contains('T') && t.contains('.'),
            "{t}"
        );
    }
}
