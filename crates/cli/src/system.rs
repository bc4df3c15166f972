//! inspect, login/logout, volume, network, system, info, version, events, container prune.

use std::io::{BufRead, Write};

use anyhow::{bail, Context};
use base64::Engine;
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{query, seg, Body, Client};
use crate::containers::{filters_json, time_arg, Status};
use crate::format::{self, Format};
use crate::template::Template;

#[derive(Args)]
pub struct FormatArg {
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    size: bool,
    /// Return JSON for specified type (container, image, network, volume)
    #[arg(long = "type")]
    typ: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// SERVER
    server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    server: Option<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
}

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create {
        /// Specify volume driver name
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Set metadata for a volume
        #[arg(long)]
        label: Vec<String>,
        /// Set driver specific options
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        /// Specify volume name
        #[arg(long = "name")]
        name_flag: Option<String>,
        name: Option<String>,
    },
    /// List volumes
    #[command(visible_alias = "list")]
    Ls {
        /// Only display volume names
        #[arg(short, long)]
        quiet: bool,
        /// Provide filter values
        #[arg(short, long)]
        filter: Vec<String>,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        /// Format output using a custom template
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm {
        /// Force the removal of one or more volumes
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused local volumes
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short, long)]
        all: bool,
        #[command(flatten)]
        p: PruneArgs,
    },
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create {
        /// Driver to manage the Network
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR format that represents a network segment
        #[arg(long)]
        subnet: Vec<String>,
        /// IPv4 or IPv6 Gateway for the master subnet
        #[arg(long)]
        gateway: Vec<String>,
        /// Allocate container ip from a sub-range
        #[arg(long = "ip-range")]
        ip_range: Vec<String>,
        /// Restrict external access to the network
        #[arg(long)]
        internal: bool,
        /// Enable or disable IPv6 networking
        #[arg(long)]
        ipv6: bool,
        /// Enable manual container attachment
        #[arg(long)]
        attachable: bool,
        /// Set metadata on a network
        #[arg(long)]
        label: Vec<String>,
        /// Set driver specific options
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        name: String,
    },
    /// List networks
    #[command(visible_alias = "list")]
    Ls {
        /// Only display network IDs
        #[arg(short, long)]
        quiet: bool,
        /// Provide filter values (e.g. "driver=bridge")
        #[arg(short, long)]
        filter: Vec<String>,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate the output
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Display detailed information on one or more networks
    Inspect {
        /// Format output using a custom template
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network
    Connect {
        /// IPv4 address
        #[arg(long)]
        ip: Option<String>,
        /// Add network-scoped alias for the container
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from a network
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all unused networks
    Prune(PruneArgs),
}

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Show docker disk usage
    Df {
        /// Show detailed information on space usage
        #[arg(short, long)]
        verbose: bool,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove unused data
    Prune {
        /// Remove all unused images not just dangling ones
        #[arg(short, long)]
        all: bool,
        /// Prune anonymous volumes
        #[arg(long)]
        volumes: bool,
        #[command(flatten)]
        p: PruneArgs,
    },
    /// Display system-wide information
    Info(FormatArg),
    /// Get real time events from the server
    Events(EventsArgs),
}

/// JSON indented like Go's `json.MarshalIndent(v, "", "    ")`.
pub fn pretty(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8_lossy(&out).into_owned()
}

/// Prints objects as a JSON array, or each through `format`.
fn print_objects(objs: &[Value], format: Option<&str>) -> anyhow::Result<()> {
    match format.filter(|f| !f.is_empty()) {
        Some(f) => {
            let f = if f == "json" { "{{json .}}" } else { f };
            let t = Template::parse(f)?;
            let mut out = std::io::stdout().lock();
            for o in objs {
                writeln!(out, "{}", t.render(o)?)?;
            }
        }
        None => println!("{}", pretty(&Value::Array(objs.to_vec()))),
    }
    Ok(())
}

/// Fetches each name with `get`; prints the objects; errors for the missing ones.
async fn inspect_each<'a, F, Fut>(
    names: &'a [String],
    format: Option<&str>,
    get: F,
) -> anyhow::Result<()>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let mut objs = Vec::new();
    let mut errs = Vec::new();
    for n in names {
        match get(n).await {
            Ok(v) => objs.push(v),
            Err(e) => errs.push(e.to_string()),
        }
    }
    print_objects(&objs, format)?;
    if !errs.is_empty() {
        return Err(Status {
            code: 1,
            message: errs.join("\n"),
        }
        .into());
    }
    Ok(())
}

