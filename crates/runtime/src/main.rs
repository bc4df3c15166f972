//! skiff-runtime: an OCI runtime with runc's command line.

mod cli;
mod defaults;
mod logging;
mod signals;
mod units;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxCapabilities, LinuxResources, Process};
use skiff_container::{chain, foreground, CreateOptions, ExecOptions, Runtime};

use crate::cli::{Cli, Command, ExecArgs, ListFormat, UpdateArgs};

pub const COMMIT: &str = match option_env!("SKIFF_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

fn main() {
    // Parse without dropping clap's command tree: the process is short-lived, and freeing it
    // costs more than building it.
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let matches = cmd.get_matches_mut();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.format(&mut cmd).exit(),
    };
    std::mem::forget(matches);
    std::mem::forget(cmd);
    let logger = logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>();
            let mut text = String::new();
            for m in msg {
                if !text.ends_with(&m) {
                    if !text.is_empty() {
                        text.push_str(": ");
                    }
                    text.push_str(&m);
                }
            }
            logger.error(&text);
            1
        }
    };
    std::process::exit(code);
}

fn default_root(rootless: bool) -> PathBuf {
    if rootless {
        if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
            return Path::new(&dir).join("skiff-runtime");
        }
    }
    PathBuf::from("/run/skiff-runtime")
}

fn run(cli: Cli) -> Result<i32> {
    if cli.version {
        println!(
            "skiff-runtime version {}\ncommit: {COMMIT}\nspec: 1.2.0",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(0);
    }
    let Some(command) = cli.command else {
        bail!("no command given; see skiff-runtime --help");
    };
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup: Skiff has no systemd cgroup driver yet; run without --systemd-cgroup (cgroupfs driver) instead");
    }
    let rootless = match cli.rootless.as_deref() {
        None | Some("auto") => !nix::unistd::geteuid().is_root(),
        Some("true") => true,
        Some("false") => false,
        Some(other) => bail!("--rootless: expected true, false or auto, got {other:?}"),
    };
    let root = cli.root.clone().unwrap_or_else(|| default_root(rootless));
    if matches!(
        command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        // These commands put a fork of this binary inside a container (CVE-2019-5736).
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create state root {}", root.display()))?;
        skiff_container::exe::ensure_sealed(&root)?;
    }
    let rt = Runtime::new(root);
    let lib = |r: skiff_container::Result<()>| r.map_err(|e| anyhow!(chain(&e)));
    match command {
        Command::Spec { bundle, rootless } => {
            let dir = bundle.unwrap_or_else(|| PathBuf::from("."));
            let path = dir.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let v = defaults::spec(
                rootless,
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Command::Create(a) => {
            rt.create(create_options(a))
                .map_err(|e| anyhow!("create failed: {}", chain(&e)))?;
        }
        Command::Run(r) => return run_container(&rt, r),
        Command::Start { id } => lib(rt.start(&id))?,
        Command::State { id } => {
            let st = rt.state(&id).map_err(|e| anyhow!(chain(&e)))?;
            println!("{}", serde_json::to_string_pretty(&st)?);
        }
        Command::Kill { all, id, signal } => {
            let sig =
                signals::parse(signal.as_deref().unwrap_or("SIGTERM")).map_err(|e| anyhow!(e))?;
            lib(rt.kill(&id, sig, all))?;
        }
        Command::Delete { force, id } => lib(rt.delete(&id, force))?,
        Command::Exec(a) => return exec(&rt, a),
        Command::List { format, quiet } => list(&rt, format, quiet)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, &id, format, ps_args)?,
        Command::Pause { id } => lib(rt.pause(&id))?,
        Command::Resume { id } => lib(rt.resume(&id))?,
        Command::Events {
            interval,
            stats,
            id,
        } => events(&rt, &id, &interval, stats)?,
        Command::Update(a) => update(&rt, a)?,
        Command::Features => println!("{}", serde_json::to_string_pretty(&defaults::features())?),
    }
    Ok(0)
}

fn create_options(a: cli::CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id,
        bundle: a.bundle,
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        console_fd: None,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

/// A console socket pair for `run`/`exec` in the foreground with a terminal: the container gets
/// one end, we receive the pty master on the other.
fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    let (a, b) = UnixStream::pair().context("cannot create a console socket pair")?;
    Ok((a.into(), b.into()))
}

fn bundle_wants_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|v| v.pointer("/process/terminal").and_then(|t| t.as_bool()))
        .unwrap_or(false)
}

