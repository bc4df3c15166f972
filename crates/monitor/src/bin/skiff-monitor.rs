//! skiff-monitor: started by skiffd, one per running container (see the crate docs).

fn main() {
    skiff_monitor::cli::main()
}
