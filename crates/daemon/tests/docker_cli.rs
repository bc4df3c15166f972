//! The real `docker` CLI (and docker-py) against the real `skiffd` binary.

mod common;

use std::process::Command;

use common::{have, seed_image, Registry, Skiffd};

#[test]
fn system_and_volumes() {
    if !have(&["docker"]) {
        return;
    }
    let d = Skiffd::start();
    let v = d.ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Client.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(v.trim(), "1.47 1.47 linux");
    let info = d.ok(&[
        "info",
        "--format",
        "{{.Images}} {{.Containers}} {{.DockerRootDir}} {{.OSType}} {{.NCPU}}",
    ]);
    assert!(
        info.starts_with(&format!("0 0 {} linux ", d.data_root().display())),
        "{info}"
    );
    let info = d.ok(&["info"]);
    assert!(info.contains("Storage Driver:"), "{info}");
    assert!(info.contains("Cgroup Version:"), "{info}");

    d.ok(&["volume", "create", "--label", "team=a", "data1"]);
    d.ok(&["volume", "create", "data2"]);
    let ls = d.ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    assert_eq!(ls, "local data1\nlocal data2\n");
    let ls = d.ok(&["volume", "ls", "-q", "--filter", "label=team=a"]);
    assert_eq!(ls, "data1\n");
    let mp = d.ok(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}} {{.Labels.team}}",
        "data1",
    ]);
    assert_eq!(
        mp.trim(),
        format!("{} a", d.data_root().join("volumes/data1/_data").display())
    );
    assert!(d.data_root().join("volumes/data1/_data").is_dir());
    let err = d.fails(&["volume", "inspect", "nope"]);
    assert!(err.contains("no such volume"), "{err}");
    assert_eq!(d.ok(&["volume", "rm", "data1", "data2"]), "data1\ndata2\n");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    d.ok(&["system", "df"]);

    // A clean stop removes the socket.
    let mut d = d;
    let st = d.stop().unwrap();
    assert!(st.success(), "skiffd exited with {st}: {}", d.log());
    assert!(!d.socket.exists(), "socket left behind");
}