fn run_container(rt: &Runtime, r: cli::RunArgs) -> Result<i32> {
    let id = r.create.id.clone();
    let mut opts = create_options(r.create);
    let mut ours = None;
    if bundle_wants_terminal(&opts.bundle) && opts.console_socket.is_none() {
        if r.detach {
            bail!("cannot allocate a tty when detaching without --console-socket");
        }
        let (mine, theirs) = console_pair()?;
        opts.console_fd = Some(theirs);
        ours = Some(mine);
    }
    if !r.detach {
        foreground::become_subreaper().map_err(|e| anyhow!(chain(&e)))?;
        foreground::block_signals().map_err(|e| anyhow!(chain(&e)))?;
    }
    let rec = rt
        .create(opts)
        .map_err(|e| anyhow!("run failed: {}", chain(&e)))?;
    let master = match ours {
        Some(sock) => Some(
            skiff_container::console::receive_master(std::os::fd::AsFd::as_fd(&sock))
                .map_err(|e| anyhow!(chain(&e)))?,
        ),
        None => None,
    };
    if let Err(e) = rt.start_record(&rec) {
        let _ = rt.delete_record(&rec, true);
        bail!("run failed: {}", chain(&e));
    }
    if r.detach {
        return Ok(0);
    }
    let code = foreground::wait(Pid::from_raw(rec.pid), master).map_err(|e| anyhow!(chain(&e)))?;
    if !r.keep {
        if let Err(e) = rt.delete_record(&rec, true) {
            tracing::warn!("cannot delete {id}: {}", chain(&e));
        }
    }
    Ok(code)
}

fn exec_process(rt: &Runtime, a: &ExecArgs) -> Result<Process> {
    if let Some(path) = &a.process {
        let raw = std::fs::read(path)
            .with_context(|| format!("cannot read process file {}", path.display()))?;
        return serde_json::from_slice(&raw)
            .with_context(|| format!("invalid process file {}", path.display()));
    }
    if a.command.is_empty() {
        bail!("exec: no command given (args or --process)");
    }
    let mut p = rt.spec_process(&a.id).map_err(|e| anyhow!(chain(&e)))?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &a.env {
            let key = kv.split('=').next().unwrap_or("");
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse::<u32>(), g.parse::<u32>().map(Some)),
            None => (u.parse::<u32>(), Ok(None)),
        };
        let uid = uid.map_err(|_| anyhow!("--user {u:?}: expected UID[:GID] as numbers"))?;
        let gid = gid.map_err(|_| anyhow!("--user {u:?}: expected UID[:GID] as numbers"))?;
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(g);
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(prof) = &a.apparmor {
        p.set_apparmor_profile(Some(prof.clone()));
    }
    if let Some(l) = &a.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_else(|| {
            let mut c = LinuxCapabilities::default();
            c.set_bounding(None)
                .set_effective(None)
                .set_permitted(None)
                .set_inheritable(None)
                .set_ambient(None);
            c
        });
        for name in &a.cap {
            let cap: oci_spec::runtime::Capability =
                serde_json::from_value(serde_json::Value::String(name.clone()))
                    .map_err(|_| anyhow!("--cap: unknown capability {name:?}"))?;
            let add = |set: Option<&oci_spec::runtime::Capabilities>| {
                let mut s = set.cloned().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            // Bounding, effective, permitted; never inheritable (CVE-2022-29162). Ambient only
            // when the spec already has inheritable bits to carry it.
            let b = add(caps.bounding().as_ref());
            let e = add(caps.effective().as_ref());
            let pm = add(caps.permitted().as_ref());
            caps.set_bounding(b).set_effective(e).set_permitted(pm);
            if caps.inheritable().as_ref().is_some_and(|i| !i.is_empty()) {
                let am = add(caps.ambient().as_ref());
                caps.set_ambient(am);
            }
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn exec(rt: &Runtime, a: ExecArgs) -> Result<i32> {
    let process = exec_process(rt, &a)?;
    let mut ours = None;
    let mut console_fd = None;
    if process.terminal().unwrap_or(false) && a.console_socket.is_none() {
        if a.detach {
            bail!("cannot allocate a tty when detaching without --console-socket");
        }
        let (mine, theirs) = console_pair()?;
        console_fd = Some(theirs);
        ours = Some(mine);
    }
    if !a.detach {
        foreground::become_subreaper().map_err(|e| anyhow!(chain(&e)))?;
        foreground::block_signals().map_err(|e| anyhow!(chain(&e)))?;
    }
    let pid = rt
        .exec(
            &a.id,
            ExecOptions {
                process,
                pid_file: a.pid_file.clone(),
                console_socket: a.console_socket.clone(),
                console_fd,
                preserve_fds: a.preserve_fds,
                ignore_paused: a.ignore_paused,
            },
        )
        .map_err(|e| anyhow!("exec failed: {}", chain(&e)))?;
    if a.detach {
        return Ok(0);
    }
    let master = match ours {
        Some(sock) => Some(
            skiff_container::console::receive_master(std::os::fd::AsFd::as_fd(&sock))
                .map_err(|e| anyhow!(chain(&e)))?,
        ),
        None => None,
    };
    foreground::wait(Pid::from_raw(pid), master).map_err(|e| anyhow!(chain(&e)))
}

fn list(rt: &Runtime, format: ListFormat, quiet: bool) -> Result<()> {
    let states = rt.list().map_err(|e| anyhow!(chain(&e)))?;
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string(&states)?),
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = std::iter::once(
                ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from),
            )
            .chain(states.iter().map(|s| {
                [
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    if s.owner.is_empty() {
                        "root".into()
                    } else {
                        s.owner.clone()
                    },
                ]
            }))
            .collect();
            let mut widths = [0usize; 6];
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.len());
                }
            }
            let mut out = std::io::stdout().lock();
            for r in &rows {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
    }
    Ok(())
}

