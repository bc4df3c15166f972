//! Container commands: run, create, start, stop, restart, kill, rm, ps, logs, exec, attach,
//! top, stats, cp, wait, pause, unpause, rename, update, port, diff, export.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{query, seg, Body, Client};
use crate::format::{self, Format};
use crate::opts::{self, CreateOpts};
use crate::stream;

/// An exit status with an optional message (printed on stderr).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Status {
    pub code: u8,
    pub message: String,
}

fn status(code: u8, message: impl Into<String>) -> anyhow::Error {
    Status {
        code,
        message: message.into(),
    }
    .into()
}

#[derive(Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub opts: CreateOpts,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: CreateOpts,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    /// Remove the specified link
    #[arg(short, long)]
    link: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since timestamp or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp or relative
    #[arg(long)]
    until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Show extra details provided to logs
    #[arg(long)]
    details: bool,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    privileged: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(required = true, num_args = 2.., trailing_var_arg = true,  value_name = "CONTAINER COMMAND [ARG...]")]
    args: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    container: String,
}

#[derive(Args)]
pub struct TopArgs {
    container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    quiet: bool,
    src: String,
    dest: String,
}

#[derive(Args)]
pub struct Names {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct One {
    container: String,
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short, long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<String>,
    container: String,
}

fn cpath(id: &str, op: &str) -> String {
    if op.is_empty() {
        format!("/containers/{}", seg(id))
    } else {
        format!("/containers/{}/{op}", seg(id))
    }
}

/// Runs `f` on each name; prints the name on success, errors on stderr; exit 1 if any failed.
async fn each<F, Fut>(names: &[String], print: bool, mut f: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut failed = false;
    for n in names {
        match f(n.clone()).await {
            Ok(()) => {
                if print {
                    println!("{n}");
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(status(1, ""));
    }
    Ok(())
}

/// Pulls `image` (progress on stderr).
pub async fn pull_image(
    c: &Client,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
) -> anyhow::Result<()> {
    let (repo, tag) = crate::images::split_ref(image);
    let mut q = vec![("fromImage", repo)];
    if !tag.is_empty() {
        q.push(("tag", tag));
    }
    if let Some(p) = platform {
        q.push(("platform", p.to_owned()));
    }
    let auth = crate::system::auth_header(image);
    let resp = c
        .send(
            Method::POST,
            &format!("/images/create{}", query(&q)),
            Body::Empty,
            &[("x-registry-auth", auth)],
        )
        .await?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    stream::progress(resp.into_body(), std::io::stderr(), tty, quiet).await?;
    Ok(())
}

/// Creates the container (pulling the image when it is missing); returns its ID.
async fn create_container(
    c: &Client,
    o: &CreateOpts,
    detach: bool,
    tty_size: Option<(u16, u16)>,
    cmd: &str,
) -> anyhow::Result<String> {
    let req = opts::create_request(o, detach)
        .map_err(|e| status(125, format!("skiff: {e}\nSee 'skiff {cmd} --help'.")))?;
    let mut body = req.body;
    if let Some((h, w)) = tty_size {
        body["HostConfig"]["ConsoleSize"] = json!([h, w]);
    }
    let mut q = Vec::new();
    if let Some(n) = &req.name {
        q.push(("name", n.clone()));
    }
    if let Some(p) = &req.platform {
        q.push(("platform", p.clone()));
    }
    let path = format!("/containers/create{}", query(&q));
    let run_err = |e: anyhow::Error| status(125, format!("skiff: {e}\nSee 'skiff {cmd} --help'."));
    if o.pull == "always" {
        pull_image(c, &req.image, req.platform.as_deref(), o.quiet)
            .await
            .map_err(run_err)?;
    }
    let mut first = c.json(Method::POST, &path, Body::Json(body.clone())).await;
    if let Err(e) = &first {
        if crate::is_not_found(e) && o.pull == "missing" && e.to_string().contains("No such image")
        {
            let (repo, tag) = crate::images::split_ref(&req.image);
            let shown = if tag.is_empty() {
                format!("{repo}:latest")
            } else {
                req.image.clone()
            };
            eprintln!("Unable to find image '{shown}' locally");
            pull_image(c, &req.image, req.platform.as_deref(), o.quiet)
                .await
                .map_err(run_err)?;
            first = c.json(Method::POST, &path, Body::Json(body)).await;
        }
    }
    let v = first.map_err(|e| status(125, format!("skiff: {e}\nSee 'skiff {cmd} --help'.")))?;
    for w in v["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("WARNING: {w}");
        }
    }
    v["Id"]
        .as_str()
        .map(str::to_owned)
        .context("the daemon's create answer has no Id")
}

pub async fn create(c: &Client, a: CreateArgs) -> anyhow::Result<()> {
    let id = create_container(c, &a.opts, true, None, "create").await?;
    println!("{id}");
    Ok(())
}

/// The exit status `docker run` uses for a start failure.
fn start_failure_code(msg: &str) -> u8 {
    let m = msg.to_ascii_lowercase();
    if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("not found")
    {
        127
    } else if m.contains("permission denied") || m.contains("cannot execute") {
        126
    } else {
        125
    }
}

/// Forwards window-size changes to `path` (`.../resize`) while the task lives.
fn forward_resizes(c: &Client, path: String) -> Option<tokio::task::JoinHandle<()>> {
    let mut sig =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()?;
    let c = c.clone();
    Some(tokio::spawn(async move {
        while sig.recv().await.is_some() {
            if let Some((h, w)) = stream::term_size() {
                let _ = c
                    .post(&format!(
                        "{path}{}",
                        query(&[("h", h.to_string()), ("w", w.to_string())])
                    ))
                    .await;
            }
        }
    }))
}

/// Forwards the signals a user sends skiff to the container (`--sig-proxy`, without a tty).
fn proxy_signals(c: &Client, id: &str) -> Vec<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let sigs = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ];
    sigs.into_iter()
        .filter_map(|(kind, name)| {
            let mut sig = signal(kind).ok()?;
            let c = c.clone();
            let path = format!(
                "{}{}",
                cpath(id, "kill"),
                query(&[("signal", name.to_owned())])
            );
            Some(tokio::spawn(async move {
                while sig.recv().await.is_some() {
                    let _ = c.post(&path).await;
                }
            }))
        })
        .collect()
}

/// The user typed the detach keys: the container goes on, skiff ends (status 0).
fn detached() -> anyhow::Result<u8> {
    eprintln!("\r\nread escape sequence");
    Ok(0)
}

async fn resize(c: &Client, path: &str) {
    if let Some((h, w)) = stream::term_size() {
        let _ = c
            .post(&format!(
                "{path}{}",
                query(&[("h", h.to_string()), ("w", w.to_string())])
            ))
            .await;
    }
}

async fn wait_body(resp: hyper::Response<hyper::body::Incoming>) -> anyhow::Result<i64> {
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).context("reading the wait answer")?;
    if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
        bail!("{m}");
    }
    Ok(v["StatusCode"].as_i64().unwrap_or(0))
}

