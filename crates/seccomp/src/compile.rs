//! OCI seccomp object → classic BPF program.
//!
//! Layout of the generated program (x86_64 host):
//!
//! ```text
//!   ld  arch
//!   jeq AUDIT_ARCH_X86_64 → x86_64 section
//!   jeq AUDIT_ARCH_I386   → i386 section            (when SCMP_ARCH_X86 is listed)
//!   ret KILL_PROCESS                                 (any other architecture)
//! x86_64 section:  ld nr; binary search over syscall-number ranges
//!                  [0x40000000, 0xffffffff) → x32 section (SCMP_ARCH_X32 listed) or KILL_PROCESS
//! x32 section:     binary search over x32 numbers (the nr is still loaded)
//! i386 section:    ld nr; binary search
//! argument blocks, one per syscall with conditional rules, after the search of their arch
//! ```
//!
//! Syscalls are sorted by number and adjacent numbers with the same verdict merged into ranges,
//! so the search costs one comparison per range boundary instead of one per syscall. Like runc,
//! syscall numbers above the largest one the profile names get `ENOSYS` when the default action
//! denies (so that libc falls back from syscalls newer than the profile, e.g. `fchmodat2`).
//!
//! Semantics follow libseccomp: conditions of one rule are ANDed, rules of one syscall are ORed
//! (first match in profile order gives its action), an unconditional rule overrides conditional
//! rules of the same syscall, rules whose action equals the default action are dropped, and
//! 64-bit argument comparisons are done on the high and low 32-bit halves (only the low half on
//! i386, where arguments are 32 bits wide).

use std::sync::Arc;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use skiff_sys::seccomp as sys;
use tracing::debug;

use crate::bpf::{Emitter, Target, ALU_AND_K, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, LD_W_ABS};
use crate::syscalls::{HASH_BUCKETS, HASH_DISP, HASH_SLOT, HASH_SLOTS, NONE, SYSCALLS};
use crate::{Error, Filter};

pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// What a process making a syscall for an architecture not in the filter gets.
const RET_BAD_ARCH: u32 = RET_KILL_PROCESS;

/// Offsets in `struct seccomp_data` (x86 is little-endian: low half of an argument first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u8) -> u32 {
    16 + 8 * i as u32
}
const fn off_arg_hi(i: u8) -> u32 {
    20 + 8 * i as u32
}

/// The kernel caps `SECCOMP_RET_ERRNO` data at `MAX_ERRNO`.
const MAX_ERRNO: u32 = 4095;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArchKind {
    X86_64,
    X32,
    I386,
}

impl ArchKind {
    fn index(self) -> usize {
        match self {
            ArchKind::X86_64 => 0,
            ArchKind::X32 => 1,
            ArchKind::I386 => 2,
        }
    }
}