pub async fn inspect(c: &Client, a: InspectArgs) -> anyhow::Result<()> {
    let typ = a.typ.clone().unwrap_or_default();
    if !matches!(
        typ.as_str(),
        "" | "container" | "image" | "volume" | "network"
    ) {
        bail!("\"{typ}\" is not a valid value for --type");
    }
    let size = a.size;
    inspect_each(&a.names, a.format.as_deref(), |n| {
        let typ = typ.clone();
        async move {
            let kinds: Vec<&str> = if typ.is_empty() {
                vec!["container", "image", "network", "volume"]
            } else {
                vec![typ.as_str()]
            };
            for k in &kinds {
                let path = match *k {
                    "container" => format!(
                        "/containers/{}/json{}",
                        seg(n),
                        if size { "?size=1" } else { "" }
                    ),
                    "image" => format!("/images/{}/json", seg(n)),
                    "network" => format!("/networks/{}", seg(n)),
                    _ => format!("/volumes/{}", seg(n)),
                };
                match c.get(&path).await {
                    Ok(v) => return Ok(v),
                    Err(e) if crate::is_not_found(&e) && kinds.len() > 1 => continue,
                    Err(e) if crate::is_not_found(&e) => bail!("Error: No such {typ}: {n}"),
                    Err(e) => return Err(e.into()),
                }
            }
            bail!("Error: No such object: {n}")
        }
    })
    .await
}

// ---- registry credentials ----

fn config_path() -> std::path::PathBuf {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".docker")
        });
    dir.join("config.json")
}

fn read_config() -> Value {
    std::fs::read(config_path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}))
}

fn write_config(v: &Value) -> anyhow::Result<()> {
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, pretty(v))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

const INDEX: &str = "https://index.docker.io/v1/";

/// The registry host an image reference names (Docker Hub's index address for none).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => INDEX.to_owned(),
    }
}

/// `X-Registry-Auth` for an image: the stored credentials of its registry, or `{}`.
pub fn auth_header(image: &str) -> String {
    let reg = registry_of(image);
    let cfg = read_config();
    let auth = cfg["auths"][&reg]["auth"]
        .as_str()
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok());
    let body = match auth
        .as_deref()
        .map(String::from_utf8_lossy)
        .as_deref()
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
    {
        Some((u, p)) => json!({"username": u, "password": p, "serveraddress": reg}),
        None => json!({}),
    };
    base64::engine::general_purpose::URL_SAFE.encode(body.to_string())
}

pub async fn login(c: &Client, a: LoginArgs) -> anyhow::Result<()> {
    let server = a.server.clone().unwrap_or_else(|| INDEX.to_owned());
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let user = match a.username {
        Some(u) => u,
        None => {
            if a.password_stdin {
                bail!("Must provide --username with --password-stdin");
            }
            eprint!("Username: ");
            let mut l = String::new();
            std::io::stdin().lock().read_line(&mut l)?;
            l.trim().to_owned()
        }
    };
    let password = if a.password_stdin {
        let mut p = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut p)?;
        p.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        eprint!("Password: ");
        let mut l = String::new();
        std::io::stdin().lock().read_line(&mut l)?;
        l.trim_end_matches(['\n', '\r']).to_owned()
    };
    if user.is_empty() || password.is_empty() {
        bail!("Error: Username and password are required");
    }
    let v = c
        .json(
            Method::POST,
            "/auth",
            Body::Json(json!({"username": user, "password": password, "serveraddress": server})),
        )
        .await?;
    let mut cfg = read_config();
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    cfg["auths"][&server] = json!({"auth": enc});
    write_config(&cfg)?;
    println!(
        "{}",
        v["Status"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("Login Succeeded")
    );
    Ok(())
}

pub fn logout(a: LogoutArgs) -> anyhow::Result<()> {
    let server = a.server.unwrap_or_else(|| INDEX.to_owned());
    let mut cfg = read_config();
    let had = cfg["auths"]
        .as_object_mut()
        .and_then(|m| m.remove(&server))
        .is_some();
    if !had {
        println!("Not logged in to {server}");
        return Ok(());
    }
    println!("Removing login credentials for {server}");
    write_config(&cfg)
}