fn exit_u8(code: i64) -> u8 {
    u8::try_from(code.rem_euclid(256)).unwrap_or(1)
}

pub async fn run(c: &Client, a: RunArgs) -> anyhow::Result<u8> {
    let o = &a.opts;
    if o.tty && o.interactive && !stream::stdin_is_tty() {
        return Err(status(1, "the input device is not a TTY"));
    }
    let size = if o.tty { stream::term_size() } else { None };
    let id = create_container(c, o, a.detach, size, "run").await?;
    if a.detach {
        let resp = c
            .send_raw(Method::POST, &cpath(&id, "start"), Body::Empty, &[])
            .await?;
        if let Err(e) = crate::client::check(resp).await {
            let code = start_failure_code(&e.to_string());
            return Err(status(code, format!("skiff: {e}.")));
        }
        println!("{id}");
        return Ok(0);
    }
    let (stdin, want_out, want_err) = opts::attach_streams(o, false)?;
    let flag = |b: bool| if b { "1" } else { "0" }.to_owned();
    let mut attach_q = vec![
        ("stream", "1".to_owned()),
        ("stdin", flag(stdin)),
        ("stdout", flag(want_out)),
        ("stderr", flag(want_err)),
    ];
    if let Some(k) = &o.detach_keys {
        attach_q.push(("detachKeys", k.clone()));
    }
    let attach_q = query(&attach_q);
    let io = c
        .hijack(&format!("{}{attach_q}", cpath(&id, "attach")), Body::Empty)
        .await?;
    let cond = if o.rm { "removed" } else { "next-exit" };
    let wait = c
        .send(
            Method::POST,
            &format!("{}?condition={cond}", cpath(&id, "wait")),
            Body::Empty,
            &[],
        )
        .await?;
    let waiter = tokio::spawn(wait_body(wait));
    let raw = if o.tty && stdin {
        stream::RawMode::enable()
    } else {
        None
    };
    let started = c
        .send_raw(Method::POST, &cpath(&id, "start"), Body::Empty, &[])
        .await;
    let started = match started {
        Ok(r) => crate::client::check(r).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        drop(raw);
        let code = start_failure_code(&e.to_string());
        // With --rm the daemon removes the container; wait for that like docker.
        if o.rm {
            let _ = waiter.await;
        }
        return Err(status(code, format!("skiff: {e}.")));
    }
    let mut winch = None;
    if o.tty {
        resize(c, &cpath(&id, "resize")).await;
        winch = forward_resizes(c, cpath(&id, "resize"));
    }
    let proxies = if a.sig_proxy && !o.tty {
        proxy_signals(c, &id)
    } else {
        Vec::new()
    };
    let (r, w) = tokio::io::split(io);
    let keys = stream::detach_keys(o.tty && stdin, o.detach_keys.as_deref());
    let out = stream::pump(r, stdin.then_some(w), o.tty, keys).await;
    if let Some(t) = winch {
        t.abort();
    }
    for p in proxies {
        p.abort();
    }
    if matches!(out, Ok(true)) {
        drop(raw);
        return detached();
    }
    let code = waiter.await?;
    drop(raw);
    out?;
    Ok(exit_u8(code?))
}

pub async fn start(c: &Client, a: StartArgs) -> anyhow::Result<u8> {
    if let Some(k) = &a.detach_keys {
        opts::parse_detach_keys(k)?;
    }
    if !(a.attach || a.interactive) {
        each(&a.containers, true, |n| async move {
            c.post(&cpath(&n, "start"))
                .await
                .map_err(anyhow::Error::from)
        })
        .await?;
        return Ok(0);
    }
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let name = &a.containers[0];
    let info = c.get(&cpath(name, "json")).await?;
    let id = info["Id"].as_str().unwrap_or(name).to_owned();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = a.interactive && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let q = query(&[
        ("stream", "1".into()),
        ("stdin", if stdin { "1" } else { "0" }.into()),
        ("stdout", "1".into()),
        ("stderr", "1".into()),
    ]);
    let io = c
        .hijack(&format!("{}{q}", cpath(&id, "attach")), Body::Empty)
        .await?;
    let wait = c
        .send(
            Method::POST,
            &format!("{}?condition=next-exit", cpath(&id, "wait")),
            Body::Empty,
            &[],
        )
        .await?;
    let waiter = tokio::spawn(wait_body(wait));
    let raw = if tty && stdin {
        stream::RawMode::enable()
    } else {
        None
    };
    if let Err(e) = c.post(&cpath(&id, "start")).await {
        drop(raw);
        return Err(e.into());
    }
    if tty {
        resize(c, &cpath(&id, "resize")).await;
    }
    let proxies = if tty {
        Vec::new()
    } else {
        proxy_signals(c, &id)
    };
    let (r, w) = tokio::io::split(io);
    let keys = stream::detach_keys(tty && stdin, a.detach_keys.as_deref());
    let out = stream::pump(r, stdin.then_some(w), tty, keys).await;
    for p in proxies {
        p.abort();
    }
    if matches!(out, Ok(true)) {
        drop(raw);
        return detached();
    }
    let code = waiter.await??;
    drop(raw);
    out?;
    Ok(exit_u8(code))
}