/// 32-bit FNV-1a with a seed, the hash of the generated perfect hash table.
fn fnv(seed: u32, name: &str) -> u32 {
    name.bytes().fold(seed ^ 0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Looks a syscall name up: its numbers on x86_64, x32 and i386 (`NONE` where absent).
/// Two short hashes and one string comparison (a binary search cost ~80% of compiling
/// Docker's profile).
fn lookup(name: &str) -> Option<[u32; 3]> {
    let bucket = fnv(0, name) as usize % HASH_BUCKETS;
    let slot = fnv(u32::from(HASH_DISP[bucket]), name) as usize % HASH_SLOTS;
    let index = usize::from(HASH_SLOT[slot]).checked_sub(1)?;
    let &(n, x64, i386, x32) = SYSCALLS.get(index)?;
    (n == name).then_some([x64, x32, i386])
}

/// The number of a syscall on x86_64 (`None` if unknown); for callers and tests.
pub fn syscall_number(name: &str) -> Option<u32> {
    lookup(name).map(|n| n[0]).filter(|&n| n != NONE)
}

#[derive(Clone, Copy, Debug)]
struct Cond {
    index: u8,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

struct Rule {
    action: u32,
    conds: Vec<Cond>,
}

fn action_name(a: LinuxSeccompAction) -> &'static str {
    match a {
        LinuxSeccompAction::ScmpActKill => "SCMP_ACT_KILL",
        LinuxSeccompAction::ScmpActKillThread => "SCMP_ACT_KILL_THREAD",
        LinuxSeccompAction::ScmpActKillProcess => "SCMP_ACT_KILL_PROCESS",
        LinuxSeccompAction::ScmpActTrap => "SCMP_ACT_TRAP",
        LinuxSeccompAction::ScmpActErrno => "SCMP_ACT_ERRNO",
        LinuxSeccompAction::ScmpActNotify => "SCMP_ACT_NOTIFY",
        LinuxSeccompAction::ScmpActTrace => "SCMP_ACT_TRACE",
        LinuxSeccompAction::ScmpActLog => "SCMP_ACT_LOG",
        LinuxSeccompAction::ScmpActAllow => "SCMP_ACT_ALLOW",
    }
}

/// The `SECCOMP_RET_*` value of an action. `what` names the rule for error messages.
fn ret_value(a: LinuxSeccompAction, errno_ret: Option<u32>, what: &str) -> Result<u32, Error> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => {
            let errno = errno_ret.unwrap_or(libc::EPERM.unsigned_abs());
            if errno > MAX_ERRNO {
                return Err(Error::ErrnoOutOfRange {
                    rule: what.to_string(),
                    errno,
                });
            }
            RET_ERRNO | errno
        }
        LinuxSeccompAction::ScmpActTrace => {
            let msg = errno_ret.unwrap_or(libc::EPERM.unsigned_abs());
            if msg > 0xffff {
                return Err(Error::TraceMessageOutOfRange {
                    rule: what.to_string(),
                    msg,
                });
            }
            RET_TRACE | msg
        }
        LinuxSeccompAction::ScmpActNotify => RET_USER_NOTIF,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
    })
}

fn flag_name(f: LinuxSeccompFilterFlag) -> &'static str {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => "SECCOMP_FILTER_FLAG_LOG",
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => "SECCOMP_FILTER_FLAG_TSYNC",
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
        }
    }
}

