//! Unit tests: compile profiles and run the BPF through the interpreter in `interp`.

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use serde_json::json;

use crate::compile::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::interp::{run, run_counted, validate, Data};
use crate::syscalls::{NONE, SYSCALLS};
use crate::{compile, docker_default, docker_default_for, Error, Filter};

const ALLOW: u32 = 0x7fff_0000;
const KILL_THREAD: u32 = 0;
const KILL_PROCESS: u32 = 0x8000_0000;
const TRAP: u32 = 0x0003_0000;
const LOG: u32 = 0x7ffc_0000;
const NOTIFY: u32 = 0x7fc0_0000;
const fn errno(e: i32) -> u32 {
    0x0005_0000 | e.unsigned_abs()
}
const fn trace(m: u32) -> u32 {
    0x7ff0_0000 | m
}
const EPERM: u32 = errno(libc::EPERM);
const ENOSYS: u32 = errno(libc::ENOSYS);

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("valid LinuxSeccomp")
}

fn build(v: serde_json::Value) -> Filter {
    let f = compile(&profile(v)).expect("compiles");
    validate(f.program());
    f
}

/// Numbers of a syscall: (x86_64, i386, x32).
fn nrs(name: &str) -> (u32, u32, u32) {
    let i = SYSCALLS
        .binary_search_by(|(n, ..)| (*n).cmp(name))
        .unwrap_or_else(|_| panic!("no syscall {name}"));
    let (_, a, b, c) = SYSCALLS[i];
    (a, b, c)
}

fn x64(name: &str) -> u32 {
    nrs(name).0
}

fn call(f: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    run(
        f.program(),
        &Data {
            nr,
            arch,
            ip: 0x7fff_1234_5678,
            args,
        },
    )
}

fn sys64(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    call(f, AUDIT_ARCH_X86_64, x64(name), args)
}

#[test]
fn default_action_and_allow_list() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(sys64(&f, "read", [0; 6]), ALLOW);
    assert_eq!(sys64(&f, "write", [0; 6]), ALLOW);
    assert_eq!(sys64(&f, "exit_group", [0; 6]), ALLOW);
    // Default errno is EPERM.
    assert_eq!(sys64(&f, "mkdir", [0; 6]), EPERM);
    assert_eq!(sys64(&f, "chdir", [0; 6]), EPERM);
    // Past the largest syscall named (exit_group, 231): ENOSYS, as runc does.
    assert_eq!(sys64(&f, "openat", [0; 6]), ENOSYS);
    // Only the native arch was asked for: i386 and x32 calls are killed.
    assert_eq!(call(&f, AUDIT_ARCH_I386, 3, [0; 6]), KILL_PROCESS);
    assert_eq!(
        call(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, [0; 6]),
        KILL_PROCESS
    );
    assert_eq!(call(&f, 0xc000_00b7, 63, [0; 6]), KILL_PROCESS); // aarch64
    assert!(!f.needs_listener());
    assert_eq!(f.flags(), 0);
}

#[test]
fn default_errno_ret_and_rule_errno_ret() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    assert_eq!(sys64(&f, "mkdir", [0; 6]), errno(28));
    assert_eq!(sys64(&f, "rmdir", [0; 6]), EPERM);
    assert_eq!(sys64(&f, "getpid", [0; 6]), ALLOW);
    assert_eq!(sys64(&f, "chdir", [0; 6]), errno(13));
}

#[test]
fn every_action() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_KILL"},
            {"names": ["rmdir"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["chdir"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["fchdir"], "action": "SCMP_ACT_TRAP"},
            {"names": ["link"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
            {"names": ["unlink"], "action": "SCMP_ACT_TRACE", "errnoRet": 1234},
            {"names": ["symlink"], "action": "SCMP_ACT_TRACE"},
            {"names": ["rename"], "action": "SCMP_ACT_LOG"},
            {"names": ["chmod"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    assert_eq!(sys64(&f, "mkdir", [0; 6]), KILL_THREAD);
    assert_eq!(sys64(&f, "rmdir", [0; 6]), KILL_THREAD);
    assert_eq!(sys64(&f, "chdir", [0; 6]), KILL_PROCESS);
    assert_eq!(sys64(&f, "fchdir", [0; 6]), TRAP);
    assert_eq!(sys64(&f, "link", [0; 6]), errno(5));
    assert_eq!(sys64(&f, "unlink", [0; 6]), trace(1234));
    assert_eq!(sys64(&f, "symlink", [0; 6]), trace(1));
    assert_eq!(sys64(&f, "rename", [0; 6]), LOG);
    assert_eq!(sys64(&f, "chmod", [0; 6]), NOTIFY);
    assert_eq!(sys64(&f, "read", [0; 6]), ALLOW);
    assert_eq!(sys64(&f, "getpid", [0; 6]), ALLOW);
    // Default ALLOW: no ENOSYS for numbers past the profile.
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 1000, [0; 6]), ALLOW);
    assert!(f.needs_listener());
    assert_eq!(f.flags(), skiff_sys::seccomp::FILTER_FLAG_NEW_LISTENER);
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["no_such_syscall", "getpid", "s390_runtime_instr"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["also_unknown"], "action": "SCMP_ACT_NOTIFY"}
        ]
    }));
    assert_eq!(sys64(&f, "getpid", [0; 6]), ALLOW);
    assert_eq!(sys64(&f, "dup", [0; 6]), EPERM);
    assert_eq!(sys64(&f, "getppid", [0; 6]), ENOSYS);
    // A NOTIFY rule that names no known syscall needs no listener.
    assert!(!f.needs_listener());
}