/// Asks "Are you sure you want to continue? [y/N]".
pub fn confirm(warning: &str) -> bool {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut l = String::new();
    let _ = std::io::stdin().lock().read_line(&mut l);
    matches!(l.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn filters_q(list: &[String]) -> anyhow::Result<String> {
    Ok(match filters_json(list)? {
        Some(f) => query(&[("filters", f)]),
        None => String::new(),
    })
}

fn reclaimed(v: &Value) -> String {
    format::human_size(v["SpaceReclaimed"].as_i64().unwrap_or(0))
}

const VOLUME_HEADERS: format::Headers = &[
    ("Driver", "DRIVER"),
    ("Name", "VOLUME NAME"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Scope", "SCOPE"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];

fn kv_map(list: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for l in list {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        m.insert(k.to_owned(), json!(v));
    }
    Value::Object(m)
}

fn labels_str(v: &Value) -> String {
    let mut parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    parts.sort();
    parts.join(",")
}

pub async fn volume(c: &Client, cmd: VolumeCmd) -> anyhow::Result<()> {
    match cmd {
        VolumeCmd::Create {
            driver,
            label,
            opt,
            name_flag,
            name,
        } => {
            if let (Some(a), Some(b)) = (&name_flag, &name) {
                if a != b {
                    bail!("conflicting options: cannot specify a volume-name through both --name and as a positional arg");
                }
            }
            let name = name.or(name_flag).unwrap_or_default();
            let v = c
                .json(Method::POST, "/volumes/create", Body::Json(json!({"Name": name, "Driver": driver, "DriverOpts": kv_map(&opt), "Labels": kv_map(&label)})))
                .await?;
            println!("{}", v["Name"].as_str().unwrap_or(&name));
        }
        VolumeCmd::Ls {
            quiet,
            filter,
            format,
        } => {
            let v = c.get(&format!("/volumes{}", filters_q(&filter)?)).await?;
            let mut rows: Vec<Value> = v["Volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    json!({
                        "Driver": x["Driver"], "Name": x["Name"], "Mountpoint": x["Mountpoint"],
                        "Labels": labels_str(&x["Labels"]), "Scope": x["Scope"],
                        "Links": x["UsageData"]["RefCount"].as_i64().map_or("N/A".to_owned(), |n| n.to_string()),
                        "Size": x["UsageData"]["Size"].as_i64().map_or("N/A".to_owned(), format::human_size),
                    })
                })
                .collect();
            rows.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            let fmt = match (format, quiet) {
                (_, true) => "{{.Name}}".to_owned(),
                (Some(f), false) if !f.is_empty() => f,
                _ => "table {{.Driver}}\t{{.Name}}".to_owned(),
            };
            print!("{}", Format::parse(&fmt)?.render(&rows, VOLUME_HEADERS)?);
        }
        VolumeCmd::Inspect { format, names } => {
            inspect_each(&names, format.as_deref(), |n| async move {
                Ok(c.get(&format!("/volumes/{}", seg(n))).await?)
            })
            .await?;
        }
        VolumeCmd::Rm { force, names } => {
            let q = if force { "?force=1" } else { "" };
            delete_each(c, &names, |n| format!("/volumes/{}{q}", seg(n))).await?;
        }
        VolumeCmd::Prune { all, p } => {
            if !p.force
                && !confirm(if all {
                    "WARNING! This will remove all local volumes not used by at least one container."
                } else {
                    "WARNING! This will remove anonymous local volumes not used by at least one container."
                })
            {
                return Ok(());
            }
            let mut f = p.filter.clone();
            if all {
                f.push("all=true".into());
            }
            let v = c
                .json(
                    Method::POST,
                    &format!("/volumes/prune{}", filters_q(&f)?),
                    Body::Empty,
                )
                .await?;
            let del = v["VolumesDeleted"].as_array().cloned().unwrap_or_default();
            if !del.is_empty() {
                println!("Deleted Volumes:");
                for d in del {
                    println!("{}", d.as_str().unwrap_or(""));
                }
                println!();
            }
            println!("Total reclaimed space: {}", reclaimed(&v));
        }
    }
    Ok(())
}

const NETWORK_HEADERS: format::Headers = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

pub async fn network(c: &Client, cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            internal,
            ipv6,
            attachable,
            label,
            opt,
            name,
        } => {
            if gateway.len() > subnet.len() || ip_range.len() > subnet.len() {
                bail!("every ip-range or gateway must have a corresponding subnet");
            }
            let config: Vec<Value> = subnet
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut m = json!({"Subnet": s});
                    if let Some(g) = gateway.get(i) {
                        m["Gateway"] = json!(g);
                    }
                    if let Some(r) = ip_range.get(i) {
                        m["IPRange"] = json!(r);
                    }
                    m
                })
                .collect();
            let body = json!({
                "Name": name, "Driver": driver, "Internal": internal, "EnableIPv6": ipv6,
                "Attachable": attachable, "Labels": kv_map(&label), "Options": kv_map(&opt),
                "IPAM": {"Driver": "default", "Config": config, "Options": {}},
            });
            let v = c
                .json(Method::POST, "/networks/create", Body::Json(body))
                .await?;
            if let Some(w) = v["Warning"].as_str().filter(|w| !w.is_empty()) {
                eprintln!("WARNING: {w}");
            }
            println!("{}", v["Id"].as_str().unwrap_or(""));
        }
        NetworkCmd::Ls {
            quiet,
            filter,
            format,
            no_trunc,
        } => {
            let v = c.get(&format!("/networks{}", filters_q(&filter)?)).await?;
            let mut rows: Vec<Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    let id = n["Id"].as_str().unwrap_or("");
                    json!({
                        "ID": if no_trunc { id.to_owned() } else { format::short_id(id) },
                        "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                        "IPv6": n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                        "Internal": n["Internal"].as_bool().unwrap_or(false).to_string(),
                        "Labels": labels_str(&n["Labels"]),
                        "CreatedAt": n["Created"],
                    })
                })
                .collect();
            rows.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            let fmt = match (format, quiet) {
                (_, true) => "{{.ID}}".to_owned(),
                (Some(f), false) if !f.is_empty() => f,
                _ => "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}".to_owned(),
            };
            print!("{}", Format::parse(&fmt)?.render(&rows, NETWORK_HEADERS)?);
        }
        NetworkCmd::Inspect { format, names } => {
            inspect_each(&names, format.as_deref(), |n| async move {
                Ok(c.get(&format!("/networks/{}", seg(n))).await?)
            })
            .await?;
        }
        NetworkCmd::Rm { names } => {
            delete_each(c, &names, |n| format!("/networks/{}", seg(n))).await?;
        }
        NetworkCmd::Connect {
            ip,
            alias,
            network,
            container,
        } => {
            let mut ep = json!({"Aliases": alias});
            if let Some(ip) = ip {
                ep["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            c.json(
                Method::POST,
                &format!("/networks/{}/connect", seg(&network)),
                Body::Json(json!({"Container": container, "EndpointConfig": ep})),
            )
            .await?;
        }
        NetworkCmd::Disconnect {
            force,
            network,
            container,
        } => {
            c.json(
                Method::POST,
                &format!("/networks/{}/disconnect", seg(&network)),
                Body::Json(json!({"Container": container, "Force": force})),
            )
            .await?;
        }
        NetworkCmd::Prune(p) => {
            if !p.force && !confirm("WARNING! This will remove all custom networks not used by at least one container.") {
                return Ok(());
            }
            let v = c
                .json(
                    Method::POST,
                    &format!("/networks/prune{}", filters_q(&p.filter)?),
                    Body::Empty,
                )
                .await?;
            let del = v["NetworksDeleted"].as_array().cloned().unwrap_or_default();
            if !del.is_empty() {
                println!("Deleted Networks:");
                for d in del {
                    println!("{}", d.as_str().unwrap_or(""));
                }
            }
        }
    }
    Ok(())
}

