//! The real skiff-init, outside a container (as a subreaper): statuses and signals pass
//! through, orphans are reaped. The container side is in the daemon's `features_cli` tests.

use std::process::{Command, Stdio};

fn init() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skiff-init"))
}

#[test]
fn exit_codes_pass_through() {
    let code = |args: &[&str]| init().args(args).status().unwrap().code();
    assert_eq!(code(&["--", "sh", "-c", "exit 7"]), Some(7));
    assert_eq!(code(&["--", "sh", "-c", "kill -TERM $$"]), Some(143));
    assert_eq!(code(&["--", "/nonexistent/x"]), Some(127));
    assert_eq!(code(&["-e", "3", "--", "sh", "-c", "exit 3"]), Some(0));
    assert_eq!(code(&["--"]), Some(1));
}

#[test]
fn signals_are_forwarded() {
    // The child waits for SIGTERM (trap); init forwards it and exits with its status.
    let mut c = init()
        .args([
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = c.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(42));
}

#[test]
fn orphans_are_reaped() {
    // A subshell leaves `sleep 0.1` behind; it is re-parented to init (a subreaper) and,
    // once it ends, must not stay a zombie among init's children.
    let script = "(sleep 0.1 &); sleep 0.6; ps --ppid $PPID -o stat=,args=";
    let out = init().args(["--", "sh", "-c", script]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sh -c"), "init's children: {text}");
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with('Z')),
        "a zombie: {text}"
    );
}
