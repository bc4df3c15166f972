//! `skiff`: Skiff's command-line client, with the Docker CLI's commands and flags, talking to
//! skiffd (or any Docker Engine) over the Engine API on a unix socket.

#![forbid(unsafe_code)]

mod client;
mod containers;
mod format;
mod images;
mod opts;
mod stream;
mod system;
mod template;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::client::{Client, ClientError};

/// Default daemon socket.
pub const DEFAULT_HOST: &str = "unix:///run/skiff/skiff.sock";

#[derive(Parser)]
#[command(
    name = "skiff",
    about = "A self-sufficient runtime for containers",
    version,
    disable_help_subcommand = true,
    disable_version_flag = true,
    args_conflicts_with_subcommands = false
)]
struct Cli {
    /// Print version information and quit
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host", global = false)]
    host: Option<String>,
    /// Location of client config files
    #[arg(long)]
    config: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    debug: bool,
    /// Set the logging level
    #[arg(long = "log-level")]
    log_level: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(containers::RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(containers::CreateArgs),
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// List containers
    Ps(containers::PsArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Execute a command in a running container
    Exec(containers::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(containers::AttachArgs),
    /// Return low-level information on Docker objects
    Inspect(system::InspectArgs),
    /// Display the running processes of a container
    Top(containers::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(containers::StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(containers::CpArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::Names),
    /// Pause all processes within one or more containers
    Pause(containers::Names),
    /// Unpause all processes within one or more containers
    Unpause(containers::Names),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Update configuration of one or more containers
    Update(containers::UpdateArgs),
    /// List port mappings or a specific mapping for the container
    Port(containers::PortArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(containers::One),
    /// Export a container's filesystem as a tar archive
    Export(containers::ExportArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Download an image from a registry
    Pull(images::PullArgs),
    /// Upload an image to a registry
    Push(images::PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Log in to a registry
    Login(system::LoginArgs),
    /// Log out from a registry
    Logout(system::LogoutArgs),
    /// Manage containers (`skiff container ls|run|rm|...`, the commands above)
    Container {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Manage images (`skiff image ls|pull|rm|...`, the commands above)
    Image {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Manage volumes
    #[command(subcommand)]
    Volume(system::VolumeCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(system::NetworkCmd),
    /// Manage Docker
    #[command(subcommand)]
    System(system::SystemCmd),
    /// Display system-wide information
    Info(system::FormatArg),
    /// Show the Docker version information
    Version(system::FormatArg),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Remove unused containers (`container prune`)
    #[command(hide = true, name = "container-prune")]
    ContainerPrune(system::PruneArgs),
    /// Remove unused images (`image prune`)
    #[command(hide = true, name = "image-prune")]
    ImagePrune(images::ImagePruneArgs),
    /// Generate the autocompletion script for the specified shell
    Completion {
        /// bash, zsh or fish
        shell: clap_complete::Shell,
    },
}

/// `container X` and `image X` management commands, rewritten to the top-level commands.
fn rewrite(mut args: Vec<String>) -> Vec<String> {
    // Index of the first non-flag argument (global -H/--config/--log-level take a value).
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        if matches!(a, "-H" | "--host" | "--config" | "--log-level") {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            break;
        }
    }
    let Some(group) = args.get(i).cloned() else {
        return args;
    };
    let Some(sub) = args.get(i + 1).cloned() else {
        return args;
    };
    if !matches!(group.as_str(), "container" | "image") {
        return args;
    }
    let new = match (group.as_str(), sub.as_str()) {
        ("container", "ls" | "list" | "ps") => "ps",
        ("container", "rm" | "remove") => "rm",
        ("container", "prune") => "container-prune",
        ("container", "inspect") => "inspect",
        (
            "container",
            s @ ("run" | "create" | "start" | "stop" | "restart" | "kill" | "logs" | "exec"
            | "attach" | "top" | "stats" | "cp" | "wait" | "pause" | "unpause" | "rename"
            | "update" | "port" | "diff" | "export"),
        ) => s,
        ("image", "ls" | "list") => "images",
        ("image", "rm" | "remove") => "rmi",
        ("image", "prune") => "image-prune",
        ("image", "inspect") => "inspect",
        ("image", s @ ("pull" | "push" | "tag" | "save" | "load" | "import" | "history")) => s,
        _ => {
            return args;
        }
    };
    args.splice(i..i + 2, [new.to_owned()]);
    if matches!(
        (group.as_str(), sub.as_str()),
        ("container" | "image", "inspect")
    ) {
        args.insert(
            i + 1,
            if group == "container" {
                "--type=container"
            } else {
                "--type=image"
            }
            .to_owned(),
        );
    }
    args
}

/// The status a shell shows for a command killed by SIGPIPE.
const BROKEN_PIPE: u8 = 141;

/// `skiff ps | head -1`: stdout closing early ends skiff quietly, as SIGPIPE ends docker
/// (Rust ignores SIGPIPE, so the write fails instead, and `println!` panics).
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(i32::from(BROKEN_PIPE));
        }
        default(info);
    }));
}

const CONTAINER_CMDS: &str = "attach create diff exec export inspect kill logs ls pause port prune rename restart rm run start stats stop top unpause update wait";
const IMAGE_CMDS: &str = "history import inspect load ls prune pull push rm save tag";

/// `skiff container` / `skiff image` without a known subcommand: their usage (exit 0), or
/// an error naming the unknown one (exit 125).
fn management_usage(args: &[String]) -> Option<u8> {
    let mut i = 1;
    while i < args.len() && args[i].starts_with('-') {
        i += if matches!(
            args[i].as_str(),
            "-H" | "--host" | "--config" | "--log-level"
        ) {
            2
        } else {
            1
        };
    }
    let group = args.get(i)?.as_str();
    let cmds = match group {
        "container" => CONTAINER_CMDS,
        "image" => IMAGE_CMDS,
        _ => return None,
    };
    match args.get(i + 1).map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            println!("Usage:  skiff {group} COMMAND\n\nManage {group}s\n\nCommands:");
            for c in cmds.split(' ') {
                println!("  {c}");
            }
            println!("\nRun 'skiff {group} COMMAND --help' for more information on a command.");
            Some(0)
        }
        Some(sub)
            if !cmds.split(' ').any(|c| c == sub) && !matches!(sub, "list" | "ps" | "remove") =>
        {
            eprintln!("skiff: '{group} {sub}' is not a skiff command.\nSee 'skiff {group} --help'");
            Some(125)
        }
        Some(_) => None,
    }
}

fn main() -> ExitCode {
    quiet_broken_pipe();
    let raw: Vec<String> = std::env::args().collect();
    if let Some(code) = management_usage(&raw) {
        return ExitCode::from(code);
    }
    let args = rewrite(raw);
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Cmd::Completion { shell } = cli.cmd {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "skiff", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let host = cli
        .host
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(async move {
        match dispatch(&host, cli.cmd).await {
            Ok(code) => code,
            Err(e) => report(&e),
        }
    });
    // Blocked stdin readers must not keep the process alive.
    rt.shutdown_background();
    ExitCode::from(code)
}

/// Prints an error the way the Docker CLI does; returns its exit status.
fn report(e: &anyhow::Error) -> u8 {
    if let Some(s) = e.downcast_ref::<containers::Status>() {
        if !s.message.is_empty() {
            eprintln!("{}", s.message);
        }
        return s.code;
    }
    if e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        return BROKEN_PIPE;
    }
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    eprintln!("{msg}");
    1
}

async fn dispatch(host: &str, cmd: Cmd) -> anyhow::Result<u8> {
    let c = Client::new(host).await?;
    use Cmd::*;
    match cmd {
        Run(a) => containers::run(&c, a).await,
        Create(a) => containers::create(&c, a).await.map(|()| 0),
        Start(a) => containers::start(&c, a).await,
        Stop(a) => containers::stop(&c, a, "stop").await.map(|()| 0),
        Restart(a) => containers::stop(&c, a, "restart").await.map(|()| 0),
        Kill(a) => containers::kill(&c, a).await.map(|()| 0),
        Rm(a) => containers::rm(&c, a).await.map(|()| 0),
        Ps(a) => containers::ps(&c, a).await.map(|()| 0),
        Logs(a) => containers::logs(&c, a).await.map(|()| 0),
        Exec(a) => containers::exec(&c, a).await,
        Attach(a) => containers::attach(&c, a).await,
        Inspect(a) => system::inspect(&c, a).await.map(|()| 0),
        Top(a) => containers::top(&c, a).await.map(|()| 0),
        Stats(a) => containers::stats(&c, a).await.map(|()| 0),
        Cp(a) => containers::cp(&c, a).await.map(|()| 0),
        Wait(a) => containers::wait(&c, a).await.map(|()| 0),
        Pause(a) => containers::simple(&c, a, "pause").await.map(|()| 0),
        Unpause(a) => containers::simple(&c, a, "unpause").await.map(|()| 0),
        Rename(a) => containers::rename(&c, a).await.map(|()| 0),
        Update(a) => containers::update(&c, a).await.map(|()| 0),
        Port(a) => containers::port(&c, a).await.map(|()| 0),
        Diff(a) => containers::diff(&c, a).await.map(|()| 0),
        Export(a) => containers::export(&c, a).await.map(|()| 0),
        Images(a) => images::images(&c, a).await.map(|()| 0),
        Pull(a) => images::pull(&c, a).await.map(|()| 0),
        Push(a) => images::push(&c, a).await.map(|()| 0),
        Tag(a) => images::tag(&c, a).await.map(|()| 0),
        Rmi(a) => images::rmi(&c, a).await.map(|()| 0),
        Save(a) => images::save(&c, a).await.map(|()| 0),
        Load(a) => images::load(&c, a).await.map(|()| 0),
        Import(a) => images::import(&c, a).await.map(|()| 0),
        History(a) => images::history(&c, a).await.map(|()| 0),
        ImagePrune(a) => images::prune(&c, a).await.map(|()| 0),
        Login(a) => system::login(&c, a).await.map(|()| 0),
        Logout(a) => system::logout(a).map(|()| 0),
        Volume(a) => system::volume(&c, a).await.map(|()| 0),
        Network(a) => system::network(&c, a).await.map(|()| 0),
        System(a) => system::system(&c, a).await.map(|()| 0),
        Info(a) => system::info(&c, a).await.map(|()| 0),
        Version(a) => system::version(&c, a).await.map(|()| 0),
        Events(a) => system::events(&c, a).await.map(|()| 0),
        ContainerPrune(a) => system::container_prune(&c, a).await.map(|()| 0),
        // Rewritten to the plain commands before parsing (see `rewrite`).
        Completion { .. } | Container { .. } | Image { .. } => Ok(0),
    }
}

/// Whether an error is the daemon's 404.
pub fn is_not_found(e: &ClientError) -> bool {
    e.status() == Some(hyper::StatusCode::NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn management_commands_rewrite() {
        assert_eq!(
            rewrite(v(&["skiff", "container", "ls", "-a"])),
            v(&["skiff", "ps", "-a"])
        );
        assert_eq!(
            rewrite(v(&["skiff", "-H", "unix:///x", "image", "ls"])),
            v(&["skiff", "-H", "unix:///x", "images"])
        );
        assert_eq!(
            rewrite(v(&["skiff", "image", "rm", "x"])),
            v(&["skiff", "rmi", "x"])
        );
        assert_eq!(
            rewrite(v(&["skiff", "container", "inspect", "x"])),
            v(&["skiff", "inspect", "--type=container", "x"])
        );
        assert_eq!(
            rewrite(v(&["skiff", "run", "image", "ls"])),
            v(&["skiff", "run", "image", "ls"])
        );
        Cli::command().debug_assert();
        assert_eq!(
            management_usage(&v(&["skiff", "container", "bogus"])),
            Some(125)
        );
        assert_eq!(management_usage(&v(&["skiff", "image", "ls"])), None);
        assert_eq!(management_usage(&v(&["skiff", "ps"])), None);
    }
}