pub async fn container_prune(c: &Client, p: PruneArgs) -> anyhow::Result<()> {
    if !p.force && !confirm("WARNING! This will remove all stopped containers.") {
        return Ok(());
    }
    let v = c
        .json(
            Method::POST,
            &format!("/containers/prune{}", filters_q(&p.filter)?),
            Body::Empty,
        )
        .await?;
    let del = v["ContainersDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !del.is_empty() {
        println!("Deleted Containers:");
        for d in del {
            println!("{}", d.as_str().unwrap_or(""));
        }
        println!();
    }
    println!("Total reclaimed space: {}", reclaimed(&v));
    Ok(())
}

pub async fn system(c: &Client, cmd: SystemCmd) -> anyhow::Result<()> {
    match cmd {
        SystemCmd::Df { verbose, format } => df(c, verbose, format).await,
        SystemCmd::Prune { all, volumes, p } => {
            if !p.force {
                let mut w = String::from("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n");
                if volumes {
                    w.push_str("  - all anonymous volumes not used by at least one container\n");
                }
                w.push_str(if all {
                    "  - all images without at least one container associated to them\n"
                } else {
                    "  - all dangling images\n"
                });
                w.push_str("  - unused build cache\n");
                if !confirm(&w) {
                    return Ok(());
                }
            }
            let fq = filters_q(&p.filter)?;
            let mut total = 0i64;
            let v = c
                .json(Method::POST, &format!("/containers/prune{fq}"), Body::Empty)
                .await?;
            total += v["SpaceReclaimed"].as_i64().unwrap_or(0);
            let cs = v["ContainersDeleted"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !cs.is_empty() {
                println!("Deleted Containers:");
                for d in cs {
                    println!("{}", d.as_str().unwrap_or(""));
                }
                println!();
            }
            // A daemon without networks (yet) answers 404: nothing to prune there.
            if let Ok(v) = c
                .json(Method::POST, &format!("/networks/prune{fq}"), Body::Empty)
                .await
            {
                let ns = v["NetworksDeleted"].as_array().cloned().unwrap_or_default();
                if !ns.is_empty() {
                    println!("Deleted Networks:");
                    for d in ns {
                        println!("{}", d.as_str().unwrap_or(""));
                    }
                    println!();
                }
            }
            if volumes {
                let v = c
                    .json(Method::POST, &format!("/volumes/prune{fq}"), Body::Empty)
                    .await?;
                total += v["SpaceReclaimed"].as_i64().unwrap_or(0);
                let vs = v["VolumesDeleted"].as_array().cloned().unwrap_or_default();
                if !vs.is_empty() {
                    println!("Deleted Volumes:");
                    for d in vs {
                        println!("{}", d.as_str().unwrap_or(""));
                    }
                    println!();
                }
            }
            let mut f = p.filter.clone();
            f.push(format!("dangling={}", !all));
            let v = c
                .json(
                    Method::POST,
                    &format!("/images/prune{}", filters_q(&f)?),
                    Body::Empty,
                )
                .await?;
            total += v["SpaceReclaimed"].as_i64().unwrap_or(0);
            let is = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
            if !is.is_empty() {
                println!("Deleted Images:");
                for i in is {
                    if let Some(u) = i["Untagged"].as_str() {
                        println!("untagged: {u}");
                    }
                    if let Some(d) = i["Deleted"].as_str() {
                        println!("deleted: {d}");
                    }
                }
                println!();
            }
            println!("Total reclaimed space: {}", format::human_size(total));
            Ok(())
        }
        SystemCmd::Info(a) => info(c, a).await,
        SystemCmd::Events(a) => events(c, a).await,
    }
}

async fn df(c: &Client, verbose: bool, format: Option<String>) -> anyhow::Result<()> {
    let v = c.get("/system/df").await?;
    let images = v["Images"].as_array().cloned().unwrap_or_default();
    let containers = v["Containers"].as_array().cloned().unwrap_or_default();
    let volumes = v["Volumes"].as_array().cloned().unwrap_or_default();
    let layers = v["LayersSize"].as_i64().unwrap_or(0);
    let active_images = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let used: i64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .filter(|i| i["VirtualSize"].as_i64() != Some(-1) && i["SharedSize"].as_i64() != Some(-1))
        .map(|i| i["VirtualSize"].as_i64().unwrap_or(0) - i["SharedSize"].as_i64().unwrap_or(0))
        .sum();
    // Docker's CLI: what the layers take minus what images in use need, "in use" counted
    // from VirtualSize (which API 1.44+ no longer sends: then every layer is reclaimable).
    let reclaim_images = (layers - used).max(0);
    let csize: i64 = containers
        .iter()
        .map(|c| c["SizeRw"].as_i64().unwrap_or(0))
        .sum();
    let active_c = containers
        .iter()
        .filter(|c| c["State"].as_str() == Some("running"))
        .count();
    let creclaim: i64 = containers
        .iter()
        .filter(|c| c["State"].as_str() != Some("running"))
        .map(|c| c["SizeRw"].as_i64().unwrap_or(0))
        .sum();
    let vsize: i64 = volumes
        .iter()
        .map(|v| v["UsageData"]["Size"].as_i64().unwrap_or(0).max(0))
        .sum();
    let active_v = volumes
        .iter()
        .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let vreclaim: i64 = volumes
        .iter()
        .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) <= 0)
        .map(|v| v["UsageData"]["Size"].as_i64().unwrap_or(0).max(0))
        .sum();
    let pct = |r: i64, t: i64| {
        if t > 0 {
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let p = (r as f64 * 100.0 / t as f64) as i64;
            format!("{} ({p}%)", format::human_size(r))
        } else {
            format::human_size(r)
        }
    };
    let rows = vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(), "Active": active_images.to_string(), "Size": format::human_size(layers), "Reclaimable": pct(reclaim_images, layers)}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(), "Active": active_c.to_string(), "Size": format::human_size(csize), "Reclaimable": pct(creclaim, csize)}),
        json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(), "Active": active_v.to_string(), "Size": format::human_size(vsize), "Reclaimable": pct(vreclaim, vsize)}),
        json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
    ];
    let fmt = format.filter(|f| !f.is_empty()).unwrap_or_else(|| {
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}".into()
    });
    print!(
        "{}",
        Format::parse(&fmt)?.render(
            &rows,
            &[
                ("Type", "TYPE"),
                ("TotalCount", "TOTAL"),
                ("Active", "ACTIVE"),
                ("Size", "SIZE"),
                ("Reclaimable", "RECLAIMABLE")
            ]
        )?
    );
    if verbose {
        println!("\nImages space usage:\n");
        let mut text = String::from(
            "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS\n",
        );
        for i in &images {
            for r in crate::images::image_rows(i, true, false) {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    r["Repository"].as_str().unwrap_or(""),
                    r["Tag"].as_str().unwrap_or(""),
                    r["ID"].as_str().unwrap_or(""),
                    r["CreatedSince"].as_str().unwrap_or(""),
                    r["Size"].as_str().unwrap_or(""),
                    r["SharedSize"].as_str().unwrap_or(""),
                    r["UniqueSize"].as_str().unwrap_or(""),
                    r["Containers"].as_str().unwrap_or("")
                ));
            }
        }
        print!("{}", format::tabwrite(&text));
        println!("\nContainers space usage:\n");
        let mut text = String::from(
            "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES\n",
        );
        for ct in &containers {
            let r = crate::containers::ps_row(ct, true);
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                r["ID"].as_str().unwrap_or(""),
                r["Image"].as_str().unwrap_or(""),
                r["Command"].as_str().unwrap_or(""),
                r["LocalVolumes"].as_str().unwrap_or(""),
                format::human_size(ct["SizeRw"].as_i64().unwrap_or(0)),
                r["RunningFor"].as_str().unwrap_or(""),
                r["Status"].as_str().unwrap_or(""),
                r["Names"].as_str().unwrap_or("")
            ));
        }
        print!("{}", format::tabwrite(&text));
        println!("\nLocal Volumes space usage:\n");
        let mut text = String::from("VOLUME NAME\tLINKS\tSIZE\n");
        for v in &volumes {
            text.push_str(&format!(
                "{}\t{}\t{}\n",
                v["Name"].as_str().unwrap_or(""),
                v["UsageData"]["RefCount"].as_i64().unwrap_or(0),
                format::human_size(v["UsageData"]["Size"].as_i64().unwrap_or(0).max(0))
            ));
        }
        print!("{}", format::tabwrite(&text));
    }
    Ok(())
}