pub async fn attach(c: &Client, a: AttachArgs) -> anyhow::Result<u8> {
    if let Some(k) = &a.detach_keys {
        opts::parse_detach_keys(k)?;
    }
    let info = c.get(&cpath(&a.container, "json")).await?;
    let id = info["Id"].as_str().unwrap_or(&a.container).to_owned();
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let q = query(&[
        ("stream", "1".into()),
        ("stdin", if stdin { "1" } else { "0" }.into()),
        ("stdout", "1".into()),
        ("stderr", "1".into()),
    ]);
    let io = c
        .hijack(&format!("{}{q}", cpath(&id, "attach")), Body::Empty)
        .await?;
    let raw = if tty && stdin {
        stream::RawMode::enable()
    } else {
        None
    };
    if tty {
        resize(c, &cpath(&id, "resize")).await;
    }
    let proxies = if a.sig_proxy && !tty {
        proxy_signals(c, &id)
    } else {
        Vec::new()
    };
    let (r, w) = tokio::io::split(io);
    let keys = stream::detach_keys(tty && stdin, a.detach_keys.as_deref());
    let out = stream::pump(r, stdin.then_some(w), tty, keys).await;
    for p in proxies {
        p.abort();
    }
    drop(raw);
    if out? {
        return detached();
    }
    let resp = c
        .send(Method::POST, &cpath(&id, "wait"), Body::Empty, &[])
        .await?;
    Ok(exit_u8(wait_body(resp).await?))
}

