//! The OCI bundle `config.json` of a container: Docker's defaults (capabilities, seccomp,
//! masked and read-only paths, devices) plus what the create request asked for.

use std::collections::HashSet;
use std::path::Path;

use bollard_stubs::models::{HostConfig, MountPointTypeEnum};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::Record;

/// Docker's 14 default capabilities.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where `--init` puts its init inside the container, as Docker does.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Capability names with `CAP_` and upper case.
fn cap_name(c: &str) -> String {
    let u = c.to_ascii_uppercase();
    if u.starts_with("CAP_") {
        u
    } else {
        format!("CAP_{u}")
    }
}

/// The capabilities of the host's bounding set (what `--privileged` grants).
pub fn host_caps() -> Vec<String> {
    let known = skiff_container::known_capabilities();
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    known
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && bnd & (1u64 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The capability set of a container: Docker's defaults (or the host's for privileged),
/// with `--cap-add` / `--cap-drop` (`ALL` allowed in both).
pub fn capabilities(hc: &HostConfig) -> Result<Vec<String>> {
    let known: HashSet<&str> = skiff_container::known_capabilities()
        .iter()
        .copied()
        .collect();
    if hc.privileged.unwrap_or(false) {
        return Ok(host_caps());
    }
    let adds: Vec<String> = hc.cap_add.iter().flatten().map(|c| cap_name(c)).collect();
    let drops: Vec<String> = hc.cap_drop.iter().flatten().map(|c| cap_name(c)).collect();
    for c in adds.iter().chain(&drops) {
        if c != "CAP_ALL" && !known.contains(c.as_str()) {
            return Err(Error::InvalidInput(format!("unknown capability: {c:?}")));
        }
    }
    let mut caps: Vec<String> = if drops.iter().any(|c| c == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drops.contains(c))
            .collect()
    };
    if adds.iter().any(|c| c == "CAP_ALL") {
        caps = host_caps();
        caps.retain(|c| !drops.contains(c) || adds.contains(c));
    }
    for c in adds.into_iter().filter(|c| c != "CAP_ALL") {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

/// Reads a file of the image (never following a symlink out of it: symlinks are refused).
fn read_image_file(rootfs: &Path, rel: &str) -> Option<String> {
    let mut p = rootfs.to_path_buf();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        p.push(comp);
        if std::fs::symlink_metadata(&p).ok()?.file_type().is_symlink() {
            return None;
        }
    }
    std::fs::read_to_string(p).ok()
}

/// `--user`: `name|uid[:group|gid]`, resolved against the image's /etc/passwd and
/// /etc/group; returns uid, gid, additional gids.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>)> {
    if user.is_empty() {
        return resolve_user(rootfs, "0");
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_image_file(rootfs, "etc/passwd").unwrap_or_default();
    let group = read_image_file(rootfs, "etc/group").unwrap_or_default();
    let pw: Vec<Vec<&str>> = passwd.lines().map(|l| l.split(':').collect()).collect();
    let entry = pw.iter().find(|f| f.len() >= 4 && (f[0] == u || f[2] == u));
    let (uid, name, mut gid) = match (u.parse::<u32>(), entry) {
        (_, Some(f)) => (
            f[2].parse::<u32>().unwrap_or(0),
            f[0].to_string(),
            f[3].parse::<u32>().unwrap_or(0),
        ),
        (Ok(n), None) => (n, String::new(), 0),
        (Err(_), None) => {
            return Err(Error::InvalidInput(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    };
    let groups: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect()).collect();
    if let Some(g) = g {
        gid = match (
            g.parse::<u32>(),
            groups.iter().find(|f| f.len() >= 3 && f[0] == g),
        ) {
            (Ok(n), _) => n,
            (_, Some(f)) => f[2].parse().unwrap_or(0),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unable to find group {g}: no matching entries in group file"
                )))
            }
        };
    }
    let mut extra = Vec::new();
    if !name.is_empty() {
        for f in groups.iter().filter(|f| f.len() >= 4) {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if n != gid && !extra.contains(&n) {
                        extra.push(n);
                    }
                }
            }
        }
    }
    Ok((uid, gid, extra))
}

fn rlimit_name(n: &str) -> Result<String> {
    let known = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if known.contains(&n) {
        Ok(format!("RLIMIT_{}", n.to_ascii_uppercase()))
    } else {
        Err(Error::InvalidInput(format!("invalid ulimit type: {n}")))
    }
}

/// Host device nodes (top level of /dev) for `--privileged`.
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/dev") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        let ft = md.file_type();
        let typ = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            continue;
        };
        let name = e.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "console" | "ptmx" | "tty") || name.starts_with("pts") {
            continue;
        }
        let rdev = md.rdev();
        out.push(json!({
            "path": format!("/dev/{name}"), "type": typ,
            "major": nix::sys::stat::major(rdev), "minor": nix::sys::stat::minor(rdev),
            "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid()
        }));
    }
    out
}