#[test]
fn rules_with_the_default_action_are_dropped() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_LE"}]}
        ]
    }));
    // The first rule has the default action (EPERM) and is dropped, as libseccomp would.
    assert_eq!(sys64(&f, "personality", [5, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(sys64(&f, "personality", [11, 0, 0, 0, 0, 0]), EPERM);
}

/// Values around the 32-bit and 64-bit boundaries.
const EDGES: [u64; 16] = [
    0,
    1,
    2,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    0x1_ffff_ffff,
    0x2_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_ffff_0000_0000,
    0xffff_ffff_ffff_fffe,
    0xffff_ffff_ffff_ffff,
];

fn op_name(op: LinuxSeccompOperator) -> &'static str {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => "SCMP_CMP_NE",
        LinuxSeccompOperator::ScmpCmpLt => "SCMP_CMP_LT",
        LinuxSeccompOperator::ScmpCmpLe => "SCMP_CMP_LE",
        LinuxSeccompOperator::ScmpCmpEq => "SCMP_CMP_EQ",
        LinuxSeccompOperator::ScmpCmpGe => "SCMP_CMP_GE",
        LinuxSeccompOperator::ScmpCmpGt => "SCMP_CMP_GT",
        LinuxSeccompOperator::ScmpCmpMaskedEq => "SCMP_CMP_MASKED_EQ",
    }
}

fn holds(op: LinuxSeccompOperator, a: u64, v: u64, v2: u64) -> bool {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => a != v,
        LinuxSeccompOperator::ScmpCmpLt => a < v,
        LinuxSeccompOperator::ScmpCmpLe => a <= v,
        LinuxSeccompOperator::ScmpCmpEq => a == v,
        LinuxSeccompOperator::ScmpCmpGe => a >= v,
        LinuxSeccompOperator::ScmpCmpGt => a > v,
        LinuxSeccompOperator::ScmpCmpMaskedEq => a & v == v2,
    }
}

const OPS: [LinuxSeccompOperator; 7] = [
    LinuxSeccompOperator::ScmpCmpNe,
    LinuxSeccompOperator::ScmpCmpLt,
    LinuxSeccompOperator::ScmpCmpLe,
    LinuxSeccompOperator::ScmpCmpEq,
    LinuxSeccompOperator::ScmpCmpGe,
    LinuxSeccompOperator::ScmpCmpGt,
    LinuxSeccompOperator::ScmpCmpMaskedEq,
];

#[test]
fn every_operator_at_64_bit_boundaries() {
    for op in OPS {
        for (vi, &v) in EDGES.iter().enumerate() {
            let v2 = if op == LinuxSeccompOperator::ScmpCmpMaskedEq {
                v & EDGES[(vi * 7 + 3) % EDGES.len()]
            } else {
                0
            };
            let index = vi % 6;
            let f = build(json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": index, "value": v, "valueTwo": v2, "op": op_name(op)}]}]
            }));
            let (n64, n32, nx32) = nrs("ioctl");
            for &a in EDGES
                .iter()
                .chain(&[v, v2, v.wrapping_add(1), v.wrapping_sub(1)])
            {
                let mut args = [0x5555_5555_5555_5555; 6];
                args[index] = a;
                let want = if holds(op, a, v, v2) { ALLOW } else { EPERM };
                assert_eq!(
                    call(&f, AUDIT_ARCH_X86_64, n64, args),
                    want,
                    "x86_64 {} arg{index}={a:#x} value={v:#x} valueTwo={v2:#x}",
                    op_name(op)
                );
                assert_eq!(
                    call(&f, AUDIT_ARCH_X86_64, nx32, args),
                    want,
                    "x32 {} arg{index}={a:#x} value={v:#x}",
                    op_name(op)
                );
                // i386 arguments are 32 bits: only the low halves are compared, as libseccomp does.
                let (a32, v32, v232) = (a & 0xffff_ffff, v & 0xffff_ffff, v2 & 0xffff_ffff);
                let want32 = if holds(op, a32, v32, v232) {
                    ALLOW
                } else {
                    EPERM
                };
                args[index] = a32;
                assert_eq!(
                    call(&f, AUDIT_ARCH_I386, n32, args),
                    want32,
                    "i386 {} arg{index}={a32:#x} value={v:#x}",
                    op_name(op)
                );
            }
        }
    }
}

