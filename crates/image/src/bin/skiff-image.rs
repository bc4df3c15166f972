//! `skiff-image`: pull, push and manage the images of a Skiff data root from the command
//! line, with Docker's output formats.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use skiff_image::render::Renderer;
use skiff_image::{human_size, Progress};
use skiff_reference::Reference;
use skiff_registry::{Client, Config, Platform};
use skiff_store::{Compression, ImportOptions, Removed, Store, StoreOptions};

#[derive(Parser)]
#[command(name = "skiff-image", version, about = "Skiff image management")]
struct Cli {
    /// The data root of the image store.
    #[arg(long, global = true, default_value = "/var/lib/skiff")]
    data_root: PathBuf,
    /// A registry (host:port) to reach over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", global = true)]
    insecure_registries: Vec<String>,
    /// The platform to pull (os/arch[/variant]); default the host's.
    #[arg(long, global = true)]
    platform: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download an image from a registry.
    Pull {
        /// The image reference.
        name: String,
        /// Print only the image reference.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Upload an image to a registry.
    Push {
        /// The image reference (a local tag).
        name: String,
        /// Print only the digest.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List images.
    Images {
        /// Only show image IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Show digests.
        #[arg(long)]
        digests: bool,
    },
    /// Create a tag TARGET that refers to SOURCE.
    Tag {
        /// Source image (name or ID).
        source: String,
        /// The new reference.
        target: String,
    },
    /// Remove images.
    Rmi {
        /// Force removal.
        #[arg(short, long)]
        force: bool,
        /// Images (names or IDs).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show image details as JSON.
    Inspect {
        /// Images (names or IDs).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show the history of an image.
    History {
        /// Image (name or ID).
        name: String,
        /// Don't truncate output.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Save images to a tar archive (stdout by default).
    Save {
        /// Write to this file.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Images (names or IDs).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Load images from a tar archive (stdin by default).
    Load {
        /// Read from this file.
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Suppress progress output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Import a tarball to create a filesystem image.
    Import {
        /// The tarball (`-` for stdin).
        file: String,
        /// The reference to tag the image with.
        reference: Option<String>,
        /// A commit message.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Export a container's (or an image's) filesystem as a tar archive.
    Export {
        /// Container ID with a rootfs in the store, or an image name.
        container: String,
        /// Write to this file (stdout by default).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Remove unused images.
    Prune {
        /// Remove all images without a container, not just dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Do not prompt (accepted for Docker compatibility; never prompts).
        #[arg(short, long)]
        force: bool,
    },
    /// Remove unreferenced content and leftover temp files.
    Gc,
    /// Log in to a registry.
    Login {
        /// The registry (default Docker Hub).
        server: Option<String>,
        /// Username.
        #[arg(short, long)]
        username: Option<String>,
        /// Password.
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        let _ = writeln!(io::stderr(), "Error: {e:#}");
        std::process::exit(1);
    }
}

fn open_store(cli: &Cli) -> Result<Store> {
    Store::open(&cli.data_root, StoreOptions::default())
        .with_context(|| format!("opening the image store at {}", cli.data_root.display()))
}

fn client(cli: &Cli) -> Result<Client> {
    Ok(Client::new(Config {
        insecure_registries: cli.insecure_registries.clone(),
        ..Config::default()
    })?)
}

fn parse_ref(s: &str) -> Result<Reference> {
    Reference::parse(s).with_context(|| format!("invalid reference {s:?}"))
}

fn run(cli: Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::Pull { name, quiet } => {
            let reference = parse_ref(name)?;
            let platform = match &cli.platform {
                Some(p) => p.parse::<Platform>()?,
                None => Platform::host(),
            };
            let store = open_store(&cli)?;
            let client = client(&cli)?;
            let stdout = io::stdout();
            let tty = stdout.is_terminal();
            let mut r = Renderer::new(stdout.lock(), tty);
            let mut show = |p: Progress| {
                if !*quiet {
                    let _ = r.show(&p);
                }
            };
            skiff_image::pull(&store, &client, &reference, &platform, &mut show)?;
            drop(r);
            println!("{reference}");
        }
        Cmd::Push { name, quiet } => {
            let reference = parse_ref(name)?;
            let store = open_store(&cli)?;
            let client = client(&cli)?;
            let stdout = io::stdout();
            let tty = stdout.is_terminal();
            let mut r = Renderer::new(stdout.lock(), tty);
            let mut show = |p: Progress| {
                if !*quiet {
                    let _ = r.show(&p);
                }
            };
            let digest = skiff_image::push(&store, &client, &reference, name, &mut show)?;
            drop(r);
            if *quiet {
                println!("{digest}");
            }
        }
        Cmd::Images { quiet, digests } => images(&open_store(&cli)?, *quiet, *digests)?,
        Cmd::Tag { source, target } => {
            let store = open_store(&cli)?;
            store.tag(source, &parse_ref(target)?)?;
        }
        Cmd::Rmi { force, names } => {
            let store = open_store(&cli)?;
            let mut failed = false;
            for n in names {
                match store.remove_image(n, *force) {
                    Ok(done) => {
                        for r in done {
                            match r {
                                Removed::Untagged(r) => println!("Untagged: {}", r.familiar()),
                                Removed::Deleted(d) => println!("Deleted: {d}"),
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("Error response from daemon: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                std::process::exit(1);
            }
        }
        Cmd::Inspect { names } => {
            let store = open_store(&cli)?;
            let mut out = Vec::new();
            for n in names {
                out.push(inspect_json(&store, n)?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Cmd::History { name, no_trunc } => history(&open_store(&cli)?, name, *no_trunc)?,
        Cmd::Save { output, names } => {
            let store = open_store(&cli)?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            match output {
                Some(p) => {
                    // Written next to the target and renamed: no half archive on failure.
                    let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                    let mut tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(".".as_ref()))?;
                    store.save(&names, io::BufWriter::new(tmp.as_file_mut()))?;
                    tmp.persist(p)?;
                }
                None => {
                    if io::stdout().is_terminal() {
                        bail!(
                            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                        );
                    }
                    store.save(&names, io::BufWriter::new(io::stdout().lock()))?;
                }
            }
        }
        Cmd::Load { input, quiet: _ } => {
            let store = open_store(&cli)?;
            let reader: Box<dyn Read> = match input {
                Some(p) => {
                    Box::new(File::open(p).with_context(|| format!("opening {}", p.display()))?)
                }
                None => Box::new(io::stdin().lock()),
            };
            for img in store.load(io::BufReader::new(reader))? {
                if img.repo_tags.is_empty() {
                    println!("Loaded image ID: {}", img.id);
                }
                for t in &img.repo_tags {
                    println!("Loaded image: {}", t.familiar());
                }
            }
        }
        Cmd::Import {
            file,
            reference,
            message,
        } => {
            let store = open_store(&cli)?;
            let reader: Box<dyn Read> = if file == "-" {
                Box::new(io::stdin().lock())
            } else {
                Box::new(File::open(file).with_context(|| format!("opening {file}"))?)
            };
            let opts = ImportOptions {
                tag: reference.as_deref().map(parse_ref).transpose()?,
                message: message.clone(),
                architecture: cli
                    .platform
                    .as_deref()
                    .map(|p| p.parse::<Platform>().map(|p| p.architecture))
                    .transpose()?,
                ..Default::default()
            };
            let img = store.import(io::BufReader::new(reader), Compression::Detect, &opts)?;
            println!("{}", img.id);
        }
        Cmd::Export { container, output } => {
            let store = open_store(&cli)?;
            let out: Box<dyn Write> = match output {
                Some(p) => {
                    Box::new(File::create(p).with_context(|| format!("creating {}", p.display()))?)
                }
                None => {
                    if io::stdout().is_terminal() {
                        bail!(
                            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                        );
                    }
                    Box::new(io::stdout().lock())
                }
            };
            let mut out = io::BufWriter::new(out);
            if store.rootfs(container).is_ok() {
                store.export_rootfs(container, &mut out)?;
            } else {
                // An image: through a temporary container rootfs.
                let id = format!("export-{}", std::process::id());
                store
                    .create_rootfs(&id, container)
                    .with_context(|| format!("no container or image {container}"))?;
                let res = store.export_rootfs(&id, &mut out);
                let _ = store.unmount_rootfs(&id);
                store.remove_rootfs(&id)?;
                res?;
            }
            out.flush()?;
        }
        Cmd::Prune { all, force: _ } => {
            let store = open_store(&cli)?;
            let report = store.prune(!*all)?;
            if !report.images.is_empty() {
                println!("Deleted Images:");
                for d in &report.images {
                    println!("deleted: {d}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", human_size(report.gc.bytes));
        }
        Cmd::Gc => {
            let store = open_store(&cli)?;
            let r = store.gc()?;
            println!(
                "Removed {} blobs, {} snapshots, {} temp entries; reclaimed {}",
                r.blobs.len(),
                r.snapshots.len(),
                r.temp_entries,
                human_size(r.bytes)
            );
        }
        Cmd::Login {
            server,
            username,
            password,
            password_stdin,
        } => {
            let server = server.clone().unwrap_or_else(|| "docker.io".to_owned());
            let username = match username {
                Some(u) => u.clone(),
                None => bail!("username required (-u)"),
            };
            let password = match (password, password_stdin) {
                (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
                (Some(p), false) => {
                    eprintln!(
                        "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
                    );
                    p.clone()
                }
                (None, true) => {
                    let mut s = String::new();
                    io::stdin().read_to_string(&mut s)?;
                    s.trim_end_matches(['\n', '\r']).to_owned()
                }
                (None, false) => bail!("password required (-p or --password-stdin)"),
            };
            let client = client(&cli)?;
            let path = client.login(&server, &username, &password)?;
            eprintln!(
                "WARNING! Your password will be stored unencrypted in {}.",
                path.display()
            );
            println!("Login Succeeded");
        }
    }
    Ok(())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, offsets too).
fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // days_from_civil
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = days * 86400 + h * 3600 + mi * 60 + se;
    let rest = &s[19..];
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(sign @ ('+' | '-')) = rest.chars().next() {
        let oh = rest.get(1..3)?.parse::<i64>().ok()?;
        let om = rest.get(4..6)?.parse::<i64>().ok()?;
        let off = oh * 3600 + om * 60;
        t -= if sign == '+' { off } else { -off };
    }
    Some(t)
}

/// Docker's `units.HumanDuration` + " ago".
fn ago(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_time) else {
        return "N/A".to_owned();
    };
    let secs = (now() - t).max(0);
    let s = if secs < 1 {
        "Less than a second".to_owned()
    } else if secs == 1 {
        "1 second".to_owned()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if secs / 60 == 1 {
        "About a minute".to_owned()
    } else if secs < 3600 {
        format!("{} minutes", secs / 60)
    } else if secs / 3600 == 1 {
        "About an hour".to_owned()
    } else if secs < 48 * 3600 {
        format!("{} hours", secs / 3600)
    } else if secs < 7 * 24 * 3600 * 2 {
        format!("{} days", secs / 86400)
    } else if secs < 30 * 24 * 3600 * 3 {
        format!("{} weeks", secs / (7 * 86400))
    } else if secs < 365 * 24 * 3600 * 2 {
        format!("{} months", secs / (30 * 86400))
    } else {
        format!("{} years", secs / (365 * 86400))
    };
    format!("{s} ago")
}

/// Aligns rows as the Docker CLI's tabwriter does.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == cols {
                line.push_str(c);
            } else {
                // Docker's tabwriter: minimum cell width 10, padding 3.
                line.push_str(&format!("{c:<w$}", w = (widths[i] + 3).max(10)));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn images(store: &Store, quiet: bool, digests: bool) -> Result<()> {
    let mut imgs = store.images();
    imgs.sort_by(|a, b| {
        let ta = a.created.as_deref().and_then(parse_time).unwrap_or(0);
        let tb = b.created.as_deref().and_then(parse_time).unwrap_or(0);
        tb.cmp(&ta).then(b.added.cmp(&a.added))
    });
    if quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &imgs {
            if seen.insert(i.id.clone()) {
                println!("{}", i.short_id());
            }
        }
        return Ok(());
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for i in &imgs {
        let size = store
            .inspect(&i.id.to_string())
            .map(|d| d.size)
            .unwrap_or(0);
        let created = ago(i.created.as_deref());
        let mut entries: Vec<(String, String)> = i
            .repo_tags
            .iter()
            .map(|t| {
                let f = t.familiar();
                let (repo, tag) = f
                    .rsplit_once(':')
                    .filter(|(r, _)| !r.ends_with('/'))
                    .map_or((f.clone(), "<none>".to_owned()), |(r, t)| {
                        (r.to_owned(), t.to_owned())
                    });
                (repo, tag)
            })
            .collect();
        if entries.is_empty() {
            let repo = i
                .repo_digests
                .first()
                .map(|d| {
                    let f = d.familiar();
                    f.split('@').next().unwrap_or("<none>").to_owned()
                })
                .unwrap_or_else(|| "<none>".to_owned());
            entries.push((repo, "<none>".to_owned()));
        }
        for (repo, tag) in entries {
            let mut row = vec![repo.clone(), tag];
            if digests {
                let d = i
                    .repo_digests
                    .iter()
                    .find(|d| d.familiar().split('@').next() == Some(repo.as_str()))
                    .and_then(|d| d.digest().map(ToString::to_string))
                    .unwrap_or_else(|| "<none>".to_owned());
                row.push(d);
            }
            row.extend([i.short_id().to_owned(), created.clone(), human_size(size)]);
            rows.push(row);
        }
    }
    print!("{}", table(&rows));
    Ok(())
}

fn inspect_json(store: &Store, name: &str) -> Result<serde_json::Value> {
    let d = store.inspect(name)?;
    let cfg: serde_json::Value = serde_json::from_slice(&d.raw_config)?;
    let get = |k: &str| cfg.get(k).cloned().unwrap_or(serde_json::Value::Null);
    Ok(serde_json::json!({
        "Id": d.image.id.to_string(),
        "RepoTags": d.image.repo_tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
        "RepoDigests": d.image.repo_digests.iter().map(Reference::familiar).collect::<Vec<_>>(),
        "Parent": "",
        "Comment": get("comment"),
        "Created": get("created"),
        "DockerVersion": cfg.get("docker_version").cloned().unwrap_or_else(|| "".into()),
        "Author": cfg.get("author").cloned().unwrap_or_else(|| "".into()),
        "Config": get("config"),
        "Architecture": get("architecture"),
        "Variant": cfg.get("variant").cloned(),
        "Os": get("os"),
        "Size": d.size,
        "GraphDriver": {"Name": format!("{:?}", store.driver()).to_lowercase(), "Data": null},
        "RootFS": {
            "Type": "layers",
            "Layers": d.image.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }))
}

fn history(store: &Store, name: &str, no_trunc: bool) -> Result<()> {
    let entries = store.history(name)?;
    let mut rows = vec![vec![
        "IMAGE".to_owned(),
        "CREATED".to_owned(),
        "CREATED BY".to_owned(),
        "SIZE".to_owned(),
        "COMMENT".to_owned(),
    ]];
    for e in entries {
        let id = match &e.id {
            Some(d) if no_trunc => d.to_string(),
            Some(d) => d.hex()[..12].to_owned(),
            None => "<missing>".to_owned(),
        };
        let mut by = e.created_by.clone().unwrap_or_default();
        if !no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        rows.push(vec![
            id,
            ago(e.created.as_deref()),
            by,
            human_size(e.size),
            e.comment.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}
