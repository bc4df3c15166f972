//! Docker's default seccomp profile.
//!
//! `docker-default.json` is moby's `profiles/seccomp/default.json` (generated there from
//! `default_linux.go`), at the version with `socket(AF_VSOCK)` blocked and `io_uring_*` removed
//! from the allow-list (moby#46762, Docker 25). It is in moby's own format: rules carry
//! `includes`/`excludes` on capabilities, architectures and kernel versions, which
//! [`docker_default_for`] resolves the way moby's `setupSeccomp` does.

use std::sync::OnceLock;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};
use serde::Deserialize;

const PROFILE_JSON: &str = include_str!("docker-default.json");

/// Docker's 14 default capabilities (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT_CAPS: [&str; 14] = [
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    arch_map: Vec<ArchMap>,
    syscalls: Vec<Syscall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
    includes: Option<Condition>,
    excludes: Option<Condition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

fn profile() -> &'static Profile {
    static PROFILE: OnceLock<Profile> = OnceLock::new();
    PROFILE.get_or_init(|| {
        // The JSON is part of this crate and parsed by its tests: it cannot be malformed.
        #[allow(clippy::expect_used)]
        serde_json::from_str(PROFILE_JSON).expect("embedded docker-default.json is valid")
    })
}

/// Docker's default profile resolved for Docker's 14 default capabilities on this machine.
pub fn docker_default() -> LinuxSeccomp {
    docker_default_for(&DOCKER_DEFAULT_CAPS)
}

/// Docker's default profile resolved for a capability set (names with or without `CAP_`, any
/// case) on this machine's architecture and kernel: rules that need a capability not in `caps`
/// are left out, rules excluded by a capability in `caps` too, as moby does.
pub fn docker_default_for(caps: &[&str]) -> LinuxSeccomp {
    resolve(profile(), caps, native_goarch(), kernel_version())
}

/// Go's name for this machine's architecture, as used in the profile's `arches` filters.
fn native_goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

fn native_arch() -> Option<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Arch::ScmpArchX86_64),
        "aarch64" => Some(Arch::ScmpArchAarch64),
        "s390x" => Some(Arch::ScmpArchS390x),
        "riscv64" => Some(Arch::ScmpArchRiscv64),
        _ => None,
    }
}

/// The running kernel's (major, minor), or `None` if unknown (then `minKernel` filters pass).
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_version(release.trim())
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn normalize_cap(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn resolve(p: &Profile, caps: &[&str], goarch: &str, kernel: Option<(u32, u32)>) -> LinuxSeccomp {
    let caps: Vec<String> = caps.iter().map(|c| normalize_cap(c)).collect();
    let has_cap = |c: &String| caps.contains(&normalize_cap(c));
    let kernel_at_least = |min: &str| match (kernel, parse_version(min)) {
        (Some(k), Some(m)) => k >= m,
        _ => true,
    };

    let mut syscalls = Vec::with_capacity(p.syscalls.len());
    for call in &p.syscalls {
        if let Some(inc) = &call.includes {
            if let Some(arches) = inc.arches.as_ref().filter(|a| !a.is_empty()) {
                if !arches.iter().any(|a| a == goarch) {
                    continue;
                }
            }
            if let Some(needed) = &inc.caps {
                if !needed.iter().all(has_cap) {
                    continue;
                }
            }
            if let Some(min) = &inc.min_kernel {
                if !kernel_at_least(min) {
                    continue;
                }
            }
        }
        if let Some(exc) = &call.excludes {
            if let Some(arches) = &exc.arches {
                if arches.iter().any(|a| a == goarch) {
                    continue;
                }
            }
            if let Some(excluding) = &exc.caps {
                if excluding.iter().any(has_cap) {
                    continue;
                }
            }
            if let Some(min) = &exc.min_kernel {
                if kernel_at_least(min) {
                    continue;
                }
            }
        }
        let mut s = LinuxSyscall::default();
        s.set_names(call.names.clone());
        s.set_action(call.action);
        s.set_errno_ret(call.errno_ret);
        s.set_args(call.args.clone());
        syscalls.push(s);
    }

    let architectures = native_arch().and_then(|native| {
        p.arch_map
            .iter()
            .find(|m| m.architecture == native)
            .map(|m| {
                let mut v = vec![m.architecture];
                v.extend(m.sub_architectures.iter().flatten().copied());
                v
            })
    });

    let mut out = LinuxSeccomp::default();
    out.set_default_action(p.default_action);
    out.set_default_errno_ret(p.default_errno_ret);
    out.set_architectures(architectures);
    out.set_syscalls(Some(syscalls));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .flat_map(|c| c.names().clone())
            .collect()
    }

    #[test]
    fn parses_and_resolves_default_caps() {
        let s = docker_default();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let n = names(&s);
        for allowed in [
            "read",
            "execve",
            "clone",
            "clone3",
            "chroot",
            "arch_prctl",
            "ptrace",
        ] {
            assert!(n.iter().any(|x| x == allowed), "{allowed} missing");
        }
        for denied in [
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "kexec_load",
            "pivot_root",
            "swapon",
            "move_pages",
            "_sysctl",
            "uselib",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "sethostname",
            "quotactl",
            "fanotify_init",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "open_by_handle_at",
            "reboot",
            "s390_runtime_instr",
            "kcmp",
        ] {
            assert!(
                !n.iter().any(|x| x == denied),
                "{denied} must not be allowed"
            );
        }
        // clone only with the namespace mask, clone3 → ENOSYS.
        let clone = s
            .syscalls()
            .iter()
            .flatten()
            .find(|c| c.names() == &["clone"])
            .expect("clone rule");
        let arg = clone.args().as_ref().expect("clone args")[0];
        assert_eq!((arg.index(), arg.value()), (0, 0x7E02_0000));
        let clone3 = s
            .syscalls()
            .iter()
            .flatten()
            .find(|c| c.names() == &["clone3"])
            .expect("clone3 rule");
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(38));
    }

    #[test]
    fn sys_admin_unlocks_namespaces_and_drops_clone_mask() {
        let s = docker_default_for(&["sys_admin", "CAP_CHOWN"]);
        let n = names(&s);
        for allowed in ["mount", "unshare", "setns", "clone3", "bpf"] {
            assert!(n.iter().any(|x| x == allowed), "{allowed} missing");
        }
        // No masked clone rule and no clone3 ENOSYS rule with CAP_SYS_ADMIN.
        assert!(s
            .syscalls()
            .iter()
            .flatten()
            .all(|c| c.args().is_none() || c.names() != &["clone"]));
        assert!(s
            .syscalls()
            .iter()
            .flatten()
            .all(|c| c.action() == LinuxSeccompAction::ScmpActAllow || c.names() != &["clone3"]));
        // Without CAP_SYS_CHROOT there is no chroot.
        assert!(!n.iter().any(|x| x == "chroot"));
    }

    #[test]
    fn min_kernel_filter() {
        let p = profile();
        let old = resolve(p, &[], "amd64", Some((4, 4)));
        assert!(!names(&old).iter().any(|x| x == "ptrace"));
        let new = resolve(p, &[], "amd64", Some((6, 18)));
        assert!(names(&new).iter().any(|x| x == "ptrace"));
        assert_eq!(parse_version("6.18.44-fc-v595"), Some((6, 18)));
    }
}
