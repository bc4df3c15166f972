//! Reading and checking a bundle's config.json.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A loaded bundle: the parsed spec, the raw bytes (kept for later commands) and the absolute
/// rootfs path.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub raw: Vec<u8>,
    pub rootfs: PathBuf,
}

/// Parses config.json bytes. Capability names unknown to this build are dropped with a
/// warning (as runc does) instead of failing the whole container.
pub fn parse(raw: &[u8], path: &Path) -> Result<Spec> {
    match serde_json::from_slice::<Spec>(raw) {
        Ok(spec) => Ok(spec),
        Err(first) => {
            let err = |e: &serde_json::Error| Error::Config {
                path: path.to_path_buf(),
                msg: e.to_string(),
            };
            let mut value: serde_json::Value = serde_json::from_slice(raw).map_err(|e| err(&e))?;
            if !drop_unknown_caps(&mut value) {
                return Err(err(&first));
            }
            serde_json::from_value(value).map_err(|e| err(&e))
        }
    }
}

fn drop_unknown_caps(v: &mut serde_json::Value) -> bool {
    let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return false;
    };
    let mut dropped = false;
    for set in caps.values_mut() {
        if let Some(list) = set.as_array_mut() {
            list.retain(|c| {
                let known = c.as_str().is_some_and(|s| crate::caps::number(s).is_some());
                if !known {
                    tracing::warn!("ignoring unknown capability {c}");
                    dropped = true;
                }
                known
            });
        }
    }
    dropped
}

/// Loads `<bundle>/config.json` and checks what the runtime relies on.
pub fn load(bundle: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(bundle).map_err(|e| Error::Io {
        what: format!("bad bundle path {}", bundle.display()),
        source: e,
    })?;
    let path = dir.join("config.json");
    let raw = std::fs::read(&path).map_err(|e| Error::Io {
        what: format!("cannot read {}", path.display()),
        source: e,
    })?;
    let spec = parse(&raw, &path)?;
    validate(&spec, &path)?;
    let root = spec.root().as_ref().expect("validated");
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Spec(format!(
                "root.path {} is not a directory",
                rootfs.display()
            )))
        }
        Err(e) => {
            return Err(Error::Io {
                what: format!("rootfs (root.path) {} cannot be used", rootfs.display()),
                source: e,
            })
        }
    }
    Ok(Bundle {
        dir,
        spec,
        raw,
        rootfs,
    })
}

/// Static checks on a spec, with messages naming the offending field.
pub fn validate(spec: &Spec, path: &Path) -> Result<()> {
    let bad = |msg: String| Error::Config {
        path: path.to_path_buf(),
        msg,
    };
    if spec.version().is_empty() {
        return Err(bad("ociVersion is empty".into()));
    }
    let Some(root) = spec.root() else {
        return Err(bad("root is missing".into()));
    };
    if root.path().as_os_str().is_empty() {
        return Err(bad("root.path is empty".into()));
    }
    let Some(process) = spec.process() else {
        return Err(bad("process is missing".into()));
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(bad("process.args must not be empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(bad(format!(
            "process.cwd {:?} must be an absolute path",
            process.cwd()
        )));
    }
    let mut seen_rlimits = HashSet::new();
    for r in process.rlimits().iter().flatten() {
        if !seen_rlimits.insert(r.typ() as u32) {
            return Err(bad(format!(
                "process.rlimits: {:?} is given twice",
                r.typ()
            )));
        }
        if r.soft() > r.hard() {
            return Err(bad(format!(
                "process.rlimits: {:?} soft limit {} is above its hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
    }
    let Some(linux) = spec.linux() else {
        return Err(bad("linux is missing".into()));
    };
    let mut seen = HashSet::new();
    let mut new_user = false;
    let mut has_mnt = false;
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(bad(format!(
                "linux.namespaces: {} is listed twice",
                ns.typ()
            )));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(bad(format!(
                    "linux.namespaces: {} path {:?} must be absolute",
                    ns.typ(),
                    p
                )));
            }
        }
        match ns.typ() {
            LinuxNamespaceType::User if ns.path().is_none() => new_user = true,
            LinuxNamespaceType::Mount => has_mnt = ns.path().is_none(),
            _ => {}
        }
    }
    if !has_mnt {
        return Err(bad(
            "linux.namespaces must include a new mount namespace (without path)".into(),
        ));
    }
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_user && !maps {
        return Err(bad(
            "a new user namespace needs linux.uidMappings and linux.gidMappings".into(),
        ));
    }
    if maps && !new_user {
        return Err(bad(
            "linux.uidMappings/gidMappings are set but there is no new user namespace".into(),
        ));
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.destination().as_os_str().is_empty() {
            return Err(bad(format!("mounts[{i}].destination is empty")));
        }
    }
    if let Some(hooks) = spec.hooks() {
        let lists = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (kind, list) in lists {
            for (i, h) in list.iter().flatten().enumerate() {
                if !h.path().is_absolute() {
                    return Err(bad(format!(
                        "hooks.{kind}[{i}].path {:?} must be absolute",
                        h.path()
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        })
    }

    fn check(v: serde_json::Value) -> Result<Spec> {
        let raw = serde_json::to_vec(&v).unwrap();
        let p = Path::new("/b/config.json");
        let spec = parse(&raw, p)?;
        validate(&spec, p)?;
        Ok(spec)
    }

    fn err_of(v: serde_json::Value) -> String {
        match check(v) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_minimal_spec_is_fine() {
        check(base()).unwrap();
    }

    #[test]
    fn broken_json_names_the_file_and_position() {
        let e = parse(b"{\"ociVersion\": ", Path::new("/b/config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/b/config.json") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn unknown_namespace_is_named() {
        let mut v = base();
        v["linux"]["namespaces"][1]["type"] = "bogus".into();
        let e = err_of(v);
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn duplicate_namespace_and_missing_args_are_refused() {
        let mut v = base();
        v["linux"]["namespaces"][1]["type"] = "mount".into();
        assert!(err_of(v).contains("listed twice"));
        let mut v = base();
        v["process"]["args"] = serde_json::json!([]);
        assert!(err_of(v).contains("process.args"));
        let mut v = base();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]);
        assert!(err_of(v).contains("mount namespace"));
    }

    #[test]
    fn user_namespace_needs_mappings() {
        let mut v = base();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        assert!(err_of(v).contains("uidMappings"));
    }

    #[test]
    fn relative_hook_and_bad_rlimit_are_refused() {
        let mut v = base();
        v["hooks"] = serde_json::json!({"prestart": [{"path": "hook"}]});
        assert!(err_of(v).contains("hooks.prestart[0]"));
        let mut v = base();
        v["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]);
        assert!(err_of(v).contains("soft limit"));
    }

    #[test]
    fn unknown_capabilities_are_dropped_not_fatal() {
        let mut v = base();
        v["process"]["capabilities"] =
            serde_json::json!({"bounding": ["CAP_CHOWN", "CAP_FROM_THE_FUTURE"]});
        let spec = check(v).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
    }
}
