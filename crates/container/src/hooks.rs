//! Running OCI hooks: the state JSON on stdin, the hook's own args and env, a timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Runs `hooks` in order; the first failure stops the rest and is returned.
pub fn run(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<()> {
    for (index, h) in hooks.into_iter().flatten().enumerate() {
        run_one(h, state_json).map_err(|msg| Error::Hook {
            kind: kind.to_string(),
            index,
            path: h.path().display().to_string(),
            msg,
        })?;
    }
    Ok(())
}

fn run_one(h: &Hook, state_json: &str) -> std::result::Result<(), String> {
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = h
        .timeout()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t));
    let mut nap = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", h.timeout().unwrap_or(0)));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}, stdout: {}, stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(v: serde_json::Value) -> Hook {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hook_gets_state_args_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {0}; echo \" $0 $1 $FOO\" >> {0}", out.display()), "arg0", "one"],
            "env": ["FOO=bar"]
        }));
        run("prestart", Some(&vec![h]), "{\"id\":\"c\"}").unwrap();
        let got = std::fs::read_to_string(out).unwrap();
        assert_eq!(got.trim(), "{\"id\":\"c\"} arg0 one bar");
    }

    #[test]
    fn failing_hook_names_kind_index_and_output() {
        let ok = hook(serde_json::json!({"path": "/bin/true"}));
        let bad = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo oops >&2; exit 3"]}),
        );
        let e = run("createRuntime", Some(&vec![ok, bad]), "{}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("createRuntime hook #1") && e.contains("oops") && e.contains('3'),
            "{e}"
        );
    }

    #[test]
    fn hook_timeout_kills_it() {
        let slow =
            hook(serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}));
        let t = Instant::now();
        let e = run("poststart", Some(&vec![slow]), "{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
