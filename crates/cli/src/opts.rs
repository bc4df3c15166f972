//! `run`/`create` flags and their mapping into the Engine API's create body (Config,
//! HostConfig, NetworkingConfig), the way the Docker CLI maps them.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::{json, Map, Value};

/// A flag value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid argument {value:?} for \"{}\" flag: {why}",
    flag_display(flag)
)]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub why: String,
}

/// A flag as pflag names it in errors: `-p, --publish`, `--mount`.
fn flag_display(flag: &str) -> String {
    let short = match flag {
        "publish" => Some('p'),
        "volume" => Some('v'),
        "env" => Some('e'),
        "label" => Some('l'),
        "memory" => Some('m'),
        "workdir" => Some('w'),
        "user" => Some('u'),
        "hostname" => Some('h'),
        "cpu-shares" => Some('c'),
        "attach" => Some('a'),
        _ => None,
    };
    match short {
        Some(c) => format!("-{c}, --{flag}"),
        None => format!("--{flag}"),
    }
}

fn bad(flag: &'static str, value: &str, why: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        value: value.to_owned(),
        why: why.into(),
    }
}

type Result<T> = std::result::Result<T, FlagError>;

/// The flags `docker run` and `docker create` share.
#[derive(Debug, Args, Default, Clone)]
pub struct CreateOpts {
    /// Print usage (`-h` is `--hostname` here, as in docker)
    #[arg(long, action = clap::ArgAction::HelpLong)]
    pub help: Option<bool>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Bind mount a volume
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Connect a container to a network
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    pub label_file: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Add a host device to the container
    #[arg(long)]
    pub device: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short, long)]
    pub attach: Vec<String>,
    /// Suppress the pull output
    #[arg(short, long)]
    pub quiet: bool,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub args: Vec<String>,
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    #[allow(clippy::cast_possible_truncation)]
    Some(total as i64)
}

/// go-units `RAMInBytes`: `512m`, `1g`, `1024` (binary multiples).
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        'p' => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    if n < 0.0 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    Some((n * mult as f64) as i64)
}

/// `-e KEY=V` as the Docker CLI takes it: `KEY` alone takes the value from this environment
/// (or stays bare when unset).
pub fn env_value(e: &str) -> String {
    if e.contains('=') {
        return e.to_owned();
    }
    match std::env::var(e) {
        Ok(v) => format!("{e}={v}"),
        Err(_) => e.to_owned(),
    }
}

/// The lines of an `--env-file` / `--label-file`.
pub fn read_kv_file(path: &str, flag: &'static str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(flag, path, e.to_string()))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(env_value)
        .collect())
}

fn kv(list: &[String], flag: &'static str) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for item in list {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        if k.is_empty() {
            return Err(bad(flag, item, "empty key"));
        }
        m.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(m)
}

/// `80`, `80/udp`, `8000-8002` -> ("80", "tcp") pairs.
fn port_range(spec: &str, flag: &'static str) -> Result<Vec<String>> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad(flag, spec, format!("invalid proto: {proto}")));
    }
    let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
    let (a, b): (u16, u16) = match (a.parse(), b.parse()) {
        (Ok(a), Ok(b)) if a <= b => (a, b),
        _ => return Err(bad(flag, spec, format!("invalid containerPort: {ports}"))),
    };
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