pub async fn info(c: &Client, a: FormatArg) -> anyhow::Result<()> {
    let v = c.get("/info").await?;
    if let Some(f) = a.format.filter(|f| !f.is_empty()) {
        let f = if f == "json" {
            "{{json .}}".to_owned()
        } else {
            f
        };
        println!("{}", Template::parse(&f)?.render(&v)?);
        return Ok(());
    }
    let s = |k: &str| go(&v[k]);
    let mut o = String::new();
    o.push_str(&format!(
        "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n\nServer:\n",
        env!("CARGO_PKG_VERSION")
    ));
    o.push_str(&format!(
        " Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n",
        s("Containers"),
        s("ContainersRunning"),
        s("ContainersPaused"),
        s("ContainersStopped")
    ));
    o.push_str(&format!(
        " Images: {}\n Server Version: {}\n Storage Driver: {}\n",
        s("Images"),
        s("ServerVersion"),
        s("Driver")
    ));
    for pair in v["DriverStatus"].as_array().into_iter().flatten() {
        o.push_str(&format!("  {}: {}\n", go(&pair[0]), go(&pair[1])));
    }
    o.push_str(&format!(
        " Logging Driver: {}\n Cgroup Driver: {}\n Cgroup Version: {}\n",
        s("LoggingDriver"),
        s("CgroupDriver"),
        s("CgroupVersion")
    ));
    o.push_str(" Plugins:\n");
    for (k, name) in [("Volume", "Volume"), ("Network", "Network"), ("Log", "Log")] {
        let list: Vec<&str> = v["Plugins"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        o.push_str(&format!("  {name}: {}\n", list.join(" ")));
    }
    o.push_str(&format!(
        " Swarm: {}\n",
        v["Swarm"]["LocalNodeState"].as_str().unwrap_or("inactive")
    ));
    let runtimes: Vec<String> = v["Runtimes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    o.push_str(&format!(
        " Runtimes: {}\n Default Runtime: {}\n",
        runtimes.join(" "),
        s("DefaultRuntime")
    ));
    o.push_str(&format!(
        " Init Binary: {}\n containerd version: {}\n runc version: {}\n init version: {}\n",
        s("InitBinary"),
        go(&v["ContainerdCommit"]["ID"]),
        go(&v["RuncCommit"]["ID"]),
        go(&v["InitCommit"]["ID"])
    ));
    let sec: Vec<String> = v["SecurityOptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if !sec.is_empty() {
        o.push_str(" Security Options:\n");
        // "name=seccomp,profile=default" -> "  seccomp" and "   Profile: default", as the
        // docker CLI decodes them (an entry without "name=" is a bare name).
        for x in sec {
            let mut name = x.as_str();
            let mut profile = None;
            if x.contains('=') {
                name = "";
                for kv in x.split(',') {
                    match kv.split_once('=') {
                        Some(("name", v)) => name = v,
                        Some(("profile", v)) => profile = Some(v),
                        _ => {}
                    }
                }
            }
            o.push_str(&format!("  {name}\n"));
            if let Some(p) = profile {
                o.push_str(&format!("   Profile: {p}\n"));
            }
        }
    }
    o.push_str(&format!(
        " Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}\n CPUs: {}\n",
        s("KernelVersion"),
        s("OperatingSystem"),
        s("OSType"),
        s("Architecture"),
        s("NCPU")
    ));
    o.push_str(&format!(
        " Total Memory: {}\n Name: {}\n ID: {}\n Docker Root Dir: {}\n Debug Mode: {}\n",
        format::bytes_size(v["MemTotal"].as_f64().unwrap_or(0.0)),
        s("Name"),
        s("ID"),
        s("DockerRootDir"),
        v["Debug"].as_bool().unwrap_or(false)
    ));
    o.push_str(&format!(
        " Experimental: {}\n",
        v["ExperimentalBuild"].as_bool().unwrap_or(false)
    ));
    let insecure: Vec<String> = v["RegistryConfig"]["InsecureRegistryCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(go)
        .collect();
    if !insecure.is_empty() {
        o.push_str(" Insecure Registries:\n");
        for r in insecure {
            o.push_str(&format!("  {r}\n"));
        }
    }
    o.push_str(&format!(
        " Live Restore Enabled: {}\n\n",
        v["LiveRestoreEnabled"].as_bool().unwrap_or(false)
    ));
    print!("{o}");
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("{}", go(w));
    }
    Ok(())
}