pub async fn stop(c: &Client, a: StopArgs, op: &str) -> anyhow::Result<()> {
    let mut q = Vec::new();
    if let Some(t) = a.time {
        q.push(("t", t.to_string()));
    }
    if let Some(s) = &a.signal {
        q.push(("signal", s.clone()));
    }
    let q = query(&q);
    each(&a.containers, true, |n| {
        let p = format!("{}{q}", cpath(&n, op));
        async move { c.post(&p).await.map_err(anyhow::Error::from) }
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> anyhow::Result<()> {
    let q = match &a.signal {
        Some(s) => query(&[("signal", s.clone())]),
        None => String::new(),
    };
    each(&a.containers, true, |n| {
        let p = format!("{}{q}", cpath(&n, "kill"));
        async move { c.post(&p).await.map_err(anyhow::Error::from) }
    })
    .await
}

pub async fn simple(c: &Client, a: Names, op: &'static str) -> anyhow::Result<()> {
    each(&a.containers, true, |n| async move {
        c.post(&cpath(&n, op)).await.map_err(anyhow::Error::from)
    })
    .await
}

pub async fn rm(c: &Client, a: RmArgs) -> anyhow::Result<()> {
    let mut q = Vec::new();
    if a.force {
        q.push(("force", "1".to_owned()));
    }
    if a.volumes {
        q.push(("v", "1".to_owned()));
    }
    if a.link {
        q.push(("link", "1".to_owned()));
    }
    let q = query(&q);
    each(&a.containers, true, |n| {
        let p = format!("{}{q}", cpath(&n, ""));
        async move {
            let r = c.send(Method::DELETE, &p, Body::Empty, &[]).await?;
            r.into_body().collect().await?;
            Ok(())
        }
    })
    .await
}

/// `--filter k=v` flags as the API's JSON filters (`{"k":{"v":true}}`).
pub fn filters_json(list: &[String]) -> anyhow::Result<Option<String>> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut m = serde_json::Map::new();
    for f in list {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad format of filter (expected name=value)");
        };
        let e = m
            .entry(k.trim().to_lowercase())
            .or_insert_with(|| json!({}));
        e[v] = json!(true);
    }
    Ok(Some(Value::Object(m).to_string()))
}

/// Docker's `DisplayablePorts`: consecutive ports grouped into ranges
/// (`0.0.0.0:8000-8001->8000-8001/tcp`), other mappings after them, `, `-separated.
pub fn display_ports(ports: &Value) -> String {
    struct P {
        ip: String,
        private: u64,
        public: u64,
        typ: String,
    }
    let mut ps: Vec<P> = ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| P {
            ip: p["IP"].as_str().unwrap_or("").to_owned(),
            private: p["PrivatePort"].as_u64().unwrap_or(0),
            public: p["PublicPort"].as_u64().unwrap_or(0),
            typ: p["Type"].as_str().unwrap_or("tcp").to_owned(),
        })
        .collect();
    ps.sort_by(|a, b| {
        (a.private, &a.ip, a.public, &a.typ).cmp(&(b.private, &b.ip, b.public, &b.typ))
    });
    let form = |key: &str, first: u64, last: u64| {
        let (ip, typ) = match key.rsplit_once('/') {
            Some((ip, t)) => (ip, t),
            None => ("", key),
        };
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if !ip.is_empty() {
            g = format!("{ip}:{g}->{g}");
        }
        format!("{g}/{typ}")
    };
    let mut groups: Vec<(String, u64, u64)> = Vec::new();
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    for p in &ps {
        let mut key = p.typ.clone();
        if !p.ip.is_empty() {
            if p.public != p.private {
                let host = if p.ip.contains(':') {
                    format!("[{}]:{}", p.ip, p.public)
                } else {
                    format!("{}:{}", p.ip, p.public)
                };
                mappings.push(format!("{host}->{}/{}", p.private, p.typ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.typ);
        }
        match groups.iter_mut().find(|g| g.0 == key) {
            None => groups.push((key, p.private, p.private)),
            Some(g) if p.private == g.2 + 1 => g.2 = p.private,
            Some(g) => {
                result.push(form(&g.0, g.1, g.2));
                g.1 = p.private;
                g.2 = p.private;
            }
        }
    }
    for g in &groups {
        result.push(form(&g.0, g.1, g.2));
    }
    result.extend(mappings);
    result.join(", ")
}

fn labels_string(v: &Value) -> String {
    let mut parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    parts.sort();
    parts.join(",")
}

/// One `ps` row with the Docker CLI's fields.
pub fn ps_row(c: &Value, trunc: bool) -> Value {
    let id = c["Id"].as_str().unwrap_or("");
    let names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/'))
        .filter(|n| !trunc || !n.contains('/'))
        .map(str::to_owned)
        .collect();
    let mut image = c["Image"].as_str().unwrap_or("").to_owned();
    if trunc {
        if image.starts_with("sha256:") {
            image = format::short_id(&image);
        } else if let Some((name, _)) = image.split_once('@') {
            image = name.to_owned();
        }
    }
    let mut command = c["Command"].as_str().unwrap_or("").to_owned();
    if trunc {
        command = format::ellipsis(&command, 20);
    }
    let created = c["Created"].as_i64().unwrap_or(0);
    let size = {
        let rw = c["SizeRw"].as_i64().unwrap_or(0);
        let root = c["SizeRootFs"].as_i64().unwrap_or(0);
        let srw = format::human_size_prec(rw, 3);
        if root > 0 {
            format!("{srw} (virtual {})", format::human_size_prec(root, 3))
        } else {
            srw
        }
    };
    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["Name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| m["Source"].as_str().unwrap_or(""));
            if trunc {
                format::ellipsis(name, 15)
            } else {
                name.to_owned()
            }
        })
        .collect();
    let local_volumes = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Driver"].as_str() == Some("local"))
        .count();
    let mut networks: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    networks.sort();
    json!({
        "Command": format!("{command:?}"),
        "CreatedAt": format::created_at(created),
        "ID": if trunc { format::short_id(id) } else { id.to_owned() },
        "Image": image,
        "Labels": labels_string(&c["Labels"]),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mounts.join(","),
        "Names": names.join(","),
        "Networks": networks.join(","),
        "Platform": null,
        "Ports": display_ports(&c["Ports"]),
        "RunningFor": format::since(created),
        "Size": size,
        "State": c["State"].as_str().unwrap_or(""),
        "Status": c["Status"].as_str().unwrap_or(""),
    })
}

const PS_HEADERS: format::Headers = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

pub async fn ps(c: &Client, a: PsArgs) -> anyhow::Result<()> {
    let mut q = Vec::new();
    let last = if a.latest { 1 } else { a.last };
    if a.all || last > 0 {
        q.push(("all", "1".to_owned()));
    }
    if last > 0 {
        q.push(("limit", last.to_string()));
    }
    // As the docker CLI: sizes are asked for when shown, by -s or by a format that uses
    // .Size (`{{json .}}` renders every field, .Size included).
    let wants_size = a.size
        || (!a.quiet
            && a.format
                .as_deref()
                .is_some_and(|f| f.contains(".Size") || f.replace(' ', "").contains("{{json.}}")));
    if wants_size {
        q.push(("size", "1".to_owned()));
    }
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let list = c.get(&format!("/containers/json{}", query(&q))).await?;
    let fmt = match (&a.format, a.quiet) {
        (_, true) => "{{.ID}}".to_owned(),
        (Some(f), false) if !f.is_empty() => f.clone(),
        _ if a.size => "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}".to_owned(),
        _ => "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_owned(),
    };
    let rows: Vec<Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| ps_row(x, !a.no_trunc))
        .collect();
    print!("{}", Format::parse(&fmt)?.render(&rows, PS_HEADERS)?);
    Ok(())
}

/// `--since`/`--until` values: a duration (relative to now), an RFC 3339 time or unix seconds.
pub fn time_arg(s: &str) -> String {
    if let Some(ns) = opts::parse_duration(s) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        return (now - ns / 1_000_000_000).to_string();
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map_or_else(|| s.to_owned(), |t| t.and_utc().timestamp().to_string());
    }
    s.to_owned()
}

pub async fn logs(c: &Client, a: LogsArgs) -> anyhow::Result<()> {
    let info = c.get(&cpath(&a.container, "json")).await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = vec![
        ("stdout", "1".to_owned()),
        ("stderr", "1".to_owned()),
        ("tail", a.tail.clone()),
    ];
    if a.follow {
        q.push(("follow", "1".into()));
    }
    if a.timestamps {
        q.push(("timestamps", "1".into()));
    }
    if a.details {
        q.push(("details", "1".into()));
    }
    if let Some(s) = &a.since {
        q.push(("since", time_arg(s)));
    }
    if let Some(s) = &a.until {
        q.push(("until", time_arg(s)));
    }
    let resp = c
        .send(
            Method::GET,
            &format!("{}{}", cpath(&a.container, "logs"), query(&q)),
            Body::Empty,
            &[],
        )
        .await?;
    stream::copy_body(resp.into_body(), tty).await
}

