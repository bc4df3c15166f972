//! The network manager: networks, endpoints, ports and DNS, persisted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::dns::{DnsServer, Records};
use crate::error::{NetworkError, Result};
use crate::files::{upstream_servers, DnsSettings, ResolvConf};
use crate::hostnet;
use crate::ipam::{Ipv4Net, Pool};
use crate::netlink::{self, VethSpec};
use crate::nft::{self, BridgeRules};
use crate::ports::{PortSpec, Proxy};
use crate::state::{self, NetworkRecord, State};

const OPT_MTU: &str = "com.docker.network.driver.mtu";
const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
const IFNAMSIZ: usize = 15;

/// Daemon-wide settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the state file lives.
    pub data_dir: PathBuf,
    /// Names Skiff's devices (`<prefix>0` is the default bridge, `<prefix>-<id>` user
    /// bridges, `<prefix>v<hex>` host-side veths) and its nftables table (`ip <prefix>`).
    /// 1 to 6 characters, a lowercase letter then lowercase letters or digits.
    pub prefix: String,
    /// The default bridge's subnet (Docker's `bip`).
    pub bridge_subnet: Ipv4Net,
    /// Pools user-defined networks without `--subnet` are carved from: (base, size).
    pub address_pools: Vec<(Ipv4Net, u8)>,
    /// MTU of bridges and veths unless a network sets its own.
    pub mtu: u32,
    /// Turn on `net.ipv4.ip_forward` when a non-internal network comes up.
    pub ip_forward: bool,
    /// The host's resolv.conf (nameservers for forwarding and default-bridge containers).
    pub host_resolv_conf: PathBuf,
    /// `bridge_subnet` is only a first choice (Docker without `bip`): when it overlaps a host
    /// route, the first free /16 of `address_pools` is taken instead, and the default bridge
    /// is created at [`NetworkManager::open`] (under a machine-wide lock) to claim it.
    pub auto_bridge_subnet: bool,
}

impl Config {
    /// Docker's defaults with state under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        let net = |s: &str| s.parse::<Ipv4Net>().expect("a valid default pool");
        Config {
            data_dir: data_dir.into(),
            prefix: "skiff".into(),
            bridge_subnet: net("172.17.0.0/16"),
            address_pools: vec![
                (net("172.18.0.0/15"), 16),
                (net("172.20.0.0/14"), 16),
                (net("172.24.0.0/14"), 16),
                (net("172.28.0.0/14"), 16),
                (net("192.168.0.0/16"), 20),
            ],
            mtu: 1500,
            ip_forward: true,
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            auto_bridge_subnet: false,
        }
    }
}

/// A network as `docker network inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// The bridge device (bridge driver only).
    pub bridge: Option<String>,
    /// IPAM: subnet, gateway, `--ip-range`.
    pub subnet: Option<Ipv4Net>,
    /// The gateway address (on the bridge).
    pub gateway: Option<Ipv4Addr>,
    /// Where dynamic addresses come from.
    pub ip_range: Option<Ipv4Net>,
    /// No outbound path (no masquerade, no default route).
    pub internal: bool,
    /// Outbound masquerade (the `enable_ip_masquerade` option).
    pub masquerade: bool,
    /// MTU of its bridge and veths.
    pub mtu: u32,
    /// One of `bridge`, `host`, `none`: cannot be removed.
    pub predefined: bool,
    /// Whether the subnet came from the user (`--ip` is only allowed then, like Docker).
    pub user_subnet: bool,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    /// `--opt`s.
    pub options: BTreeMap<String, String>,
}

