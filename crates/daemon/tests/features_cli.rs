//! Container features end to end with the real docker CLI: `exec -it`, healthchecks,
//! `docker update`, `--init`, restart-policy events.

mod world;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use world::*;

/// Runs `cmd` (a shell line) under a pseudo-terminal with `script`, the docker CLI pointed
/// at the world's skiffd; (exit success, output).
fn in_pty(w: &World, cmd: &str) -> (bool, String) {
    in_pty_typing(w, cmd, "")
}

/// [`in_pty`], typing `input` on the terminal.
fn in_pty_typing(w: &World, cmd: &str, input: &str) -> (bool, String) {
    let mut child = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "export DOCKER_HOST=unix://{} DOCKER_CONFIG={}; {cmd}",
            w.tmp.path().join("d.sock").display(),
            w.tmp.path().join("docker-config").display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    )
}

/// Polls `f` until it returns Some, up to `secs`; panics with `what` otherwise.
fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw API call on the daemon's socket (for what the CLI cannot send on its own).
fn api(w: &World, method: &str, path: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(w.tmp.path().join("d.sock"))
        .args([
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn exec_with_a_tty() {
    if !can_run() {
        return;
    }
    let w = World::new();
    w.docker(&["run", "-d", "--name", "tt", IMAGE, "sleep", "1000"]);

    // exec -it: a real terminal of the size of ours, exit code passed through.
    let (ok, text) = in_pty(
        &w,
        "stty rows 33 cols 77; docker exec -it tt sh -c 'tty; stty size; exit 3'; echo rc=$?",
    );
    assert!(ok, "{text}");
    assert!(text.contains("/dev/pts/"), "{text:?}\n{}", w.log());
    assert!(text.contains("33 77"), "{text:?}");
    assert!(text.contains("rc=3"), "{text:?}");

    // Typed input reaches the process through the terminal (it echoes, too).
    let (ok, text) = in_pty_typing(
        &w,
        "docker exec -it tt sh -c 'read x; echo got:$x'",
        "hello\n",
    );
    assert!(ok, "{text}");
    assert!(text.contains("got:hello"), "{text:?}");

    // The resize endpoint changes the size of a running exec's terminal.
    let created = api(
        &w,
        "POST",
        "/containers/tt/exec",
        r#"{"Tty":true,"Cmd":["sh","-c","while [ \"$(stty size)\" != \"40 100\" ]; do sleep 0.1; done"]}"#,
    );
    let v: serde_json::Value = serde_json::from_str(&created).unwrap();
    let eid = v["Id"].as_str().expect("exec id").to_owned();
    api(
        &w,
        "POST",
        &format!("/exec/{eid}/start"),
        r#"{"Detach":true,"Tty":true}"#,
    );
    api(&w, "POST", &format!("/exec/{eid}/resize?h=40&w=100"), "");
    let code = until(20, "the resized exec to end", || {
        let v: serde_json::Value =
            serde_json::from_str(&api(&w, "GET", &format!("/exec/{eid}/json"), "")).ok()?;
        (v["Running"] == false).then(|| v["ExitCode"].clone())
    });
    assert_eq!(code, 0);

    // exec -i with piped stdin (no tty) still works, and so does exec -d.
    let out = w.docker_in(
        &["exec", "-i", "tt", "sh", "-c", "cat; echo done"],
        Some("piped\n"),
    );
    assert_eq!(out, "piped\ndone\n");
    w.docker(&["exec", "-d", "tt", "sh", "-c", "echo bg > /tmp/bg"]);
    until(20, "exec -d to write its file", || {
        let o = w.try_docker(&["exec", "tt", "cat", "/tmp/bg"], None);
        (String::from_utf8_lossy(&o.stdout) == "bg\n").then_some(())
    });
    // A missing binary under a tty: 126 and the reason.
    let (_, text) = in_pty(&w, "docker exec -it tt /nope; echo rc=$?");
    assert!(text.contains("rc=126"), "{text:?}");
    w.docker(&["rm", "-f", "tt"]);
}