pub async fn exec(c: &Client, a: ExecArgs) -> anyhow::Result<u8> {
    let container = &a.args[0];
    let cmd = &a.args[1..];
    if let Some(k) = &a.detach_keys {
        opts::parse_detach_keys(k)?;
    }
    if a.tty && a.interactive && !stream::stdin_is_tty() {
        return Err(status(1, "the input device is not a TTY"));
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(opts::read_kv_file(f, "env-file")?);
    }
    env.extend(a.env.iter().map(|e| opts::env_value(e)));
    let mut body = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Detach": a.detach,
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": cmd,
    });
    if a.tty {
        if let Some((h, w)) = stream::term_size() {
            body["ConsoleSize"] = json!([h, w]);
        }
    }
    let v = c
        .json(Method::POST, &cpath(container, "exec"), Body::Json(body))
        .await?;
    let id = v["Id"]
        .as_str()
        .context("the daemon's exec answer has no Id")?
        .to_owned();
    let start = json!({"Detach": a.detach, "Tty": a.tty});
    if a.detach {
        c.json(
            Method::POST,
            &format!("/exec/{id}/start"),
            Body::Json(start),
        )
        .await?;
        return Ok(0);
    }
    let io = c
        .hijack(&format!("/exec/{id}/start"), Body::Json(start))
        .await?;
    let raw = if a.tty && a.interactive {
        stream::RawMode::enable()
    } else {
        None
    };
    let mut winch = None;
    if a.tty {
        resize(c, &format!("/exec/{id}/resize")).await;
        winch = forward_resizes(c, format!("/exec/{id}/resize"));
    }
    let (r, w) = tokio::io::split(io);
    let keys = stream::detach_keys(a.tty && a.interactive, a.detach_keys.as_deref());
    let out = stream::pump(r, a.interactive.then_some(w), a.tty, keys).await;
    if let Some(t) = winch {
        t.abort();
    }
    drop(raw);
    if out? {
        return detached();
    }
    let info = c.get(&format!("/exec/{id}/json")).await?;
    Ok(exit_u8(info["ExitCode"].as_i64().unwrap_or(0)))
}

pub async fn wait(c: &Client, a: Names) -> anyhow::Result<()> {
    each(&a.containers, false, |n| async move {
        let resp = c
            .send(Method::POST, &cpath(&n, "wait"), Body::Empty, &[])
            .await?;
        println!("{}", wait_body(resp).await?);
        Ok(())
    })
    .await
}

pub async fn rename(c: &Client, a: RenameArgs) -> anyhow::Result<()> {
    c.post(&format!(
        "{}{}",
        cpath(&a.container, "rename"),
        query(&[("name", a.new_name)])
    ))
    .await?;
    Ok(())
}

pub async fn update(c: &Client, a: UpdateArgs) -> anyhow::Result<()> {
    let mut body = serde_json::Map::new();
    if let Some(m) = &a.memory {
        let n = opts::ram_in_bytes(m)
            .with_context(|| format!("invalid argument {m:?} for \"-m, --memory\" flag"))?;
        body.insert("Memory".into(), json!(n));
    }
    if let Some(m) = &a.memory_swap {
        let n = if m == "-1" {
            -1
        } else {
            opts::ram_in_bytes(m)
                .with_context(|| format!("invalid argument {m:?} for \"--memory-swap\" flag"))?
        };
        body.insert("MemorySwap".into(), json!(n));
    }
    if let Some(cpus) = a.cpus {
        #[allow(clippy::cast_possible_truncation)]
        body.insert("NanoCpus".into(), json!((cpus * 1e9) as i64));
    }
    if let Some(s) = a.cpu_shares {
        body.insert("CpuShares".into(), json!(s));
    }
    if let Some(s) = &a.cpuset_cpus {
        body.insert("CpusetCpus".into(), json!(s));
    }
    if let Some(p) = a.pids_limit {
        body.insert("PidsLimit".into(), json!(p));
    }
    if let Some(r) = &a.restart {
        let (name, n) = r.split_once(':').unwrap_or((r, "0"));
        body.insert(
            "RestartPolicy".into(),
            json!({"Name": name, "MaximumRetryCount": n.parse::<i64>().unwrap_or(0)}),
        );
    }
    if body.is_empty() {
        bail!("you must provide one or more flags when using this command");
    }
    let body = Value::Object(body);
    each(&a.containers, true, |n| {
        let b = body.clone();
        async move {
            let v = c
                .json(Method::POST, &cpath(&n, "update"), Body::Json(b))
                .await?;
            for w in v["Warnings"].as_array().into_iter().flatten() {
                eprintln!("WARNING: {}", w.as_str().unwrap_or(""));
            }
            Ok(())
        }
    })
    .await
}

pub async fn port(c: &Client, a: PortArgs) -> anyhow::Result<()> {
    let info = c.get(&cpath(&a.container, "json")).await?;
    let ports = info["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let fmt_b = |b: &Value| {
        let ip = b["HostIp"].as_str().unwrap_or("");
        let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
        let ip = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_owned()
        };
        format!("{ip}:{}", b["HostPort"].as_str().unwrap_or(""))
    };
    if let Some(p) = &a.port {
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        match ports.get(&key).and_then(Value::as_array) {
            Some(bs) if !bs.is_empty() => {
                for b in bs {
                    println!("{}", fmt_b(b));
                }
                Ok(())
            }
            _ => bail!(
                "Error: No public port '{key}' published for {}",
                a.container
            ),
        }
    } else {
        let mut keys: Vec<_> = ports.keys().cloned().collect();
        keys.sort();
        for k in keys {
            for b in ports[&k].as_array().into_iter().flatten() {
                println!("{k} -> {}", fmt_b(b));
            }
        }
        Ok(())
    }
}

