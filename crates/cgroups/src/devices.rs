//! Device access rules: v1 `devices.allow`/`devices.deny`, v2 a BPF_PROG_TYPE_CGROUP_DEVICE
//! program.
//!
//! The OCI rules are first run through an emulation of the v1 kernel semantics (later rules
//! win, a type-`a` rule resets to allow-all or deny-all), followed by runc's default allow list,
//! exactly as runc does. The result, a default action plus exceptions, is then written to v1
//! files or compiled to eBPF, so both versions enforce the same thing.

use std::ffi::CStr;
use std::os::fd::AsFd;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use skiff_sys::bpf::{self, BpfInsn};

use crate::cgroup::Dir;
use crate::{fs, Error};

const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device type of a rule: `a` (all), `b` (block), `c` (char).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DevType {
    All,
    Block,
    Char,
}

/// One normalised device rule; `None` major/minor is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    allow: bool,
    typ: DevType,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
}

impl DeviceRule {
    const fn chr(major: u32, minor: Option<u32>, access: u8) -> Self {
        DeviceRule {
            allow: true,
            typ: DevType::Char,
            major: Some(major),
            minor,
            access,
        }
    }

    fn from_oci(r: &LinuxDeviceCgroup) -> Result<Self, Error> {
        let bad = |value: String, reason: &str| Error::InvalidValue {
            field: "devices",
            value,
            reason: reason.to_string(),
        };
        let typ = match r.typ().unwrap_or_default() {
            LinuxDeviceType::A => DevType::All,
            LinuxDeviceType::B => DevType::Block,
            LinuxDeviceType::C => DevType::Char,
            t => {
                return Err(bad(
                    t.as_str().to_string(),
                    "a device cgroup rule type must be a, b or c",
                ))
            }
        };
        let num = |v: Option<i64>, what: &str| -> Result<Option<u32>, Error> {
            match v {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None), // -1 is the wildcard in some producers
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| bad(n.to_string(), &format!("{what} number out of range"))),
            }
        };
        let mut access = 0;
        for c in r.access().as_deref().unwrap_or("").chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(bad(
                        r.access().clone().unwrap_or_default(),
                        "access must be made of r, w and m",
                    ))
                }
            };
        }
        if access == 0 {
            access = ACC_ALL;
        }
        Ok(DeviceRule {
            allow: r.allow(),
            typ,
            major: num(r.major(), "major")?,
            minor: num(r.minor(), "minor")?,
            access,
        })
    }

    /// The v1 file syntax: `c 1:3 rwm`, or `a` for every device.
    fn v1_string(&self) -> String {
        if self.typ == DevType::All {
            return "a".to_string();
        }
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        let mut acc = String::new();
        for (bit, ch) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(ch);
            }
        }
        let t = if self.typ == DevType::Block { 'b' } else { 'c' };
        format!("{t} {}:{} {acc}", n(self.major), n(self.minor))
    }
}

/// runc's default allowed devices, appended after the spec's rules: mknod of any device, the
/// standard character devices, ptys, /dev/ptmx and /dev/net/tun.
const DEFAULT_ALLOWED: &[DeviceRule] = &[
    DeviceRule {
        allow: true,
        typ: DevType::Char,
        major: None,
        minor: None,
        access: ACC_MKNOD,
    },
    DeviceRule {
        allow: true,
        typ: DevType::Block,
        major: None,
        minor: None,
        access: ACC_MKNOD,
    },
    DeviceRule::chr(1, Some(3), ACC_ALL),    // /dev/null
    DeviceRule::chr(1, Some(8), ACC_ALL),    // /dev/random
    DeviceRule::chr(1, Some(7), ACC_ALL),    // /dev/full
    DeviceRule::chr(5, Some(0), ACC_ALL),    // /dev/tty
    DeviceRule::chr(1, Some(5), ACC_ALL),    // /dev/zero
    DeviceRule::chr(1, Some(9), ACC_ALL),    // /dev/urandom
    DeviceRule::chr(136, None, ACC_ALL),     // /dev/pts/*
    DeviceRule::chr(5, Some(2), ACC_ALL),    // /dev/ptmx
    DeviceRule::chr(10, Some(200), ACC_ALL), // /dev/net/tun
];

