//! The exec helper for this crate's tests (skiffd re-executes itself for this).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(skiff_engine::exec_helper_main(&args));
}
