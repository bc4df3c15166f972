//! The `skiff` CLI end to end against the real skiffd (the world harness): output, exit codes,
//! streams, tables and `--format`, push/pull, cp; where the docker CLI prints the same thing,
//! both must print it byte for byte.

mod world;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use world::*;

/// The newest modification time under `dir`.
fn newest(dir: &Path) -> SystemTime {
    let mut t = SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let m = if p.is_dir() {
            newest(&p)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        t = t.max(m);
    }
    t
}

/// `skiff`, next to skiffd; built with cargo when missing or older than its sources.
fn skiff_bin() -> PathBuf {
    let (skiffd, _) = binaries();
    let dir = skiffd.parent().unwrap().to_owned();
    let bin = dir.join("skiff");
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stale = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map_or(true, |t| {
            t < newest(&crates.join("cli")) || t < newest(&crates.join("progress"))
        });
    if stale {
        let target = dir.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "skiff-cli", "--manifest-path"])
            .arg(crates.join("../Cargo.toml"))
            .arg("--target-dir")
            .arg(target);
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build -p skiff-cli");
        assert!(st.success(), "cargo build -p skiff-cli failed");
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

struct Skiff<'a> {
    w: &'a World,
    bin: PathBuf,
}

impl Skiff<'_> {
    fn new(w: &World) -> Skiff<'_> {
        Skiff {
            w,
            bin: skiff_bin(),
        }
    }

    fn sock(&self) -> PathBuf {
        self.w.tmp.path().join("d.sock")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock().display()))
            .env("DOCKER_CONFIG", self.w.tmp.path().join("skiff-config"))
            .env_remove("DOCKER_API_VERSION");
        c
    }

    /// Runs skiff (failing the test if it hangs) and returns what it did.
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = self.cmd(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("running skiff");
        if let Some(input) = stdin {
            let mut si = child.stdin.take().unwrap();
            si.write_all(input).unwrap();
        }
        // Output is read while waiting (a full pipe must not stall skiff); a hung skiff
        // fails the test instead of hanging it.
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                panic!("skiff {args:?} hung\nskiffd log:\n{}", self.w.log());
            }
        }
    }

    /// Runs skiff; asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    fn ok_in(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "skiff {args:?} failed ({}): {}\nskiffd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.w.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs skiff expecting exit status `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args, None);
        assert_eq!(
            out.status.code(),
            Some(code),
            "skiff {args:?}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Asserts that skiff and docker print the same for `args`. Outputs with relative times
    /// ("3 seconds ago") can differ when a second passes between the two commands: up to
    /// three rounds are compared, and one must match.
    fn same_as_docker(&self, args: &[&str]) -> String {
        let mut last = (String::new(), String::new());
        for _ in 0..3 {
            let ours = self.ok(args);
            let theirs = self.w.docker(args);
            if ours == theirs {
                return ours;
            }
            last = (ours, theirs);
        }
        panic!(
            "skiff and docker differ for {args:?}:\nskiff:\n{}\ndocker:\n{}",
            last.0, last.1
        );
    }
}

