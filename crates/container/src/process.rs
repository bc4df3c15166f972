//! Turning the calling process into the container's process: rlimits, user, capabilities,
//! no_new_privs, seccomp, the executable lookup and execve. Shared by init and exec.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::Process;

use crate::caps;
use crate::error::{Context, Error, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Sets every `process.rlimits` entry.
pub fn rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        skiff_sys::process::setrlimit(r.typ() as u32, r.soft(), r.hard()).map_err(|e| {
            let hint = if e == nix::errno::Errno::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE, which this host's bounding set may lack)"
            } else {
                ""
            };
            Error::Sys { what: format!("cannot set {:?} to soft {} hard {}{hint}", r.typ(), r.soft(), r.hard()), source: e }
        })?;
    }
    Ok(())
}

/// Whether the Linux security module `name` ("apparmor", "selinux") is active on this host.
pub fn lsm_enabled(name: &str) -> bool {
    if let Ok(list) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        return list.split(',').any(|l| l.trim() == name);
    }
    // securityfs is not mounted: ask the modules themselves.
    match name {
        "apparmor" => std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y"),
        "selinux" => std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok(),
        _ => false,
    }
}

/// Applies an AppArmor profile or SELinux label for the next execve, or explains why not.
pub fn lsm(p: &Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        if !lsm_enabled("apparmor") {
            return Err(Error::Spec(format!(
                "process.apparmorProfile {profile:?} is set but AppArmor is not enabled on this host"
            )));
        }
        crate::procfs::write(
            "/proc/thread-self/attr/apparmor/exec",
            &format!("exec {profile}"),
        )
        .or_else(|_| {
            crate::procfs::write("/proc/thread-self/attr/exec", &format!("exec {profile}"))
        })?;
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        if !lsm_enabled("selinux") {
            return Err(Error::Spec(format!(
                "process.selinuxLabel {label:?} is set but SELinux is not enabled on this host"
            )));
        }
        crate::procfs::write("/proc/thread-self/attr/exec", label)?;
    }
    Ok(())
}

/// The capability masks to apply, limited to what the host's bounding set has (a warning names
/// what was left out, instead of failing like runc does on `--privileged` here).
#[derive(Debug, Default, Clone, Copy)]
pub struct CapPlan {
    /// What the host's bounding set holds (read once).
    pub host: u64,
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

pub fn cap_plan(p: &Process) -> CapPlan {
    let last = skiff_sys::caps::last_cap();
    let mut host = 0u64;
    for c in 0..=last.min(63) {
        if skiff_sys::caps::bounding_has(c) {
            host |= 1 << c;
        }
    }
    let Some(c) = p.capabilities() else {
        // No capabilities at all: every one the host has is dropped.
        return CapPlan {
            host,
            ..CapPlan::default()
        };
    };
    let mut missing = 0u64;
    let mut pick = |set| {
        let (m, _) = caps::mask(set);
        missing |= m & !host;
        m & host
    };
    let plan = CapPlan {
        host,
        bounding: pick(c.bounding().as_ref()),
        effective: pick(c.effective().as_ref()),
        permitted: pick(c.permitted().as_ref()),
        inheritable: pick(c.inheritable().as_ref()),
        ambient: pick(c.ambient().as_ref()),
    };
    if missing != 0 {
        tracing::warn!(
            "capabilities not in the host's bounding set were left out: {}",
            caps::names(missing).join(", ")
        );
    }
    plan
}

/// Switches to the spec's user and applies the capability sets, in the order that keeps the
/// needed capabilities until the end: bounding drop, keepcaps, groups/gid/uid, capset, ambient.
/// Gives the process's user its stdio (a pty slave, or the caller's pipes), as runc does, so
/// that a non-root process can reopen /dev/stdout or its console. /dev/null is left alone,
/// and so is anything the user namespace cannot chown (unmapped owner, read-only /dev).
fn fix_stdio_owner(uid: u32) {
    let null = nix::sys::stat::stat("/dev/null").ok().map(|s| s.st_rdev);
    for fd in 0..=2 {
        let Ok(st) = nix::sys::stat::fstat(fd) else {
            continue;
        };
        if st.st_uid == uid || (st.st_rdev != 0 && Some(st.st_rdev) == null) {
            continue;
        }
        // EINVAL, EPERM, EROFS: not ours to change; the process keeps what it has.
        let _ = nix::unistd::fchown(fd, Some(nix::unistd::Uid::from_raw(uid)), None);
    }
}

pub fn user_and_caps(p: &Process, plan: CapPlan, set_groups: bool) -> Result<()> {
    let last = skiff_sys::caps::last_cap().min(63);
    for c in 0..=last {
        if plan.bounding & (1 << c) == 0 && plan.host & (1 << c) != 0 {
            skiff_sys::caps::bounding_drop(c).ctx(|| {
                format!(
                    "cannot drop {} from the bounding set",
                    caps::CAPS.get(c as usize).unwrap_or(&"?")
                )
            })?;
        }
    }
    let user = p.user();
    fix_stdio_owner(user.uid());
    skiff_sys::caps::set_keepcaps(true).ctx(|| "cannot set keepcaps".into())?;
    if set_groups {
        let groups: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        // A rootless single-id mapping denies setgroups(2) in the user namespace: with no
        // additional gids there is nothing to drop (the namespace has only our own group).
        let denied =
            std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if denied && !groups.is_empty() {
            return Err(Error::Spec(format!(
                "process.user.additionalGids {groups:?} cannot be set: setgroups is denied in this user namespace (a rootless mapping of a single gid); map a range with newgidmap instead"
            )));
        }
        if !denied {
            nix::unistd::setgroups(&groups)
                .ctx(|| format!("cannot set additional gids {groups:?}"))?;
        }
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("cannot set gid {gid}"))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("cannot set uid {uid}"))?;
    skiff_sys::caps::set_keepcaps(false).ctx(|| "cannot clear keepcaps".into())?;
    skiff_sys::caps::capset(skiff_sys::caps::CapSets {
        effective: plan.effective,
        permitted: plan.permitted,
        inheritable: plan.inheritable,
    })
    .ctx(|| "cannot apply the capability sets".into())?;
    skiff_sys::caps::ambient_clear_all().ctx(|| "cannot clear ambient capabilities".into())?;
    for c in 0..=last {
        if plan.ambient & (1 << c) != 0 {
            // Raising needs the capability inheritable too; runc's default spec lists ambient
            // capabilities without inheritable ones, so this is a warning, as in runc.
            if let Err(e) = skiff_sys::caps::ambient_raise(c) {
                tracing::debug!(
                    "cannot raise ambient capability {}: {e}",
                    caps::CAPS.get(c as usize).unwrap_or(&"?")
                );
            }
        }
    }
    Ok(())
}