fn ps(rt: &Runtime, id: &str, format: ListFormat, args: Vec<String>) -> Result<()> {
    let pids = rt.pids(id).map_err(|e| anyhow!(chain(&e)))?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args = if args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("cannot run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("ps output has no PID column"))?;
    println!("{header}");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            println!("{l}");
        }
    }
    Ok(())
}

fn events(rt: &Runtime, id: &str, interval: &str, once: bool) -> Result<()> {
    let stats_event = |rt: &Runtime| -> Result<String> {
        let s = rt.stats(id).map_err(|e| anyhow!(chain(&e)))?;
        Ok(serde_json::json!({"type": "stats", "id": id, "data": s}).to_string())
    };
    if once {
        println!("{}", stats_event(rt)?);
        return Ok(());
    }
    let every =
        humantime::parse_duration(interval).map_err(|e| anyhow!("--interval {interval:?}: {e}"))?;
    if every.is_zero() {
        bail!("--interval must be greater than 0");
    }
    let mut oom = rt.oom_watcher(id).map_err(|e| anyhow!(chain(&e)))?;
    let mut out = std::io::stdout();
    loop {
        if rt.is_stopped(id) {
            return Ok(());
        }
        let kills = oom.wait(every).unwrap_or(0);
        for _ in 0..kills {
            writeln!(out, "{}", serde_json::json!({"type": "oom", "id": id}))?;
        }
        if rt.is_stopped(id) {
            return Ok(());
        }
        match stats_event(rt) {
            Ok(line) => writeln!(out, "{line}")?,
            Err(_) if rt.is_stopped(id) => return Ok(()),
            Err(e) => return Err(e),
        }
        out.flush()?;
    }
}

fn update(rt: &Runtime, a: UpdateArgs) -> Result<()> {
    let mut v: serde_json::Value = match a.resources.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read resources from stdin")?;
            serde_json::from_str(&s).context("invalid resources JSON on stdin")?
        }
        Some(path) => {
            let s = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
            serde_json::from_str(&s).with_context(|| format!("invalid resources JSON in {path}"))?
        }
        None => serde_json::json!({}),
    };
    let size = |s: &Option<String>, flag: &str| -> Result<Option<i64>> {
        s.as_deref()
            .map(|s| units::parse_size(s).map_err(|e| anyhow!("--{flag}: {e}")))
            .transpose()
    };
    let mut set = |ptr: &str, val: serde_json::Value| {
        let mut cur = &mut v;
        let parts: Vec<&str> = ptr.split('/').filter(|p| !p.is_empty()).collect();
        for (i, p) in parts.iter().enumerate() {
            if !cur.is_object() {
                *cur = serde_json::json!({});
            }
            if i + 1 == parts.len() {
                cur[*p] = val.clone();
            } else {
                cur = cur
                    .as_object_mut()
                    .expect("object")
                    .entry(p.to_string())
                    .or_insert(serde_json::json!({}));
            }
        }
    };
    if let Some(w) = a.blkio_weight {
        set("blockIO/weight", w.into());
    }
    if let Some(x) = a.cpu_period {
        set("cpu/period", x.into());
    }
    if let Some(x) = a.cpu_quota {
        set("cpu/quota", x.into());
    }
    if let Some(x) = a.cpu_share {
        set("cpu/shares", x.into());
    }
    if let Some(x) = a.cpu_rt_period {
        set("cpu/realtimePeriod", x.into());
    }
    if let Some(x) = a.cpu_rt_runtime {
        set("cpu/realtimeRuntime", x.into());
    }
    if let Some(x) = &a.cpuset_cpus {
        set("cpu/cpus", x.clone().into());
    }
    if let Some(x) = &a.cpuset_mems {
        set("cpu/mems", x.clone().into());
    }
    if let Some(x) = size(&a.kernel_memory, "kernel-memory")? {
        set("memory/kernel", x.into());
    }
    if let Some(x) = size(&a.kernel_memory_tcp, "kernel-memory-tcp")? {
        set("memory/kernelTCP", x.into());
    }
    if let Some(x) = size(&a.memory, "memory")? {
        set("memory/limit", x.into());
    }
    if let Some(x) = size(&a.memory_reservation, "memory-reservation")? {
        set("memory/reservation", x.into());
    }
    if let Some(x) = size(&a.memory_swap, "memory-swap")? {
        set("memory/swap", x.into());
    }
    if let Some(x) = a.pids_limit {
        set("pids/limit", x.into());
    }
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        bail!("--l3-cache-schema/--mem-bw-schema: Intel RDT is not available on this host");
    }
    let res: LinuxResources = serde_json::from_value(v).context("invalid linux.resources")?;
    rt.update(&a.id, &res).map_err(|e| anyhow!(chain(&e)))
}
