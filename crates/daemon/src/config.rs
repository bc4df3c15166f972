//! The daemon's settings: `/etc/skiff/daemon.json` (Docker's key names) merged with the
//! command line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/skiff/daemon.json";
/// The default data root.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/skiff";
/// The default API socket.
pub const DEFAULT_SOCKET: &str = "/run/skiff/skiff.sock";
/// The default state folder of running containers (runtime state, monitor sockets).
pub const DEFAULT_EXEC_ROOT: &str = "/run/skiff";

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the configuration file {path} failed")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON or has keys skiffd does not know.
    #[error("the configuration file {path} is invalid: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said (names the unknown key and the known ones).
        error: serde_json::Error,
    },
    /// A host is not a `unix://` address.
    #[error(
        "invalid host {0:?}: only unix:///path/to/socket is supported (skiffd has no TCP listener)"
    )]
    Host(String),
    /// A log level is not one of Docker's.
    #[error("invalid log level {0:?}: use debug, info, warn, error or fatal")]
    LogLevel(String),
    /// A network setting (`bip`, `default-address-pools`, `mtu`) is invalid.
    #[error("invalid network setting {0}")]
    Network(String),
}

/// `daemon.json`: the subset of Docker's keys that skiffd uses. Unknown keys are an error.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Where images, volumes and containers live.
    pub data_root: Option<PathBuf>,
    /// Where the state of running containers lives (a tmpfs: `/run/skiff`).
    pub exec_root: Option<PathBuf>,
    /// Registries reachable over plain HTTP (`host:port` or CIDR).
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Docker Hub mirrors (URLs).
    #[serde(default)]
    pub registry_mirrors: Vec<String>,
    /// `debug`, `info`, `warn`, `error`, `fatal`.
    pub log_level: Option<String>,
    /// Shorthand for `log-level: debug`.
    pub debug: Option<bool>,
    /// Sockets to listen on (`unix:///path`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Layers pulled at once.
    pub max_concurrent_downloads: Option<usize>,
    /// Layers pushed at once.
    pub max_concurrent_uploads: Option<usize>,
    /// `overlay2` or `vfs`.
    pub storage_driver: Option<String>,
    /// The group owning the socket (default `skiff` if it exists).
    pub group: Option<String>,
    /// Accepted for compatibility; skiffd has no experimental features.
    pub experimental: Option<bool>,
    /// The default bridge's address and prefix (`172.17.0.1/16`).
    pub bip: Option<String>,
    /// Where user-defined networks get their subnets: `[{"base": "172.30.0.0/16", "size": 24}]`.
    #[serde(default)]
    pub default_address_pools: Vec<AddressPool>,
    /// MTU of bridges and container interfaces.
    pub mtu: Option<u32>,
    /// Turn on `net.ipv4.ip_forward` (default true).
    pub ip_forward: Option<bool>,
    /// Skiff only: names of its devices and nftables table (`skiff0`, `ip skiff`); 1 to 6
    /// lowercase letters or digits. Default `skiff` with the default data root, else derived
    /// from the data root so that several daemons never touch each other's devices.
    pub network_prefix: Option<String>,
}

/// One of `default-address-pools`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AddressPool {
    /// A CIDR block.
    pub base: String,
    /// The prefix length of the subnets carved from it.
    pub size: u8,
}

/// The network settings resolved from `daemon.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSettings {
    /// Device and table prefix.
    pub prefix: String,
    /// `bip`: the default bridge's subnet (`None`: 172.17.0.0/16 or the first free pool).
    pub bridge_subnet: Option<skiff_network::Ipv4Net>,
    /// `default-address-pools` (empty: Docker's).
    pub address_pools: Vec<(skiff_network::Ipv4Net, u8)>,
    /// `mtu`.
    pub mtu: u32,
    /// `ip-forward`.
    pub ip_forward: bool,
}

impl NetworkSettings {
    /// Docker's defaults; the prefix depends on the data root.
    pub fn defaults(data_root: &Path) -> NetworkSettings {
        NetworkSettings {
            prefix: default_prefix(data_root),
            bridge_subnet: None,
            address_pools: Vec::new(),
            mtu: 1500,
            ip_forward: true,
        }
    }

