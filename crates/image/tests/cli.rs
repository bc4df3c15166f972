//! The `skiff-image` binary against a real registry (see `common`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_skiff-image");

fn cli(root: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .arg("--data-root")
        .arg(root)
        .args(args)
        .env("DOCKER_CONFIG", root.join("docker-config"))
        .output()
        .unwrap();
    eprintln!(
        "$ skiff-image {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = cli(root, args);
    assert!(out.status.success(), "skiff-image {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn smoke_pull_images_tag_save_rmi_load() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let client = client();
    let r = reg.reference("test/busybox:1");
    let img = busybox_image(GZIP, &host_arch());
    push_image(&client, &r, &img);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let name = format!("{}/test/busybox:1", reg.host());

    let out = ok(root, &["pull", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1: Pulling from test/busybox");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    assert_eq!(lines.last().unwrap(), &r.to_string());
    let short = &img.config.digest.hex()[..12];

    let out = ok(root, &["images"]);
    let mut rows = out.lines();
    let header = rows.next().unwrap();
    for h in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(h), "{header}");
    }
    let row: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], format!("{}/test/busybox", reg.host()));
    assert_eq!(row[1], "1");
    assert_eq!(row[2], short);
    assert!(out.contains("ago"), "{out}");
    assert_eq!(ok(root, &["images", "-q"]).trim(), short);

    ok(root, &["tag", &name, "mine:v2"]);
    let out = ok(root, &["images"]);
    assert!(out.contains("mine ") && out.contains(" v2 "), "{out}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(root, &["inspect", "mine:v2"])).unwrap();
    assert_eq!(inspect[0]["Id"], img.config.digest.to_string());
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert!(ok(root, &["history", "mine:v2"]).contains("test"));

    let archive = root.join("saved.tar");
    ok(root, &["save", "-o", archive.to_str().unwrap(), "mine:v2"]);
    let out = ok(root, &["rmi", "mine:v2", &name]);
    assert!(out.contains("Untagged: mine:v2"), "{out}");
    assert!(
        out.contains(&format!("Deleted: {}", img.config.digest)),
        "{out}"
    );
    assert_eq!(ok(root, &["images", "-q"]).trim(), "");
    ok(root, &["gc"]);

    let out = ok(root, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: mine:v2"), "{out}");
    let out = ok(root, &["images"]);
    assert!(out.contains("mine ") && out.contains(short), "{out}");

    // export through a temporary rootfs
    let tarball = root.join("rootfs.tar");
    ok(
        root,
        &["export", "mine:v2", "-o", tarball.to_str().unwrap()],
    );
    let mut a = tar::Archive::new(std::fs::File::open(&tarball).unwrap());
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "bin/busybox"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with("removeme")), "{names:?}");

    // import, prune
    let out = ok(root, &["import", tarball.to_str().unwrap(), "imported:1"]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    ok(root, &["rmi", "imported:1"]);
    ok(root, &["prune", "-a"]);
    assert_eq!(ok(root, &["images", "-q"]).trim(), "");

    // errors go to stderr with a non-zero status
    let out = cli(root, &["rmi", "nonexistent"]);
    assert!(!out.status.success());
}

#[test]
fn kill_9_during_a_pull_then_pull_again_and_gc_is_clean() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let client = client();
    let r = reg.reference("test/big:latest");
    let layers = ["a", "b", "c"]
        .iter()
        .zip(1u64..)
        .map(|(file, seed)| {
            let t = tar(&[Entry::File(file, random_bytes(20 << 20, seed))]);
            (t, GZIP)
        })
        .collect();
    let img = image(layers, &host_arch());
    push_image(&client, &r, &img);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let name = r.to_string();

    let mut child = Command::new(BIN)
        .arg("--data-root")
        .arg(root)
        .args(["pull", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let downloading = line.ends_with("Downloading");
        seen.push(line);
        if downloading {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    eprintln!("killed after {seen:?}: {status:?}");
    assert!(!status.success(), "the pull finished before the kill");
    assert!(!seen.iter().any(|l| l.starts_with("Status:")));

    // Leftovers of the killed pull are possible; the next pull must not trip on them.
    let t = Instant::now();
    let out = ok(root, &["pull", &name]);
    let took = t.elapsed();
    eprintln!("pull of 3 x 20 MB layers after kill -9: {took:?}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert!(took < Duration::from_secs(120));
    let out = ok(root, &["gc"]);
    assert!(out.starts_with("Removed"), "{out}");
    for d in ["content/tmp", "snapshots/tmp", "tmp"] {
        assert_eq!(count(&root.join(d)), 0, "{d} not clean");
    }
    // exactly the image's content is left
    assert_eq!(count(&root.join("content/blobs/sha256")), 5);
    assert_eq!(count(&root.join("snapshots")), 4);
    let out = ok(root, &["images", "-q"]);
    assert_eq!(out.trim(), &img.config.digest.hex()[..12]);
}

#[test]
fn login_then_push_and_pull_with_basic_auth() {
    if !have_registry() {
        return;
    }
    if Command::new("htpasswd").arg("-h").output().is_err() {
        eprintln!("SKIPPED: login test needs htpasswd");
        return;
    }
    let reg = Registry::start_with(Some(("alice", "s3cret")));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let host = reg.host();
    // Something to push: an imported tarball.
    let t = root.join("fs.tar");
    std::fs::write(
        &t,
        tar(&[Entry::Dir("x/"), Entry::File("x/y", b"hello".to_vec())]),
    )
    .unwrap();
    let name = format!("{host}/private/app:1");
    ok(root, &["import", t.to_str().unwrap(), &name]);
    // Without credentials the push is refused.
    let out = cli(root, &["push", &name]);
    assert!(!out.status.success());

    let bad = cli(root, &["login", "-u", "alice", "-p", "wrong", &host]);
    assert!(!bad.status.success());
    let mut child = Command::new(BIN)
        .arg("--data-root")
        .arg(root)
        .args(["login", "-u", "alice", "--password-stdin", &host])
        .env("DOCKER_CONFIG", root.join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Login Succeeded"
    );
    let cfg = std::fs::read_to_string(root.join("docker-config/config.json")).unwrap();
    assert!(cfg.contains(&host), "{cfg}");

    let out = ok(root, &["push", &name]);
    assert!(out.contains(": Pushed"), "{out}");
    assert!(out.contains("1: digest: sha256:"), "{out}");
    ok(root, &["rmi", &name]);
    let out = ok(root, &["pull", &name]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
}