/// `-p [ip:][hostPort:]containerPort[/proto]` -> (container port, host ip, host port) items.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, String, String)>> {
    let (addr_ports, proto) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (spec, None),
    };
    let (ip, host, cport) = if let Some(rest) = addr_ports.strip_prefix('[') {
        // [v6]:host:container
        let (ip, rest) = rest
            .split_once("]:")
            .ok_or_else(|| bad("publish", spec, "invalid IPv6 address"))?;
        let (h, c) = rest.split_once(':').unwrap_or(("", rest));
        (ip.to_owned(), h.to_owned(), c.to_owned())
    } else {
        let parts: Vec<&str> = addr_ports.split(':').collect();
        match parts.as_slice() {
            [c] => (String::new(), String::new(), (*c).to_owned()),
            [h, c] => (String::new(), (*h).to_owned(), (*c).to_owned()),
            [ip, h, c] => ((*ip).to_owned(), (*h).to_owned(), (*c).to_owned()),
            _ => return Err(bad("publish", spec, "too many colons")),
        }
    };
    if cport.is_empty() {
        return Err(bad("publish", spec, "no port specified"));
    }
    let cspec = match proto {
        Some(p) => format!("{cport}/{p}"),
        None => cport,
    };
    let cports = port_range(&cspec, "publish")?;
    let hports: Vec<String> = if host.is_empty() {
        vec![String::new(); cports.len()]
    } else if let Some((a, b)) = host.split_once('-') {
        let (a, b): (u16, u16) = match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => return Err(bad("publish", spec, format!("invalid hostPort: {host}"))),
        };
        let hs: Vec<String> = (a..=b).map(|p| p.to_string()).collect();
        if hs.len() != cports.len() && cports.len() != 1 {
            return Err(bad("publish", spec, "port ranges don't match in size"));
        }
        if cports.len() == 1 {
            // A host range for one container port: any of them.
            vec![host.clone()]
        } else {
            hs
        }
    } else {
        if host.parse::<u16>().is_err() {
            return Err(bad("publish", spec, format!("invalid hostPort: {host}")));
        }
        if cports.len() != 1 {
            return Err(bad("publish", spec, "port ranges don't match in size"));
        }
        vec![host]
    };
    Ok(cports
        .into_iter()
        .zip(hports)
        .map(|(c, h)| (c, ip.clone(), h))
        .collect())
}

/// `--mount type=bind,source=/a,target=/b,readonly` -> a HostConfig.Mounts item.
pub fn parse_mount(spec: &str) -> Result<Value> {
    let mut m = Map::new();
    let mut typ = "volume".to_owned();
    let mut bind = Map::new();
    let mut vol = Map::new();
    let mut vol_labels = Map::new();
    let mut tmpfs = Map::new();
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let truth = |v: Option<&str>| -> Result<bool> {
            match v.map(str::to_ascii_lowercase).as_deref() {
                None | Some("1" | "true") => Ok(true),
                Some("0" | "false") => Ok(false),
                Some(_) => Err(bad("mount", spec, format!("invalid value for {k}"))),
            }
        };
        let need = |v: Option<&str>| -> Result<String> {
            v.map(str::to_owned).ok_or_else(|| {
                bad(
                    "mount",
                    spec,
                    format!("invalid field '{field}' must be a key=value pair"),
                )
            })
        };
        match k.as_str() {
            "type" => typ = need(v)?,
            "source" | "src" => {
                m.insert("Source".into(), json!(need(v)?));
            }
            "target" | "dst" | "destination" => {
                m.insert("Target".into(), json!(need(v)?));
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(truth(v)?));
            }
            "consistency" => {
                m.insert("Consistency".into(), json!(need(v)?));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(need(v)?));
            }
            "bind-recursive" => {}
            "volume-nocopy" => {
                vol.insert("NoCopy".into(), json!(truth(v)?));
            }
            "volume-driver" => {
                vol.insert("DriverConfig".into(), json!({"Name": need(v)?}));
            }
            "volume-label" => {
                let l = need(v)?;
                let (a, b) = l.split_once('=').unwrap_or((&l, ""));
                vol_labels.insert(a.to_owned(), json!(b));
            }
            "volume-subpath" => {
                vol.insert("Subpath".into(), json!(need(v)?));
            }
            "tmpfs-size" => {
                let s = need(v)?;
                let n = ram_in_bytes(&s)
                    .ok_or_else(|| bad("mount", spec, format!("invalid tmpfs-size {s}")))?;
                tmpfs.insert("SizeBytes".into(), json!(n));
            }
            "tmpfs-mode" => {
                let s = need(v)?;
                let n = u32::from_str_radix(&s, 8)
                    .map_err(|_| bad("mount", spec, format!("invalid tmpfs-mode {s}")))?;
                tmpfs.insert("Mode".into(), json!(n));
            }
            _ => {
                return Err(bad(
                    "mount",
                    spec,
                    format!("unexpected key '{k}' in '{field}'"),
                ))
            }
        }
    }
    if !matches!(
        typ.as_str(),
        "bind" | "volume" | "tmpfs" | "npipe" | "cluster" | "image"
    ) {
        return Err(bad("mount", spec, format!("invalid mount type {typ:?}")));
    }
    if !m.contains_key("Target") {
        return Err(bad("mount", spec, "target is required"));
    }
    if !vol_labels.is_empty() {
        vol.insert("Labels".into(), Value::Object(vol_labels));
    }
    m.insert("Type".into(), json!(typ));
    if !bind.is_empty() {
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    if !vol.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(vol));
    }
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    Ok(Value::Object(m))
}