#[test]
fn args_are_anded_and_rules_ored() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 2, "value": 4, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 0},
                {"index": 3, "value": 0x20, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 0x20}]},
            {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "args": [
                {"index": 0, "value": 4096, "op": "SCMP_CMP_GE"},
                {"index": 0, "value": 8192, "op": "SCMP_CMP_LT"}]},
            {"names": ["mmap"], "action": "SCMP_ACT_TRAP", "args": [
                {"index": 5, "value": 7, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    // Rule 1: PROT_EXEC clear AND MAP_ANONYMOUS set.
    assert_eq!(sys64(&f, "mmap", [0, 0, 3, 0x22, 0, 0]), ALLOW);
    assert_eq!(sys64(&f, "mmap", [0, 0, 7, 0x22, 0, 0]), EPERM);
    assert_eq!(sys64(&f, "mmap", [0, 0, 3, 0x02, 0, 0]), EPERM);
    // Rule 2: 4096 <= addr < 8192.
    assert_eq!(sys64(&f, "mmap", [4096, 0, 7, 0, 0, 0]), errno(22));
    assert_eq!(sys64(&f, "mmap", [8191, 0, 7, 0, 0, 0]), errno(22));
    assert_eq!(sys64(&f, "mmap", [8192, 0, 7, 0, 0, 0]), EPERM);
    assert_eq!(sys64(&f, "mmap", [4095, 0, 7, 0, 0, 0]), EPERM);
    // Rule 3.
    assert_eq!(sys64(&f, "mmap", [0, 0, 7, 0, 0, 7]), TRAP);
    // First matching rule wins.
    assert_eq!(sys64(&f, "mmap", [5000, 0, 3, 0x22, 0, 7]), ALLOW);
    assert_eq!(sys64(&f, "mmap", [5000, 0, 7, 0x22, 0, 7]), errno(22));
}

#[test]
fn unconditional_rule_overrides_conditional_ones() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
            {"names": ["socket"], "action": "SCMP_ACT_LOG"}
        ]
    }));
    assert_eq!(sys64(&f, "socket", [2, 0, 0, 0, 0, 0]), LOG);
    assert_eq!(sys64(&f, "socket", [40, 0, 0, 0, 0, 0]), LOG);
}