/// runc's default allow list as OCI rules (for callers that want to show or extend it).
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    DEFAULT_ALLOWED
        .iter()
        .map(|r| {
            let mut o = LinuxDeviceCgroup::default();
            o.set_allow(r.allow);
            o.set_typ(Some(match r.typ {
                DevType::All => LinuxDeviceType::A,
                DevType::Block => LinuxDeviceType::B,
                DevType::Char => LinuxDeviceType::C,
            }));
            o.set_major(r.major.map(i64::from));
            o.set_minor(r.minor.map(i64::from));
            let s = r.v1_string();
            o.set_access(s.rsplit(' ').next().map(str::to_string));
            o
        })
        .collect()
}

/// The effect of a rule list: a default and the exceptions to it (each with `allow` equal to
/// `!default_allow`), as the v1 kernel keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceState {
    pub(crate) default_allow: bool,
    pub(crate) exceptions: Vec<DeviceRule>,
}

impl DeviceState {
    fn apply(&mut self, r: DeviceRule) {
        if r.typ == DevType::All {
            // The kernel treats any type-a rule as "all devices": a reset.
            self.default_allow = r.allow;
            self.exceptions.clear();
            return;
        }
        let same = |e: &DeviceRule| e.typ == r.typ && e.major == r.major && e.minor == r.minor;
        if r.allow == self.default_allow {
            // Removes access from an exactly matching exception (dev_exception_rm).
            for e in self.exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !r.access;
            }
            self.exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = self.exceptions.iter_mut().find(|e| same(e)) {
            e.access |= r.access;
        } else {
            self.exceptions.push(r);
        }
    }
}

/// Runs the spec's rules, then the default allow list, from a fresh (allow-all) cgroup.
pub(crate) fn effective(rules: &[LinuxDeviceCgroup]) -> Result<DeviceState, Error> {
    let mut st = DeviceState {
        default_allow: true,
        exceptions: Vec::new(),
    };
    for r in rules {
        st.apply(DeviceRule::from_oci(r)?);
    }
    for r in DEFAULT_ALLOWED {
        st.apply(*r);
    }
    Ok(st)
}

/// The v1 writes for a state: (file, value) in order.
pub(crate) fn v1_writes(st: &DeviceState) -> Vec<(&'static str, String)> {
    let (reset, exc) = if st.default_allow {
        ("devices.allow", "devices.deny")
    } else {
        ("devices.deny", "devices.allow")
    };
    let mut out = vec![(reset, "a".to_string())];
    out.extend(st.exceptions.iter().map(|e| (exc, e.v1_string())));
    out
}

/// v1: resets the cgroup's list and writes the exceptions. (On `update` of a running
/// container this briefly applies only the default; runc avoids that with a diff, which only
/// matters for live device updates.)
pub(crate) fn apply_v1(d: &Dir, rules: &[LinuxDeviceCgroup], fake: bool) -> Result<(), Error> {
    let st = effective(rules)?;
    for (file, value) in v1_writes(&st) {
        if fake {
            // A fake tree keeps every write, one per line, for the tests to read.
            let path = d.path.join(file);
            let mut prev = std::fs::read_to_string(&path).unwrap_or_default();
            prev.push_str(&value);
            prev.push('\n');
            fs::write_path(&path, &prev, true)?;
        } else {
            fs::write(&d.path, file, &value, false)?;
        }
    }
    Ok(())
}

// eBPF opcodes used by the device program.
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// BPF_DEVCG_DEV_BLOCK / BPF_DEVCG_DEV_CHAR.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// A jump whose target ("the next rule") is resolved when the block is complete.
const NEXT: i16 = i16::MIN;