/// `--ulimit nofile=1024:2048`.
fn parse_ulimit(spec: &str) -> Result<Value> {
    let (name, vals) = spec
        .split_once('=')
        .ok_or_else(|| bad("ulimit", spec, "invalid ulimit argument"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let (soft, hard): (i64, i64) = match (soft.parse(), hard.parse()) {
        (Ok(s), Ok(h)) => (s, h),
        _ => return Err(bad("ulimit", spec, "invalid ulimit value")),
    };
    if soft > hard {
        return Err(bad(
            "ulimit",
            spec,
            format!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"),
        ));
    }
    Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
}

/// `--device /dev/a[:/dev/b][:rwm]`.
fn parse_device(spec: &str) -> Result<Value> {
    let parts: Vec<&str> = spec.split(':').collect();
    let is_mode = |s: &str| !s.is_empty() && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (src, dst, perms) = match parts.as_slice() {
        [s] => (*s, *s, "rwm"),
        [s, m] if is_mode(m) => (*s, *s, *m),
        [s, d] => (*s, *d, "rwm"),
        [s, d, m] if is_mode(m) => (*s, *d, *m),
        _ => return Err(bad("device", spec, "bad format")),
    };
    Ok(json!({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}))
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
fn parse_restart(spec: &str) -> Result<Value> {
    let (name, n) = spec.split_once(':').unwrap_or((spec, ""));
    let name = if name.is_empty() { "no" } else { name };
    if !matches!(name, "no" | "always" | "unless-stopped" | "on-failure") {
        return Err(bad("restart", spec, format!("invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'")));
    }
    let count: i64 = if n.is_empty() {
        0
    } else {
        if name != "on-failure" {
            return Err(bad(
                "restart",
                spec,
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            ));
        }
        n.parse()
            .map_err(|_| bad("restart", spec, "maximum retry count must be an integer"))?
    };
    Ok(json!({"Name": name, "MaximumRetryCount": count}))
}

/// Detach keys (`ctrl-p,ctrl-q`) as bytes.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for k in spec.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => {
                    return Err(bad(
                        "detach-keys",
                        spec,
                        format!("Unknown character: '{k}'"),
                    ))
                }
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad(
                "detach-keys",
                spec,
                format!("Unknown character: '{k}'"),
            ));
        }
    }
    Ok(out)
}

fn ns(flag: &'static str, v: &Option<String>) -> Result<Option<i64>> {
    v.as_deref()
        .map(|s| parse_duration(s).ok_or_else(|| bad(flag, s, "time: invalid duration")))
        .transpose()
}

fn bytes_flag(flag: &'static str, v: &Option<String>) -> Result<Option<i64>> {
    v.as_deref()
        .map(|s| ram_in_bytes(s).ok_or_else(|| bad(flag, s, "invalid size")))
        .transpose()
}

