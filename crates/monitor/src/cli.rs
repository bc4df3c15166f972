//! skiff-monitor's command line, shared by its binary and by tests that need a monitor.

use std::path::PathBuf;

use clap::Parser;

use crate::logfile::Rotation;
use crate::{run, Config};

#[derive(Parser)]
#[command(
    name = "skiff-monitor",
    about = "Runs one container for skiffd and outlives it"
)]
struct Args {
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long, default_value = "/run/skiff/runtime")]
    runtime_root: PathBuf,
    /// The monitor's directory (socket, exit.json).
    #[arg(long)]
    dir: PathBuf,
    /// json-file log path.
    #[arg(long)]
    log: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    log_max_size: u64,
    #[arg(long, default_value_t = 1)]
    log_max_file: u32,
    #[arg(long)]
    tty: bool,
    #[arg(long)]
    stdin: bool,
    #[arg(long)]
    wait_start: bool,
    /// An inherited fd (pipe) to report readiness on.
    #[arg(long)]
    ready_fd: Option<i32>,
}

/// Parses the process's arguments, runs the monitor and exits: 0 when the container ran
/// (whatever its exit code), 1 when it could not run or the monitor failed.
pub fn main() -> ! {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(crate::exec_helper::ARG) {
        std::process::exit(crate::exec_helper::main(&argv[2..]));
    }
    let a = Args::parse();
    let ready = match a.ready_fd {
        Some(fd) => {
            // Reopen the inherited pipe as a File we own, then close the inherited number so
            // the container does not inherit it.
            match std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/self/fd/{fd}"))
            {
                Ok(f) => {
                    let _ = nix::unistd::close(fd);
                    Some(f)
                }
                Err(e) => {
                    eprintln!("skiff-monitor: --ready-fd {fd} is not open: {e}");
                    std::process::exit(1);
                }
            }
        }
        None => None,
    };
    let cfg = Config {
        id: a.id,
        bundle: a.bundle,
        runtime_root: a.runtime_root,
        dir: a.dir,
        log: a.log.map(|p| {
            (
                p,
                Rotation {
                    max_size: a.log_max_size,
                    max_files: a.log_max_file.max(1),
                },
            )
        }),
        tty: a.tty,
        stdin: a.stdin,
        wait_start: a.wait_start,
        ready,
    };
    match run(cfg) {
        Ok(st) => std::process::exit(if st.error.is_empty() { 0 } else { 1 }),
        Err(e) => {
            eprintln!("skiff-monitor: {}", skiff_container::chain(&e));
            std::process::exit(1);
        }
    }
}
