//! End to end with the real `docker` CLI: `docker cp` both ways (running and stopped
//! containers, volumes, tar streams, ownership) and the symlink / hostile-tar attacks it must
//! withstand; `docker export`, `docker diff`; sizes, `docker system df`, `info` and prune.
//! Skipped with a message without root, docker, busybox or docker-registry, unless
//! SKIFF_REQUIRE_DOCKER is set.

mod world;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Output, Stdio};

use world::*;

/// Runs docker with binary stdin; returns the output (not asserted).
fn docker_bytes(w: &World, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = w.docker_cmd(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("running docker");
    let mut si = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = si.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

/// A tar built entry by entry, names written verbatim (hostile ones included).
fn tar_of(entries: &[(&str, tar::EntryType, &[u8], u64, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, uid, mode) in entries {
        let mut h = hdr();
        h.set_entry_type(*kind);
        h.set_uid(*uid);
        h.set_gid(*uid + 1);
        h.set_mode(*mode);
        let bytes = name.as_bytes();
        {
            let old = h.as_old_mut();
            old.name[..bytes.len()].copy_from_slice(bytes);
            if *kind == tar::EntryType::Symlink {
                old.linkname[..data.len()].copy_from_slice(data);
            }
        }
        let body: &[u8] = if *kind == tar::EntryType::Regular {
            data
        } else {
            &[]
        };
        h.set_size(body.len() as u64);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    b.into_inner().unwrap()
}

fn names_in(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// One raw HTTP request on the daemon's socket: the status and the body.
fn raw(w: &World, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(w.tmp.path().join("d.sock")).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn assert_fails(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure: {out:?}");
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

/// No file of the host directory `dir` other than those listed.
fn assert_only(dir: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(names, want, "the host directory {} changed", dir.display());
}

#[test]
fn docker_cp_both_ways_running_and_stopped_and_attacks_stay_inside() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let host = w.tmp.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let hp = |p: &str| host.join(p).display().to_string();
    // The host directory the attacks aim at, and a secret in it.
    let target = w.tmp.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("secret"), "host secret\n").unwrap();
    let target_abs = target.display().to_string();

    let setup = format!(
        "mkdir -p /d/sub && echo one > /d/a.txt && echo two > /d/sub/b.txt && \
         mkdir /x && ln -s {target_abs} /x/esc && ln -s ../../../../../../../../.. /x/up && \
         ln -s /etc /d/etclink && touch /ready && sleep 1000"
    );
    w.docker(&[
        "run",
        "-d",
        "--name",
        "cpc",
        "-v",
        "vol:/data",
        IMAGE,
        "sh",
        "-c",
        &setup,
    ]);
    for _ in 0..200 {
        if w.try_docker(&["exec", "cpc", "test", "-e", "/ready"], None)
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // From the container: a directory to a new name, `dir/.` into an existing one, a file.
    w.docker(&["cp", "cpc:/d", &hp("out")]);
    assert_eq!(
        std::fs::read_to_string(host.join("out/a.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out/sub/b.txt")).unwrap(),
        "two\n"
    );
    std::fs::create_dir(host.join("dot")).unwrap();
    w.docker(&["cp", "cpc:/d/.", &hp("dot")]);
    assert_eq!(
        std::fs::read_to_string(host.join("dot/a.txt")).unwrap(),
        "one\n"
    );
    assert!(host.join("dot/sub/b.txt").is_file());
    w.docker(&["cp", "cpc:/d/sub/b.txt", &hp("b-copy")]);
    assert_eq!(
        std::fs::read_to_string(host.join("b-copy")).unwrap(),
        "two\n"
    );
    // Through a symlink inside the container: its own /etc, not the host's.
    w.docker(&["cp", "cpc:/d/etclink/passwd", &hp("passwd")]);
    assert_eq!(
        std::fs::read_to_string(host.join("passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );

    // To `-`: a tar stream whose entry is named after the file.
    let out = w.try_docker(&["cp", "cpc:/d/a.txt", "-"], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        names_in(&out.stdout),
        vec![("a.txt".to_owned(), b"one\n".to_vec())]
    );

    // Into the container: a file, a directory, and a tar from `-` with its owners kept.
    std::fs::write(host.join("in.txt"), "host\n").unwrap();
    w.docker(&["cp", &hp("in.txt"), "cpc:/d/in.txt"]);
    assert_eq!(w.docker(&["exec", "cpc", "cat", "/d/in.txt"]), "host\n");
    std::fs::create_dir_all(host.join("indir/deep")).unwrap();
    std::fs::write(host.join("indir/deep/x"), "x\n").unwrap();
    w.docker(&["cp", &hp("indir"), "cpc:/d/"]);
    assert_eq!(w.docker(&["exec", "cpc", "cat", "/d/indir/deep/x"]), "x\n");
    let t = tar_of(&[(
        "fromtar.txt",
        tar::EntryType::Regular,
        b"tar\n",
        1234,
        0o640,
    )]);
    let out = docker_bytes(&w, &["cp", "-", "cpc:/d"], &t);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        w.docker(&["exec", "cpc", "stat", "-c", "%u:%g %a", "/d/fromtar.txt"]),
        "1234:1235 640\n"
    );
    // Into a volume of a running container: the volume gets it.
    w.docker(&["cp", &hp("in.txt"), "cpc:/data/run.txt"]);
    assert_eq!(
        w.docker(&[
            "run",
            "--rm",
            "-v",
            "vol:/data",
            IMAGE,
            "cat",
            "/data/run.txt"
        ]),
        "host\n"
    );

    // Errors as Docker words them.
    let out = w.try_docker(&["cp", "cpc:/nonexistent", &hp("nothing")], None);
    assert_fails(&out, "/nonexistent");
    assert!(!host.join("nothing").exists());
    let out = w.try_docker(&["cp", "nosuch:/etc/passwd", &hp("nothing")], None);
    assert_fails(&out, "No such container");

    // The API's own errors: a missing path, a missing file, a non-directory to extract into.
    let (st, body) = raw(&w, "GET", "/containers/cpc/archive", b"");
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("path cannot be empty"), "{body}");
    let (st, _) = raw(&w, "HEAD", "/containers/cpc/archive?path=/nonexistent", b"");
    assert_eq!(st, 404);
    let (st, body) = raw(&w, "GET", "/containers/cpc/archive?path=/nonexistent", b"");
    assert_eq!(st, 404, "{body}");
    assert!(
        body.contains("Could not find the file /nonexistent in container cpc"),
        "{body}"
    );
    let (st, body) = raw(&w, "PUT", "/containers/cpc/archive?path=/d/a.txt", b"");
    assert_eq!(st, 400, "{body}");
    assert!(
        body.contains("extraction point is not a directory"),
        "{body}"
    );
    let (st, body) = raw(
        &w,
        "PUT",
        "/containers/cpc/archive?path=/d",
        b"not a tar at all",
    );
    assert_eq!(st, 400, "{body}");
    let (st, _) = raw(&w, "GET", "/containers/nosuch/changes", b"");
    assert_eq!(st, 404);

    // Attacks: symlinks to host paths and `..` resolve inside the container.
    let out = w.try_docker(&["cp", "cpc:/x/esc/secret", &hp("stolen")], None);
    assert_fails(&out, "Could not find the file");
    let up = format!("cpc:/x/up{target_abs}/secret");
    let out = w.try_docker(&["cp", &up, &hp("stolen2")], None);
    assert_fails(&out, "Could not find the file");
    assert!(!host.join("stolen").exists() && !host.join("stolen2").exists());
    // Writes through the same links, by the CLI and by hostile tars, never reach the host.
    let _ = w.try_docker(&["cp", &hp("in.txt"), "cpc:/x/esc/pwn1"], None);
    let _ = w.try_docker(
        &["cp", &hp("in.txt"), &format!("cpc:/x/up{target_abs}/pwn2")],
        None,
    );
    let t = tar_of(&[("esc/pwn3", tar::EntryType::Regular, b"pwn\n", 0, 0o644)]);
    let out = docker_bytes(&w, &["cp", "-", "cpc:/x"], &t);
    assert!(
        !out.status.success(),
        "a tar through a symlink out was accepted"
    );
    let t = tar_of(&[
        (
            "lnk",
            tar::EntryType::Symlink,
            target_abs.as_bytes(),
            0,
            0o777,
        ),
        ("lnk/pwn4", tar::EntryType::Regular, b"pwn\n", 0, 0o644),
    ]);
    let out = docker_bytes(&w, &["cp", "-", "cpc:/d"], &t);
    assert!(
        !out.status.success(),
        "a tar through its own symlink was accepted"
    );
    let hostile = format!("../../../../../../../../..{target_abs}/pwn5");
    let t = tar_of(&[(
        hostile.as_str(),
        tar::EntryType::Regular,
        b"pwn\n",
        0,
        0o644,
    )]);
    let out = docker_bytes(&w, &["cp", "-", "cpc:/d"], &t);
    assert_fails(&out, "escapes");
    assert_only(&target, &["secret"]);
    assert_eq!(
        std::fs::read_to_string(target.join("secret")).unwrap(),
        "host secret\n"
    );

    // A stopped container: mounted on demand, with its volume; nothing stays mounted.
    w.docker(&[
        "create",
        "--name",
        "cps",
        "-v",
        "vol:/data",
        IMAGE,
        "sleep",
        "1000",
    ]);
    w.docker(&["cp", &hp("in.txt"), "cps:/tmp/"]);
    w.docker(&["cp", "cps:/tmp/in.txt", &hp("back.txt")]);
    assert_eq!(
        std::fs::read_to_string(host.join("back.txt")).unwrap(),
        "host\n"
    );
    w.docker(&["cp", &hp("in.txt"), "cps:/data/stopped.txt"]);
    assert_eq!(
        w.docker(&[
            "run",
            "--rm",
            "-v",
            "vol:/data",
            IMAGE,
            "cat",
            "/data/stopped.txt"
        ]),
        "host\n"
    );
    let out = w.try_docker(&["cp", "cps:/etc/../../../../etc/passwd", "-"], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        names_in(&out.stdout),
        vec![(
            "passwd".to_owned(),
            b"root:x:0:0:root:/root:/bin/sh\n".to_vec()
        )]
    );
    let sid = w.docker(&["inspect", "-f", "{{.Id}}", "cps"]);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(sid.trim()),
        "the stopped container's rootfs stayed mounted"
    );
    // The engine's /etc files of a stopped container are its own, as when it runs.
    let out = w.try_docker(&["cp", "cps:/etc/hostname", "-"], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        names_in(&out.stdout),
        vec![(
            "hostname".to_owned(),
            format!("{}\n", &sid.trim()[..12]).into_bytes()
        )]
    );
    w.docker(&["start", "cps"]);
    assert_eq!(w.docker(&["exec", "cps", "cat", "/tmp/in.txt"]), "host\n");
    // An exited container too.
    w.docker(&["rm", "-f", "cps"]);
    w.docker(&[
        "run",
        "--name",
        "cpe",
        IMAGE,
        "sh",
        "-c",
        "echo done > /result",
    ]);
    w.docker(&["cp", "cpe:/result", &hp("result")]);
    assert_eq!(
        std::fs::read_to_string(host.join("result")).unwrap(),
        "done\n"
    );

    // A destination that is a symlink: the CLI follows its linkTarget (resolved inside).
    w.docker(&["cp", &hp("in.txt"), "cpc:/d/etclink"]);
    assert_eq!(w.docker(&["exec", "cpc", "cat", "/etc/in.txt"]), "host\n");
    assert!(!Path::new("/etc/in.txt").exists());
    // A file never replaces a directory (the CLI asks noOverwriteDirNonDir).
    std::fs::write(host.join("sub"), "file\n").unwrap();
    let out = w.try_docker(&["cp", &hp("sub"), "cpc:/d/"], None);
    assert_fails(&out, "cannot overwrite directory");
    assert_eq!(w.docker(&["exec", "cpc", "cat", "/d/sub/b.txt"]), "two\n");

    // -a: the container's user owns what is copied in; GET's tar carries owners.
    w.docker(&[
        "create",
        "--name",
        "cpu",
        "--user",
        "1000:1001",
        IMAGE,
        "true",
    ]);
    w.docker(&["cp", "-a", &hp("in.txt"), "cpu:/tmp/"]);
    let out = w.try_docker(&["cp", "cpu:/tmp/in.txt", "-"], None);
    assert!(out.status.success(), "{out:?}");
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (1000, 1001)
    );

    // Read-only root filesystems and volumes refuse writes, running or not.
    w.docker(&[
        "create",
        "--name",
        "ro",
        "--read-only",
        "-v",
        "rovol:/rov:ro",
        IMAGE,
        "true",
    ]);
    let out = w.try_docker(&["cp", &hp("in.txt"), "ro:/tmp/"], None);
    assert_fails(&out, "container rootfs is marked read-only");
    let out = w.try_docker(&["cp", &hp("in.txt"), "ro:/rov/"], None);
    assert_fails(&out, "read-only");
    w.docker(&[
        "run",
        "-d",
        "--name",
        "rorun",
        "-v",
        "rovol:/rov:ro",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let out = w.try_docker(&["cp", &hp("in.txt"), "rorun:/rov/"], None);
    assert_fails(&out, "read-only");
    assert_eq!(
        w.docker(&["run", "--rm", "-v", "rovol:/rov", IMAGE, "ls", "/rov"]),
        ""
    );
}

#[test]
fn docker_diff_and_export_show_what_the_container_changed() {
    if !can_run() {
        return;
    }
    let w = World::new();
    w.docker(&[
        "run",
        "--name",
        "changer",
        "-v",
        "evol:/vdata",
        IMAGE,
        "sh",
        "-c",
        "echo new > /added.txt && echo changed >> /etc/passwd && rm /bin/vi && \
         mkdir -p /newdir/sub && echo x > /newdir/sub/f && rmdir /root && echo v > /vdata/in-volume",
    ]);
    let diff = w.docker(&["diff", "changer"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(
        lines,
        vec![
            "A /added.txt",
            "C /bin",
            "D /bin/vi",
            "C /etc",
            "C /etc/passwd",
            "A /newdir",
            "A /newdir/sub",
            "A /newdir/sub/f",
            "D /root",
            "A /vdata",
        ],
        "{diff}"
    );

    // Export: the merged root filesystem with the container's files, without the volume's.
    let file = w.tmp.path().join("changer.tar");
    w.docker(&["export", "-o", &file.display().to_string(), "changer"]);
    let entries = names_in(&std::fs::read(&file).unwrap());
    let get = |n: &str| {
        entries
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, d)| d.clone())
    };
    assert_eq!(get("added.txt").as_deref(), Some(&b"new\n"[..]));
    assert_eq!(get("newdir/sub/f").as_deref(), Some(&b"x\n"[..]));
    assert!(String::from_utf8_lossy(&get("etc/passwd").unwrap()).ends_with("changed\n"));
    assert!(get("bin/busybox").is_some_and(|d| !d.is_empty()));
    assert!(get("bin/vi").is_none(), "a deleted file was exported");
    assert!(
        get("vdata/").is_some(),
        "the volume's mount point is missing"
    );
    assert!(
        get("vdata/in-volume").is_none(),
        "a volume's content was exported"
    );

    // A running container: what it wrote so far, and nothing of /proc's content.
    w.docker(&[
        "run",
        "-d",
        "--name",
        "live",
        IMAGE,
        "sh",
        "-c",
        "echo live > /live.txt && touch /ready && sleep 1000",
    ]);
    for _ in 0..200 {
        if w.try_docker(&["exec", "live", "test", "-e", "/ready"], None)
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    w.docker(&["export", "-o", &file.display().to_string(), "live"]);
    let entries = names_in(&std::fs::read(&file).unwrap());
    assert!(entries
        .iter()
        .any(|(n, d)| n == "live.txt" && d == b"live\n"));
    assert!(entries.iter().any(|(n, _)| n == "proc/"));
    assert!(
        !entries
            .iter()
            .any(|(n, _)| n.starts_with("proc/") && n != "proc/"),
        "/proc's content was exported"
    );
    assert_eq!(
        w.docker(&["diff", "live"]).lines().collect::<Vec<_>>(),
        vec!["A /live.txt", "A /ready"]
    );

    // With --init the engine mounts /sbin/docker-init: /sbin, made only to hold it in an
    // image without /sbin, is no change of the container's.
    if Path::new("/usr/bin/tini-static").exists() {
        w.docker(&["run", "--init", "--name", "withinit", IMAGE, "true"]);
        assert_eq!(w.docker(&["diff", "withinit"]), "");
    }

    let out = w.try_docker(&["export", "nosuch"], None);
    assert_fails(&out, "No such container: nosuch");
    let out = w.try_docker(&["diff", "nosuch"], None);
    assert_fails(&out, "No such container: nosuch");
}

#[test]
fn sizes_system_df_info_and_container_prune_filters() {
    if !can_run() {
        return;
    }
    let mut w = World::new();
    w.docker(&[
        "run",
        "--name",
        "big",
        "--label",
        "keep=yes",
        IMAGE,
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1024 count=2048 2>/dev/null",
    ]);
    w.docker(&[
        "run", "-d", "--name", "runner", "-v", "dfvol:/v", IMAGE, "sleep", "1000",
    ]);

    // SizeRw: the 2 MiB the container wrote (and little else); SizeRootFs adds the image.
    let sizes = w.docker(&[
        "inspect",
        "--size",
        "-f",
        "{{.SizeRw}} {{.SizeRootFs}}",
        "big",
    ]);
    let nums: Vec<i64> = sizes
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        (2_097_152..2_097_152 + 65_536).contains(&nums[0]),
        "SizeRw {sizes}"
    );
    assert!(nums[1] > nums[0] + 500_000, "SizeRootFs {sizes}");
    let ps = w.docker(&["ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"]);
    assert!(
        ps.lines().any(|l| l.starts_with("big 2.1MB (virtual ")),
        "{ps}"
    );

    // docker system df: the containers with their sizes, the image in use, the volume.
    let df = w.docker(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    let lines: Vec<&str> = df.lines().collect();
    assert!(lines.contains(&"Images 1 1"), "{df}");
    assert!(lines.contains(&"Containers 2 1"), "{df}");
    assert!(lines.contains(&"Local Volumes 1 1"), "{df}");
    let dfv = w.docker(&["system", "df", "-v", "--format", "{{json .Containers}}"]);
    let cs: serde_json::Value = serde_json::from_str(dfv.trim()).unwrap();
    let big = cs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Names"] == "big")
        .unwrap_or_else(|| panic!("{dfv}"));
    assert_eq!(big["Size"], "2.1MB", "{dfv}");

    // docker info: real numbers, an ID that survives a restart.
    let info = w.docker(&["info", "--format", "{{json .}}"]);
    let i: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    assert_eq!(i["Containers"], 2, "{info}");
    assert_eq!(i["ContainersRunning"], 1);
    assert_eq!(i["ContainersStopped"], 1);
    assert_eq!(i["Images"], 1);
    assert!(i["NCPU"].as_u64().unwrap() >= 1);
    assert!(i["MemTotal"].as_u64().unwrap() > 0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(i["KernelVersion"], kernel.trim());
    assert!(!i["OperatingSystem"].as_str().unwrap().is_empty());
    assert_eq!(
        i["DockerRootDir"],
        w.tmp.path().join("root").display().to_string()
    );
    assert!(i["SecurityOptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "name=seccomp,profile=default"));
    assert!(matches!(i["CgroupVersion"].as_str(), Some("1" | "2")));
    if i["Driver"] == "overlay2" {
        assert_eq!(i["DriverStatus"][0][0], "Backing Filesystem", "{info}");
    }
    let id = i["ID"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    w.restart_daemon();
    let id2 = w.docker(&["info", "--format", "{{.ID}}"]);
    assert_eq!(id2.trim(), id);

    // Container prune: never the running one; label!= and until filters.
    w.docker(&["create", "--name", "scratch", IMAGE, "true"]);
    let out = w.docker(&["container", "prune", "-f", "--filter", "label!=keep=yes"]);
    let scratch_gone = w.try_docker(&["inspect", "scratch"], None);
    assert!(!scratch_gone.status.success(), "{out}");
    w.docker(&["inspect", "big"]);
    w.docker(&["container", "prune", "-f", "--filter", "until=1h"]);
    w.docker(&["inspect", "big"]);
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60)
        .to_string();
    let out = w.docker(&[
        "container",
        "prune",
        "-f",
        "--filter",
        &format!("until={later}"),
    ]);
    assert!(out.contains("Total reclaimed space: 2.09"), "{out}");
    assert!(!w.try_docker(&["inspect", "big"], None).status.success());
    assert_eq!(
        w.docker(&["ps", "-aq"]).lines().count(),
        1,
        "the running one stays"
    );
    let out = w.try_docker(
        &["container", "prune", "-f", "--filter", "until=soon"],
        None,
    );
    assert_fails(&out, "invalid until filter");

    // docker system prune: stopped containers go, the running one and its image stay; with
    // --volumes an unused anonymous volume goes too.
    w.docker(&["run", "--name", "done", "-v", "/anon", IMAGE, "true"]);
    let out = w.docker(&["system", "prune", "-f"]);
    assert!(
        !w.try_docker(&["inspect", "done"], None).status.success(),
        "{out}"
    );
    w.docker(&["inspect", "runner"]);
    w.docker(&["image", "inspect", IMAGE]);
    let before = w.docker(&["volume", "ls", "-q"]).lines().count();
    let out = w.docker(&["system", "prune", "-f", "--volumes"]);
    let after = w.docker(&["volume", "ls", "-q"]);
    assert_eq!(after.lines().count(), before - 1, "{out}");
    assert!(
        after.lines().any(|l| l == "dfvol"),
        "a volume in use was pruned"
    );
}

#[test]
fn docker_py_archive_export_diff_df_and_prune() {
    if !can_run() {
        return;
    }
    let probe = std::process::Command::new("python3")
        .args(["-c", "import docker"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: docker-py is not installed (pip install docker)");
        return;
    }
    let w = World::new();
    let host = format!("unix://{}", w.tmp.path().join("d.sock").display());
    let script = format!(
        r#"
import io, tarfile, docker
c = docker.DockerClient(base_url={host:?}, version="auto")
ctr = c.containers.run({image:?}, ["sh", "-c", "echo hi > /greeting; sleep 1000"], detach=True, name="py")
import time
for _ in range(200):
    if ctr.exec_run(["test", "-e", "/greeting"]).exit_code == 0:
        break
    time.sleep(0.05)
stream, stat = ctr.get_archive("/greeting")
assert stat["name"] == "greeting" and stat["size"] == 3, stat
data = b"".join(stream)
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    assert t.extractfile("greeting").read() == b"hi\n"
stream, stat = ctr.get_archive("/bin")
assert stat["mode"] & (1 << 31), stat
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    info = tarfile.TarInfo("put.txt"); info.size = 4; info.uid = 42; info.mode = 0o600
    t.addfile(info, io.BytesIO(b"put\n"))
assert ctr.put_archive("/tmp", buf.getvalue())
assert ctr.exec_run(["stat", "-c", "%u %a", "/tmp/put.txt"]).output == b"42 600\n"
try:
    ctr.get_archive("/nope")
    raise SystemExit("expected NotFound")
except docker.errors.NotFound as e:
    assert "Could not find the file /nope in container " + ctr.id in str(e), str(e)
changes = {{(d["Path"], d["Kind"]) for d in ctr.diff()}}
assert ("/greeting", 1) in changes and ("/tmp/put.txt", 1) in changes, changes
assert ("/tmp", 0) in changes, changes
exported = b"".join(ctr.export())
with tarfile.open(fileobj=io.BytesIO(exported)) as t:
    assert t.extractfile("greeting").read() == b"hi\n"
df = c.df()
sizes = [x["SizeRw"] for x in df["Containers"] if x["Names"] == ["/py"]]
assert sizes and sizes[0] >= 7, df["Containers"]
ctr.stop(timeout=1)
info = c.info()
assert info["ContainersStopped"] == 1 and info["Images"] == 1, info
res = c.containers.prune(filters={{"label": ["nosuch"]}})
assert not res.get("ContainersDeleted"), res
res = c.containers.prune()
assert res["ContainersDeleted"] == [ctr.id], res
print("ok")
"#,
        image = IMAGE,
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-py failed: {}\n{}\n--- skiffd:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        w.log()
    );
}

#[test]
fn docker_commit_makes_an_image_of_the_changes() {
    if !can_run() {
        return;
    }
    let w = World::new();
    w.docker(&[
        "run",
        "--name",
        "tocommit",
        "-e",
        "KEEP=kept",
        IMAGE,
        "sh",
        "-c",
        "echo committed > /hello && rm /bin/vi && rm -rf /root && mkdir /root && \
         echo only > /root/only",
    ]);
    let id = w.docker(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/hello\"]",
        "-c",
        "ENV A=1",
        "-m",
        "a message",
        "-a",
        "someone",
        "tocommit",
        "mine:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(w.docker(&["run", "--rm", "mine:v1"]), "committed\n");
    // Deletions as whiteouts, a replaced directory as opaque, the config with the changes.
    let out = w.docker(&[
        "run",
        "--rm",
        "mine:v1",
        "sh",
        "-c",
        "test ! -e /bin/vi && ls /root && echo $A $KEEP",
    ]);
    assert_eq!(out, "only\n1 kept\n");
    let meta = w.docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Author}}|{{len .RootFS.Layers}}",
        "mine:v1",
    ]);
    assert_eq!(meta.trim(), "someone|2");
    let history = w.docker(&["history", "--format", "{{.Comment}}", "mine:v1"]);
    assert!(history.lines().any(|l| l == "a message"), "{history}");
    // The engine's mount points are not part of the image.
    let diff = w.docker(&["run", "--name", "fromcommit", "mine:v1", "true"]);
    assert_eq!(diff, "");
    assert_eq!(w.docker(&["diff", "fromcommit"]), "");

    // A running container (paused for the commit, running after).
    w.docker(&[
        "run",
        "-d",
        "--name",
        "running",
        IMAGE,
        "sh",
        "-c",
        "echo live > /live && touch /ready && sleep 1000",
    ]);
    for _ in 0..200 {
        if w.try_docker(&["exec", "running", "test", "-e", "/ready"], None)
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    w.docker(&["commit", "running", "mine:live"]);
    assert_eq!(
        w.docker(&["inspect", "-f", "{{.State.Status}}", "running"])
            .trim(),
        "running"
    );
    assert_eq!(
        w.docker(&["run", "--rm", "mine:live", "cat", "/live"]),
        "live\n"
    );

    let out = w.try_docker(&["commit", "nosuch", "x:y"], None);
    assert_fails(&out, "No such container: nosuch");
}
