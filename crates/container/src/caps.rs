//! Capability names and the masks the kernel uses.

use oci_spec::runtime::{Capabilities, Capability};

/// Capability names in kernel order (bit N = CAPS[N]).
pub const CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The kernel number of a capability name ("CAP_SYS_ADMIN" or "sys_admin").
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAPS.iter()
        .position(|c| *c == full)
        .and_then(|i| u32::try_from(i).ok())
}

/// The spec name of a parsed capability.
pub fn name(cap: &Capability) -> String {
    match serde_json::to_value(cap) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("CAP_{cap}"),
    }
}

/// A set of capabilities as a bit mask; names this table does not know are returned apart.
pub fn mask(set: Option<&Capabilities>) -> (u64, Vec<String>) {
    let mut m = 0u64;
    let mut unknown = Vec::new();
    for cap in set.into_iter().flatten() {
        let n = name(cap);
        match number(&n) {
            Some(bit) => m |= 1 << bit,
            None => unknown.push(n),
        }
    }
    (m, unknown)
}

/// Names of the bits set in `m`.
pub fn names(m: u64) -> Vec<&'static str> {
    CAPS.iter()
        .enumerate()
        .filter(|(i, _)| m & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("sys_admin"), Some(21));
        assert_eq!(number("CAP_SYS_RESOURCE"), Some(24));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn docker_default_mask() {
        let caps: Capabilities = [
            "CHOWN",
            "DAC_OVERRIDE",
            "FSETID",
            "FOWNER",
            "MKNOD",
            "NET_RAW",
            "SETGID",
            "SETUID",
            "SETFCAP",
            "SETPCAP",
            "NET_BIND_SERVICE",
            "SYS_CHROOT",
            "KILL",
            "AUDIT_WRITE",
        ]
        .iter()
        .map(|c| serde_json::from_value(serde_json::Value::String(format!("CAP_{c}"))).unwrap())
        .collect();
        let (m, unknown) = mask(Some(&caps));
        assert!(unknown.is_empty());
        assert_eq!(m, 0xa80425fb, "Docker's documented default mask");
        assert_eq!(names(m).len(), 14);
    }
}