#[test]
fn x32_and_i386_multiplexing() {
    let both = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": ["read", "rt_sigaction", "socketcall", "open"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}
        ]
    }));
    let (read64, read32, readx32) = nrs("read");
    assert_eq!(call(&both, AUDIT_ARCH_X86_64, read64, [0; 6]), ALLOW);
    assert_eq!(call(&both, AUDIT_ARCH_I386, read32, [0; 6]), ALLOW);
    assert_eq!(call(&both, AUDIT_ARCH_X86_64, readx32, [0; 6]), ALLOW);
    // x32's own rt_sigaction number (512 | X32 bit), not the x86_64 one with the bit.
    let (rt64, _, rtx32) = nrs("rt_sigaction");
    assert_eq!(rtx32, X32_SYSCALL_BIT | 512);
    assert_eq!(call(&both, AUDIT_ARCH_X86_64, rtx32, [0; 6]), ALLOW);
    assert_eq!(
        call(&both, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | rt64, [0; 6]),
        EPERM
    );
    // socketcall exists only on i386.
    assert_eq!(
        call(&both, AUDIT_ARCH_I386, nrs("socketcall").1, [0; 6]),
        ALLOW
    );
    // An i386 number is not an x86_64 one: i386 39 is mkdir, x86_64 39 is getpid.
    assert_eq!(call(&both, AUDIT_ARCH_I386, 39, [0; 6]), errno(2));
    assert_eq!(call(&both, AUDIT_ARCH_X86_64, 39, [0; 6]), EPERM);
    assert_eq!(
        call(&both, AUDIT_ARCH_X86_64, x64("mkdir"), [0; 6]),
        errno(2)
    );
    // Numbers past the largest one the profile names get ENOSYS, per ABI.
    assert_eq!(call(&both, AUDIT_ARCH_X86_64, 600, [0; 6]), ENOSYS);
    assert_eq!(call(&both, AUDIT_ARCH_I386, 600, [0; 6]), ENOSYS);
    assert_eq!(
        call(&both, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 600, [0; 6]),
        ENOSYS
    );
    // nr -1 gets the default action.
    assert_eq!(call(&both, AUDIT_ARCH_X86_64, u32::MAX, [0; 6]), EPERM);
    assert_eq!(call(&both, AUDIT_ARCH_I386, u32::MAX, [0; 6]), EPERM);
    // aarch64 was listed but cannot run here: skipped, so its calls are killed.
    assert_eq!(call(&both, 0xc000_00b7, 63, [0; 6]), KILL_PROCESS);

    // x86 without x32: x32 calls are a bad architecture.
    let no_x32 = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(
        call(&no_x32, AUDIT_ARCH_X86_64, readx32, [0; 6]),
        KILL_PROCESS
    );
    assert_eq!(call(&no_x32, AUDIT_ARCH_I386, read32, [0; 6]), ALLOW);
    assert_eq!(call(&no_x32, AUDIT_ARCH_X86_64, u32::MAX, [0; 6]), EPERM);
}

#[test]
fn enosys_for_syscalls_newer_than_the_profile() {
    let deny = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["openat", "close"], "action": "SCMP_ACT_ALLOW"}]
    });
    let f = build(deny);
    assert_eq!(sys64(&f, "close", [0; 6]), ALLOW);
    assert_eq!(sys64(&f, "read", [0; 6]), EPERM); // below openat (257)
    assert_eq!(sys64(&f, "fchmodat2", [0; 6]), ENOSYS); // above
                                                        // Default errno ENOSYS already: same answer.
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["close"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(sys64(&f, "fchmodat2", [0; 6]), ENOSYS);
    // KILL default: the stub applies too (runc does the same).
    let f = build(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [{"names": ["close"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(sys64(&f, "read", [0; 6]), KILL_PROCESS);
    assert_eq!(sys64(&f, "fchmodat2", [0; 6]), ENOSYS);
    // LOG default: no stub.
    let f = build(json!({
        "defaultAction": "SCMP_ACT_LOG",
        "syscalls": [{"names": ["close"], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(sys64(&f, "close", [0; 6]), EPERM);
    assert_eq!(sys64(&f, "fchmodat2", [0; 6]), LOG);
}

#[test]
fn empty_profile() {
    let f = build(json!({"defaultAction": "SCMP_ACT_ERRNO"}));
    assert_eq!(sys64(&f, "read", [0; 6]), EPERM);
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, 1000, [0; 6]), EPERM);
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}));
    assert_eq!(sys64(&f, "read", [0; 6]), ALLOW);
    assert!(f.program().len() <= 8, "{}", f.program().len());
}

#[test]
fn flags() {
    use skiff_sys::seccomp as sys;
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    // WAIT_KILLABLE_RECV only means something with a listener: dropped.
    assert_eq!(
        f.flags(),
        sys::FILTER_FLAG_TSYNC | sys::FILTER_FLAG_LOG | sys::FILTER_FLAG_SPEC_ALLOW
    );
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    // TSYNC with a listener needs TSYNC_ESRCH.
    assert_eq!(
        f.flags(),
        sys::FILTER_FLAG_TSYNC
            | sys::FILTER_FLAG_TSYNC_ESRCH
            | sys::FILTER_FLAG_NEW_LISTENER
            | sys::FILTER_FLAG_WAIT_KILLABLE_RECV
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let err = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    })))
    .unwrap_err();
    assert!(matches!(err, Error::ArgIndexOutOfRange { index: 6, .. }));
    assert!(err.to_string().contains("\"ioctl\"") && err.to_string().contains("index 6"));

    let err = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
    })))
    .unwrap_err();
    assert!(err.to_string().contains("\"mkdir\"") && err.to_string().contains("70000"));

    let err = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("defaultAction"), "{err}");

    let err = compile(&profile(json!({"defaultAction": "SCMP_ACT_NOTIFY"}))).unwrap_err();
    assert!(matches!(err, Error::NotifyAsDefault));
}