fn go(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => crate::template::go_string(other),
    }
}

pub async fn version(c: &Client, a: FormatArg) -> anyhow::Result<()> {
    let server = c.get("/version").await;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let client = json!({
        "Platform": {"Name": "Skiff"},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": c.version(),
        "APIVersion": c.version(),
        "DefaultAPIVersion": crate::client::MAX_API,
        "GitCommit": "",
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": arch,
        "BuildTime": "",
        "Context": "default",
    });
    let mut sv = server.as_ref().ok().cloned().unwrap_or(Value::Null);
    if sv.is_object() {
        sv["APIVersion"] = sv["ApiVersion"].clone();
        sv["MinAPIVersion"] = sv["MinAPIVersion"].clone();
    }
    let all = json!({"Client": client, "Server": sv});
    if let Some(f) = a.format.filter(|f| !f.is_empty()) {
        let f = if f == "json" {
            "{{json .}}".to_owned()
        } else {
            f
        };
        println!("{}", Template::parse(&f)?.render(&all)?);
    } else {
        println!("Client:\n Version:           {}\n API version:       {}\n Go version:        rust\n OS/Arch:           linux/{arch}\n Context:           default", env!("CARGO_PKG_VERSION"), c.version());
        if sv.is_object() {
            println!("\nServer: {}\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  Go version:       {}\n  Git commit:       {}\n  Built:            {}\n  OS/Arch:          {}/{}\n  Experimental:     {}",
                sv["Platform"]["Name"].as_str().unwrap_or(""), go(&sv["Version"]), go(&sv["ApiVersion"]), go(&sv["MinAPIVersion"]), go(&sv["GoVersion"]), go(&sv["GitCommit"]), go(&sv["BuildTime"]), go(&sv["Os"]), go(&sv["Arch"]), sv["Experimental"].as_bool().unwrap_or(false));
        }
    }
    server?;
    Ok(())
}