/// Names of the `SECCOMP_FILTER_FLAG_*` bits set in `flags`.
pub(crate) fn flag_names(flags: u32) -> String {
    const NAMES: [(u32, &str); 6] = [
        (sys::FILTER_FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC"),
        (sys::FILTER_FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG"),
        (
            sys::FILTER_FLAG_SPEC_ALLOW,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        ),
        (
            sys::FILTER_FLAG_NEW_LISTENER,
            "SECCOMP_FILTER_FLAG_NEW_LISTENER",
        ),
        (
            sys::FILTER_FLAG_TSYNC_ESRCH,
            "SECCOMP_FILTER_FLAG_TSYNC_ESRCH",
        ),
        (
            sys::FILTER_FLAG_WAIT_KILLABLE_RECV,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        ),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join("|")
    }
}

#[allow(clippy::cast_possible_truncation)]
const fn lo(v: u64) -> u32 {
    (v & 0xffff_ffff) as u32
}

#[allow(clippy::cast_possible_truncation)]
const fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

/// Compiles an OCI seccomp object into a filter for this machine (x86_64, with the i386 and x32
/// ABIs when listed in `architectures`).
pub fn compile(s: &LinuxSeccomp) -> Result<Filter, Error> {
    if !cfg!(target_arch = "x86_64") {
        return Err(Error::UnsupportedNativeArch(std::env::consts::ARCH));
    }

    // Default action.
    let default_action = s.default_action();
    if default_action == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::NotifyAsDefault);
    }
    let default = ret_value(default_action, s.default_errno_ret(), "defaultAction")?;

    // Architectures: the native one always (as libseccomp's filter always has it), plus the
    // x86 ABIs listed; other architectures cannot occur on this machine and are skipped.
    let mut arch_on = [true, false, false];
    for arch in s.architectures().iter().flatten() {
        match arch {
            Arch::ScmpArchX86_64 | Arch::ScmpArchNative => {}
            Arch::ScmpArchX32 => arch_on[ArchKind::X32.index()] = true,
            Arch::ScmpArchX86 => arch_on[ArchKind::I386.index()] = true,
            other => debug!(arch = %other, "seccomp: skipping architecture foreign to x86_64"),
        }
    }

    // Rules, and per arch the (syscall number, rule) pairs.
    let syscalls = s.syscalls().as_deref().unwrap_or(&[]);
    let mut rules: Vec<Rule> = Vec::with_capacity(syscalls.len());
    let mut entries: [Vec<(u32, u32)>; 3] = Default::default();
    let mut max_nr: [Option<u32>; 3] = [None; 3];
    let mut needs_listener = false;
    for (i, sc) in syscalls.iter().enumerate() {
        let first = sc.names().first().map(String::as_str).unwrap_or("");
        let action = ret_value(sc.action(), sc.errno_ret(), first)?;
        let mut conds = Vec::new();
        for arg in sc.args().iter().flatten() {
            let index = u8::try_from(arg.index())
                .ok()
                .filter(|&i| i < 6)
                .ok_or_else(|| Error::ArgIndexOutOfRange {
                    syscall: first.to_string(),
                    index: arg.index(),
                })?;
            conds.push(Cond {
                index,
                op: arg.op(),
                value: arg.value(),
                value_two: arg.value_two().unwrap_or(0),
            });
        }
        let keep = action != default;
        if !keep {
            debug!(
                syscall = first,
                action = action_name(sc.action()),
                "seccomp: dropping rule whose action is the default action"
            );
        }
        let rule_idx = u32::try_from(i).map_err(|_| Error::TooManyRules)?;
        let mut known = false;
        for name in sc.names() {
            let Some(nrs) = lookup(name) else {
                debug!(syscall = %name, "seccomp: skipping unknown syscall");
                continue;
            };
            known = true;
            for (a, &nr) in nrs.iter().enumerate() {
                if nr == NONE || !arch_on[a] {
                    continue;
                }
                max_nr[a] = Some(max_nr[a].map_or(nr, |m| m.max(nr)));
                if keep {
                    entries[a].push((nr, rule_idx));
                }
            }
        }
        if keep && known && sc.action() == LinuxSeccompAction::ScmpActNotify {
            needs_listener = true;
        }
        rules.push(Rule { action, conds });
    }

    // ENOSYS for syscalls newer than the profile, as runc does, unless the default already
    // allows them or returns ENOSYS.
    let enosys = RET_ERRNO | libc::ENOSYS.unsigned_abs();
    let above_max = match default_action {
        LinuxSeccompAction::ScmpActAllow
        | LinuxSeccompAction::ScmpActLog
        | LinuxSeccompAction::ScmpActTrace => default,
        _ => enosys,
    };

    let mut e = Emitter::with_capacity(512);
    let ctx = Ctx {
        rules: &rules,
        default,
        above_max,
    };

    // Sections, emitted last one first.
    let i386 = if arch_on[ArchKind::I386.index()] {
        let root = ctx.section(&mut e, ArchKind::I386, &mut entries[2], max_nr[2], None);
        Some(load_then(&mut e, OFF_NR, root))
    } else {
        None
    };
    let x32 = if arch_on[ArchKind::X32.index()] {
        Some(ctx.section(&mut e, ArchKind::X32, &mut entries[1], max_nr[1], None))
    } else {
        None
    };
    let x64_root = ctx.section(&mut e, ArchKind::X86_64, &mut entries[0], max_nr[0], x32);
    let x64 = load_then(&mut e, OFF_NR, x64_root);

    // Architecture dispatch.
    let mut t = Target::Ret(RET_BAD_ARCH);
    if let Some(i386) = i386 {
        t = e.jump(JMP_JEQ_K, AUDIT_ARCH_I386, i386, t);
    }
    t = e.jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, x64, t);
    let entry = load_then(&mut e, OFF_ARCH, t);
    let program = e
        .finish(entry)
        .ok_or(Error::Internal("jump offset out of range"))?;
    if program.len() > sys::BPF_MAXINSNS {
        return Err(Error::ProgramTooLong {
            instructions: program.len(),
        });
    }

    // Flags.
    let mut flags = 0;
    if needs_listener {
        flags |= sys::FILTER_FLAG_NEW_LISTENER;
    }
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => sys::FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => sys::FILTER_FLAG_SPEC_ALLOW,
            // With a listener, the kernel accepts TSYNC only together with TSYNC_ESRCH.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync if needs_listener => {
                sys::FILTER_FLAG_TSYNC | sys::FILTER_FLAG_TSYNC_ESRCH
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => sys::FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if needs_listener => {
                sys::FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                debug!(
                    flag = flag_name(*f),
                    "seccomp: ignoring flag, no rule uses SCMP_ACT_NOTIFY"
                );
                0
            }
        };
    }

    Ok(Filter {
        program: Arc::from(program),
        flags,
        needs_listener,
    })
}