/// Compiles a state to a cgroup device program. The context (`struct bpf_cgroup_dev_ctx`) is
/// `access_type` (type in the low 16 bits, access above), `major`, `minor`. Registers:
/// r2 type, r3 access, r4 major, r5 minor; r0 = 1 allows.
pub(crate) fn program(st: &DeviceState) -> Vec<BpfInsn> {
    let mut p = vec![
        BpfInsn::new(LDX_W, 2, 1, 0, 0),
        BpfInsn::new(AND32_K, 2, 0, 0, 0xffff),
        BpfInsn::new(LDX_W, 3, 1, 0, 0),
        BpfInsn::new(RSH32_K, 3, 0, 0, 16),
        BpfInsn::new(LDX_W, 4, 1, 4, 0),
        BpfInsn::new(LDX_W, 5, 1, 8, 0),
    ];
    for e in &st.exceptions {
        let mut b: Vec<BpfInsn> = Vec::new();
        match e.typ {
            DevType::Block => b.push(BpfInsn::new(JNE_K, 2, 0, NEXT, DEV_BLOCK)),
            DevType::Char => b.push(BpfInsn::new(JNE_K, 2, 0, NEXT, DEV_CHAR)),
            DevType::All => {}
        }
        if e.access != ACC_ALL {
            b.push(BpfInsn::new(MOV32_X, 1, 3, 0, 0));
            b.push(BpfInsn::new(AND32_K, 1, 0, 0, i32::from(e.access)));
            if e.allow {
                // Allowed only if every requested access is in the rule.
                b.push(BpfInsn::new(JNE_X, 1, 3, NEXT, 0));
            } else {
                // Denied if any requested access is in the rule (v1 blacklist semantics).
                b.push(BpfInsn::new(JEQ_K, 1, 0, NEXT, 0));
            }
        }
        if let Some(m) = e.major {
            b.push(BpfInsn::new(
                JNE_K,
                4,
                0,
                NEXT,
                i32::try_from(m).unwrap_or(-1),
            ));
        }
        if let Some(m) = e.minor {
            b.push(BpfInsn::new(
                JNE_K,
                5,
                0,
                NEXT,
                i32::try_from(m).unwrap_or(-1),
            ));
        }
        b.push(BpfInsn::new(MOV64_K, 0, 0, 0, i32::from(e.allow)));
        b.push(BpfInsn::new(EXIT, 0, 0, 0, 0));
        let len = b.len();
        for (i, insn) in b.iter_mut().enumerate() {
            if insn.off == NEXT {
                insn.off = i16::try_from(len - i - 1).unwrap_or(0);
            }
        }
        p.extend(b);
    }
    p.push(BpfInsn::new(MOV64_K, 0, 0, 0, i32::from(st.default_allow)));
    p.push(BpfInsn::new(EXIT, 0, 0, 0, 0));
    p
}