pub async fn diff(c: &Client, a: One) -> anyhow::Result<()> {
    let v = c.get(&cpath(&a.container, "changes")).await?;
    for ch in v.as_array().into_iter().flatten() {
        let k = match ch["Kind"].as_i64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        println!("{k} {}", ch["Path"].as_str().unwrap_or(""));
    }
    Ok(())
}

/// Copies a body to a file or (not a terminal) stdout.
pub async fn body_to(
    resp: hyper::Response<hyper::body::Incoming>,
    output: Option<&str>,
    what: &str,
) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match output {
        Some(p) if p != "-" => Box::new(
            std::fs::File::create(p).with_context(|| format!("failed to save {what} to {p}"))?,
        ),
        _ => {
            if stream::stdout_is_tty() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            Box::new(std::io::stdout().lock())
        }
    };
    let mut body = resp.into_body();
    while let Some(f) = body.frame().await {
        if let Ok(d) = f?.into_data() {
            out.write_all(&d)?;
        }
    }
    out.flush()?;
    Ok(())
}

pub async fn export(c: &Client, a: ExportArgs) -> anyhow::Result<()> {
    if a.output.is_none() && stream::stdout_is_tty() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = c
        .send(
            Method::GET,
            &cpath(&a.container, "export"),
            Body::Empty,
            &[],
        )
        .await?;
    body_to(resp, a.output.as_deref(), "container").await
}

pub async fn top(c: &Client, a: TopArgs) -> anyhow::Result<()> {
    let mut path = cpath(&a.container, "top");
    if !a.ps_args.is_empty() {
        path.push_str(&query(&[("ps_args", a.ps_args.join(" "))]));
    }
    let v = c.get(&path).await?;
    let mut text = String::new();
    let titles: Vec<&str> = v["Titles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    text.push_str(&titles.join("\t"));
    text.push('\n');
    for p in v["Processes"].as_array().into_iter().flatten() {
        let cells: Vec<&str> = p
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    print!("{}", format::tabwrite_min(&text, 20));
    Ok(())
}

/// One `stats` row from a stats sample.
#[allow(clippy::cast_precision_loss)]
pub fn stats_row(s: &Value, name: &str, id: &str, trunc: bool) -> Value {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let cpu_delta = f(&s["cpu_stats"]["cpu_usage"]["total_usage"])
        - f(&s["precpu_stats"]["cpu_usage"]["total_usage"]);
    let sys_delta =
        f(&s["cpu_stats"]["system_cpu_usage"]) - f(&s["precpu_stats"]["system_cpu_usage"]);
    let mut cpus = f(&s["cpu_stats"]["online_cpus"]);
    if cpus == 0.0 {
        cpus = s["cpu_stats"]["cpu_usage"]["percpu_usage"]
            .as_array()
            .map_or(1, Vec::len) as f64;
    }
    let cpu = if cpu_delta > 0.0 && sys_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let ms = &s["memory_stats"];
    let inactive = ms["stats"]["total_inactive_file"]
        .as_f64()
        .or_else(|| ms["stats"]["inactive_file"].as_f64())
        .unwrap_or(0.0);
    let usage = f(&ms["usage"]);
    let mem = if usage > inactive {
        usage - inactive
    } else {
        usage
    };
    let limit = f(&ms["limit"]);
    let memp = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    for (_, n) in s["networks"].as_object().into_iter().flatten() {
        rx += f(&n["rx_bytes"]);
        tx += f(&n["tx_bytes"]);
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += f(&e["value"]),
            Some("write") => wr += f(&e["value"]),
            _ => {}
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    let hs = |x: f64| format::human_size_prec(x as i64, 3);
    json!({
        "Container": name,
        "Name": name,
        "ID": if trunc { format::short_id(id) } else { id.to_owned() },
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", format::bytes_size(mem), format::bytes_size(limit)),
        "MemPerc": format!("{memp:.2}%"),
        "NetIO": format!("{} / {}", hs(rx), hs(tx)),
        "BlockIO": format!("{} / {}", hs(rd), hs(wr)),
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

const STATS_HEADERS: format::Headers = &[
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("ID", "CONTAINER ID"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

pub async fn stats(c: &Client, a: StatsArgs) -> anyhow::Result<()> {
    let fmt = a.format.clone().filter(|f| !f.is_empty()).unwrap_or_else(|| {
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}".to_owned()
    });
    let fmt = Format::parse(&fmt)?;
    let tty = stream::stdout_is_tty();
    loop {
        let targets: Vec<(String, String)> = if a.containers.is_empty() {
            let list = c
                .get(&format!(
                    "/containers/json{}",
                    if a.all { "?all=1" } else { "" }
                ))
                .await?;
            list.as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    let name = x["Names"][0]
                        .as_str()
                        .unwrap_or("")
                        .trim_start_matches('/')
                        .to_owned();
                    (x["Id"].as_str().unwrap_or("").to_owned(), name)
                })
                .collect()
        } else {
            a.containers
                .iter()
                .map(|n| (n.clone(), String::new()))
                .collect()
        };
        let mut rows = Vec::new();
        for (id, name) in &targets {
            let s = c.get(&format!("{}?stream=0", cpath(id, "stats"))).await?;
            let full_id = s["id"].as_str().unwrap_or(id).to_owned();
            let nm = s["name"]
                .as_str()
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| name.clone());
            rows.push(stats_row(&s, &nm, &full_id, !a.no_trunc));
        }
        let text = fmt.render(&rows, STATS_HEADERS)?;
        if a.no_stream {
            print!("{text}");
            return Ok(());
        }
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        print!("{text}");
        std::io::stdout().flush()?;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn split_container_path(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    let (c, p) = s.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

fn stat_header(resp: &hyper::Response<hyper::body::Incoming>) -> Option<Value> {
    use base64::Engine;
    let h = resp
        .headers()
        .get("x-docker-container-path-stat")?
        .to_str()
        .ok()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(h).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub async fn cp(c: &Client, a: CpArgs) -> anyhow::Result<()> {
    match (split_container_path(&a.src), split_container_path(&a.dest)) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some((ctr, path)), None) => {
            let n = cp_from(c, ctr, path, &a.dest).await?;
            // Like docker: only on a terminal.
            if !a.quiet && a.dest != "-" && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!(
                    "Successfully copied {} to {}",
                    format::human_size_prec(n, 3),
                    a.dest
                );
            }
            Ok(())
        }
        (None, Some((ctr, path))) => {
            let n = cp_to(c, &a.src, ctr, path, a.archive).await?;
            if !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!(
                    "Successfully copied {} to {}",
                    format::human_size_prec(n, 3),
                    a.dest
                );
            }
            Ok(())
        }
    }
}

fn archive_path(ctr: &str, path: &str) -> String {
    format!(
        "{}{}",
        cpath(ctr, "archive"),
        query(&[("path", path.to_owned())])
    )
}

/// Returns the bytes copied.
async fn cp_from(c: &Client, ctr: &str, path: &str, dest: &str) -> anyhow::Result<i64> {
    let resp = c
        .send(Method::GET, &archive_path(ctr, path), Body::Empty, &[])
        .await?;
    let stat = stat_header(&resp);
    let bytes = resp.into_body().collect().await?.to_bytes();
    if dest == "-" {
        std::io::stdout().lock().write_all(&bytes)?;
        return Ok(i64::try_from(bytes.len()).unwrap_or(i64::MAX));
    }
    let src_name = stat
        .as_ref()
        .and_then(|s| s["name"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            Path::new(path)
                .file_name()
                .map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned())
        });
    extract_into(&bytes, &src_name, Path::new(dest))?;
    Ok(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
}

/// Unpacks a `GET archive` tar (whose top entry is `src_name`) at `dest` the way `docker cp`
/// does: into `dest` when it is a directory, else as `dest` itself. Entries that would land
/// outside (`..`, absolute paths, through a symlink) are refused.
pub fn extract_into(tar_bytes: &[u8], src_name: &str, dest: &Path) -> anyhow::Result<()> {
    use std::path::Component;
    let (base, rename): (PathBuf, Option<String>) = if dest.is_dir() {
        (dest.to_owned(), None)
    } else {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("destination directory {} must exist", parent.display());
        }
        (
            parent.to_owned(),
            dest.file_name().map(|n| n.to_string_lossy().into_owned()),
        )
    };
    let mut ar = tar::Archive::new(tar_bytes);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let p = entry.path()?.into_owned();
        let mut parts = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                Component::CurDir => {}
                _ => bail!(
                    "refusing to extract {}: it leaves the destination",
                    p.display()
                ),
            }
        }
        let Some(first) = parts.first_mut() else {
            continue;
        };
        if let Some(r) = &rename {
            if *first == src_name {
                first.clone_from(r);
            }
        }
        let mut target = base.clone();
        for (i, part) in parts.iter().enumerate() {
            target.push(part);
            let last = i + 1 == parts.len();
            if !last && std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink())
            {
                bail!(
                    "refusing to extract {} through the symlink {}",
                    p.display(),
                    target.display()
                );
            }
        }
        entry
            .unpack(&target)
            .with_context(|| format!("extracting {}", target.display()))?;
    }
    Ok(())
}