/// Emits `ld [off]` in front of `t` (nothing if `t` is a plain return).
fn load_then(e: &mut Emitter, off: u32, t: Target) -> Target {
    if let Target::Ret(_) = t {
        return t;
    }
    e.goto(t);
    e.stmt(LD_W_ABS, off)
}

struct Ctx<'a> {
    rules: &'a [Rule],
    default: u32,
    above_max: u32,
}

impl Ctx<'_> {
    /// Emits the argument blocks and the syscall-number search of one architecture; returns the
    /// search's entry, which expects the syscall number in A. For x86_64, `x32` is the entry of
    /// the x32 section (numbers with `__X32_SYSCALL_BIT`).
    fn section(
        &self,
        e: &mut Emitter,
        arch: ArchKind,
        entries: &mut [(u32, u32)],
        max: Option<u32>,
        x32: Option<Target>,
    ) -> Target {
        sort_by_nr(entries);
        let start = if arch == ArchKind::X32 {
            X32_SYSCALL_BIT
        } else {
            0
        };
        let mut ranges: Vec<(u32, Target)> = Vec::with_capacity(entries.len() / 2 + 8);
        let mut cur = start;
        let mut i = 0;
        while i < entries.len() {
            let nr = entries[i].0;
            let mut j = i;
            while j < entries.len() && entries[j].0 == nr {
                j += 1;
            }
            let outcome = self.syscall_outcome(e, arch, &entries[i..j]);
            if nr > cur {
                add(&mut ranges, cur, Target::Ret(self.default));
            }
            add(&mut ranges, nr, outcome);
            cur = nr.saturating_add(1);
            i = j;
        }
        let end = match arch {
            ArchKind::X86_64 => X32_SYSCALL_BIT,
            ArchKind::X32 | ArchKind::I386 => u32::MAX,
        };
        match max {
            Some(max) => {
                if cur <= max {
                    add(&mut ranges, cur, Target::Ret(self.default));
                }
                if max + 1 < end {
                    add(&mut ranges, max + 1, Target::Ret(self.above_max));
                }
            }
            None => {
                if cur < end {
                    add(&mut ranges, cur, Target::Ret(self.default));
                }
            }
        }
        if arch == ArchKind::X86_64 {
            add(
                &mut ranges,
                X32_SYSCALL_BIT,
                x32.unwrap_or(Target::Ret(RET_BAD_ARCH)),
            );
        }
        if arch != ArchKind::X32 {
            // nr -1: a tracer skipped the syscall; libseccomp lets it reach the rules (and the
            // default action).
            add(&mut ranges, u32::MAX, Target::Ret(self.default));
        }
        tree(e, &ranges)
    }

    /// The verdict for one syscall number, emitting its argument block if it has one.
    fn syscall_outcome(&self, e: &mut Emitter, arch: ArchKind, entries: &[(u32, u32)]) -> Target {
        let rules = entries.iter().map(|&(_, r)| &self.rules[r as usize]);
        if let Some(r) = rules.clone().find(|r| r.conds.is_empty()) {
            return Target::Ret(r.action);
        }
        let rules: Vec<&Rule> = rules.collect();
        let mut next = Target::Ret(self.default);
        for r in rules.iter().rev() {
            let mut t = Target::Ret(r.action);
            for c in r.conds.iter().rev() {
                t = cond(e, arch, c, t, next);
            }
            next = t;
        }
        next
    }
}

/// Sorts `(nr, rule)` pairs by number, keeping profile order among the rules of one number.
/// A counting sort: syscall numbers are small (comparison sorting was a third of the compile
/// time of Docker's profile).
fn sort_by_nr(entries: &mut [(u32, u32)]) {
    const N: usize = 1024;
    let key = |nr: u32| (nr & !X32_SYSCALL_BIT) as usize;
    if entries.len() > usize::from(u16::MAX) || entries.iter().any(|&(nr, _)| key(nr) >= N) {
        entries.sort_by_key(|&(nr, _)| nr);
        return;
    }
    let mut start = [0u16; N + 1];
    for &(nr, _) in entries.iter() {
        start[key(nr) + 1] += 1;
    }
    for i in 0..N {
        start[i + 1] += start[i];
    }
    let src = entries.to_vec();
    for e in src {
        let slot = &mut start[key(e.0)];
        entries[usize::from(*slot)] = e;
        *slot += 1;
    }
}