/// Settings of the engine the spec depends on.
pub struct SpecEnv<'a> {
    pub rootfs: &'a Path,
    pub init_bin: Option<&'a Path>,
}

/// Builds the bundle's config.json.
pub fn build(rec: &Record, env: &SpecEnv<'_>) -> Result<Value> {
    let c = &rec.config;
    let hc = &rec.host_config;
    let privileged = hc.privileged.unwrap_or(false);
    let sec: Vec<(&str, &str)> = hc
        .security_opt
        .iter()
        .flatten()
        .map(|o| o.split_once(['=', ':']).unwrap_or((o.as_str(), "")))
        .collect();
    let mut no_new_privs = false;
    let mut seccomp_opt: Option<&str> = None;
    for (k, v) in &sec {
        match *k {
            "no-new-privileges" => no_new_privs = v.is_empty() || *v == "true",
            "seccomp" => seccomp_opt = Some(v),
            "apparmor" | "label" => {}
            _ => return Err(Error::InvalidInput(format!("invalid --security-opt: {k}"))),
        }
    }
    let caps = capabilities(hc)?;
    let (uid, gid, extra) = resolve_user(env.rootfs, c.user.as_deref().unwrap_or(""))?;
    let mut args = rec.args.clone();
    args.insert(0, rec.path.clone());
    let init = hc.init.unwrap_or(false);
    if init {
        if env.init_bin.is_none() {
            return Err(Error::InvalidInput(
                "--init: no init binary is configured on this daemon".into(),
            ));
        }
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    let mut rlimits = Vec::new();
    for u in hc.ulimits.iter().flatten() {
        let name = rlimit_name(u.name.as_deref().unwrap_or(""))?;
        rlimits
            .push(json!({"type": name, "soft": u.soft.unwrap_or(0), "hard": u.hard.unwrap_or(0)}));
    }
    let mut process = json!({
        "terminal": c.tty.unwrap_or(false),
        "user": {"uid": uid, "gid": gid, "additionalGids": extra},
        "args": args,
        "env": c.env.clone().unwrap_or_default(),
        "cwd": c.working_dir.as_deref().filter(|w| !w.is_empty()).unwrap_or("/"),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privs,
        "oomScoreAdj": hc.oom_score_adj.unwrap_or(0),
    });
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
    let ro_rootfs = hc.readonly_rootfs.unwrap_or(false);
    let shm = hc.shm_size.filter(|s| *s > 0).unwrap_or(64 << 20);
    let sys_opt = if privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_opt]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", sys_opt]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    ];
    let etc_mode = if ro_rootfs { "ro" } else { "rw" };
    for (dest, src) in [
        ("/etc/resolv.conf", &rec.resolv_conf_path),
        ("/etc/hostname", &rec.hostname_path),
        ("/etc/hosts", &rec.hosts_path),
    ] {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate", etc_mode]}));
    }
    if let (true, Some(bin)) = (init, env.init_bin) {
        mounts.push(json!({"destination": INIT_PATH, "type": "bind", "source": bin, "options": ["bind", "ro", "nosuid", "nodev"]}));
    }
    for m in &rec.mounts {
        let dest = m.destination.clone().unwrap_or_default();
        let rw = if m.rw.unwrap_or(true) { "rw" } else { "ro" };
        match m.typ {
            Some(MountPointTypeEnum::TMPFS) => {
                let mut opts = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
                opts.extend(
                    m.mode
                        .iter()
                        .flat_map(|s| s.split(','))
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                if rw == "ro" {
                    opts.push("ro".into());
                }
                mounts.push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts}));
            }
            _ => {
                let prop = m
                    .propagation
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("rprivate");
                mounts.push(json!({"destination": dest, "type": "bind", "source": m.source.clone().unwrap_or_default(), "options": ["rbind", prop, rw]}));
            }
        }
    }
    let net_mode = hc.network_mode.as_deref().unwrap_or("default");
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if net_mode != "host" {
        namespaces.push(json!({"type": "network"}));
    }
    if hc.pid_mode.as_deref() == Some("host") {
        namespaces.retain(|n| n["type"] != "pid");
    }
    if hc.ipc_mode.as_deref() == Some("host") {
        namespaces.retain(|n| n["type"] != "ipc");
    }
    if hc.uts_mode.as_deref() == Some("host") {
        namespaces.retain(|n| n["type"] != "uts");
    }
    let mut resources = json!({});
    resources["devices"] = if privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"},
            {"allow": true, "type": "b", "access": "m"}
        ])
    };
    if let (Some(r), Value::Object(limits)) =
        (resources.as_object_mut(), crate::update::resources(hc))
    {
        r.extend(limits);
    }
    let hostname = c
        .hostname
        .clone()
        .unwrap_or_else(|| rec.id[..12].to_string());
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("/skiff/{}", rec.id),
    });
    if privileged {
        linux["devices"] = json!(host_devices());
    } else {
        linux["maskedPaths"] = json!(MASKED);
        linux["readonlyPaths"] = json!(READONLY);
        let seccomp = match seccomp_opt {
            Some("unconfined") => None,
            None | Some("") | Some("default") | Some("builtin") => {
                let names: Vec<&str> = caps.iter().map(String::as_str).collect();
                Some(
                    serde_json::to_value(skiff_seccomp::docker_default_for(&names))
                        .map_err(|e| Error::Internal(format!("cannot encode seccomp: {e}")))?,
                )
            }
            Some(file) => {
                let raw = std::fs::read(file).map_err(|e| {
                    Error::InvalidInput(format!("cannot read seccomp profile {file}: {e}"))
                })?;
                Some(serde_json::from_slice::<Value>(&raw).map_err(|e| {
                    Error::InvalidInput(format!("invalid seccomp profile {file}: {e}"))
                })?)
            }
        };
        if let Some(s) = seccomp {
            linux["seccomp"] = s;
        }
    }
    if let Some(sysctls) = hc.sysctls.as_ref().filter(|s| !s.is_empty()) {
        linux["sysctl"] = json!(sysctls);
    }
    Ok(json!({
        "ociVersion": "1.2.0",
        "process": process,
        "root": {"path": env.rootfs, "readonly": ro_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_add_and_drop() {
        let hc = HostConfig {
            cap_add: Some(vec!["sys_admin".into()]),
            cap_drop: Some(vec!["CAP_CHOWN".into(), "net_raw".into()]),
            ..Default::default()
        };
        let caps = capabilities(&hc).unwrap();
        assert_eq!(caps.len(), 13);
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        let hc = HostConfig {
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["KILL".into()]),
            ..Default::default()
        };
        assert_eq!(capabilities(&hc).unwrap(), ["CAP_KILL"]);
        let hc = HostConfig {
            cap_add: Some(vec!["NOPE".into()]),
            ..Default::default()
        };
        assert!(capabilities(&hc).is_err());
    }

    fn record(hc: HostConfig) -> Record {
        serde_json::from_value(json!({
            "Id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Name": "/t", "Created": "", "Path": "sh", "Args": ["-c", "true"],
            "ImageName": "busybox", "Image": "sha256:00", "Config": {"Env": ["PATH=/bin"]},
            "HostConfig": hc, "State": {"Status": "created", "Pid": 0, "ExitCode": 0,
            "Error": "", "StartedAt": "", "FinishedAt": "", "OOMKilled": false},
            "Mounts": [], "RestartCount": 0, "LogPath": "/l", "HostnamePath": "/h",
            "HostsPath": "/hs", "ResolvConfPath": "/r"
        }))
        .unwrap()
    }

    #[test]
    fn docker_defaults_and_privileged() {
        let d = tempfile::tempdir().unwrap();
        let env = SpecEnv {
            rootfs: d.path(),
            init_bin: None,
        };
        let s = build(
            &record(HostConfig {
                nano_cpus: Some(1_500_000_000),
                readonly_rootfs: Some(true),
                ..Default::default()
            }),
            &env,
        )
        .unwrap();
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert!(s["process"]["capabilities"].get("inheritable").is_none());
        assert_eq!(
            s["linux"]["maskedPaths"].as_array().unwrap().len(),
            MASKED.len()
        );
        assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["hostname"], "0123456789ab");
        let etc: Vec<&Value> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"].as_str().unwrap().starts_with("/etc/"))
            .collect();
        assert_eq!(etc.len(), 3);
        assert!(etc.iter().all(|m| m["options"][2] == "ro"));
        let s = build(
            &record(HostConfig {
                privileged: Some(true),
                ..Default::default()
            }),
            &env,
        )
        .unwrap();
        assert!(s["linux"].get("seccomp").is_none());
        assert!(s["linux"].get("maskedPaths").is_none());
        assert_eq!(s["linux"]["resources"]["devices"][0]["allow"], true);
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            host_caps().len()
        );
        let bad = record(HostConfig {
            security_opt: Some(vec!["bogus=1".into()]),
            ..Default::default()
        });
        assert!(build(&bad, &env).is_err());
    }

    #[test]
    fn users_resolve_from_the_image() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nbob:x:1000:\nwheel:x:10:bob\n",
        )
        .unwrap();
        assert_eq!(
            resolve_user(d.path(), "bob").unwrap(),
            (1000, 1000, vec![10])
        );
        assert_eq!(
            resolve_user(d.path(), "bob:wheel").unwrap(),
            (1000, 10, vec![])
        );
        assert_eq!(
            resolve_user(d.path(), "123:456").unwrap(),
            (123, 456, vec![])
        );
        assert_eq!(resolve_user(d.path(), "").unwrap(), (0, 0, vec![]));
        assert!(resolve_user(d.path(), "nobody").is_err());
    }
}