#[test]
fn skiff_run_output_exit_codes_and_streams() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let s = Skiff::new(&w);

    assert_eq!(s.ok(&["run", "--rm", IMAGE, "echo", "hi"]), "hi\n");
    // Flags after the image belong to the command.
    assert_eq!(
        s.ok(&["run", "--rm", IMAGE, "sh", "-c", "echo $0 $1", "-x", "--rm"]),
        "-x --rm\n"
    );
    s.fails(&["run", "--rm", IMAGE, "sh", "-c", "exit 3"], 3);
    let err = s.fails(&["run", "--rm", IMAGE, "nosuch-binary"], 127);
    assert!(err.contains("executable file not found"), "{err}");
    // Bad flags: 125, naming the flag, and nothing created.
    let err = s.fails(&["run", "-p", "x:80", IMAGE, "true"], 125);
    assert!(
        err.contains("invalid argument \"x:80\" for \"-p, --publish\" flag"),
        "{err}"
    );
    let err = s.fails(&["run", "--rm", "--restart", "always", IMAGE, "true"], 125);
    assert!(err.contains("Conflicting options"), "{err}");
    s.fails(&["run", "--no-such-flag", IMAGE], 125);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    // stderr stays stderr.
    let out = s.run(
        &["run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // -a picks the streams.
    let out = s.run(
        &[
            "run",
            "--rm",
            "-a",
            "stderr",
            IMAGE,
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // -i with piped stdin: the data, then EOF.
    assert_eq!(
        s.ok_in(
            &["run", "--rm", "-i", IMAGE, "wc", "-l"],
            Some(b"a\nb\nc\n")
        )
        .trim(),
        "3"
    );

    // -it under a pseudo-terminal: a tty inside, its size from ours, typed input.
    let out = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty cols 81 rows 23; DOCKER_HOST=unix://{} {} run -it --rm {IMAGE} sh -c 'tty; stty size; read x; echo got:$x'",
            s.sock().display(),
            s.bin.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            let mut si = c.stdin.take().unwrap();
            // Typed after the container has started (its tty echoes it back).
            std::thread::sleep(Duration::from_millis(1500));
            si.write_all(b"typed\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text:?}\n{}", w.log());
    assert!(text.contains("23 81"), "{text:?}");
    assert!(text.contains("got:typed"), "{text:?}");
    assert!(out.status.success(), "{out:?}");

    // A window-size change (SIGWINCH) reaches the container's tty: the container says when
    // it has read its first size (a file in a bind mount), then waits for the new one.
    let sync = w.tmp.path().join("winch");
    std::fs::create_dir(&sync).unwrap();
    let inner = "stty size; touch /sync/ready; i=0; \
                 while [ \"$(stty size)\" = \"22 77\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
                 stty size";
    let out = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty cols 77 rows 22; DOCKER_HOST=unix://{} {} run --rm -t -v {}:/sync {IMAGE} sh -c '{inner}' & \
             i=0; while [ ! -e {}/ready ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; \
             stty cols 90 rows 30; kill -WINCH $!; wait",
            s.sock().display(),
            s.bin.display(),
            sync.display(),
            sync.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let sizes: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(sizes, ["22 77", "30 90"], "{text:?}");

    // run -d, logs, logs -f (ends when the container does), exec, stop, rm.
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        "-e",
        "GREETING=hello",
        IMAGE,
        "sh",
        "-c",
        "echo $GREETING; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.ok(&["logs", "bg"]) != "hello\n" {
        assert!(Instant::now() < deadline, "no log line from bg");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        s.ok(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.Name}} {{.Id}}",
            "bg"
        ]),
        format!("true /bg {id}\n")
    );
    assert_eq!(
        s.ok(&["exec", "bg", "sh", "-c", "echo in:$GREETING"]),
        "in:hello\n"
    );
    s.fails(&["exec", "bg", "sh", "-c", "exit 4"], 4);
    assert_eq!(
        s.ok_in(&["exec", "-i", "bg", "cat"], Some(b"through exec\n")),
        "through exec\n"
    );
    let follower = s
        .cmd(&["logs", "-f", "bg"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(s.ok(&["stop", "bg"]), "bg\n");
    let followed = follower.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "hello\nbye\n");
    let st = s.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}"]);
    assert!(st.starts_with("bg exited Exited (0) "), "{st}");
    s.ok(&["wait", "bg"]);
    assert_eq!(s.ok(&["rm", "bg"]), "bg\n");
    let err = s.fails(&["rm", "bg"], 1);
    assert_eq!(err, "Error response from daemon: No such container: bg\n");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

#[test]
fn skiff_tables_and_formats_match_docker() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let s = Skiff::new(&w);
    s.ok(&["volume", "create", "--label", "team=a", "data1"]);
    s.ok(&["volume", "create", "data2"]);
    s.ok(&[
        "run", "-d", "--name", "up", "-l", "tier=web", IMAGE, "sleep", "1000",
    ]);
    s.fails(&["run", "--name", "done", IMAGE, "sh", "-c", "exit 2"], 2);
    s.ok(&["create", "--name", "fresh", IMAGE, "true"]);

    // Docker's table layout, with the columns the docker CLI prints.
    let ps = s.ok(&["ps"]);
    let header: Vec<&str> = ps
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{ps}"
    );
    assert_eq!(ps.lines().count(), 2, "{ps}");
    assert!(ps.contains("\"sleep 1000\""), "{ps}");

    for args in [
        &[
            "ps",
            "-a",
            "--format",
            "{{.ID}} {{.Image}} {{.Command}} {{.Names}} {{.State}} {{.Status}} {{.Label \"tier\"}}",
        ][..],
        &[
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}}\t{{.Command}}\t{{.Labels}}",
        ],
        &[
            "ps",
            "-a",
            "--format",
            "table {{.ID}}\t{{.Names}}\t{{.State}}",
        ],
        &["ps", "-a", "--format", "{{json .}}"],
        &["ps", "-aq"],
        &["ps", "--filter", "status=exited", "--format", "{{.Names}}"],
        &["ps", "-a"],
        &["images"],
        &[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}} {{.Digest}}",
        ],
        &["images", "--format", "{{json .}}"],
        &["images", "-q"],
        &[
            "images",
            "--no-trunc",
            "--format",
            "table {{.ID}}\t{{.Tag}}",
        ],
        &["volume", "ls"],
        &[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}",
        ],
        &["volume", "ls", "-q", "--filter", "label=team=a"],
        &["volume", "inspect", "data1"],
        &["inspect", "up"],
        &[
            "inspect",
            "-f",
            "{{.Config.Cmd}} {{json .Config.Labels}} {{.HostConfig.NetworkMode}}",
            "up",
        ],
        &["inspect", IMAGE],
        &["history", IMAGE],
        &["system", "df"],
        &[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ],
        &[
            "info",
            "--format",
            "{{.Images}} {{.Containers}} {{.DockerRootDir}}",
        ],
    ] {
        s.same_as_docker(args);
    }
    // `info`: the server part as docker prints it (the client parts name each client).
    let server_part = |t: String| t[t.find("\nServer:").expect("a Server: section")..].to_owned();
    assert_eq!(
        server_part(s.ok(&["info"])),
        server_part(w.docker(&["info"]))
    );
    // Management-command aliases print what the plain commands print.
    assert_eq!(s.ok(&["container", "ls", "-aq"]), s.ok(&["ps", "-aq"]));
    assert_eq!(s.ok(&["image", "ls", "-q"]), s.ok(&["images", "-q"]));
    assert_eq!(
        s.ok(&["container", "inspect", "-f", "{{.Name}}", "up"]),
        "/up\n"
    );
    // Template errors are reported, not printed as output.
    let err = s.fails(&["ps", "--format", "{{.ID"], 1);
    assert!(err.contains("template"), "{err}");
    // Inspect of something missing: an error and status 1.
    let err = s.fails(&["inspect", "nothing-here"], 1);
    assert!(err.contains("No such object: nothing-here"), "{err}");
    let err = s.fails(&["container", "bogus"], 125);
    assert!(
        err.contains("'container bogus' is not a skiff command"),
        "{err}"
    );
    assert!(s.ok(&["image"]).contains("Manage images"));
    let comp = s.ok(&["completion", "bash"]);
    assert!(comp.contains("skiff"), "{comp}");
    s.ok(&["rm", "-f", "up", "done", "fresh"]);
    assert_eq!(s.ok(&["volume", "rm", "data1", "data2"]), "data1\ndata2\n");
}

