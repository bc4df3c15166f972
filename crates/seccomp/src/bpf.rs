//! A classic-BPF emitter that builds the program back to front.
//!
//! Every jump in a seccomp program goes forward, so when the program is emitted from its last
//! instruction to its first, every jump target already has a fixed position and the exact jump
//! distance is known when the jump is written. Conditional jumps reach at most 255 instructions; a
//! farther target gets a trampoline: a fresh `ret` for return actions (one instruction, and
//! cheaper to run than a jump), or an unconditional `ja`, placed right after the jump.

use skiff_sys::seccomp::SockFilter;

/// `BPF_LD | BPF_W | BPF_ABS`: load the 32-bit word at offset k of `struct seccomp_data`.
pub(crate) const LD_W_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub(crate) const ALU_AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`.
pub(crate) const JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(crate) const JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub(crate) const JMP_JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
pub(crate) const JMP_JGE_K: u16 = 0x35;
/// `BPF_JMP | BPF_JSET | BPF_K`.
#[cfg(test)]
pub(crate) const JMP_JSET_K: u16 = 0x45;
/// `BPF_RET | BPF_K`.
pub(crate) const RET_K: u16 = 0x06;

/// Where control goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Return this `SECCOMP_RET_*` value (a `ret` is emitted or reused where needed).
    Ret(u32),
    /// The instruction at this position, counted from the end of the program (0 = last).
    At(usize),
}

/// Builds a program from its end towards its start.
#[derive(Default)]
pub(crate) struct Emitter {
    /// The program in reverse order.
    rev: Vec<SockFilter>,
    /// The nearest (most recently emitted) `ret` of each return value.
    rets: Vec<(u32, usize)>,
    /// Set if a jump could not be encoded (an internal error, reported by `finish`).
    broken: bool,
}

impl Emitter {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            rev: Vec::with_capacity(n),
            rets: Vec::with_capacity(8),
            broken: false,
        }
    }

    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Target {
        self.rev.push(SockFilter { code, jt, jf, k });
        Target::At(self.rev.len() - 1)
    }

    /// Emits a statement (load, ALU) that falls through to the instruction emitted before it.
    pub(crate) fn stmt(&mut self, code: u16, k: u32) -> Target {
        self.push(code, 0, 0, k)
    }

    /// Emits `ret k`.
    pub(crate) fn ret(&mut self, k: u32) -> Target {
        let t = self.push(RET_K, 0, 0, k);
        let at = self.rev.len() - 1;
        match self.rets.iter_mut().find(|(v, _)| *v == k) {
            Some(slot) => slot.1 = at,
            None => self.rets.push((k, at)),
        }
        t
    }

    /// Distance from an instruction to be pushed after `slack` more instructions to `at`.
    fn distance(&self, at: usize, slack: usize) -> usize {
        self.rev.len() + slack - at - 1
    }

    /// Returns the position of an instruction that implements `t` and that a conditional jump
    /// pushed after at most `slack` further instructions can reach.
    fn reachable(&mut self, t: Target, slack: usize) -> usize {
        match t {
            Target::Ret(k) => match self.rets.iter().find(|(v, _)| *v == k) {
                Some(&(_, at)) if self.distance(at, slack) <= 255 => at,
                _ => {
                    self.ret(k);
                    self.rev.len() - 1
                }
            },
            Target::At(at) if self.distance(at, slack) <= 255 => at,
            Target::At(at) => {
                self.goto(Target::At(at));
                self.rev.len() - 1
            }
        }
    }

    /// Makes `t` the next instruction in program order: emits nothing if it already is, a `ret`
    /// for a return value, else a `ja`. Returns the position of that next instruction.
    pub(crate) fn goto(&mut self, t: Target) -> Target {
        match t {
            Target::Ret(k) => self.ret(k),
            Target::At(at) if at + 1 == self.rev.len() => t,
            Target::At(at) => {
                let off = self.distance(at, 0);
                let k = u32::try_from(off).unwrap_or_else(|_| {
                    self.broken = true;
                    0
                });
                self.push(JMP_JA, 0, 0, k)
            }
        }
    }

    fn offset(&mut self, at: usize) -> u8 {
        let d = self.distance(at, 0);
        u8::try_from(d).unwrap_or_else(|_| {
            self.broken = true;
            0
        })
    }

    /// Emits a conditional jump `code k` (a `JMP_*_K`) to `jt` when true and `jf` when false.
    /// Emits nothing when both targets are the same.
    pub(crate) fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) -> Target {
        if jt == jf {
            return jt;
        }
        let f = self.reachable(jf, 1);
        let t = self.reachable(jt, 0);
        let jt = self.offset(t);
        let jf = self.offset(f);
        self.push(code, jt, jf, k)
    }

    /// Makes `t` the first instruction and returns the program in order, or `None` if a jump could
    /// not be encoded.
    pub(crate) fn finish(mut self, t: Target) -> Option<Vec<SockFilter>> {
        self.goto(t);
        if self.broken {
            return None;
        }
        self.rev.reverse();
        Some(self.rev)
    }
}