#[test]
fn images_pull_tag_save_load_rmi_prune_push() {
    if !have(&["docker", "docker-registry"]) {
        return;
    }
    let reg = Registry::start(None);
    let src = format!("{}/test/app:v1", reg.host());
    seed_image(&src, "one");
    let d = Skiffd::start();

    let out = d.ok(&["pull", &src]);
    assert!(out.contains("v1: Pulling from test/app"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {src}")),
        "{out}"
    );
    let again = d.ok(&["pull", &src]);
    assert!(again.contains("Status: Image is up to date"), "{again}");
    let err = d.fails(&["pull", &format!("{}/test/app:nope", reg.host())]);
    assert!(err.contains("Error response from daemon"), "{err}");

    let id = d.ok(&["image", "inspect", "--format", "{{.Id}}", &src]);
    let id = id.trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let layers = d.ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}} {{.Os}}",
        &src,
    ]);
    assert_eq!(layers.trim(), "1 linux");

    d.ok(&["tag", &src, "myapp:latest"]);
    let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let short = &id[7..19];
    assert!(
        images.contains(&format!("myapp:latest {short}")),
        "{images}"
    );
    assert!(
        images.contains(&format!("{}/test/app:v1 {short}", reg.host())),
        "{images}"
    );
    let filtered = d.ok(&[
        "images",
        "--format",
        "{{.Repository}}",
        "--filter",
        "reference=myapp",
    ]);
    assert_eq!(filtered, "myapp\n");
    let digests = d.ok(&["images", "--digests", "--format", "{{.Digest}}", &src]);
    assert!(digests.trim().starts_with("sha256:"), "{digests}");
    // By digest: the CLI sends the digest as `tag`.
    let by_digest = format!("{}/test/app@{}", reg.host(), digests.trim());
    let out = d.ok(&["pull", &by_digest]);
    assert!(out.contains("Status: Image is up to date"), "{out}");
    assert_eq!(
        d.ok(&["image", "inspect", "--format", "{{.Id}}", &by_digest])
            .trim(),
        id
    );

    let hist = d.ok(&["history", "--format", "{{.ID}} {{.Size}}", "myapp"]);
    assert!(hist.starts_with(short), "{hist}");

    // save | load
    let tar = d.dir.path().join("saved.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), "myapp:latest"]);
    assert!(std::fs::metadata(&tar).unwrap().len() > 1024);
    let rm = d.ok(&["rmi", "myapp:latest"]);
    assert_eq!(rm, "Untagged: myapp:latest\n");
    let rm = d.ok(&["rmi", &src]);
    assert!(rm.contains(&format!("Untagged: {src}")), "{rm}");
    assert!(rm.contains(&format!("Deleted: {id}")), "{rm}");
    assert_eq!(d.ok(&["images", "-q"]), "");
    let out = d.docker_stdin(&["load"], Some(&tar));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Loaded image: myapp:latest\n"
    );
    assert_eq!(d.ok(&["images", "-q"]).trim(), short);
    let err = d.fails(&["rmi", "nosuch:1"]);
    assert!(err.contains("No such image: nosuch:1"), "{err}");

    // push back under a new name, pull it from a fresh daemon state
    let pushed = format!("{}/copy/app:v2", reg.host());
    d.ok(&["tag", "myapp", &pushed]);
    let out = d.ok(&["push", &pushed]);
    assert!(out.contains("v2: digest: sha256:"), "{out}");

    // prune: a dangling image goes with plain prune, tagged ones only with -a
    let dangling = d.docker_stdin(&["import", "-"], Some(&write_tar(&d, "dangling")));
    assert!(
        dangling.status.success(),
        "{}",
        String::from_utf8_lossy(&dangling.stderr)
    );
    let dangling_id = String::from_utf8_lossy(&dangling.stdout).trim().to_owned();
    assert_eq!(
        d.ok(&["images", "-q", "--filter", "dangling=true"]).trim(),
        &dangling_id[7..19]
    );
    let out = d.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {dangling_id}")), "{out}");
    // One row per tag (myapp:latest and the pushed one), both the same image.
    assert_eq!(d.ok(&["images", "-q"]), format!("{short}\n{short}\n"));
    let out = d.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert_eq!(d.ok(&["images", "-q"]), "");

    d.ok(&["pull", &pushed]);
    assert_eq!(
        d.ok(&["image", "inspect", "--format", "{{.Id}}", &pushed])
            .trim(),
        id
    );
}

fn write_tar(d: &Skiffd, marker: &str) -> std::path::PathBuf {
    let p = d.dir.path().join(format!("{marker}.tar"));
    std::fs::write(&p, common::rootfs_tar(marker)).unwrap();
    p
}

#[test]
fn login_and_private_pull() {
    if !have(&["docker", "docker-registry", "htpasswd"]) {
        return;
    }
    let reg = Registry::start(Some(("alice", "s3cret")));
    let d = Skiffd::start();
    let out = d.docker(&["login", "-u", "alice", "-p", "wrong", &reg.host()]);
    assert!(!out.status.success());
    let out = d.docker(&["login", "-u", "alice", "-p", "s3cret", &reg.host()]);
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    // The CLI now sends the credentials with pushes and pulls.
    let tar = write_tar(&d, "private");
    let private = format!("{}/private/app:1", reg.host());
    let imp = d.docker_stdin(&["import", "-", &private], Some(&tar));
    assert!(
        imp.status.success(),
        "{}",
        String::from_utf8_lossy(&imp.stderr)
    );
    d.ok(&["push", &private]);
    d.ok(&["rmi", &private]);
    d.ok(&["pull", &private]);
    d.ok(&["logout", &reg.host()]);
    let err = d.fails(&["pull", &private]);
    assert!(err.contains("denied") || err.contains("401"), "{err}");
}

#[test]
fn events_stream() {
    if !have(&["docker"]) {
        return;
    }
    let d = Skiffd::start();
    let tar = write_tar(&d, "ev");
    let imp = d.docker_stdin(&["import", "-", "evimg:1"], Some(&tar));
    assert!(imp.status.success());
    d.ok(&["tag", "evimg:1", "evimg:2"]);
    d.ok(&["rmi", "evimg:2"]);
    d.ok(&["volume", "create", "evvol"]);
    let until = (skiff_daemon::time::now().0 + 2).to_string();
    let out = d.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert_eq!(out, "image import\nimage tag\nimage untag\nvolume create\n");
}