#[test]
fn skiff_push_pull_and_cp() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let s = Skiff::new(&w);
    let reg = format!("127.0.0.1:{}", w.port);
    let target = format!("{reg}/e2e/bb:v1");
    s.ok(&["tag", IMAGE, &target]);
    let out = s.ok(&["push", &target]);
    assert!(
        out.contains(&format!("The push refers to repository [{reg}/e2e/bb]")),
        "{out}"
    );
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    let rm = s.ok(&["rmi", &target]);
    assert!(rm.starts_with(&format!("Untagged: {target}\n")), "{rm}");
    let out = s.ok(&["pull", &target]);
    assert!(out.contains("v1: Pulling from e2e/bb"), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {target}")),
        "{out}"
    );
    assert_eq!(s.ok(&["pull", "-q", &target]), format!("{target}\n"));
    let err = s.fails(&["pull", &format!("{reg}/e2e/bb:nope")], 1);
    assert!(err.contains("Error response from daemon"), "{err}");
    // run pulls a missing image, progress on stderr, output on stdout.
    s.ok(&["rmi", &target]);
    let out = s.run(&["run", "--rm", &target, "echo", "pulled"], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pulled\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Unable to find image '{target}' locally")),
        "{err}"
    );
    // save | load through skiff.
    let tar = w.tmp.path().join("saved.tar");
    s.ok(&["save", "-o", tar.to_str().unwrap(), &target]);
    s.ok(&["rmi", &target]);
    let out = s.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains(&format!("Loaded image: {target}")), "{out}");

    // cp both ways.
    s.ok(&["run", "-d", "--name", "box", IMAGE, "sleep", "1000"]);
    let local = w.tmp.path().join("to-container.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    let out = s.run(&["cp", local.to_str().unwrap(), "box:/tmp/in.txt"], None);
    assert!(out.status.success(), "{out:?}");
    {
        assert_eq!(s.ok(&["exec", "box", "cat", "/tmp/in.txt"]), "copied in\n");
        s.ok(&[
            "exec",
            "box",
            "sh",
            "-c",
            "mkdir /tmp/d && echo deep > /tmp/d/f",
        ]);
        let back = w.tmp.path().join("back");
        s.ok(&["cp", "box:/tmp/d", back.to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(back.join("f")).unwrap(), "deep\n");
        // Into an existing directory the copy keeps its name.
        s.ok(&["cp", "box:/tmp/d", back.to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(back.join("d/f")).unwrap(), "deep\n");
        // A local directory into the container under a new name.
        s.ok(&["cp", back.to_str().unwrap(), "box:/tmp/up"]);
        assert_eq!(s.ok(&["exec", "box", "cat", "/tmp/up/d/f"]), "deep\n");
        // `-` as the destination: the tar itself.
        let tar = s.run(&["cp", "box:/tmp/in.txt", "-"], None);
        assert!(tar.status.success());
        let mut ar = tar::Archive::new(&tar.stdout[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["in.txt"]);
        let err = s.fails(&["cp", "box:/no/such", back.to_str().unwrap()], 1);
        assert!(err.contains("/no/such"), "{err}");
    }
    s.ok(&["rm", "-f", "box"]);
}

#[test]
fn skiff_start_attach_signals_login_and_events() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let s = Skiff::new(&w);

    // create -i, then start -ai with piped stdin: the container's exit status is ours.
    s.ok(&[
        "create",
        "-i",
        "--name",
        "ai",
        IMAGE,
        "sh",
        "-c",
        "read x; echo read:$x; exit 6",
    ]);
    let out = s.run(&["start", "-ai", "ai"], Some(b"line\n"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "read:line\n");
    assert_eq!(out.status.code(), Some(6));
    s.ok(&["rm", "ai"]);

    // attach to a running container: its output and exit status.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "at",
        IMAGE,
        "sh",
        "-c",
        "sleep 1; echo attached; exit 7",
    ]);
    let out = s.run(&["attach", "at"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "attached\n");
    assert_eq!(out.status.code(), Some(7));
    s.ok(&["rm", "at"]);

    // -it: ctrl-p ctrl-q detaches, the container goes on; attach reaches it again.
    enum Step<'a> {
        /// Until the container runs (skiff's terminal is raw by then).
        Running(&'a str),
        Pause(u64),
        Type(&'a [u8]),
    }
    let under_tty = |cmd: &str, steps: &[Step]| {
        let mut child = Command::new("script")
            .args(["-qec"])
            .arg(format!(
                "DOCKER_HOST=unix://{} {} {cmd}",
                s.sock().display(),
                s.bin.display()
            ))
            .arg("/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut si = child.stdin.take().unwrap();
        for step in steps {
            match step {
                Step::Running(name) => {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    // (Not created yet: inspect fails.)
                    while s
                        .run(&["inspect", "-f", "{{.State.Running}}", name], None)
                        .stdout
                        != b"true\n"
                    {
                        assert!(Instant::now() < deadline, "{name} did not start");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Step::Pause(ms) => std::thread::sleep(Duration::from_millis(*ms)),
                Step::Type(bytes) => si.write_all(bytes).unwrap(),
            }
        }
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                panic!(
                    "skiff {cmd} under script did not end\nskiffd log:\n{}",
                    w.log()
                );
            }
        };
        drop(si);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The default keys once the terminal is raw (^Q typed earlier would be flow control).
    let out = under_tty(
        &format!("run -it --name dk {IMAGE} sh; echo status=$?"),
        &[
            Step::Running("dk"),
            Step::Pause(300),
            Step::Type(b"\x10\x11"),
        ],
    );
    assert!(out.contains("read escape sequence"), "{out:?}");
    assert!(out.contains("status=0"), "{out:?}");
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]),
        "true\n"
    );
    // --detach-keys, with keys no terminal mode treats specially.
    let out = under_tty(
        "attach --detach-keys ctrl-a,z dk; echo status=$?",
        &[
            Step::Type(b"echo again-$((40+2))\r"),
            Step::Pause(1000),
            Step::Type(b"\x01z"),
        ],
    );
    assert!(out.contains("again-42"), "{out:?}");
    assert!(out.contains("status=0"), "{out:?}");
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]),
        "true\n"
    );
    s.ok(&["rm", "-f", "dk"]);

    // run without a tty forwards the signals skiff gets (--sig-proxy).
    let mut child = s
        .cmd(&[
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got-int; exit 5' INT; echo ready; while true; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    let st = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "got-int\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));

    // top and stats print docker's layouts.
    s.ok(&["run", "-d", "--name", "busy", IMAGE, "sleep", "1000"]);
    let top = s.same_as_docker(&["top", "busy"]);
    assert!(top.starts_with("UID "), "{top}");
    let stats = s.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}"]);
    assert_eq!(stats, "busy 1\n");
    assert_eq!(
        s.same_as_docker(&[
            "stats",
            "--no-stream",
            "--format",
            "table {{.Name}}\t{{.PIDs}}"
        ]),
        "NAME      PIDS\nbusy      1\n"
    );
    s.ok(&["rm", "-f", "busy"]);

    // Events: what happened, in docker's line format and through --format.
    let ev = s.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    assert!(
        ev.contains("create\n") && ev.contains("die\n") && ev.contains("destroy\n"),
        "{ev}"
    );
    s.same_as_docker(&["events", "--since", "5m", "--until", "0s"]);

    // login stores credentials in DOCKER_CONFIG; logout removes them.
    let reg = format!("127.0.0.1:{}", w.port);
    let out = s.ok_in(
        &["login", "-u", "me", "--password-stdin", &reg],
        Some(b"secret\n"),
    );
    assert_eq!(out, "Login Succeeded\n");
    let cfg = std::fs::read_to_string(w.tmp.path().join("skiff-config/config.json")).unwrap();
    assert!(cfg.contains(&reg) && cfg.contains("bWU6c2VjcmV0"), "{cfg}");
    assert_eq!(
        s.ok(&["logout", &reg]),
        format!("Removing login credentials for {reg}\n")
    );
    let cfg = std::fs::read_to_string(w.tmp.path().join("skiff-config/config.json")).unwrap();
    assert!(!cfg.contains(&reg), "{cfg}");

    // Output cut short by a closed pipe ends skiff quietly.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "DOCKER_HOST=unix://{} {} completion bash | head -c 1 >/dev/null",
            s.sock().display(),
            s.bin.display()
        ))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skiff_networks_and_ports_match_docker() {
    if !can_run() {
        return;
    }
    let w = World::new();
    let s = Skiff::new(&w);
    // Until skiffd serves /networks, the commands fail with the daemon's clear 404.
    let ls = s.run(&["network", "ls"], None);
    if !ls.status.success() {
        let err = String::from_utf8_lossy(&ls.stderr);
        assert_eq!(err, "Error response from daemon: page not found\n");
        return;
    }
    s.same_as_docker(&["network", "ls"]);
    let id = s.ok(&[
        "network",
        "create",
        "--subnet",
        "10.231.7.0/24",
        "--label",
        "t=1",
        "clinet",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let hp = free_port().to_string();
    let publish = format!("127.0.0.1:{hp}:80");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "n1",
        "--network",
        "clinet",
        "--ip",
        "10.231.7.50",
        "-p",
        &publish,
        "--expose",
        "9000-9001",
        IMAGE,
        "sleep",
        "1000",
    ]);
    for args in [
        &[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}}",
        ][..],
        &["network", "inspect", "clinet"],
        &["network", "ls", "-q", "--filter", "name=clinet"],
        &["ps", "--format", "{{.Names}} {{.Ports}} {{.Networks}}"],
        &["port", "n1"],
        &["port", "n1", "80"],
        &[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
            "n1",
        ],
    ] {
        s.same_as_docker(args);
    }
    assert_eq!(s.ok(&["port", "n1", "80"]), format!("127.0.0.1:{hp}\n"));
    let err = s.fails(&["network", "rm", "bridge"], 1);
    assert!(err.contains("pre-defined network"), "{err}");
    s.ok(&["rm", "-f", "n1"]);
    assert_eq!(s.ok(&["network", "rm", "clinet"]), "clinet\n");
    assert!(!s.ok(&["network", "ls"]).contains("clinet"));
}