/// Reference semantics, straight from the profile: what the compiled filter must answer.
fn reference(s: &LinuxSeccomp, arch: usize, nr: u32, args: [u64; 6]) -> u32 {
    let ret = |a: LinuxSeccompAction, e: Option<u32>| match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => TRAP,
        LinuxSeccompAction::ScmpActErrno => 0x0005_0000 | e.unwrap_or(1),
        LinuxSeccompAction::ScmpActTrace => trace(e.unwrap_or(1)),
        LinuxSeccompAction::ScmpActLog => LOG,
        LinuxSeccompAction::ScmpActNotify => NOTIFY,
        LinuxSeccompAction::ScmpActAllow => ALLOW,
    };
    let default = ret(s.default_action(), s.default_errno_ret());
    let number = |name: &str| {
        SYSCALLS
            .binary_search_by(|(n, ..)| (*n).cmp(name))
            .ok()
            .map(|i| [SYSCALLS[i].1, SYSCALLS[i].3, SYSCALLS[i].2][arch])
            .filter(|&n| n != NONE)
    };
    let calls = s.syscalls().clone().unwrap_or_default();
    let max = calls
        .iter()
        .flat_map(|c| c.names().iter().filter_map(|n| number(n)))
        .max();
    let rules: Vec<_> = calls
        .iter()
        .filter(|c| ret(c.action(), c.errno_ret()) != default)
        .filter(|c| c.names().iter().any(|n| number(n) == Some(nr)))
        .collect();
    if let Some(c) = rules
        .iter()
        .find(|c| c.args().as_deref().unwrap_or(&[]).is_empty())
    {
        return ret(c.action(), c.errno_ret());
    }
    for c in &rules {
        let all = c.args().iter().flatten().all(|a| {
            let (mut x, mut v, mut v2) = (args[a.index()], a.value(), a.value_two().unwrap_or(0));
            if arch == 2 {
                (x, v, v2) = (x & 0xffff_ffff, v & 0xffff_ffff, v2 & 0xffff_ffff);
            }
            holds(a.op(), x, v, v2)
        });
        if all {
            return ret(c.action(), c.errno_ret());
        }
    }
    let permissive = matches!(
        s.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );
    match max {
        Some(m) if nr > m && !permissive && nr != u32::MAX => ENOSYS,
        _ => default,
    }
}

/// xorshift64*, for reproducible pseudo-random inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[usize::try_from(self.next() % v.len() as u64).unwrap_or(0)]
    }
}

/// Checks `s` against the reference on every known syscall of every ABI, with random and
/// boundary arguments.
fn check_against_reference(s: &LinuxSeccomp, rng: &mut Rng, rounds: usize) {
    let f = compile(s).expect("compiles");
    validate(f.program());
    let audit = [AUDIT_ARCH_X86_64, AUDIT_ARCH_X86_64, AUDIT_ARCH_I386];
    let listed = |a: Arch| s.architectures().iter().flatten().any(|x| *x == a);
    let enabled = [true, listed(Arch::ScmpArchX32), listed(Arch::ScmpArchX86)];
    for &(name, a, b, c) in SYSCALLS {
        for (arch, nr) in [(0, a), (1, c), (2, b)] {
            if nr == NONE {
                continue;
            }
            for _ in 0..rounds {
                let mut args = [0u64; 6];
                for x in &mut args {
                    *x = if rng.next().is_multiple_of(2) {
                        rng.pick(&EDGES)
                    } else {
                        rng.next() % 64
                    };
                }
                if arch == 2 {
                    args.iter_mut().for_each(|x| *x &= 0xffff_ffff);
                }
                let want = if enabled[arch] {
                    reference(s, arch, nr, args)
                } else {
                    KILL_PROCESS
                };
                let got = call(&f, audit[arch], nr, args);
                assert_eq!(got, want, "{name} arch {arch} nr {nr:#x} args {args:x?}");
            }
        }
    }
    for nr in [500, 999, 0x3fff_ffff, u32::MAX] {
        assert_eq!(
            call(&f, AUDIT_ARCH_X86_64, nr, [0; 6]),
            reference(s, 0, nr, [0; 6]),
            "nr {nr}"
        );
    }
}

#[test]
fn docker_default_matches_reference() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    check_against_reference(&docker_default(), &mut rng, 3);
    check_against_reference(
        &docker_default_for(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]),
        &mut rng,
        2,
    );
}

