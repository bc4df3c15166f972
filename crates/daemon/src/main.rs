//! `skiffd`: the Skiff daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use skiff_daemon::config::{Config, FileConfig, DEFAULT_CONFIG_FILE};
use skiff_daemon::{server, Daemon};

/// The Skiff daemon: serves the Docker Engine API on a unix socket.
#[derive(Debug, Parser)]
#[command(name = "skiffd", version)]
struct Args {
    /// Socket to listen on (unix:///path); repeatable. Default unix:///run/skiff/skiff.sock.
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// Where images, volumes and containers live. Default /var/lib/skiff.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Where the state of running containers lives. Default /run/skiff.
    #[arg(long)]
    exec_root: Option<PathBuf>,
    /// The configuration file (Docker's daemon.json keys).
    #[arg(long, default_value = DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    /// debug, info, warn, error or fatal.
    #[arg(short = 'l', long)]
    log_level: Option<String>,
    /// Shorthand for --log-level debug.
    #[arg(short = 'D', long)]
    debug: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    validate: bool,
}

fn main() {
    if let Err(e) = run() {
        let mut msg = format!("skiffd: {e}");
        for c in e.chain().skip(1) {
            msg.push_str(&format!(": {c}"));
        }
        eprintln!("{msg}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let explicit = args.config_file.as_os_str() != DEFAULT_CONFIG_FILE;
    let file = FileConfig::load(&args.config_file, !explicit)?;
    let level = if args.debug {
        Some("debug".to_owned())
    } else {
        args.log_level.clone()
    };
    let config = Config::resolve(
        file,
        &args.hosts,
        args.data_root.clone(),
        args.exec_root.clone(),
        level,
    )?;
    if args.validate {
        println!("configuration OK");
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    tracing::info!(version = skiff_daemon::VERSION, data_root = %config.data_root.display(), "starting skiffd");
    // Open the store (blocking, flock) before the runtime exists.
    let daemon = Daemon::new(config.clone()).context("starting the daemon")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the async runtime")?;
    rt.block_on(async move {
        let mut sockets = Vec::new();
        for p in &config.sockets {
            sockets.push(server::bind(p, &config.group)?);
        }
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        };
        daemon.serve(sockets, shutdown).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}