/// v2: loads the program, attaches it, then detaches the programs that were there before
/// (an `update`), so there is never a moment without one.
pub(crate) fn apply_v2(d: &Dir, rules: &[LinuxDeviceCgroup], fake: bool) -> Result<(), Error> {
    let st = effective(rules)?;
    if fake {
        return Ok(());
    }
    let bpf_err = |source| Error::Bpf {
        path: d.path.clone(),
        source,
    };
    let dir = std::fs::File::open(&d.path).map_err(|source| Error::Read {
        path: d.path.clone(),
        source,
    })?;
    let old = bpf::query_cgroup_device(dir.as_fd()).map_err(bpf_err)?;
    if st.default_allow && st.exceptions.is_empty() && old.is_empty() {
        return Ok(()); // nothing to enforce
    }
    let license: &CStr = c"Apache";
    let prog = bpf::load_cgroup_device_prog(&program(&st), license).map_err(bpf_err)?;
    bpf::attach_cgroup_device(dir.as_fd(), prog.as_fd(), bpf::BPF_F_ALLOW_MULTI)
        .map_err(bpf_err)?;
    for id in old {
        match bpf::prog_fd_by_id(id) {
            Ok(fd) => bpf::detach_cgroup_device(dir.as_fd(), fd.as_fd()).map_err(bpf_err)?,
            Err(e) => tracing::debug!("device program {id} vanished: {e}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        t: LinuxDeviceType,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(t));
        r.set_major(maj);
        r.set_minor(min);
        r.set_access(Some(acc.to_string()));
        r
    }

    /// A tiny interpreter for the opcodes `program` emits.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn run(p: &[BpfInsn], typ: i32, access: u8, major: u32, minor: u32) -> bool {
        let ctx = [
            ((u32::from(access)) << 16) | u32::try_from(typ).unwrap(),
            major,
            minor,
        ];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let dst = usize::from(i.regs & 0xf);
            let src = usize::from(i.regs >> 4);
            let imm = i64::from(i.imm) as u64;
            let mut next = pc + 1;
            let jump = |cond: bool, next: &mut usize| {
                if cond {
                    *next = usize::try_from(isize::try_from(pc).unwrap() + 1 + isize::from(i.off))
                        .unwrap();
                }
            };
            match i.code {
                LDX_W => r[dst] = u64::from(ctx[usize::try_from(i.off).unwrap() / 4]),
                AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                MOV32_X => r[dst] = r[src] as u32 as u64,
                MOV64_K => r[dst] = imm,
                JNE_K => jump(r[dst] != imm, &mut next),
                JNE_X => jump(r[dst] != r[src], &mut next),
                JEQ_K => jump(r[dst] == imm, &mut next),
                EXIT => return r[0] == 1,
                c => panic!("unknown opcode {c:#x}"),
            }
            pc = next;
        }
    }

    fn docker_like() -> Vec<LinuxDeviceCgroup> {
        vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(4), None, "rw"),
        ]
    }

    #[test]
    fn emulates_v1_and_appends_defaults() {
        let st = effective(&docker_like()).unwrap();
        assert!(!st.default_allow);
        let w = v1_writes(&st);
        assert_eq!(w[0], ("devices.deny", "a".to_string()));
        assert!(w.contains(&("devices.allow", "c 4:* rw".to_string())));
        assert!(w.contains(&("devices.allow", "c 1:3 rwm".to_string())));
        assert!(w.contains(&("devices.allow", "c *:* m".to_string())));
        assert!(w.contains(&("devices.allow", "b *:* m".to_string())));
        assert_eq!(w.len(), 1 + 1 + DEFAULT_ALLOWED.len());
    }

    #[test]
    fn later_rules_win() {
        // allow all, then deny /dev/null writes: blacklist with one exception.
        let st = effective(&[
            rule(true, LinuxDeviceType::A, None, None, "rwm"),
            rule(false, LinuxDeviceType::C, Some(1), Some(3), "w"),
        ])
        .unwrap();
        assert!(st.default_allow);
        // The default list re-allows c 1:3 rwm, which removes the exception again (runc too).
        assert!(st.exceptions.is_empty());
        let st = effective(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(false, LinuxDeviceType::C, Some(1), Some(3), "w"),
        ]);
        // The default list adds the write back.
        assert!(st
            .unwrap()
            .exceptions
            .iter()
            .any(|e| e.major == Some(1) && e.minor == Some(3) && e.access == ACC_ALL));
    }

    #[test]
    fn program_enforces_the_rules() {
        let st = effective(&docker_like()).unwrap();
        let p = program(&st);
        assert!(
            run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3),
            "/dev/null rw"
        );
        assert!(run(&p, DEV_CHAR, ACC_READ, 136, 7), "pts");
        assert!(run(&p, DEV_CHAR, ACC_WRITE, 4, 1), "tty via c 4:* rw");
        assert!(
            !run(&p, DEV_CHAR, ACC_MKNOD | ACC_READ, 4, 1) || run(&p, DEV_CHAR, ACC_MKNOD, 4, 1)
        );
        assert!(
            run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0),
            "mknod of any block device"
        );
        assert!(!run(&p, DEV_BLOCK, ACC_READ, 8, 0), "no reading disks");
        assert!(!run(&p, DEV_CHAR, ACC_READ, 1, 1), "no /dev/mem");

        // Blacklist: allow all but deny reading c 10:*.
        let st = DeviceState {
            default_allow: true,
            exceptions: vec![DeviceRule {
                allow: false,
                typ: DevType::Char,
                major: Some(10),
                minor: None,
                access: ACC_READ,
            }],
        };
        let p = program(&st);
        assert!(
            !run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 10, 1),
            "any overlap denies"
        );
        assert!(run(&p, DEV_CHAR, ACC_WRITE, 10, 1));
        assert!(run(&p, DEV_BLOCK, ACC_READ, 10, 1));
    }

    #[test]
    fn rejects_bad_rules() {
        assert!(effective(&[rule(true, LinuxDeviceType::C, Some(1), Some(3), "rx")]).is_err());
        assert!(effective(&[rule(true, LinuxDeviceType::P, Some(1), Some(3), "r")]).is_err());
        assert_eq!(default_device_rules().len(), DEFAULT_ALLOWED.len());
    }
}