/// The streams `run` attaches (stdin, stdout, stderr): `-a` names them, else stdout and
/// stderr (and stdin with `-i`) unless detached.
pub fn attach_streams(o: &CreateOpts, detach: bool) -> Result<(bool, bool, bool)> {
    if o.attach.is_empty() {
        return Ok((o.interactive && !detach, !detach, !detach));
    }
    if detach {
        return Err(bad(
            "attach",
            &o.attach.join(","),
            "Conflicting options: -a and -d",
        ));
    }
    let (mut i, mut out, mut err) = (false, false, false);
    for a in &o.attach {
        match a.to_ascii_lowercase().as_str() {
            "stdin" => i = true,
            "stdout" => out = true,
            "stderr" => err = true,
            _ => {
                return Err(bad(
                    "attach",
                    a,
                    "valid streams are STDIN, STDOUT and STDERR",
                ))
            }
        }
    }
    Ok((i, out, err))
}

/// What `create` sends: the body, the name and platform query values, the image.
#[derive(Debug)]
pub struct CreateRequest {
    pub body: Value,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub image: String,
}

/// Maps the flags into the create body. `detach` is `run -d` (no stdout/stderr attach).
pub fn create_request(o: &CreateOpts, detach: bool) -> Result<CreateRequest> {
    let image = o.args[0].clone();
    let cmd: Vec<String> = o.args[1..].to_vec();
    let mut env: Vec<String> = Vec::new();
    for f in &o.env_file {
        env.extend(read_kv_file(f, "env-file")?);
    }
    env.extend(o.env.iter().map(|e| env_value(e)));
    let mut labels_list = Vec::new();
    for f in &o.label_file {
        labels_list.extend(read_kv_file(f, "label-file")?);
    }
    labels_list.extend(o.label.iter().cloned());
    let labels = kv(&labels_list, "label")?;

    let mut exposed = Map::new();
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in &o.expose {
        for p in port_range(e, "expose")? {
            exposed.insert(p, json!({}));
        }
    }
    for p in &o.publish {
        for (c, ip, h) in parse_publish(p)? {
            exposed.insert(c.clone(), json!({}));
            bindings
                .entry(c)
                .or_default()
                .push(json!({"HostIp": ip, "HostPort": h}));
        }
    }

    let mut binds = Vec::new();
    let mut volumes = Map::new();
    for v in &o.volume {
        if v.is_empty() {
            return Err(bad("volume", v, "empty volume spec"));
        }
        if v.contains(':') {
            binds.push(v.clone());
        } else {
            volumes.insert(v.clone(), json!({}));
        }
    }
    let mounts = o
        .mount
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>>>()?;
    let mut tmpfs = Map::new();
    for t in &o.tmpfs {
        let (p, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(p.to_owned(), json!(opts));
    }

    let restart = parse_restart(&o.restart)?;
    if o.rm && restart["Name"] != "no" {
        return Err(bad(
            "restart",
            &o.restart,
            "Conflicting options: --restart and --rm",
        ));
    }
    if let Some(k) = &o.detach_keys {
        parse_detach_keys(k)?;
    }
    if !matches!(o.pull.as_str(), "always" | "missing" | "never") {
        return Err(bad(
            "pull",
            &o.pull,
            "invalid pull option: must be one of \"always\", \"missing\" or \"never\"",
        ));
    }
    let mut log_opts = Map::new();
    for l in &o.log_opt {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| bad("log-opt", l, "invalid key value pair format"))?;
        log_opts.insert(k.to_owned(), json!(v));
    }
    let mut sysctls = Map::new();
    for s in &o.sysctl {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| bad("sysctl", s, "sysctl must be of the form key=value"))?;
        sysctls.insert(k.to_owned(), json!(v));
    }
    let ulimits = o
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?;
    let devices = o
        .device
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<Vec<_>>>()?;
    let nano_cpus = o
        .cpus
        .as_deref()
        .map(|c| {
            c.parse::<f64>()
                .ok()
                .filter(|f| *f >= 0.0)
                .map(|f| {
                    #[allow(clippy::cast_possible_truncation)]
                    let n = (f * 1e9) as i64;
                    n
                })
                .ok_or_else(|| bad("cpus", c, "failed to parse as a rational number"))
        })
        .transpose()?;
    let memory_swap = match o.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        Some(s) => Some(ram_in_bytes(s).ok_or_else(|| bad("memory-swap", s, "invalid size"))?),
        None => None,
    };

    let (attach_in, attach_stdout, attach_stderr) = attach_streams(o, detach)?;

    let mut config = Map::new();
    config.insert("Image".into(), json!(image));
    config.insert("Tty".into(), json!(o.tty));
    config.insert("OpenStdin".into(), json!(o.interactive));
    config.insert("StdinOnce".into(), json!(o.interactive && !detach));
    config.insert("AttachStdin".into(), json!(attach_in));
    config.insert("AttachStdout".into(), json!(attach_stdout));
    config.insert("AttachStderr".into(), json!(attach_stderr));
    config.insert("Env".into(), json!(env));
    config.insert(
        "Cmd".into(),
        if cmd.is_empty() {
            Value::Null
        } else {
            json!(cmd)
        },
    );
    config.insert("Labels".into(), Value::Object(labels));
    config.insert("Volumes".into(), Value::Object(volumes));
    if !exposed.is_empty() {
        config.insert("ExposedPorts".into(), Value::Object(exposed));
    }
    if let Some(e) = &o.entrypoint {
        config.insert("Entrypoint".into(), json!([e]));
    }
    if let Some(h) = &o.hostname {
        config.insert("Hostname".into(), json!(h));
    }
    if let Some(w) = &o.workdir {
        config.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &o.user {
        config.insert("User".into(), json!(u));
    }
    if let Some(m) = &o.mac_address {
        config.insert("MacAddress".into(), json!(m));
    }
    if let Some(s) = &o.stop_signal {
        config.insert("StopSignal".into(), json!(s));
    }
    if let Some(t) = o.stop_timeout {
        config.insert("StopTimeout".into(), json!(t));
    }
    let health_given = o.health_cmd.is_some()
        || o.health_interval.is_some()
        || o.health_timeout.is_some()
        || o.health_retries.is_some()
        || o.health_start_period.is_some();
    if o.no_healthcheck {
        if health_given {
            return Err(bad(
                "no-healthcheck",
                "true",
                "--no-healthcheck conflicts with --health-* options",
            ));
        }
        config.insert("Healthcheck".into(), json!({"Test": ["NONE"]}));
    } else if health_given {
        let mut h = Map::new();
        if let Some(c) = &o.health_cmd {
            h.insert("Test".into(), json!(["CMD-SHELL", c]));
        }
        for (k, flag, v) in [
            ("Interval", "health-interval", &o.health_interval),
            ("Timeout", "health-timeout", &o.health_timeout),
            ("StartPeriod", "health-start-period", &o.health_start_period),
        ] {
            if let Some(n) = ns(flag, v)? {
                if n < 0 {
                    return Err(bad(
                        flag,
                        v.as_deref().unwrap_or(""),
                        "must not be negative",
                    ));
                }
                h.insert(k.into(), json!(n));
            }
        }
        if let Some(r) = o.health_retries {
            h.insert("Retries".into(), json!(r));
        }
        config.insert("Healthcheck".into(), Value::Object(h));
    }

    let network = o.network.clone().unwrap_or_else(|| "default".into());
    let mut host = Map::new();
    host.insert(
        "Binds".into(),
        if binds.is_empty() {
            Value::Null
        } else {
            json!(binds)
        },
    );
    host.insert("NetworkMode".into(), json!(network));
    host.insert("PortBindings".into(), json!(bindings));
    host.insert("PublishAllPorts".into(), json!(o.publish_all));
    host.insert("RestartPolicy".into(), restart);
    host.insert("AutoRemove".into(), json!(o.rm));
    host.insert(
        "LogConfig".into(),
        json!({"Type": o.log_driver.clone().unwrap_or_default(), "Config": log_opts}),
    );
    host.insert("Privileged".into(), json!(o.privileged));
    host.insert("ReadonlyRootfs".into(), json!(o.read_only));
    host.insert("CapAdd".into(), json!(o.cap_add));
    host.insert("CapDrop".into(), json!(o.cap_drop));
    host.insert("SecurityOpt".into(), json!(o.security_opt));
    host.insert("Dns".into(), json!(o.dns));
    host.insert("DnsSearch".into(), json!(o.dns_search));
    host.insert("DnsOptions".into(), json!(o.dns_option));
    host.insert("ExtraHosts".into(), json!(o.add_host));
    host.insert("GroupAdd".into(), json!(o.group_add));
    host.insert("Mounts".into(), json!(mounts));
    host.insert("Devices".into(), json!(devices));
    host.insert("Ulimits".into(), json!(ulimits));
    host.insert("MemorySwappiness".into(), json!(-1));
    if !tmpfs.is_empty() {
        host.insert("Tmpfs".into(), Value::Object(tmpfs));
    }
    if !sysctls.is_empty() {
        host.insert("Sysctls".into(), Value::Object(sysctls));
    }
    if o.init {
        host.insert("Init".into(), json!(true));
    }
    if let Some(m) = bytes_flag("memory", &o.memory)? {
        host.insert("Memory".into(), json!(m));
    }
    if let Some(s) = memory_swap {
        host.insert("MemorySwap".into(), json!(s));
    }
    if let Some(n) = nano_cpus {
        host.insert("NanoCpus".into(), json!(n));
    }
    if let Some(s) = o.cpu_shares {
        host.insert("CpuShares".into(), json!(s));
    }
    if let Some(c) = &o.cpuset_cpus {
        host.insert("CpusetCpus".into(), json!(c));
    }
    if let Some(p) = o.pids_limit {
        host.insert("PidsLimit".into(), json!(p));
    }
    if let Some(s) = bytes_flag("shm-size", &o.shm_size)? {
        host.insert("ShmSize".into(), json!(s));
    }

    let mut endpoints = Map::new();
    if o.ip.is_some() || o.mac_address.is_some() || !o.network_alias.is_empty() {
        let mut ep = Map::new();
        if let Some(ip) = &o.ip {
            ep.insert("IPAMConfig".into(), json!({"IPv4Address": ip}));
        }
        if let Some(m) = &o.mac_address {
            ep.insert("MacAddress".into(), json!(m));
        }
        if !o.network_alias.is_empty() {
            ep.insert("Aliases".into(), json!(o.network_alias));
        }
        let key = if network == "default" {
            "bridge".to_owned()
        } else {
            network.clone()
        };
        endpoints.insert(key, Value::Object(ep));
    }
    let mut body = config;
    body.insert("HostConfig".into(), Value::Object(host));
    body.insert(
        "NetworkingConfig".into(),
        json!({"EndpointsConfig": endpoints}),
    );
    Ok(CreateRequest {
        body: Value::Object(body),
        name: o.name.clone(),
        platform: o.platform.clone(),
        image,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct T {
        #[command(flatten)]
        o: CreateOpts,
    }

    fn req(args: &[&str]) -> Value {
        let mut v = vec!["run"];
        v.extend_from_slice(args);
        let t = T::try_parse_from(v).unwrap();
        create_request(&t.o, false).unwrap().body
    }

    #[test]
    fn basic_flags_map_like_docker() {
        let b = req(&[
            "-i", "-t", "-e", "A=1", "--name", "x", "img", "sh", "-c", "echo hi",
        ]);
        assert_eq!(b["Image"], "img");
        assert_eq!(b["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(b["Tty"], true);
        assert_eq!(b["OpenStdin"], true);
        assert_eq!(b["StdinOnce"], true);
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["HostConfig"]["NetworkMode"], "default");
        assert_eq!(
            b["HostConfig"]["RestartPolicy"],
            json!({"Name": "no", "MaximumRetryCount": 0})
        );
        let b = req(&["img"]);
        assert_eq!(b["Cmd"], Value::Null);
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let b = req(&["img", "ls", "-l", "--rm"]);
        assert!(T::try_parse_from(["run", "--no-such-flag", "img"]).is_err());
        assert_eq!(b["Cmd"], json!(["ls", "-l", "--rm"]));
        assert_eq!(b["HostConfig"]["AutoRemove"], false);
        let b = req(&["--rm", "--", "img", "-x"]);
        assert_eq!(b["Cmd"], json!(["-x"]));
        assert_eq!(b["HostConfig"]["AutoRemove"], true);
    }

    #[test]
    fn ports_volumes_mounts() {
        let b = req(&[
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1::53/udp",
            "--expose",
            "9000-9001",
            "-v",
            "/a:/b:ro",
            "-v",
            "/anon",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "--tmpfs",
            "/run:size=1m",
            "img",
        ]);
        let h = &b["HostConfig"];
        assert_eq!(
            h["PortBindings"]["80/tcp"],
            json!([{"HostIp": "", "HostPort": "8080"}])
        );
        assert_eq!(
            h["PortBindings"]["53/udp"],
            json!([{"HostIp": "127.0.0.1", "HostPort": ""}])
        );
        assert!(b["ExposedPorts"]["9001/tcp"].is_object());
        assert_eq!(h["Binds"], json!(["/a:/b:ro"]));
        assert!(b["Volumes"]["/anon"].is_object());
        assert_eq!(
            h["Mounts"][0],
            json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576}})
        );
        assert_eq!(h["Tmpfs"]["/run"], "size=1m");
    }

    #[test]
    fn resources_and_health() {
        let b = req(&[
            "--memory",
            "512m",
            "--memory-swap",
            "-1",
            "--cpus",
            "1.5",
            "--pids-limit",
            "100",
            "--ulimit",
            "nofile=10:20",
            "--health-cmd",
            "true",
            "--health-interval",
            "1m30s",
            "--restart",
            "on-failure:3",
            "--device",
            "/dev/fuse",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--shm-size",
            "64m",
            "img",
        ]);
        let h = &b["HostConfig"];
        assert_eq!(h["Memory"], 536_870_912);
        assert_eq!(h["MemorySwap"], -1);
        assert_eq!(h["NanoCpus"], 1_500_000_000);
        assert_eq!(h["PidsLimit"], 100);
        assert_eq!(
            h["Ulimits"],
            json!([{"Name": "nofile", "Soft": 10, "Hard": 20}])
        );
        assert_eq!(
            h["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(h["Devices"][0]["PathInContainer"], "/dev/fuse");
        assert_eq!(h["ShmSize"], 67_108_864);
        assert_eq!(h["Sysctls"]["net.ipv4.ip_forward"], "1");
        assert_eq!(
            b["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 90_000_000_000i64})
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let t = T::try_parse_from(["run", "--rm", "--restart", "always", "img"]).unwrap();
        let e = create_request(&t.o, false).unwrap_err();
        assert!(e.to_string().contains("Conflicting options"), "{e}");
        let t = T::try_parse_from(["run", "-p", "x:80", "img"]).unwrap();
        let e = create_request(&t.o, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid argument \"x:80\" for \"-p, --publish\" flag: invalid hostPort: x"
        );
        let t = T::try_parse_from(["run", "--memory", "lots", "img"]).unwrap();
        assert!(create_request(&t.o, false).is_err());
        assert!(parse_detach_keys("ctrl-p,ctrl-q").unwrap() == vec![16, 17]);
        let t = T::try_parse_from(["run", "-a", "stdout", "-i", "img"]).unwrap();
        assert_eq!(attach_streams(&t.o, false).unwrap(), (false, true, false));
        assert!(attach_streams(&t.o, true).is_err());
        let t = T::try_parse_from(["run", "-a", "bogus", "img"]).unwrap();
        assert!(create_request(&t.o, false).is_err());
        assert!(parse_detach_keys("ctrl-").is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1h2m"), Some(3_720_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(ram_in_bytes("1g"), Some(1 << 30));
        assert_eq!(ram_in_bytes("100"), Some(100));
        assert_eq!(ram_in_bytes("1.5k"), Some(1536));
    }
}