#[test]
fn docker_py_smoke() {
    if !have(&["docker-registry"]) {
        return;
    }
    let probe = Command::new("python3")
        .args(["-c", "import docker"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: docker-py is not installed (pip install docker)");
        return;
    }
    let reg = Registry::start(None);
    let src = format!("{}/py/app", reg.host());
    seed_image(&format!("{src}:v1"), "py");
    let d = Skiffd::start();
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url={host:?}, version="auto")
assert c.version()["ApiVersion"] == "1.47", c.version()
assert c.ping()
img = c.images.pull({src:?}, tag="v1")
assert img.id.startswith("sha256:"), img.id
tags = [t for i in c.images.list() for t in i.tags]
assert tags == [{src:?} + ":v1"], tags
img.tag("pyapp", "x")
assert c.images.get("pyapp:x").id == img.id
c.images.remove("pyapp:x")
v = c.volumes.create("pyvol", labels={{"k": "v"}})
assert c.volumes.get("pyvol").attrs["Labels"] == {{"k": "v"}}
v.remove()
try:
    c.images.get("nosuch")
    raise SystemExit("expected ImageNotFound")
except docker.errors.ImageNotFound:
    pass
print("ok")
"#,
        host = d.host(),
        src = src
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-py failed: {}\n{}\n--- skiffd:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
}

#[test]
fn sigterm_ends_event_streams_and_removes_the_socket() {
    if !have(&["docker"]) {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut d = Skiffd::start();
    let meta = std::fs::metadata(&d.socket).unwrap();
    let group_exists = std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("skiff:"));
    let mode = meta.permissions().mode() & 0o777;
    assert_eq!(mode, if group_exists { 0o660 } else { 0o600 });
    assert_eq!(meta.uid(), 0);
    // A follower of /events holds a connection open; shutdown must still be prompt.
    let mut events = Command::new("docker")
        .args(["events"])
        .env("DOCKER_HOST", d.host())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = std::time::Instant::now();
    let st = d.stop().unwrap();
    assert!(st.success(), "{st}: {}", d.log());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "slow shutdown"
    );
    assert!(!d.socket.exists());
    assert!(d.log().contains("shut down"), "{}", d.log());
    let _ = events.kill();
    let _ = events.wait();
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("daemon.json");
    std::fs::write(&cfg, r#"{"data-root": "/x", "live-restor": true}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .arg("--config-file")
        .arg(&cfg)
        .arg("--validate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `live-restor`"), "{err}");
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
    // An explicitly named file must exist.
    let out = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .arg("--config-file")
        .arg(dir.path().join("missing.json"))
        .arg("--validate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
    std::fs::write(&cfg, "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .args(["-H", "tcp://0.0.0.0:2375", "--validate"])
        .arg("--config-file")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no TCP listener"), "{err}");
}

#[test]
fn conflicts_and_missing_images() {
    if !have(&["docker"]) {
        return;
    }
    let d = Skiffd::start();
    let tar = write_tar(&d, "conflict");
    let imp = d.docker_stdin(&["import", "-", "one/app:1"], Some(&tar));
    assert!(imp.status.success());
    let id = String::from_utf8_lossy(&imp.stdout).trim().to_owned();
    // import --change sets the run config.
    let with = d.docker_stdin(
        &[
            "import",
            "-c",
            "CMD [\"/bin/hello\"]",
            "-c",
            "ENV A=1",
            "-",
            "cfg/app:1",
        ],
        Some(&tar),
    );
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let cfg = d.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{json .Config.Env}}",
        "cfg/app:1",
    ]);
    assert_eq!(cfg.trim(), r#"["/bin/hello"] ["A=1"]"#);
    d.ok(&["tag", "one/app:1", "two/app:1"]);
    let err = d.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("conflict: unable to delete"), "{err}");
    assert!(err.contains("must be forced"), "{err}");
    let out = d.ok(&["rmi", "-f", &id[7..19]]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    let err = d.fails(&["push", "127.0.0.1:1/nothing:here"]);
    assert!(err.contains("does not exist locally"), "{err}");
    let err = d.fails(&["image", "inspect", "nothing"]);
    assert!(err.contains("No such image: nothing"), "{err}");
    let err = d.fails(&["history", "nothing"]);
    assert!(err.contains("No such image: nothing"), "{err}");
}