/// A tar of `src` (a file or a directory tree) whose top entry is named `name`.
pub fn tar_of(src: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if std::fs::symlink_metadata(src)?.is_dir() {
        b.append_dir_all(name, src)?;
    } else {
        b.append_path_with_name(src, name)?;
    }
    b.into_inner()
}

/// Returns the bytes copied.
async fn cp_to(c: &Client, src: &str, ctr: &str, path: &str, uid_gid: bool) -> anyhow::Result<i64> {
    if src == "-" {
        // A tar stream on stdin, extracted into the directory `path`.
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
        return put_archive(c, ctr, path, v, uid_gid).await;
    }
    std::fs::symlink_metadata(src)
        .with_context(|| format!("could not find the file {src} in the local filesystem"))?;
    // Into an existing directory keeping the source's name, else as the named path.
    let head = c
        .send_raw(Method::HEAD, &archive_path(ctr, path), Body::Empty, &[])
        .await?;
    let is_dir = head.status() == StatusCode::OK
        && stat_header(&head)
            .is_some_and(|s| s["mode"].as_u64().is_some_and(|m| m & (1 << 31) != 0));
    let (dir, name) = if is_dir {
        let name = Path::new(src)
            .file_name()
            .map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned());
        (path.to_owned(), name)
    } else if head.status() == StatusCode::OK || head.status() == StatusCode::NOT_FOUND {
        let p = Path::new(path);
        let parent = p
            .parent()
            .map(|x| x.to_string_lossy().into_owned())
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        let name = p
            .file_name()
            .map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned());
        (parent, name)
    } else {
        let err = match crate::client::check(head).await {
            Err(e) => e.into(),
            Ok(r) => anyhow::anyhow!("unexpected answer {} to HEAD archive", r.status()),
        };
        return Err(err);
    };
    let data = tar_of(Path::new(src), &name)?;
    put_archive(c, ctr, &dir, data, uid_gid).await
}