    fn resolve(file: &FileConfig, data_root: &Path) -> Result<NetworkSettings, ConfigError> {
        let bad = |key: &str, why: String| ConfigError::Network(format!("{key}: {why}"));
        let net =
            |key: &str, v: &str, exact: bool| -> Result<skiff_network::Ipv4Net, ConfigError> {
                let (ip, len) = v
                    .split_once('/')
                    .ok_or_else(|| bad(key, format!("{v:?} is not an address/prefix")))?;
                let ip: std::net::Ipv4Addr = ip
                    .parse()
                    .map_err(|_| bad(key, format!("{v:?} is not an IPv4 address/prefix")))?;
                let len: u8 = len
                    .parse()
                    .ok()
                    .filter(|l| (1..=30).contains(l))
                    .ok_or_else(|| bad(key, format!("{v:?}: the prefix must be 1 to 30")))?;
                let addr = if exact {
                    ip
                } else {
                    std::net::Ipv4Addr::from(u32::from(ip) & (u32::MAX << (32 - u32::from(len))))
                };
                skiff_network::Ipv4Net::new(addr, len).map_err(|e| bad(key, e.to_string()))
            };
        let mut n = NetworkSettings::defaults(data_root);
        if let Some(p) = &file.network_prefix {
            n.prefix.clone_from(p);
        }
        if let Some(b) = file.bip.as_deref() {
            n.bridge_subnet = Some(net("bip", b, false)?);
        }
        for p in &file.default_address_pools {
            let base = net("default-address-pools", &p.base, true)?;
            if p.size < base.prefix() || p.size > 30 {
                return Err(bad(
                    "default-address-pools",
                    format!("size {} does not fit in {}", p.size, p.base),
                ));
            }
            n.address_pools.push((base, p.size));
        }
        if let Some(m) = file.mtu {
            if !(68..=65535).contains(&m) {
                return Err(bad("mtu", format!("{m} is not between 68 and 65535")));
            }
            n.mtu = m;
        }
        n.ip_forward = file.ip_forward.unwrap_or(true);
        Ok(n)
    }
}

/// `skiff` for the default data root; otherwise `s` and 5 hex digits of a hash of the root.
fn default_prefix(data_root: &Path) -> String {
    if data_root == Path::new(DEFAULT_DATA_ROOT) {
        return "skiff".into();
    }
    // FNV-1a: stable across releases (std's hasher is not).
    let mut h: u32 = 0x811c_9dc5;
    for b in data_root.as_os_str().as_encoded_bytes() {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    format!("s{:05x}", h & 0xf_ffff)
}

impl FileConfig {
    /// Reads `path`; a missing file is an empty configuration when `optional`.
    pub fn load(path: &Path, optional: bool) -> Result<FileConfig, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileConfig::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        FileConfig::parse(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error,
        })
    }

    /// Parses the JSON text of a `daemon.json`.
    pub fn parse(text: &str) -> Result<FileConfig, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Everything the daemon runs with, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data root.
    pub data_root: PathBuf,
    /// The state of running containers: the runtime's state and the monitors' sockets.
    pub exec_root: PathBuf,
    /// The `skiff-monitor` binary (`None`: the one next to the running executable).
    pub monitor_bin: Option<PathBuf>,
    /// Sockets to listen on.
    pub sockets: Vec<PathBuf>,
    /// Registries reachable over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Docker Hub mirrors.
    pub registry_mirrors: Vec<String>,
    /// A `tracing` filter directive (`info`, `debug`, ...).
    pub log_level: String,
    /// Layers pulled at once.
    pub max_concurrent_downloads: usize,
    /// Layers pushed at once.
    pub max_concurrent_uploads: usize,
    /// Forced storage driver (`None`: detect).
    pub storage_driver: Option<skiff_store::Driver>,
    /// The socket's group name.
    pub group: String,
    /// Networking: the default bridge, address pools, MTU, device prefix.
    pub network: NetworkSettings,
}

impl Config {
    /// Settings for a daemon on `socket` with data under `data_root`, everything else default
    /// (what tests use).
    /// The exec root is `run` next to the socket.
    pub fn new(data_root: impl Into<PathBuf>, socket: impl Into<PathBuf>) -> Config {
        let socket = socket.into();
        let data_root = data_root.into();
        let exec_root = socket
            .parent()
            .map_or_else(|| PathBuf::from(DEFAULT_EXEC_ROOT), |d| d.join("run"));
        Config {
            network: NetworkSettings::defaults(&data_root),
            data_root,
            exec_root,
            monitor_bin: None,
            sockets: vec![socket],
            insecure_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            log_level: "info".into(),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            storage_driver: None,
            group: "skiff".into(),
        }
    }