/// `docker network create`.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    /// The name.
    pub name: String,
    /// `bridge` (the default); nothing else can be created.
    pub driver: Option<String>,
    /// `--subnet`; picked from `Config::address_pools` when absent.
    pub subnet: Option<Ipv4Net>,
    /// `--gateway`; the first address when absent.
    pub gateway: Option<Ipv4Addr>,
    /// `--ip-range`.
    pub ip_range: Option<Ipv4Net>,
    /// `--internal`.
    pub internal: bool,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--opt`: the MTU, bridge name and masquerade options are honoured.
    pub options: BTreeMap<String, String>,
}

/// What a container brings to a network (`docker network connect` / `run --network`).
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    /// The container's id.
    pub container_id: String,
    /// The container's name (resolvable on user-defined networks).
    pub name: Option<String>,
    /// `--network-alias`.
    pub aliases: Vec<String>,
    /// The container's network namespace.
    pub netns: PathBuf,
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// `--mac-address`.
    pub mac: Option<[u8; 6]>,
    /// Interface name inside; the first free `ethN` when absent.
    pub ifname: Option<String>,
    /// `-p`.
    pub ports: Vec<PortSpec>,
    /// `--dns*` (forwarding targets of the embedded DNS for this container).
    pub dns: DnsSettings,
}

/// A published port as bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// What was asked.
    pub spec: PortSpec,
    /// What was bound (the chosen port for `-p <container>`).
    pub host: SocketAddr,
}

/// A container's attachment to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// 64 hex digits.
    pub id: String,
    /// The network's id.
    pub network_id: String,
    /// The network's name.
    pub network: String,
    /// The container.
    pub container_id: String,
    /// DNS names: the container's name, aliases and short id.
    pub names: Vec<String>,
    /// The namespace path, and its (device, inode) to tell it from a recycled pid.
    pub netns: PathBuf,
    /// nsfs identity of `netns` at connect time.
    pub netns_id: (u64, u64),
    /// The host-side veth (empty on `none`).
    pub host_if: String,
    /// The interface inside the container.
    pub ifname: String,
    /// Its address (absent on `none`).
    pub ip: Option<Ipv4Addr>,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// The gateway (absent on internal networks and `none`).
    pub gateway: Option<Ipv4Addr>,
    /// `aa:bb:..`.
    pub mac: String,
    /// Published ports.
    pub ports: Vec<PublishedPort>,
    /// Upstream servers of the embedded DNS for this container.
    pub dns: Vec<IpAddr>,
}

/// A container's network mode as `--network` spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// `default` / `bridge`: the default bridge.
    Bridge,
    /// `host`: no namespace of its own; nothing to set up.
    Host,
    /// `none`: only `lo`.
    None,
    /// `container:<id>`: use that container's namespace; nothing to set up.
    Container(String),
    /// A user-defined network.
    Named(String),
}

impl NetworkMode {
    /// Parses `--network`.
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "" | "default" | "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            _ => match s.strip_prefix("container:") {
                Some(id) => NetworkMode::Container(id.to_string()),
                None => NetworkMode::Named(s.to_string()),
            },
        }
    }

    /// The network to connect to, when the mode has one (`bridge`, `none`, a name).
    pub fn network(&self) -> Option<&str> {
        match self {
            NetworkMode::Bridge => Some("bridge"),
            NetworkMode::None => Some("none"),
            NetworkMode::Named(n) => Some(n),
            NetworkMode::Host | NetworkMode::Container(_) => None,
        }
    }
}

/// What [`NetworkManager::reconcile`] cleaned up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Endpoints dropped because their namespace or veth was gone ("network/container").
    pub removed_endpoints: Vec<String>,
    /// Leftover links deleted.
    pub removed_links: Vec<String>,
    /// Published ports that could not be bound again.
    pub failed_ports: Vec<String>,
}

struct Inner {
    state: State,
    dns: HashMap<String, DnsServer>,
    proxies: HashMap<String, Vec<Proxy>>,
}

/// Owns Skiff's networks. All methods block (netlink, `nft`, fsync): call them from
/// `spawn_blocking` in async code. Operations are serialized by one lock.
pub struct NetworkManager {
    cfg: Config,
    host_resolv: ResolvConf,
    inner: Mutex<Inner>,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom is readable");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac_string(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn predefined(name: &str, driver: &str) -> NetworkRecord {
    NetworkRecord {
        info: Network {
            id: random_hex(32),
            name: name.into(),
            driver: driver.into(),
            created: now(),
            bridge: None,
            subnet: None,
            gateway: None,
            ip_range: None,
            internal: false,
            masquerade: false,
            mtu: 0,
            predefined: true,
            user_subnet: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        },
        pool: None,
        materialized: false,
    }
}

impl NetworkManager {
    /// Loads (or initializes) the state under `cfg.data_dir`. Touches no device: call
    /// [`reconcile`](Self::reconcile) next to bring the runtime in line with it.
    pub fn open(cfg: Config) -> Result<NetworkManager> {
        let p = &cfg.prefix;
        if p.is_empty()
            || p.len() > 6
            || !p.starts_with(|c: char| c.is_ascii_lowercase())
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(NetworkError::InvalidInput(format!(
                "invalid prefix {p:?}: 1 to 6 lowercase letters or digits, starting with a letter"
            )));
        }
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| NetworkError::io("create the data directory", &cfg.data_dir, e))?;
        let mut state = state::load(&cfg.data_dir)?.unwrap_or_default();
        if !state.networks.iter().any(|n| n.info.name == "bridge") {
            let mut b = predefined("bridge", "bridge");
            b.info.bridge = Some(format!("{p}0"));
            b.info.masquerade = true;
            state.networks.insert(0, b);
        }
        // Held until the default bridge exists, when its subnet is chosen here.
        let mut _machine = None;
        {
            let others: Vec<Ipv4Net> = state
                .networks
                .iter()
                .filter(|n| n.info.name != "bridge")
                .filter_map(|n| n.info.subnet)
                .collect();
            let b = state
                .networks
                .iter_mut()
                .find(|n| n.info.name == "bridge")
                .expect("bridge exists");
            let unused = !state.endpoints.iter().any(|e| e.network_id == b.info.id);
            let mut want = cfg.bridge_subnet;
            if cfg.auto_bridge_subnet && unused {
                _machine = hostnet::machine_lock();
                let routes = hostnet::routes();
                let own = format!("{p}0");
                let free = |c: &Ipv4Net| {
                    !hostnet::clashes(&routes, c, &[own.as_str()])
                        && !others.iter().any(|o| o.overlaps(c))
                };
                want = std::iter::once(cfg.bridge_subnet)
                    .chain(cfg.address_pools.iter().flat_map(|(base, len)| {
                        let len = (*len).min(24).max(base.prefix());
                        (0..).map_while(move |i| base.nth_subnet(len, i))
                    }))
                    .find(free)
                    .ok_or_else(|| {
                        NetworkError::Conflict(
                            "no free subnet for the default bridge: every candidate overlaps a \
                             host route; set bip"
                                .into(),
                        )
                    })?;
            }
            if b.info.subnet != Some(want) && unused {
                if b.materialized {
                    b.materialized = false;
                    netlink::delete_link(&format!("{p}0"))?;
                }
                let pool = Pool::new(want, None, None)?;
                b.info.subnet = Some(pool.subnet);
                b.info.gateway = Some(pool.gateway);
                b.pool = Some(pool);
            }
            if unused {
                b.info.mtu = cfg.mtu;
            }
            if _machine.is_some() && !b.materialized {
                let pool = b.pool.as_ref().expect("the default bridge has a pool");
                netlink::ensure_bridge(&format!("{p}0"), pool.gateway, want.prefix(), cfg.mtu)?;
                b.materialized = true;
            }
        }
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !state.networks.iter().any(|n| n.info.name == name) {
                state.networks.push(predefined(name, driver));
            }
        }
        state::save(&cfg.data_dir, &state)?;
        Ok(NetworkManager {
            host_resolv: ResolvConf::read(&cfg.host_resolv_conf),
            cfg,
            inner: Mutex::new(Inner {
                state,
                dns: HashMap::new(),
                proxies: HashMap::new(),
            }),
        })
    }

    /// The settings this manager runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The host's resolv.conf as read at [`open`](Self::open).
    pub fn host_resolv_conf(&self) -> &ResolvConf {
        &self.host_resolv
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, inner: &Inner) -> Result<()> {
        state::save(&self.cfg.data_dir, &inner.state)
    }

    /// Every network.
    pub fn list_networks(&self) -> Vec<Network> {
        self.lock()
            .state
            .networks
            .iter()
            .map(|n| n.info.clone())
            .collect()
    }

    /// A network by name, id or unique id prefix.
    pub fn inspect_network(&self, name_or_id: &str) -> Result<Network> {
        let inner = self.lock();
        find(&inner.state, name_or_id).map(|i| inner.state.networks[i].info.clone())
    }

    /// The endpoints of a network.
    pub fn endpoints(&self, name_or_id: &str) -> Result<Vec<Endpoint>> {
        let inner = self.lock();
        let i = find(&inner.state, name_or_id)?;
        let id = &inner.state.networks[i].info.id;
        Ok(inner
            .state
            .endpoints
            .iter()
            .filter(|e| &e.network_id == id)
            .cloned()
            .collect())
    }

    /// The endpoints of a container, on every network.
    pub fn container_endpoints(&self, container_id: &str) -> Vec<Endpoint> {
        self.lock()
            .state
            .endpoints
            .iter()
            .filter(|e| e.container_id == container_id)
            .cloned()
            .collect()
    }

    /// The nameserver a container on `network` should put in its resolv.conf: the embedded
    /// DNS on user-defined networks, `None` on the default bridge (use the host's servers).
    pub fn embedded_dns(&self, network: &str) -> Result<Option<Ipv4Addr>> {
        let n = self.inspect_network(network)?;
        Ok(if n.predefined { None } else { n.gateway })
    }

    /// `docker network create`.
    pub fn create_network(&self, req: NetworkCreate) -> Result<Network> {
        let name = req.name.as_str();
        if name.is_empty()
            || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(NetworkError::InvalidInput(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        match req.driver.as_deref() {
            None | Some("bridge") => {}
            Some(d) => {
                return Err(NetworkError::InvalidInput(format!(
                "cannot create network {name} with driver {d}: only the bridge driver is supported"
            )))
            }
        }
        // Another instance may be choosing a subnet from the same pools right now.
        let _machine = req.subnet.is_none().then(hostnet::machine_lock);
        let mut inner = self.lock();
        if inner.state.networks.iter().any(|n| n.info.name == name) {
            return Err(NetworkError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        if req.subnet.is_none() && (req.gateway.is_some() || req.ip_range.is_some()) {
            return Err(NetworkError::InvalidInput(format!(
                "network {name}: --gateway and --ip-range need --subnet"
            )));
        }
        let taken: Vec<Ipv4Net> = inner
            .state
            .networks
            .iter()
            .filter_map(|n| n.info.subnet)
            .collect();
        let subnet = match req.subnet {
            Some(s) => {
                if let Some(o) = taken.iter().find(|t| t.overlaps(&s)) {
                    return Err(NetworkError::Conflict(format!(
                        "subnet {s} of network {name} overlaps subnet {o} of another network"
                    )));
                }
                s
            }
            None => {
                let routes = hostnet::routes();
                self.cfg
                    .address_pools
                    .iter()
                    .flat_map(|(base, len)| (0..).map_while(move |i| base.nth_subnet(*len, i)))
                    .find(|c| {
                        !taken.iter().any(|t| t.overlaps(c)) && !hostnet::clashes(&routes, c, &[])
                    })
                    .ok_or_else(|| {
                        NetworkError::Conflict(format!(
                            "no free subnet left in the default address pools for network {name}"
                        ))
                    })?
            }
        };
        let pool = Pool::new(subnet, req.gateway, req.ip_range)?;
        let mtu = match req.options.get(OPT_MTU) {
            Some(m) => m
                .parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| {
                    NetworkError::InvalidInput(format!("network {name}: invalid MTU {m:?}"))
                })?,
            None => self.cfg.mtu,
        };
        let masquerade = match req.options.get(OPT_MASQUERADE).map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => {
                return Err(NetworkError::InvalidInput(format!(
                    "network {name}: {OPT_MASQUERADE} must be true or false, not {v:?}"
                )))
            }
        };
        let id = random_hex(32);
        let bridge = match req.options.get(OPT_BRIDGE_NAME) {
            Some(b) => {
                if b.is_empty() || b.len() > IFNAMSIZ || b.contains(['/', ' ', '"']) {
                    return Err(NetworkError::InvalidInput(format!(
                        "network {name}: invalid bridge name {b:?}"
                    )));
                }
                b.clone()
            }
            None => {
                let p = &self.cfg.prefix;
                format!("{p}-{}", &id[..IFNAMSIZ - p.len() - 1])
            }
        };
        if inner
            .state
            .networks
            .iter()
            .any(|n| n.info.bridge.as_deref() == Some(&bridge))
        {
            return Err(NetworkError::Conflict(format!(
                "bridge {bridge} is already used by another network"
            )));
        }
        let rec = NetworkRecord {
            info: Network {
                id,
                name: name.to_string(),
                driver: "bridge".into(),
                created: now(),
                bridge: Some(bridge.clone()),
                subnet: Some(pool.subnet),
                gateway: Some(pool.gateway),
                ip_range: pool.range,
                internal: req.internal,
                masquerade,
                mtu,
                predefined: false,
                user_subnet: req.subnet.is_some(),
                labels: req.labels,
                options: req.options,
            },
            pool: Some(pool),
            materialized: true,
        };
        inner.state.networks.push(rec.clone());
        let up = self.materialize(&mut inner, &rec);
        if let Err(e) = up {
            inner.state.networks.retain(|n| n.info.id != rec.info.id);
            inner.dns.remove(&rec.info.id);
            let _ = netlink::delete_link(&bridge);
            let _ = self.apply_nft(&inner);
            return Err(e);
        }
        self.save(&inner)?;
        Ok(rec.info)
    }

    /// Creates the bridge, applies the ruleset and starts the DNS of `rec` (already in state).
    fn materialize(&self, inner: &mut Inner, rec: &NetworkRecord) -> Result<()> {
        let (Some(bridge), Some(pool)) = (&rec.info.bridge, &rec.pool) else {
            return Ok(());
        };
        netlink::ensure_bridge(bridge, pool.gateway, pool.subnet.prefix(), rec.info.mtu)?;
        if self.cfg.ip_forward && !rec.info.internal {
            let f = "/proc/sys/net/ipv4/ip_forward";
            if std::fs::read_to_string(f)
                .map(|v| v.trim() != "1")
                .unwrap_or(true)
            {
                std::fs::write(f, "1")
                    .map_err(|e| NetworkError::io("enable forwarding in", f, e))?;
            }
        }
        self.apply_nft(inner)?;
        if !rec.info.predefined && !inner.dns.contains_key(&rec.info.id) {
            let mut records = Records {
                forward: !rec.info.internal,
                default_upstreams: self.host_resolv.nameservers.clone(),
                ..Records::default()
            };
            for e in inner
                .state
                .endpoints
                .iter()
                .filter(|e| e.network_id == rec.info.id)
            {
                if let Some(ip) = e.ip {
                    records.add(&e.names, ip, e.dns.clone());
                }
            }
            let srv = DnsServer::start(pool.gateway, records).map_err(|e| match e {
                NetworkError::Io { source, .. } => NetworkError::io(
                    "bind the embedded DNS of the network on",
                    format!("{}:53 ({})", pool.gateway, rec.info.name),
                    source,
                ),
                e => e,
            })?;
            inner.dns.insert(rec.info.id.clone(), srv);
        }
        Ok(())
    }

    fn apply_nft(&self, inner: &Inner) -> Result<()> {
        let nets: Vec<BridgeRules> = inner
            .state
            .networks
            .iter()
            .filter(|n| n.materialized)
            .filter_map(|n| {
                Some(BridgeRules {
                    bridge: n.info.bridge.clone()?,
                    subnet: n.info.subnet?,
                    internal: n.info.internal,
                    masquerade: n.info.masquerade,
                })
            })
            .collect();
        nft::apply(&self.cfg.prefix, &nets)
    }

    /// `docker network rm`: refuses predefined networks and networks with endpoints.
    pub fn remove_network(&self, name_or_id: &str) -> Result<()> {
        let mut inner = self.lock();
        let i = find(&inner.state, name_or_id)?;
        let n = inner.state.networks[i].info.clone();
        if n.predefined {
            return Err(NetworkError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if inner.state.endpoints.iter().any(|e| e.network_id == n.id) {
            return Err(NetworkError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        inner.dns.remove(&n.id);
        if let Some(b) = &n.bridge {
            netlink::delete_link(b)?;
        }
        inner.state.networks.remove(i);
        self.apply_nft(&inner)?;
        self.save(&inner)
    }

    /// `docker network prune`: removes user-defined networks without endpoints; returns
    /// their names.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        let unused: Vec<String> = {
            let inner = self.lock();
            inner
                .state
                .networks
                .iter()
                .filter(|n| !n.info.predefined)
                .filter(|n| {
                    !inner
                        .state
                        .endpoints
                        .iter()
                        .any(|e| e.network_id == n.info.id)
                })
                .map(|n| n.info.id.clone())
                .collect()
        };
        let mut removed = Vec::new();
        for id in unused {
            let name = self.inspect_network(&id)?.name;
            self.remove_network(&id)?;
            removed.push(name);
        }
        Ok(removed)
    }

    /// Connects a container (its namespace) to a network: `none` only brings `lo` up (and
    /// records nothing); bridge networks get a veth, an address, routes, published ports and
    /// DNS records.
    pub fn connect(&self, network: &str, req: EndpointRequest) -> Result<Endpoint> {
        let mut inner = self.lock();
        let ni = find(&inner.state, network)?;
        let net = inner.state.networks[ni].info.clone();
        let netns_id = ns_id(&req.netns).ok_or_else(|| {
            NetworkError::NotFound(format!(
                "network namespace {} of container {} does not exist",
                req.netns.display(),
                req.container_id
            ))
        })?;
        match net.driver.as_str() {
            "null" => {
                netlink::loopback_up(&req.netns)?;
                return Ok(Endpoint {
                    id: random_hex(32),
                    network_id: net.id,
                    network: net.name,
                    container_id: req.container_id,
                    names: Vec::new(),
                    netns: req.netns,
                    netns_id,
                    host_if: String::new(),
                    ifname: "lo".into(),
                    ip: None,
                    prefix: 0,
                    gateway: None,
                    mac: String::new(),
                    ports: Vec::new(),
                    dns: Vec::new(),
                });
            }
            "host" => {
                return Err(NetworkError::InvalidInput(format!(
                    "container {} cannot join the host network from its own network namespace; \
                     run it without one",
                    req.container_id
                )))
            }
            _ => {}
        }
        if inner
            .state
            .endpoints
            .iter()
            .any(|e| e.network_id == net.id && e.container_id == req.container_id)
        {
            return Err(NetworkError::Conflict(format!(
                "container {} is already connected to network {}",
                req.container_id, net.name
            )));
        }
        if req.ip.is_some() && !net.user_subnet {
            return Err(NetworkError::InvalidInput(format!(
                "network {}: a static address (--ip) needs a network created with --subnet",
                net.name
            )));
        }
        if !inner.state.networks[ni].materialized {
            inner.state.networks[ni].materialized = true;
            let rec = inner.state.networks[ni].clone();
            if let Err(e) = self.materialize(&mut inner, &rec) {
                inner.state.networks[ni].materialized = false;
                return Err(e);
            }
        }
        let pool = inner.state.networks[ni]
            .pool
            .as_mut()
            .expect("bridge networks have a pool");
        let ip = pool.allocate(req.ip, &net.name)?;
        let prefix = pool.subnet.prefix();
        let gateway = pool.gateway;
        let release = |inner: &mut Inner| {
            if let Some(p) = inner.state.networks[ni].pool.as_mut() {
                p.release(ip);
            }
        };
        // published ports first: a conflict fails before any device exists
        let mut proxies = Vec::new();
        let mut ports = Vec::new();
        for spec in &req.ports {
            match Proxy::start(spec, ip) {
                Ok(p) => {
                    ports.push(PublishedPort {
                        spec: *spec,
                        host: p.bound,
                    });
                    proxies.push(p);
                }
                Err(e) => {
                    release(&mut inner);
                    return Err(e);
                }
            }
        }
        let mac = req.mac.unwrap_or_else(|| {
            let o = ip.octets();
            [0x02, 0x42, o[0], o[1], o[2], o[3]]
        });
        let id = random_hex(32);
        let p = &self.cfg.prefix;
        let host_if = format!("{p}v{}", &id[..IFNAMSIZ - p.len() - 1]);
        let route = if net.internal { None } else { Some(gateway) };
        let created = netlink::create_endpoint(VethSpec {
            netns: req.netns.clone(),
            host_if: host_if.clone(),
            bridge: net.bridge.clone().expect("bridge networks have a bridge"),
            ifname: req.ifname.clone(),
            mac,
            mtu: net.mtu,
            ip,
            prefix,
            gateway: route,
        });
        let ifname = match created {
            Ok(n) => n,
            Err(e) => {
                release(&mut inner);
                return Err(e);
            }
        };
        let mut names: Vec<String> = req.name.iter().cloned().collect();
        names.extend(req.aliases.iter().cloned());
        if req.container_id.len() >= 12 {
            names.push(req.container_id[..12].to_string());
        }
        let dns = upstream_servers(&self.host_resolv, &req.dns);
        let ep = Endpoint {
            id,
            network_id: net.id.clone(),
            network: net.name.clone(),
            container_id: req.container_id,
            names,
            netns: req.netns,
            netns_id,
            host_if,
            ifname,
            ip: Some(ip),
            prefix,
            gateway: route,
            mac: mac_string(&mac),
            ports,
            dns,
        };
        if let Some(srv) = inner.dns.get(&net.id) {
            srv.records.write().unwrap_or_else(|p| p.into_inner()).add(
                &ep.names,
                ip,
                ep.dns.clone(),
            );
        }
        inner.proxies.insert(ep.id.clone(), proxies);
        inner.state.endpoints.push(ep.clone());
        if let Err(e) = self.save(&inner) {
            self.drop_endpoint(&mut inner, &ep.id);
            return Err(e);
        }
        Ok(ep)
    }

    /// Tears down one endpoint (ports, DNS records, veth, address) without saving.
    fn drop_endpoint(&self, inner: &mut Inner, endpoint_id: &str) -> Option<Result<()>> {
        let i = inner
            .state
            .endpoints
            .iter()
            .position(|e| e.id == endpoint_id)?;
        let ep = inner.state.endpoints.remove(i);
        inner.proxies.remove(&ep.id);
        if let Some(ip) = ep.ip {
            if let Some(srv) = inner.dns.get(&ep.network_id) {
                srv.records
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(ip);
            }
            if let Some(n) = inner
                .state
                .networks
                .iter_mut()
                .find(|n| n.info.id == ep.network_id)
            {
                if let Some(p) = n.pool.as_mut() {
                    p.release(ip);
                }
            }
        }
        Some(if ep.host_if.is_empty() {
            Ok(())
        } else {
            netlink::delete_link(&ep.host_if)
        })
    }

    /// `docker network disconnect`: removes the container's endpoint on `network`.
    pub fn disconnect(&self, network: &str, container_id: &str) -> Result<()> {
        let mut inner = self.lock();
        let ni = find(&inner.state, network)?;
        let net_id = inner.state.networks[ni].info.id.clone();
        let Some(ep) = inner
            .state
            .endpoints
            .iter()
            .find(|e| e.network_id == net_id && e.container_id == container_id)
            .map(|e| e.id.clone())
        else {
            return Err(NetworkError::NotFound(format!(
                "container {container_id} is not connected to network {network}"
            )));
        };
        let r = self.drop_endpoint(&mut inner, &ep).unwrap_or(Ok(()));
        self.save(&inner)?;
        r
    }

    /// Disconnects a container from every network (container removal).
    pub fn release_container(&self, container_id: &str) -> Result<()> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .state
            .endpoints
            .iter()
            .filter(|e| e.container_id == container_id)
            .map(|e| e.id.clone())
            .collect();
        if ids.is_empty() {
            // Nothing to release (`--network none`, host, a second teardown): no state write.
            return Ok(());
        }
        let mut first_err = None;
        for id in ids {
            if let Some(Err(e)) = self.drop_endpoint(&mut inner, &id) {
                first_err.get_or_insert(e);
            }
        }
        self.save(&inner)?;
        first_err.map_or(Ok(()), Err)
    }

    /// Brings devices, rules and the in-process parts in line with the state after a start
    /// (or a crash): drops endpoints whose namespace or veth is gone, deletes links with
    /// Skiff's names that no state refers to, recreates bridges, rewrites the table, and
    /// restarts DNS servers and port proxies.
    pub fn reconcile(&self) -> Result<ReconcileReport> {
        let mut inner = self.lock();
        let mut report = ReconcileReport::default();
        let links: HashSet<String> = netlink::list_links()?.into_iter().collect();
        let gone: Vec<String> = inner
            .state
            .endpoints
            .iter()
            .filter(|e| ns_id(&e.netns) != Some(e.netns_id) || !links.contains(&e.host_if))
            .map(|e| e.id.clone())
            .collect();
        for id in gone {
            if let Some(e) = inner.state.endpoints.iter().find(|e| e.id == id) {
                report
                    .removed_endpoints
                    .push(format!("{}/{}", e.network, e.container_id));
            }
            if let Some(Err(e)) = self.drop_endpoint(&mut inner, &id) {
                tracing::warn!("reconcile: {e}");
            }
        }
        let known: HashSet<&str> = inner
            .state
            .networks
            .iter()
            .filter(|n| n.materialized)
            .filter_map(|n| n.info.bridge.as_deref())
            .chain(inner.state.endpoints.iter().map(|e| e.host_if.as_str()))
            .collect();
        let p = &self.cfg.prefix;
        let ours = |l: &str| {
            let Some(rest) = l.strip_prefix(p.as_str()) else {
                return false;
            };
            let hex = |s: &str| {
                s.len() == IFNAMSIZ - p.len() - 1 && s.bytes().all(|b| b.is_ascii_hexdigit())
            };
            rest == "0"
                || rest.strip_prefix('-').is_some_and(hex)
                || rest.strip_prefix('v').is_some_and(hex)
        };
        let stale: Vec<String> = links
            .iter()
            .filter(|l| ours(l) && !known.contains(l.as_str()))
            .cloned()
            .collect();
        netlink::delete_links(&stale)?;
        report.removed_links = stale;
        let recs: Vec<NetworkRecord> = inner
            .state
            .networks
            .iter()
            .filter(|n| n.materialized)
            .cloned()
            .collect();
        for rec in &recs {
            self.materialize(&mut inner, rec)?;
        }
        self.apply_nft(&inner)?;
        let eps: Vec<Endpoint> = inner.state.endpoints.clone();
        for ep in eps {
            if let (Some(ip), Some(srv)) = (ep.ip, inner.dns.get(&ep.network_id)) {
                srv.records.write().unwrap_or_else(|p| p.into_inner()).add(
                    &ep.names,
                    ip,
                    ep.dns.clone(),
                );
            }
            if inner.proxies.contains_key(&ep.id) {
                continue;
            }
            let mut proxies = Vec::new();
            for pp in &ep.ports {
                let spec = PortSpec {
                    host_ip: Some(pp.host.ip()),
                    host_port: pp.host.port(),
                    ..pp.spec
                };
                match ep.ip.map(|ip| Proxy::start(&spec, ip)) {
                    Some(Ok(p)) => proxies.push(p),
                    Some(Err(e)) => {
                        tracing::warn!("reconcile: {e}");
                        report
                            .failed_ports
                            .push(format!("{}/{}", pp.host, pp.spec.proto));
                    }
                    None => {}
                }
            }
            inner.proxies.insert(ep.id.clone(), proxies);
        }
        self.save(&inner)?;
        Ok(report)
    }

    /// At a daemon's clean exit: when no container is attached any more, removes the bridges
    /// and the nftables table (the state keeps the networks; [`reconcile`](Self::reconcile)
    /// brings them back at the next start), so a stopped daemon leaves no device behind.
    /// Returns whether it did.
    pub fn shutdown(&self) -> Result<bool> {
        let mut inner = self.lock();
        if inner.state.endpoints.iter().any(|e| !e.host_if.is_empty()) {
            return Ok(false);
        }
        inner.dns.clear();
        inner.proxies.clear();
        let bridges: Vec<String> = inner
            .state
            .networks
            .iter()
            .filter(|n| n.materialized)
            .filter_map(|n| n.info.bridge.clone())
            .collect();
        netlink::delete_links(&bridges)?;
        nft::apply(&self.cfg.prefix, &[])?;
        for n in inner
            .state
            .networks
            .iter_mut()
            .filter(|n| n.info.predefined)
        {
            n.materialized = false;
        }
        self.save(&inner)?;
        Ok(true)
    }

    /// Removes everything this instance created: endpoints, user-defined networks, the
    /// default bridge and the nftables table (uninstall, and test cleanup). The state file
    /// keeps only the predefined networks.
    pub fn purge(&self) -> Result<()> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner.state.endpoints.iter().map(|e| e.id.clone()).collect();
        for id in ids {
            if let Some(Err(e)) = self.drop_endpoint(&mut inner, &id) {
                tracing::warn!("purge: {e}");
            }
        }
        inner.dns.clear();
        let bridges: Vec<String> = inner
            .state
            .networks
            .iter()
            .filter_map(|n| n.info.bridge.clone())
            .collect();
        netlink::delete_links(&bridges)?;
        inner.state.networks.retain(|n| n.info.predefined);
        for n in &mut inner.state.networks {
            n.materialized = false;
        }
        self.apply_nft(&inner)?;
        self.save(&inner)
    }
}

fn find(state: &State, name_or_id: &str) -> Result<usize> {
    let nets = &state.networks;
    if let Some(i) = nets
        .iter()
        .position(|n| n.info.name == name_or_id || n.info.id == name_or_id)
    {
        return Ok(i);
    }
    let matches: Vec<usize> = nets
        .iter()
        .enumerate()
        .filter(|(_, n)| !name_or_id.is_empty() && n.info.id.starts_with(name_or_id))
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [i] => Ok(*i),
        [] => Err(NetworkError::NotFound(format!(
            "network {name_or_id} not found"
        ))),
        _ => Err(NetworkError::InvalidInput(format!(
            "network {name_or_id} is ambiguous ({} matches)",
            matches.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_network_modes() {
        assert_eq!(NetworkMode::parse("default"), NetworkMode::Bridge);
        assert_eq!(NetworkMode::parse("none").network(), Some("none"));
        assert_eq!(NetworkMode::parse("host").network(), None);
        assert_eq!(
            NetworkMode::parse("container:abc"),
            NetworkMode::Container("abc".into())
        );
        assert_eq!(NetworkMode::parse("mynet").network(), Some("mynet"));
    }

    #[test]
    fn rejects_bad_prefixes_and_keeps_predefined_networks() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["", "Skiff", "toolong1", "9a", "a-b"] {
            let mut c = Config::new(d.path());
            c.prefix = bad.into();
            assert!(
                matches!(NetworkManager::open(c), Err(NetworkError::InvalidInput(_))),
                "{bad}"
            );
        }
        let m = NetworkManager::open(Config::new(d.path())).unwrap();
        let names: Vec<String> = m.list_networks().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "host", "none"]);
        let id = m.inspect_network("bridge").unwrap().id;
        assert!(matches!(
            m.remove_network("host"),
            Err(NetworkError::Forbidden(_))
        ));
        assert!(matches!(
            m.inspect_network("nope"),
            Err(NetworkError::NotFound(_))
        ));
        assert!(matches!(
            m.create_network(NetworkCreate {
                name: "bad name".into(),
                ..Default::default()
            }),
            Err(NetworkError::InvalidInput(_))
        ));
        assert!(matches!(
            m.create_network(NetworkCreate {
                name: "x".into(),
                driver: Some("overlay".into()),
                ..Default::default()
            }),
            Err(NetworkError::InvalidInput(_))
        ));
        drop(m);
        let m = NetworkManager::open(Config::new(d.path())).unwrap();
        assert_eq!(m.inspect_network(&id[..10]).unwrap().name, "bridge");
    }
}
