//! The monitor binary for this crate's tests (cargo builds examples for `cargo test`, but
//! not the binaries of dependencies): skiff-monitor's own command line.

fn main() {
    skiff_monitor::cli::main()
}