/// `PUT archive`: the tar unpacked in the directory `dir` (`-a`: with its owners).
async fn put_archive(
    c: &Client,
    ctr: &str,
    dir: &str,
    data: Vec<u8>,
    uid_gid: bool,
) -> anyhow::Result<i64> {
    let n = i64::try_from(data.len()).unwrap_or(i64::MAX);
    let mut q = vec![
        ("path", dir.to_owned()),
        ("noOverwriteDirNonDir", "true".to_owned()),
    ];
    if uid_gid {
        q.push(("copyUIDGID", "true".to_owned()));
    }
    let path = format!("{}{}", cpath(ctr, "archive"), query(&q));
    let r = c
        .send(
            Method::PUT,
            &path,
            Body::Bytes(data, "application/x-tar"),
            &[],
        )
        .await?;
    r.into_body().collect().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_like_docker() {
        let c = json!({
            "Id": "0123456789abcdef0123", "Names": ["/web"], "Image": "busybox",
            "Command": "sh -c 'sleep 1000; echo done'", "Created": 0,
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}, {"PrivatePort": 53, "Type": "udp"}],
            "Labels": {"b": "2", "a": "1"}, "State": "running", "Status": "Up 2 seconds",
            "NetworkSettings": {"Networks": {"bridge": {}}}, "Mounts": []
        });
        let r = ps_row(&c, true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["Command"], "\"sh -c 'sleep 1000; …\"");
        assert_eq!(r["Ports"], "53/udp, 0.0.0.0:8080->80/tcp");
        let ports = json!([
            {"IP": "0.0.0.0", "PrivatePort": 8001, "PublicPort": 8001, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 8000, "PublicPort": 8000, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"PrivatePort": 9000, "Type": "tcp"}, {"PrivatePort": 9001, "Type": "tcp"}
        ]);
        assert_eq!(
            display_ports(&ports),
            "0.0.0.0:8000-8001->8000-8001/tcp, 9000-9001/tcp, [::]:8080->80/tcp"
        );
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(r["Networks"], "bridge");
        assert_eq!(r["Size"], "0B");
        let r = ps_row(&c, false);
        assert_eq!(r["ID"], "0123456789abcdef0123");
        assert_eq!(r["Command"], "\"sh -c 'sleep 1000; echo done'\"");
    }

    #[test]
    fn filters_and_exit_codes() {
        assert_eq!(
            filters_json(&["status=exited".into(), "label=a=b".into()])
                .unwrap()
                .unwrap(),
            r#"{"label":{"a=b":true},"status":{"exited":true}}"#
        );
        assert!(filters_json(&["nope".into()]).is_err());
        assert_eq!(
            start_failure_code("exec: \"nosuch\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure_code("permission denied"), 126);
        assert_eq!(start_failure_code("cgroup failure"), 125);
        assert_eq!(exit_u8(-1), 255);
        assert_eq!(exit_u8(3), 3);
    }

    #[test]
    fn stats_rows() {
        let s = json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 200}, "system_cpu_usage": 1000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 800},
            "memory_stats": {"usage": 2097152, "limit": 4194304, "stats": {"total_inactive_file": 1048576}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
            "pids_stats": {"current": 3}
        });
        let r = stats_row(&s, "x", "0123456789abcdef", true);
        assert_eq!(r["CPUPerc"], "100.00%");
        assert_eq!(r["MemUsage"], "1MiB / 4MiB");
        assert_eq!(r["MemPerc"], "25.00%");
        assert_eq!(r["NetIO"], "1.5kB / 0B");
        assert_eq!(r["PIDs"], "3");
    }

    #[test]
    fn cp_archives_land_like_docker_cp() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("d");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "x").unwrap();
        let t = tar_of(&src, "d").unwrap();
        // Into an existing directory: keeps its name.
        let into = tmp.path().join("into");
        std::fs::create_dir(&into).unwrap();
        extract_into(&t, "d", &into).unwrap();
        assert_eq!(std::fs::read_to_string(into.join("d/sub/f")).unwrap(), "x");
        // To a new path: takes that name.
        let renamed = tmp.path().join("renamed");
        extract_into(&t, "d", &renamed).unwrap();
        assert_eq!(std::fs::read_to_string(renamed.join("sub/f")).unwrap(), "x");
        // A file to a new file name.
        let f = tar_of(&src.join("sub/f"), "f").unwrap();
        extract_into(&f, "f", &tmp.path().join("g")).unwrap();
        assert_eq!(std::fs::read_to_string(tmp.path().join("g")).unwrap(), "x");
        // A missing parent is an error that names it.
        let e = extract_into(&f, "f", &tmp.path().join("no/such")).unwrap_err();
        assert!(e.to_string().contains("must exist"), "{e}");
    }

    #[test]
    fn cp_refuses_entries_leaving_the_destination() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`; write the name into the header by hand.
        h.as_old_mut().name[..8].copy_from_slice(b"d/../../");
        h.as_old_mut().name[8..12].copy_from_slice(b"evil");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let dest = tmp.path().join("in");
        std::fs::create_dir(&dest).unwrap();
        let e = extract_into(&t, "d", &dest).unwrap_err();
        assert!(e.to_string().contains("leaves the destination"), "{e}");
        assert!(!tmp.path().join("evil").exists());
    }

    #[test]
    fn since_until_values() {
        assert_eq!(time_arg("2024-01-02T03:04:05Z"), "1704164645.000000000");
        assert_eq!(time_arg("1700000000"), "1700000000");
        let now = || {
            i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            )
            .unwrap()
        };
        let before = now();
        let rel: i64 = time_arg("10m").parse().unwrap();
        let after = now();
        assert!((before - 600..=after - 600).contains(&rel), "{rel}");
    }

    #[test]
    fn container_paths() {
        assert_eq!(
            split_container_path("web:/etc/passwd"),
            Some(("web", "/etc/passwd"))
        );
        assert_eq!(split_container_path("/tmp/a:b"), None);
        assert_eq!(split_container_path("./x"), None);
        assert_eq!(split_container_path("file"), None);
    }
}
