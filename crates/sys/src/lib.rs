//! Skiff's syscall layer. Every `unsafe` block of the project lives in this crate, each with a
//! `// SAFETY:` comment; the other crates `forbid(unsafe_code)` and call these small wrappers.
//! Wrappers return `nix::Result` so callers get errno values they can match on.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bpf;
pub mod caps;
pub mod fs;
pub mod process;
pub mod seccomp;
pub mod socket;
pub mod tty;