/// Appends a range starting at `from`, merged into the previous one if the verdict is the same.
fn add(ranges: &mut Vec<(u32, Target)>, from: u32, t: Target) {
    match ranges.last() {
        Some(&(_, last)) if last == t => {}
        _ => ranges.push((from, t)),
    }
}

/// Binary search over ranges `(first number, verdict)`, covering a contiguous domain that starts
/// at `ranges[0].0`; expects the syscall number in A.
fn tree(e: &mut Emitter, ranges: &[(u32, Target)]) -> Target {
    match ranges {
        [] => Target::Ret(RET_BAD_ARCH),
        [(_, t)] => *t,
        _ => {
            let mid = ranges.len() / 2;
            let right = tree(e, &ranges[mid..]);
            let left = tree(e, &ranges[..mid]);
            e.jump(JMP_JGE_K, ranges[mid].0, right, left)
        }
    }
}

/// Emits one argument condition: to `m` if it holds, else to `n`.
fn cond(e: &mut Emitter, arch: ArchKind, c: &Cond, m: Target, n: Target) -> Target {
    use LinuxSeccompOperator as Op;
    let wide = arch != ArchKind::I386;
    let (lo_off, hi_off) = (off_arg_lo(c.index), off_arg_hi(c.index));
    match c.op {
        Op::ScmpCmpEq => eq(e, wide, lo_off, hi_off, c.value, m, n),
        Op::ScmpCmpNe => eq(e, wide, lo_off, hi_off, c.value, n, m),
        Op::ScmpCmpGt => gt(e, wide, lo_off, hi_off, c.value, JMP_JGT_K, m, n),
        Op::ScmpCmpGe => gt(e, wide, lo_off, hi_off, c.value, JMP_JGE_K, m, n),
        Op::ScmpCmpLe => gt(e, wide, lo_off, hi_off, c.value, JMP_JGT_K, n, m),
        Op::ScmpCmpLt => gt(e, wide, lo_off, hi_off, c.value, JMP_JGE_K, n, m),
        Op::ScmpCmpMaskedEq => {
            let (mask, datum) = (c.value, c.value_two);
            let word = |e: &mut Emitter, off: u32, mask: u32, datum: u32, m: Target, n: Target| {
                if datum & !mask != 0 {
                    return n; // (arg & mask) can never equal datum
                }
                if mask == 0 {
                    return m; // 0 == 0
                }
                let mut t = e.jump(JMP_JEQ_K, datum, m, n);
                if let Target::Ret(_) = t {
                    return t;
                }
                if mask != u32::MAX {
                    e.goto(t);
                    t = e.stmt(ALU_AND_K, mask);
                }
                load_then(e, off, t)
            };
            let t = word(e, lo_off, lo(mask), lo(datum), m, n);
            if wide {
                word(e, hi_off, hi(mask), hi(datum), t, n)
            } else {
                t
            }
        }
    }
}

/// `arg == v` → m, else n.
fn eq(
    e: &mut Emitter,
    wide: bool,
    lo_off: u32,
    hi_off: u32,
    v: u64,
    m: Target,
    n: Target,
) -> Target {
    let t = e.jump(JMP_JEQ_K, lo(v), m, n);
    let t = load_then(e, lo_off, t);
    if !wide {
        return t;
    }
    let t = e.jump(JMP_JEQ_K, hi(v), t, n);
    load_then(e, hi_off, t)
}

/// `arg > v` (JGT) or `arg >= v` (JGE) → m, else n; on the (hi, lo) halves:
/// `hi > vh || (hi == vh && lo OP vl)`.
#[allow(clippy::too_many_arguments)]
fn gt(
    e: &mut Emitter,
    wide: bool,
    lo_off: u32,
    hi_off: u32,
    v: u64,
    op: u16,
    m: Target,
    n: Target,
) -> Target {
    let t = e.jump(op, lo(v), m, n);
    let t = load_then(e, lo_off, t);
    if !wide {
        return t;
    }
    let t = e.jump(JMP_JEQ_K, hi(v), t, n);
    let t = e.jump(JMP_JGT_K, hi(v), m, t);
    load_then(e, hi_off, t)
}