    /// Merges the file with command-line values (which win).
    pub fn resolve(
        file: FileConfig,
        cli_hosts: &[String],
        cli_data_root: Option<PathBuf>,
        cli_exec_root: Option<PathBuf>,
        cli_log_level: Option<String>,
    ) -> Result<Config, ConfigError> {
        let hosts: Vec<String> = if cli_hosts.is_empty() {
            file.hosts.clone()
        } else {
            cli_hosts.to_vec()
        };
        let mut sockets = Vec::new();
        for h in &hosts {
            sockets.push(parse_host(h)?);
        }
        if sockets.is_empty() {
            sockets.push(PathBuf::from(DEFAULT_SOCKET));
        }
        let level = cli_log_level
            .or(file.log_level.clone())
            .or_else(|| file.debug.filter(|d| *d).map(|_| "debug".to_owned()))
            .unwrap_or_else(|| "info".to_owned());
        let log_level = match level.as_str() {
            "debug" | "info" | "warn" | "error" => level.clone(),
            "fatal" => "error".to_owned(),
            "trace" => "trace".to_owned(),
            _ => return Err(ConfigError::LogLevel(level)),
        };
        let storage_driver = match file.storage_driver.as_deref() {
            None | Some("") => None,
            Some("overlay2") | Some("overlay") => Some(skiff_store::Driver::Overlay),
            Some("vfs") => Some(skiff_store::Driver::Vfs),
            Some(other) => {
                return Err(ConfigError::Parse {
                    path: PathBuf::from("storage-driver"),
                    error: serde::de::Error::custom(format!(
                        "unknown storage-driver {other:?}: use overlay2 or vfs"
                    )),
                })
            }
        };
        let data_root = cli_data_root
            .or(file.data_root.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT));
        let network = NetworkSettings::resolve(&file, &data_root)?;
        Ok(Config {
            network,
            data_root,
            exec_root: cli_exec_root
                .or(file.exec_root)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_EXEC_ROOT)),
            monitor_bin: None,
            sockets,
            insecure_registries: file.insecure_registries,
            registry_mirrors: file.registry_mirrors,
            log_level,
            max_concurrent_downloads: file.max_concurrent_downloads.unwrap_or(3).max(1),
            max_concurrent_uploads: file.max_concurrent_uploads.unwrap_or(5).max(1),
            storage_driver,
            group: file.group.unwrap_or_else(|| "skiff".to_owned()),
        })
    }
}

/// `unix:///path` (or a bare absolute path) to the socket path.
pub fn parse_host(h: &str) -> Result<PathBuf, ConfigError> {
    if let Some(p) = h.strip_prefix("unix://") {
        if p.starts_with('/') {
            return Ok(PathBuf::from(p));
        }
        if p.is_empty() {
            return Ok(PathBuf::from(DEFAULT_SOCKET));
        }
    } else if h.starts_with('/') {
        return Ok(PathBuf::from(h));
    }
    Err(ConfigError::Host(h.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_key_names_parse() {
        let c = FileConfig::parse(
            r#"{"data-root":"/d","insecure-registries":["r:5000"],"registry-mirrors":["https://m"],
                "log-level":"debug","hosts":["unix:///tmp/s.sock"],"max-concurrent-downloads":2}"#,
        )
        .unwrap();
        let c = Config::resolve(c, &[], None, None, None).unwrap();
        assert_eq!(c.data_root, PathBuf::from("/d"));
        assert_eq!(c.exec_root, PathBuf::from(DEFAULT_EXEC_ROOT));
        assert_eq!(c.sockets, vec![PathBuf::from("/tmp/s.sock")]);
        assert_eq!(c.insecure_registries, vec!["r:5000".to_owned()]);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.max_concurrent_downloads, 2);
        assert_eq!(c.network.prefix.len(), 6);
        assert_eq!(c.network.bridge_subnet, None);
    }

    #[test]
    fn network_keys_parse_and_bad_values_are_named() {
        let c = FileConfig::parse(
            r#"{"bip":"10.9.0.1/24","default-address-pools":[{"base":"10.10.0.0/16","size":24}],
                "mtu":1400,"ip-forward":false}"#,
        )
        .unwrap();
        let c = Config::resolve(c, &[], None, None, None).unwrap();
        assert_eq!(c.network.prefix, "skiff");
        assert_eq!(c.network.bridge_subnet.unwrap().to_string(), "10.9.0.0/24");
        assert_eq!(c.network.address_pools[0].0.to_string(), "10.10.0.0/16");
        assert_eq!(c.network.mtu, 1400);
        assert!(!c.network.ip_forward);
        for bad in [
            r#"{"bip":"10.9.0.1"}"#,
            r#"{"bip":"nope/8"}"#,
            r#"{"default-address-pools":[{"base":"10.10.0.0/16","size":8}]}"#,
            r#"{"default-address-pools":[{"base":"10.10.1.0/16","size":24}]}"#,
            r#"{"mtu":10}"#,
        ] {
            let e = Config::resolve(FileConfig::parse(bad).unwrap(), &[], None, None, None)
                .unwrap_err();
            assert!(
                e.to_string().starts_with("invalid network setting"),
                "{bad}: {e}"
            );
        }
        assert_ne!(
            default_prefix(Path::new("/tmp/a")),
            default_prefix(Path::new("/tmp/b"))
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = FileConfig::parse(r#"{"data-rot":"/d"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `data-rot`"), "{e}");
    }

    #[test]
    fn tcp_hosts_are_refused() {
        let e = Config::resolve(
            FileConfig::default(),
            &["tcp://0.0.0.0:2375".into()],
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no TCP listener"), "{e}");
        let c = Config::resolve(
            FileConfig::default(),
            &[],
            Some("/x".into()),
            Some("/r".into()),
            None,
        )
        .unwrap();
        assert_eq!(c.exec_root, PathBuf::from("/r"));
        assert_eq!(c.sockets, vec![PathBuf::from(DEFAULT_SOCKET)]);
    }
}