/// The environment for execve, with HOME added from the container's /etc/passwd if missing.
pub fn environment(p: &Process) -> Vec<CString> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(p.user().uid())));
    }
    env.into_iter()
        .filter_map(|e| CString::new(e).ok())
        .collect()
}

fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 5 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".into())
}

/// Finds the executable the way runc (Go's exec.LookPath) does, with the same words in the
/// errors: dockerd maps "executable file not found" and "no such file or directory" to exit
/// code 127 and "permission denied" to 126.
pub fn lookup(name: &str, env: &[String]) -> std::result::Result<CString, String> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return match std::fs::metadata(name) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "exec: \"{name}\": stat {name}: no such file or directory"
            )),
            Err(e) => Err(format!("exec: \"{name}\": stat {name}: {e}")),
            Ok(_) if !is_exec(Path::new(name)) => {
                Err(format!("exec: \"{name}\": permission denied"))
            }
            Ok(_) => CString::new(name).map_err(|_| format!("exec: {name:?}: invalid name")),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(name);
        if is_exec(&cand) {
            return CString::new(cand.into_os_string().into_encoded_bytes())
                .map_err(|_| format!("exec: {name:?}: invalid name"));
        }
    }
    Err(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    ))
}

/// execve, returning the error in runc's words if it fails.
pub fn execve(path: &CString, args: &[String], env: &[CString]) -> String {
    let argv: Vec<CString> = args
        .iter()
        .filter_map(|a| CString::new(a.as_str()).ok())
        .collect();
    let e = match nix::unistd::execve(path, &argv, env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let name = args.first().map(String::as_str).unwrap_or("");
    format!("exec: \"{name}\": {}", e.desc().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_errors_use_runcs_words() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(lookup("sh", &env).is_ok());
        let e = lookup("no-such-cmd-xyz", &env).unwrap_err();
        assert_eq!(
            e,
            "exec: \"no-such-cmd-xyz\": executable file not found in $PATH"
        );
        let e = lookup("/no/such", &env).unwrap_err();
        assert!(e.contains("no such file or directory"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        let e = lookup(plain.to_str().unwrap(), &env).unwrap_err();
        assert!(e.contains("permission denied"), "{e}");
    }

    #[test]
    fn path_defaults_when_env_has_none() {
        assert!(lookup("sh", &[])
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("/sh"));
    }
}