/// Docker's default event line: `TIME TYPE ACTION ID (k=v, ...)`.
pub fn event_line(e: &Value) -> String {
    let nanos = e["timeNano"]
        .as_i64()
        .unwrap_or_else(|| e["time"].as_i64().unwrap_or(0) * 1_000_000_000);
    let t = chrono::DateTime::from_timestamp(
        nanos.div_euclid(1_000_000_000),
        u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
    )
    .unwrap_or_default();
    // Go's RFC3339Nano with fixed nanoseconds: `Z` for UTC, else the offset.
    let local = t.with_timezone(&chrono::Local);
    let ts = if local.offset().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    } else {
        local.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string()
    };
    let mut attrs: Vec<String> = e["Actor"]["Attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    attrs.sort();
    let mut line = format!(
        "{ts} {} {} {}",
        go(&e["Type"]),
        go(&e["Action"]),
        go(&e["Actor"]["ID"])
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

pub async fn events(c: &Client, a: EventsArgs) -> anyhow::Result<()> {
    let mut q = Vec::new();
    if let Some(s) = &a.since {
        q.push(("since", time_arg(s)));
    }
    if let Some(s) = &a.until {
        q.push(("until", time_arg(s)));
    }
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let fmt = match a.format.as_deref() {
        Some("json") => Some(Template::parse("{{json .}}")?),
        Some(f) if !f.is_empty() => Some(Template::parse(f)?),
        _ => None,
    };
    let resp = c
        .send(
            Method::GET,
            &format!("/events{}", query(&q)),
            Body::Empty,
            &[],
        )
        .await?;
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            buf.extend_from_slice(&d);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let e: Value = serde_json::from_slice(&line)?;
                let text = match &fmt {
                    Some(t) => t.render(&e)?,
                    None => event_line(&e),
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}")?;
                out.flush()?;
            }
        }
    }
    Ok(())
}

