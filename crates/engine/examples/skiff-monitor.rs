//! The monitor binary for this crate's tests (cargo builds examples for `cargo test`, but
//! not the binaries of dependencies): the same command line as skiff-monitor's.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use skiff_monitor::logfile::Rotation;
use skiff_monitor::{run, Config};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    runtime_root: PathBuf,
    #[arg(long)]
    dir: PathBuf,
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
    #[arg(long)]
    ready_fd: Option<i32>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let ready = match a.ready_fd {
        Some(fd) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/self/fd/{fd}"))
                .with_context(|| format!("--ready-fd {fd} is not open"))?;
            nix::unistd::close(fd).ok();
            Some(f)
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
    let st = run(cfg).map_err(|e| anyhow::anyhow!(skiff_container::chain(&e)))?;
    std::process::exit(if st.error.is_empty() { 0 } else { 1 });
}
