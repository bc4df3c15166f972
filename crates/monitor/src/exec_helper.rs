//! `skiff-monitor exec <runtime root> <container id>`: the helper skiffd runs for each
//! `docker exec`. The runtime's exec forks, which the multi-threaded daemon must not do; this
//! small static binary starts in well under a millisecond (the daemon's own binary, re-executed
//! as moby's `reexec` does, took about twice as long).

use std::os::fd::AsFd;

/// The environment variable the helper gets its process description from (an OCI
/// `process` as JSON).
pub const PROCESS_ENV: &str = "SKIFF_EXEC_PROCESS";

/// The first argument that selects this mode.
pub const ARG: &str = "exec";

/// The helper's `main`: `args` are `<runtime root> <container id>`, the process comes in
/// [`PROCESS_ENV`]. Runs it in the container with this process's stdio, forwards signals,
/// and returns its exit code (125 when the exec itself failed, message on stderr).
pub fn main(args: &[String]) -> i32 {
    let fail = |msg: String| {
        eprintln!("exec failed: {msg}");
        125
    };
    let [root, id] = args else {
        return fail("usage: <runtime root> <container id>".into());
    };
    let process: oci_spec::runtime::Process = match std::env::var(PROCESS_ENV)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => return fail(format!("no valid {PROCESS_ENV}: {e}")),
    };
    // With a terminal, stdin is the console socket: the process gets it, we get /dev/null.
    let mut console_fd = None;
    if process.terminal().unwrap_or(false) {
        match std::io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => console_fd = Some(fd),
            Err(e) => return fail(format!("no console socket on stdin: {e}")),
        }
        let null = match std::fs::File::open("/dev/null") {
            Ok(f) => f,
            Err(e) => return fail(format!("cannot open /dev/null: {e}")),
        };
        if let Err(e) = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) {
            return fail(format!("cannot point stdin at /dev/null: {e}"));
        }
    }
    use skiff_container::foreground;
    if let Err(e) = foreground::become_subreaper().and_then(|()| foreground::block_signals()) {
        return fail(skiff_container::chain(&e));
    }
    let rt = skiff_container::Runtime::new(root);
    let pid = match rt.exec(
        id,
        skiff_container::ExecOptions {
            process,
            pid_file: None,
            console_socket: None,
            console_fd,
            preserve_fds: 0,
            ignore_paused: false,
        },
    ) {
        Ok(p) => p,
        Err(e) => return fail(skiff_container::chain(&e)),
    };
    match foreground::wait(nix::unistd::Pid::from_raw(pid), None) {
        Ok(code) => code,
        Err(e) => fail(skiff_container::chain(&e)),
    }
}