/// `volume rm` / `network rm`: DELETE each name, print the ones removed, report the others
/// and exit 1 if any failed (as the docker CLI does).
async fn delete_each(
    c: &Client,
    names: &[String],
    path: impl Fn(&str) -> String,
) -> anyhow::Result<()> {
    let mut failed = false;
    for n in names {
        match c.send(Method::DELETE, &path(n), Body::Empty, &[]).await {
            Ok(r) => {
                r.into_body().collect().await?;
                println!("{n}");
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(Status {
            code: 1,
            message: String::new(),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_of_references() {
        assert_eq!(registry_of("busybox"), INDEX);
        assert_eq!(registry_of("library/busybox"), INDEX);
        assert_eq!(registry_of("localhost:5000/x"), "localhost:5000");
        assert_eq!(registry_of("ghcr.io/a/b"), "ghcr.io");
    }

    #[test]
    fn pretty_json_uses_four_spaces() {
        assert_eq!(
            pretty(&json!([{"a": 1}])),
            "[\n    {\n        \"a\": 1\n    }\n]"
        );
    }

    #[test]
    fn event_lines() {
        let e = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "x", "image": "i"}}, "timeNano": 0});
        let l = event_line(&e);
        assert!(l.ends_with(" container start abc (image=i, name=x)"), "{l}");
    }
}
