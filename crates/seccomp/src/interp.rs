//! A classic-BPF interpreter over `struct seccomp_data`, for tests: it runs a compiled program
//! the way the kernel would and checks the program the way the kernel's loader does.

use skiff_sys::seccomp::SockFilter;

use crate::bpf::{ALU_AND_K, JMP_JA, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, JMP_JSET_K, LD_W_ABS, RET_K};

/// `struct seccomp_data`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    fn word(&self, off: u32) -> u32 {
        #[allow(clippy::cast_possible_truncation)]
        let split = |v: u64, high: bool| if high { (v >> 32) as u32 } else { v as u32 };
        match off {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => split(self.ip, off == 12),
            16..=63 if off.is_multiple_of(4) => {
                let i = ((off - 16) / 8) as usize;
                split(self.args[i], (off - 16) % 8 == 4)
            }
            _ => panic!("load from invalid seccomp_data offset {off}"),
        }
    }
}

/// Checks what the kernel's `sk_chk_filter`/`seccomp_check_filter` check: known opcodes, aligned
/// in-bounds loads, jumps inside the program, and a `ret` at the end.
pub(crate) fn validate(prog: &[SockFilter]) {
    assert!(
        !prog.is_empty() && prog.len() <= 4096,
        "program length {}",
        prog.len()
    );
    for (pc, ins) in prog.iter().enumerate() {
        let rest = prog.len() - pc - 1;
        match ins.code {
            LD_W_ABS => assert!(
                ins.k.is_multiple_of(4) && ins.k < 64,
                "pc {pc}: bad load offset {}",
                ins.k
            ),
            ALU_AND_K | RET_K => {}
            JMP_JA => assert!((ins.k as usize) < rest, "pc {pc}: ja past the end"),
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K | JMP_JSET_K => {
                assert!(
                    (ins.jt as usize) < rest && (ins.jf as usize) < rest,
                    "pc {pc}: jump past the end"
                )
            }
            c => panic!("pc {pc}: unexpected opcode {c:#x}"),
        }
    }
    assert_eq!(
        prog[prog.len() - 1].code,
        RET_K,
        "program must end with ret"
    );
}

/// Runs `prog` on `d`; returns the `SECCOMP_RET_*` value.
pub(crate) fn run(prog: &[SockFilter], d: &Data) -> u32 {
    run_counted(prog, d).0
}

/// Runs `prog` on `d`; returns the `SECCOMP_RET_*` value and the number of instructions executed.
pub(crate) fn run_counted(prog: &[SockFilter], d: &Data) -> (u32, usize) {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let ins = prog[pc];
        steps += 1;
        pc += 1;
        let cond = |hit: bool| {
            if hit {
                ins.jt as usize
            } else {
                ins.jf as usize
            }
        };
        match ins.code {
            LD_W_ABS => a = d.word(ins.k),
            ALU_AND_K => a &= ins.k,
            RET_K => return (ins.k, steps),
            JMP_JA => pc += ins.k as usize,
            JMP_JEQ_K => pc += cond(a == ins.k),
            JMP_JGT_K => pc += cond(a > ins.k),
            JMP_JGE_K => pc += cond(a >= ins.k),
            JMP_JSET_K => pc += cond(a & ins.k != 0),
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}