#[test]
fn docker_default_verdicts() {
    let f = compile(&docker_default()).expect("compiles");
    validate(f.program());
    for name in [
        "read",
        "write",
        "execve",
        "openat",
        "futex",
        "clone",
        "exit_group",
        "chroot",
    ] {
        assert_eq!(sys64(&f, name, [0; 6]), ALLOW, "{name}");
    }
    for name in [
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
        "open_tree",
        "fsopen",
        "ptrace_no",
    ]
    .iter()
    .filter(|n| SYSCALLS.iter().any(|s| s.0 == **n))
    {
        assert_eq!(sys64(&f, name, [0; 6]), EPERM, "{name}");
    }
    let clone_newuser = 0x1000_0000;
    assert_eq!(sys64(&f, "clone", [0x11, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        sys64(&f, "clone", [clone_newuser | 0x11, 0, 0, 0, 0, 0]),
        EPERM
    );
    assert_eq!(sys64(&f, "clone3", [0; 6]), ENOSYS);
    assert_eq!(sys64(&f, "socket", [2, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(sys64(&f, "socket", [40, 1, 0, 0, 0, 0]), EPERM); // AF_VSOCK
    assert_eq!(
        sys64(&f, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(sys64(&f, "personality", [8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(sys64(&f, "personality", [1, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(sys64(&f, "fchmodat2", [0; 6]), ENOSYS); // newer than the profile
    assert_eq!(
        call(&f, AUDIT_ARCH_I386, nrs("socketcall").1, [0; 6]),
        ALLOW
    );
    assert_eq!(call(&f, AUDIT_ARCH_I386, nrs("keyctl").1, [0; 6]), EPERM);
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, nrs("keyctl").2, [0; 6]), EPERM);
    assert_eq!(call(&f, AUDIT_ARCH_X86_64, nrs("read").2, [0; 6]), ALLOW);
}

#[test]
fn docker_default_size_and_compile_time() {
    let s = docker_default();
    let f = compile(&s).expect("compiles");
    let n = f.program().len();
    assert!(n < 4096, "{n} instructions");
    // Cost of the hot path: instructions run for a few common syscalls.
    let steps = |name: &str| {
        run_counted(
            f.program(),
            &Data {
                nr: x64(name),
                arch: AUDIT_ARCH_X86_64,
                ..Data::default()
            },
        )
        .1
    };
    let worst = SYSCALLS
        .iter()
        .filter(|s| s.1 != NONE)
        .map(|s| steps(s.0))
        .max()
        .unwrap_or(0);
    let iters = 2000;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        std::hint::black_box(compile(std::hint::black_box(&s)).expect("compiles"));
    }
    let per = start.elapsed() / iters;
    println!(
        "docker default profile: {n} BPF instructions, {per:?} per compile, \
         read takes {} instructions, worst x86_64 syscall {worst}",
        steps("read")
    );
}

#[test]
fn far_jumps_get_trampolines() {
    // Many syscalls with argument rules and distinct errnos: the program is far longer than 256
    // instructions, so returns and blocks are out of reach of 8-bit jump offsets.
    let mut calls = Vec::new();
    for (i, &(name, a, _, _)) in SYSCALLS.iter().enumerate().filter(|(_, s)| s.1 != NONE) {
        if i % 3 != 1 {
            calls.push(json!({"names": [name], "action": "SCMP_ACT_ALLOW"}));
        } else {
            calls.push(
                json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 + (a % 200),
                "args": [{"index": (i % 6), "value": (i as u64) << 31, "op": op_name(OPS[i % 7]),
                          "valueTwo": ((i as u64) << 31) & 0x3_0000_0000u64}]}),
            );
        }
    }
    let s = profile(json!({
        "defaultAction": "SCMP_ACT_TRAP",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": calls
    }));
    let f = compile(&s).expect("compiles");
    assert!(f.program().len() > 1000, "{}", f.program().len());
    let mut rng = Rng(42);
    check_against_reference(&s, &mut rng, 4);
}

#[test]
fn perfect_hash_finds_every_name_and_only_those() {
    for &(name, a, ..) in SYSCALLS {
        assert_eq!(
            crate::syscall_number(name),
            (a != NONE).then_some(a),
            "{name}"
        );
    }
    for name in [
        "",
        "readx",
        "rea",
        "READ",
        "no_such_syscall",
        "x".repeat(300).as_str(),
    ] {
        assert_eq!(crate::syscall_number(name), None, "{name}");
    }
}
