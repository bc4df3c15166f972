//! Docker networking in skiffd: the engine's [`NetworkHook`] backed by `skiff-network`
//! (endpoints, published ports, `/etc/hosts` and `/etc/resolv.conf`), the containers'
//! `NetworkSettings`, and the `/networks` endpoints.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use skiff_engine::models::{
    EndpointSettings, HostConfig, NetworkSettings, NetworkingConfig, PortBinding,
};
use skiff_engine::{NetworkHook, Record};
use skiff_network::{
    hosts_file, resolv_conf, DnsSettings, Endpoint, EndpointRequest, Ipv4Net, Network,
    NetworkCreate, NetworkError, NetworkManager, NetworkMode, PortSpec,
};

use crate::error::{chain, ApiError};
use crate::events::Events;
use crate::http::{self, Body, Query};
use crate::router::{blocking, ok_json};
use crate::State;

/// Opens the network state under `<data_root>/network` and brings devices, rules, proxies and
/// DNS servers in line with it (after a restart or a crash).
pub(crate) fn open(config: &crate::Config) -> Result<NetworkManager, NetworkError> {
    let n = &config.network;
    let mut cfg = skiff_network::Config::new(config.data_root.join("network"));
    cfg.prefix.clone_from(&n.prefix);
    cfg.mtu = n.mtu;
    cfg.ip_forward = n.ip_forward;
    if !n.address_pools.is_empty() {
        cfg.address_pools.clone_from(&n.address_pools);
    }
    match n.bridge_subnet {
        Some(s) => cfg.bridge_subnet = s,
        None => cfg.auto_bridge_subnet = true,
    }
    let m = NetworkManager::open(cfg)?;
    let report = m.reconcile()?;
    if report != skiff_network::ReconcileReport::default() {
        tracing::info!(?report, "network state reconciled");
    }
    Ok(m)
}

/// The engine's network hook.
pub(crate) struct Hook {
    pub(crate) mgr: Arc<NetworkManager>,
    pub(crate) events: Arc<Events>,
    /// `<data_root>/containers`: where `container:<id>` modes find the other's files.
    pub(crate) containers: PathBuf,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("prefix", &self.mgr.config().prefix)
            .finish()
    }
}

fn engine_err(e: NetworkError) -> skiff_engine::Error {
    match e {
        NetworkError::NotFound(m) => skiff_engine::Error::NotFound(m),
        NetworkError::Conflict(m) => skiff_engine::Error::Conflict(m),
        NetworkError::InvalidInput(m) => skiff_engine::Error::InvalidInput(m),
        e => skiff_engine::Error::Internal(chain(&e)),
    }
}

fn mode_of(hc: &HostConfig) -> NetworkMode {
    NetworkMode::parse(hc.network_mode.as_deref().unwrap_or(""))
}

/// The network name Docker shows for a mode (`default` is `bridge`).
fn network_name(mode: &NetworkMode) -> Option<String> {
    match mode {
        NetworkMode::Host => Some("host".into()),
        m => m.network().map(String::from),
    }
}

/// The endpoint settings a create request gave for `network`.
fn endpoint_config<'a>(
    nc: Option<&'a NetworkingConfig>,
    network: &str,
) -> Option<&'a EndpointSettings> {
    let m = nc?.endpoints_config.as_ref()?;
    m.get(network)
        .or_else(|| (network == "bridge").then(|| m.get("default")).flatten())
}

/// The networks of `NetworkingConfig` besides the primary one, sorted by name.
fn extra_networks(rec: &Record, primary: &str) -> Vec<(String, EndpointSettings)> {
    let mut v: Vec<(String, EndpointSettings)> = rec
        .networking_config
        .as_ref()
        .and_then(|nc| nc.endpoints_config.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| {
            n != primary && !(primary == "bridge" && n == "default") && n != "none" && n != "host"
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn parse_ip(s: Option<&str>) -> Result<Option<Ipv4Addr>, NetworkError> {
    match s.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| NetworkError::InvalidInput(format!("invalid IPv4 address {s:?} (--ip)"))),
    }
}

fn parse_mac(s: Option<&str>) -> Result<Option<[u8; 6]>, NetworkError> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let bad = || NetworkError::InvalidInput(format!("invalid MAC address {s:?}"));
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    <[u8; 6]>::try_from(parts).map(Some).map_err(|_| bad())
}

/// `-p` and `-P` as port specs.
fn port_specs(hc: &HostConfig, exposed: &[String]) -> Result<Vec<PortSpec>, NetworkError> {
    let mut out = Vec::new();
    let bindings = hc.port_bindings.clone().unwrap_or_default();
    let mut keys: Vec<&String> = bindings.keys().collect();
    keys.sort();
    for key in keys {
        let container: PortSpec = key.parse()?;
        let binds = bindings[key].clone().unwrap_or_default();
        let binds = if binds.is_empty() {
            vec![PortBinding::default()]
        } else {
            binds
        };
        for b in binds {
            let host_ip = match b.host_ip.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
                    NetworkError::InvalidInput(format!("invalid host IP {ip:?} for port {key}"))
                })?),
            };
            let host_port = match b.host_port.as_deref().filter(|s| !s.is_empty()) {
                None => 0,
                Some(p) => p.parse().map_err(|_| {
                    NetworkError::InvalidInput(format!("invalid host port {p:?} for port {key}"))
                })?,
            };
            out.push(PortSpec {
                host_ip,
                host_port,
                ..container
            });
        }
    }
    if hc.publish_all_ports.unwrap_or(false) {
        for key in exposed {
            if bindings.contains_key(key) {
                continue;
            }
            out.push(key.parse()?);
        }
    }
    Ok(out)
}

fn exposed(rec: &Record) -> Vec<String> {
    let mut v: Vec<String> = rec
        .config
        .exposed_ports
        .as_ref()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn dns_settings(hc: &HostConfig) -> Result<DnsSettings, NetworkError> {
    let servers = hc
        .dns
        .iter()
        .flatten()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| NetworkError::InvalidInput(format!("invalid DNS server {s:?}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(DnsSettings {
        servers,
        search: hc.dns_search.clone().unwrap_or_default(),
        options: hc.dns_options.clone().unwrap_or_default(),
    })
}

impl Hook {
    /// `--add-host name:ip` entries; `host-gateway` is the default bridge's gateway.
    fn extra_hosts(&self, hc: &HostConfig) -> Result<Vec<(String, IpAddr)>, NetworkError> {
        let mut out = Vec::new();
        for e in hc.extra_hosts.iter().flatten() {
            let (name, ip) = e.split_once(['=', ':']).ok_or_else(|| {
                NetworkError::InvalidInput(format!("invalid extra host {e:?}: use name:ip"))
            })?;
            let ip = if ip == "host-gateway" {
                self.mgr
                    .inspect_network("bridge")?
                    .gateway
                    .map(IpAddr::V4)
                    .ok_or_else(|| {
                        NetworkError::InvalidInput("the default bridge has no gateway".into())
                    })?
            } else {
                ip.trim_matches(['[', ']']).parse().map_err(|_| {
                    NetworkError::InvalidInput(format!("invalid IP address in extra host {e:?}"))
                })?
            };
            out.push((name.to_string(), ip));
        }
        Ok(out)
    }

    /// Writes the container's hosts and resolv.conf in place (they are bind-mounted by inode).
    fn write_files(
        &self,
        rec: &Record,
        own: &[Ipv4Addr],
        network: Option<&str>,
    ) -> Result<(), String> {
        let hc = &rec.host_config;
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        let extra = self.extra_hosts(hc).map_err(|e| e.to_string())?;
        let hosts = hosts_file(&hostname, rec.config.domainname.as_deref(), own, &extra);
        let dns = dns_settings(hc).map_err(|e| e.to_string())?;
        let embedded = match network {
            Some(n) => self.mgr.embedded_dns(n).map_err(|e| e.to_string())?,
            None => None,
        };
        let resolv = resolv_conf(self.mgr.host_resolv_conf(), &dns, embedded);
        for (path, data) in [(&rec.hosts_path, hosts), (&rec.resolv_conf_path, resolv)] {
            std::fs::write(path, data).map_err(|e| format!("cannot write {path}: {e}"))?;
        }
        Ok(())
    }

    fn publish(&self, action: &str, ep: &Endpoint) {
        self.events.publish(
            "network",
            action,
            &ep.network_id,
            &[
                ("container", ep.container_id.as_str()),
                ("name", ep.network.as_str()),
                ("type", "bridge"),
            ],
        );
    }

    /// Connects a running container (its namespace at `netns`) to `network`.
    fn connect(
        &self,
        rec: &Record,
        network: &str,
        netns: &Path,
        ec: Option<&EndpointSettings>,
    ) -> Result<Endpoint, NetworkError> {
        let hc = &rec.host_config;
        let user = !matches!(network, "bridge" | "none");
        let mut aliases: Vec<String> = if user {
            ec.and_then(|e| e.aliases.clone()).unwrap_or_default()
        } else {
            Vec::new()
        };
        aliases.dedup();
        let ip = parse_ip(
            ec.and_then(|e| e.ipam_config.as_ref())
                .and_then(|i| i.ipv4_address.as_deref()),
        )?;
        let mac = parse_mac(
            ec.and_then(|e| e.mac_address.as_deref())
                .or(rec.config.mac_address.as_deref()),
        )?;
        let ports = if network == "none" {
            Vec::new()
        } else {
            port_specs(hc, &exposed(rec))?
        };
        let req = EndpointRequest {
            container_id: rec.id.clone(),
            name: Some(rec.name.trim_start_matches('/').to_string()),
            aliases,
            netns: netns.to_path_buf(),
            ip,
            mac,
            ifname: None,
            ports,
            dns: dns_settings(hc)?,
        };
        let ep = self.mgr.connect(network, req)?;
        if network != "none" {
            self.publish("connect", &ep);
        }
        Ok(ep)
    }
}

impl NetworkHook for Hook {
    fn setup(&self, rec: &Record, netns: &Path) -> Result<(), String> {
        let mode = mode_of(&rec.host_config);
        match &mode {
            NetworkMode::Host => Ok(()),
            NetworkMode::Container(other) => {
                // Docker shares the other container's files.
                for f in ["hosts", "resolv.conf"] {
                    let src = self.containers.join(other).join(f);
                    let dst = if f == "hosts" {
                        &rec.hosts_path
                    } else {
                        &rec.resolv_conf_path
                    };
                    if let Ok(data) = std::fs::read(&src) {
                        std::fs::write(dst, data)
                            .map_err(|e| format!("cannot write {dst}: {e}"))?;
                    }
                }
                Ok(())
            }
            _ => {
                let net = mode.network().unwrap_or("bridge").to_string();
                let ec = endpoint_config(rec.networking_config.as_ref(), &net);
                let ep = self.connect(rec, &net, netns, ec).map_err(|e| chain(&e))?;
                let mut own: Vec<Ipv4Addr> = ep.ip.into_iter().collect();
                // The other networks it was connected to (create with several, or `network
                // connect` while it was stopped).
                if net != "none" {
                    for (name, ec) in extra_networks(rec, &net) {
                        match self.connect(rec, &name, netns, Some(&ec)) {
                            Ok(ep) => own.extend(ep.ip),
                            Err(e) => {
                                self.teardown(&rec.id);
                                return Err(chain(&e));
                            }
                        }
                    }
                }
                let emb = (net != "none").then_some(net.as_str());
                if let Err(e) = self.write_files(rec, &own, emb) {
                    self.teardown(&rec.id);
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    fn teardown(&self, container_id: &str) {
        let eps = self.mgr.container_endpoints(container_id);
        if let Err(e) = self.mgr.release_container(container_id) {
            tracing::warn!(container = %container_id, "network teardown: {}", chain(&e));
        }
        for ep in eps.iter().filter(|e| e.ip.is_some()) {
            self.publish("disconnect", ep);
        }
    }

    fn validate(&self, hc: &HostConfig, nc: Option<&NetworkingConfig>) -> skiff_engine::Result<()> {
        let mode = mode_of(hc);
        if let NetworkMode::Named(n) = &mode {
            self.mgr.inspect_network(n).map_err(engine_err)?;
        }
        let check = || -> Result<(), NetworkError> {
            port_specs(hc, &[])?;
            dns_settings(hc)?;
            self.extra_hosts(hc)?;
            if let Some(net) = mode.network() {
                let ec = endpoint_config(nc, net);
                let ip = parse_ip(
                    ec.and_then(|e| e.ipam_config.as_ref())
                        .and_then(|i| i.ipv4_address.as_deref()),
                )?;
                parse_mac(ec.and_then(|e| e.mac_address.as_deref()))?;
                if ip.is_some() && !self.mgr.inspect_network(net)?.user_subnet {
                    return Err(NetworkError::InvalidInput(
                        "user specified IP address is supported only when connecting to networks with user configured subnets".into(),
                    ));
                }
            }
            Ok(())
        };
        check().map_err(engine_err)
    }

    fn settings(&self, rec: &Record) -> Option<NetworkSettings> {
        Some(settings(&self.mgr, rec))
    }
}

fn endpoint_settings(
    net: Option<&Network>,
    ep: Option<&Endpoint>,
    ec: Option<&EndpointSettings>,
) -> EndpointSettings {
    let s = |v: Option<String>| Some(v.unwrap_or_default());
    EndpointSettings {
        ipam_config: ec.and_then(|e| e.ipam_config.clone()),
        links: None,
        mac_address: s(ep.map(|e| e.mac.clone())),
        aliases: ec.and_then(|e| e.aliases.clone()),
        network_id: s(net.map(|n| n.id.clone())),
        endpoint_id: s(ep.map(|e| e.id.clone())),
        gateway: s(ep.and_then(|e| e.gateway).map(|g| g.to_string())),
        ip_address: s(ep.and_then(|e| e.ip).map(|i| i.to_string())),
        ip_prefix_len: Some(ep.map_or(0, |e| i64::from(e.prefix))),
        ipv6_gateway: Some(String::new()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        dns_names: ep.map(|e| e.names.clone()).filter(|n| !n.is_empty()),
        driver_opts: None,
    }
}

/// `NetworkSettings` of container inspect, as Docker shapes them.
fn settings(mgr: &NetworkManager, rec: &Record) -> NetworkSettings {
    let mode = mode_of(&rec.host_config);
    let running = rec.state.status.is_running();
    let eps = mgr.container_endpoints(&rec.id);
    let mut networks = HashMap::new();
    if let Some(name) = network_name(&mode) {
        let net = mgr.inspect_network(&name).ok();
        let ep = eps.iter().find(|e| e.network == name);
        let ec = endpoint_config(rec.networking_config.as_ref(), &name);
        networks.insert(name.clone(), endpoint_settings(net.as_ref(), ep, ec));
    }
    if let Some(primary) = network_name(&mode) {
        for (name, ec) in extra_networks(rec, &primary) {
            let net = mgr.inspect_network(&name).ok();
            let ep = eps.iter().find(|e| e.network == name);
            networks.insert(name.clone(), endpoint_settings(net.as_ref(), ep, Some(&ec)));
        }
    }
    for ep in &eps {
        if !networks.contains_key(&ep.network) {
            let net = mgr.inspect_network(&ep.network_id).ok();
            networks.insert(
                ep.network.clone(),
                endpoint_settings(net.as_ref(), Some(ep), None),
            );
        }
    }
    let mut ports: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    if running && !matches!(mode, NetworkMode::Host | NetworkMode::Container(_)) {
        for k in exposed(rec) {
            ports.insert(k, None);
        }
        for ep in &eps {
            for p in &ep.ports {
                let key = format!("{}/{}", p.spec.container_port, p.spec.proto);
                ports
                    .entry(key)
                    .or_insert(None)
                    .get_or_insert_with(Vec::new)
                    .push(PortBinding {
                        host_ip: Some(p.host.ip().to_string()),
                        host_port: Some(p.host.port().to_string()),
                    });
            }
        }
    }
    let bridge = eps.iter().find(|e| e.network == "bridge");
    let s = |v: Option<String>| Some(v.unwrap_or_default());
    NetworkSettings {
        bridge: Some(String::new()),
        sandbox_id: s(running.then(|| rec.id.clone())),
        hairpin_mode: Some(false),
        link_local_ipv6_address: Some(String::new()),
        link_local_ipv6_prefix_len: Some(0),
        ports: Some(ports),
        sandbox_key: s(running.then(|| format!("/proc/{}/ns/net", rec.state.pid))),
        secondary_ip_addresses: None,
        secondary_ipv6_addresses: None,
        endpoint_id: s(bridge.map(|e| e.id.clone())),
        gateway: s(bridge.and_then(|e| e.gateway).map(|g| g.to_string())),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        ip_address: s(bridge.and_then(|e| e.ip).map(|i| i.to_string())),
        ip_prefix_len: Some(bridge.map_or(0, |e| i64::from(e.prefix))),
        ipv6_gateway: Some(String::new()),
        mac_address: s(bridge.map(|e| e.mac.clone())),
        networks: Some(networks),
    }
}

// ---- /networks ---------------------------------------------------------------------------

fn rfc3339(secs: u64) -> String {
    crate::time::rfc3339(secs)
}

/// Docker's `Network` object; `containers` maps endpoint container ids to their names.
fn network_json(n: &Network, eps: &[Endpoint], names: &HashMap<String, String>) -> Value {
    let mut ipam = Vec::new();
    if let Some(sub) = n.subnet {
        let mut c = json!({"Subnet": sub.to_string()});
        if let Some(g) = n.gateway {
            c["Gateway"] = json!(g.to_string());
        }
        if let Some(r) = n.ip_range {
            c["IPRange"] = json!(r.to_string());
        }
        ipam.push(c);
    }
    let containers: serde_json::Map<String, Value> = eps
        .iter()
        .map(|e| {
            (
                e.container_id.clone(),
                json!({
                    "Name": names.get(&e.container_id).cloned().unwrap_or_default(),
                    "EndpointID": e.id,
                    "MacAddress": e.mac,
                    "IPv4Address": e.ip.map(|ip| format!("{ip}/{}", e.prefix)).unwrap_or_default(),
                    "IPv6Address": "",
                }),
            )
        })
        .collect();
    let mut options: BTreeMap<String, String> = n.options.clone();
    if let Some(b) = &n.bridge {
        if n.predefined {
            options.insert("com.docker.network.bridge.name".into(), b.clone());
            options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
            options.insert("com.docker.network.driver.mtu".into(), n.mtu.to_string());
        }
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": rfc3339(n.created),
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": ipam},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    })
}

fn container_names(state: &State) -> HashMap<String, String> {
    state
        .engine
        .list(true, &skiff_engine::Filters::new())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let name = c.names?.first()?.trim_start_matches('/').to_string();
            Some((c.id?, name))
        })
        .collect()
}

/// `GET /networks?filters=` (name, id, driver, label, type custom|builtin, dangling, scope).
pub(crate) async fn list(state: &Arc<State>, q: &Query) -> Result<Response<Body>, ApiError> {
    let filters = q.filters()?;
    filters.check(&["name", "id", "driver", "label", "type", "dangling", "scope"])?;
    let dangling = filters.bool("dangling")?;
    let st = state.clone();
    let out = blocking(move || {
        let mgr = &st.network;
        let any = |key: &str, f: &dyn Fn(&str) -> bool| {
            let v = filters.get(key);
            v.is_empty() || v.iter().any(|x| f(x))
        };
        let mut out = Vec::new();
        for n in mgr.list_networks() {
            let eps = mgr.endpoints(&n.id).unwrap_or_default();
            let keep = any("name", &|v| n.name.contains(v))
                && any("id", &|v| n.id.starts_with(v))
                && any("driver", &|v| n.driver == v)
                && any("scope", &|v| v == "local")
                && any("type", &|v| match v {
                    "custom" => !n.predefined,
                    "builtin" => n.predefined,
                    _ => false,
                })
                && filters.labels_match(|k| n.labels.get(k).map(String::as_str))
                && dangling.is_none_or(|d| d == (eps.is_empty() && !n.predefined));
            if keep {
                out.push(network_json(&n, &[], &HashMap::new()));
            }
        }
        Ok(out)
    })
    .await?;
    ok_json(&out)
}

/// `GET /networks/{id}`.
pub(crate) async fn inspect(state: &Arc<State>, name: &str) -> Result<Response<Body>, ApiError> {
    let st = state.clone();
    let name = name.to_owned();
    let v = blocking(move || {
        let n = st.network.inspect_network(&name)?;
        let eps = st.network.endpoints(&n.id)?;
        Ok(network_json(&n, &eps, &container_names(&st)))
    })
    .await?;
    ok_json(&v)
}

async fn read_json<B>(body: B) -> Result<Value, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let raw = http::read_body(body, 1 << 20).await?;
    if raw.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `NetworkCreate` a `POST /networks/create` body asks for.
fn create_request(v: &Value) -> Result<NetworkCreate, ApiError> {
    let name = v["Name"].as_str().unwrap_or("").to_owned();
    if name.is_empty() {
        return Err(ApiError::bad_request("network name must not be empty"));
    }
    if v["EnableIPv6"].as_bool() == Some(true) {
        return Err(ApiError::bad_request(
            "IPv6 networks are not supported by skiffd",
        ));
    }
    let driver = v["Driver"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(String::from);
    let cfgs = v["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
    if cfgs.len() > 1 {
        return Err(ApiError::bad_request(
            "only one IPAM configuration (one --subnet) is supported",
        ));
    }
    let field = |k: &str| -> Option<String> {
        cfgs.first()
            .and_then(|c| c[k].as_str())
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let subnet = match field("Subnet") {
        Some(s) => {
            if s.contains(':') {
                return Err(ApiError::bad_request(format!(
                    "invalid subnet {s}: IPv6 is not supported"
                )));
            }
            Some(s.parse::<Ipv4Net>()?)
        }
        None => None,
    };
    let ip_range = match field("IPRange") {
        Some(s) => Some(s.parse::<Ipv4Net>()?),
        None => None,
    };
    let gateway = match field("Gateway") {
        Some(g) => Some(
            g.parse::<Ipv4Addr>()
                .map_err(|_| ApiError::bad_request(format!("invalid gateway address {g:?}")))?,
        ),
        None => None,
    };
    Ok(NetworkCreate {
        name,
        driver,
        subnet,
        gateway,
        ip_range,
        internal: v["Internal"].as_bool().unwrap_or(false),
        labels: string_map(&v["Labels"]),
        options: string_map(&v["Options"]),
    })
}

/// `POST /networks/create` → 201 `{Id, Warning}`.
pub(crate) async fn create<B>(state: &Arc<State>, body: B) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let v = read_json(body).await?;
    let req = create_request(&v)?;
    let st = state.clone();
    let n = blocking(move || Ok(st.network.create_network(req)?)).await?;
    state.events.publish(
        "network",
        "create",
        &n.id,
        &[("name", n.name.as_str()), ("type", n.driver.as_str())],
    );
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"Id": n.id, "Warning": ""}),
    ))
}

/// `DELETE /networks/{id}` → 204 (403 for a predefined network, 409 with endpoints).
pub(crate) async fn remove(state: &Arc<State>, name: &str) -> Result<Response<Body>, ApiError> {
    let st = state.clone();
    let name = name.to_owned();
    let n = blocking(move || {
        let n = st.network.inspect_network(&name)?;
        if n.predefined {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{} is a pre-defined network and cannot be removed", n.name),
            ));
        }
        st.network.remove_network(&n.id)?;
        Ok(n)
    })
    .await?;
    state.events.publish(
        "network",
        "destroy",
        &n.id,
        &[("name", n.name.as_str()), ("type", n.driver.as_str())],
    );
    Ok(http::status(StatusCode::NO_CONTENT))
}

/// `POST /networks/prune` → `{NetworksDeleted}`.
pub(crate) async fn prune(state: &Arc<State>, q: &Query) -> Result<Response<Body>, ApiError> {
    let filters = q.filters()?;
    filters.check(&["label", "until"])?;
    let st = state.clone();
    let removed = blocking(move || {
        let keep: Vec<Network> = st
            .network
            .list_networks()
            .into_iter()
            .filter(|n| !filters.labels_match(|k| n.labels.get(k).map(String::as_str)))
            .collect();
        let mut removed = Vec::new();
        for n in st.network.list_networks() {
            if n.predefined || keep.iter().any(|k| k.id == n.id) {
                continue;
            }
            if st
                .network
                .endpoints(&n.id)
                .map(|e| e.is_empty())
                .unwrap_or(false)
                && st.network.remove_network(&n.id).is_ok()
            {
                removed.push(n);
            }
        }
        Ok(removed)
    })
    .await?;
    for n in &removed {
        state.events.publish(
            "network",
            "destroy",
            &n.id,
            &[("name", n.name.as_str()), ("type", n.driver.as_str())],
        );
    }
    let names: Vec<&str> = removed.iter().map(|n| n.name.as_str()).collect();
    ok_json(&json!({ "NetworksDeleted": names }))
}

/// `POST /networks/{id}/connect` `{Container, EndpointConfig}` (running containers).
pub(crate) async fn connect<B>(
    state: &Arc<State>,
    name: &str,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let v = read_json(body).await?;
    let ctr = v["Container"].as_str().unwrap_or("").to_owned();
    let ec: Option<EndpointSettings> = serde_json::from_value(v["EndpointConfig"].clone())
        .map_err(|e| ApiError::bad_request(format!("invalid EndpointConfig: {e}")))?;
    let st = state.clone();
    let name = name.to_owned();
    blocking(move || {
        let net = st.network.inspect_network(&name)?;
        let rec = st.engine.record(&ctr)?;
        let mode = mode_of(&rec.host_config);
        if matches!(
            mode,
            NetworkMode::Host | NetworkMode::Container(_) | NetworkMode::None
        ) || net.driver != "bridge"
        {
            return Err(ApiError::bad_request(format!(
                "container {} cannot be connected to network {}: its network mode is {}",
                rec.name.trim_start_matches('/'),
                net.name,
                rec.host_config.network_mode.as_deref().unwrap_or("default")
            )));
        }
        let primary = network_name(&mode);
        let known = primary.as_deref() == Some(net.name.as_str())
            || extra_networks(&rec, primary.as_deref().unwrap_or(""))
                .iter()
                .any(|(n, _)| *n == net.name);
        if known {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "endpoint with name {} already exists in network {}",
                    rec.name.trim_start_matches('/'),
                    net.name
                ),
            ));
        }
        if rec.state.status.is_running() {
            let netns = PathBuf::from(format!("/proc/{}/ns/net", rec.state.pid));
            st.net_hook.connect(&rec, &net.name, &netns, ec.as_ref())?;
        }
        // Joined again at every start.
        let name = net.name.clone();
        let rec = st.engine.update_networking(&rec.id, move |nc| {
            nc.endpoints_config
                .get_or_insert_with(HashMap::new)
                .insert(name, ec.unwrap_or_default());
        })?;
        if !rec.state.status.is_running() {
            return Ok(());
        }
        // The container's own addresses in its /etc/hosts.
        let own: Vec<Ipv4Addr> = st
            .network
            .container_endpoints(&rec.id)
            .iter()
            .filter_map(|e| e.ip)
            .collect();
        if let Err(e) = st.net_hook.write_files(&rec, &own, primary.as_deref()) {
            tracing::warn!(container = %rec.id, "cannot update /etc/hosts: {e}");
        }
        Ok(())
    })
    .await?;
    Ok(http::status(StatusCode::OK))
}

/// `POST /networks/{id}/disconnect` `{Container, Force}`.
pub(crate) async fn disconnect<B>(
    state: &Arc<State>,
    name: &str,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let v = read_json(body).await?;
    let ctr = v["Container"].as_str().unwrap_or("").to_owned();
    let st = state.clone();
    let name = name.to_owned();
    blocking(move || {
        let net = st.network.inspect_network(&name)?;
        let id = st.engine.resolve(&ctr)?;
        let ep = st
            .network
            .container_endpoints(&id)
            .into_iter()
            .find(|e| e.network_id == net.id);
        let mut recorded = false;
        let n = net.name.clone();
        st.engine.update_networking(&id, |nc| {
            if let Some(m) = nc.endpoints_config.as_mut() {
                recorded = m.remove(&n).is_some();
            }
        })?;
        if ep.is_some() || !recorded {
            st.network.disconnect(&net.id, &id)?;
        }
        if let Some(ep) = ep {
            st.net_hook.publish("disconnect", &ep);
        }
        Ok(())
    })
    .await?;
    Ok(http::status(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_bindings_and_publish_all() {
        let hc: HostConfig = serde_json::from_value(json!({
            "PortBindings": {
                "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]
            },
            "PublishAllPorts": true
        }))
        .unwrap();
        let specs = port_specs(&hc, &["80/tcp".into(), "90/tcp".into()]).unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].container_port, 53);
        assert_eq!(specs[0].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(specs[1].host_port, 8080);
        assert_eq!((specs[2].container_port, specs[2].host_port), (90, 0));
        let bad: HostConfig =
            serde_json::from_value(json!({"PortBindings": {"80/tcp": [{"HostPort": "x"}]}}))
                .unwrap();
        assert!(port_specs(&bad, &[]).is_err());
    }

    #[test]
    fn create_bodies_are_checked() {
        let r = create_request(&json!({
            "Name": "n1", "Internal": true, "Labels": {"a": "b"},
            "IPAM": {"Config": [{"Subnet": "10.7.0.0/24", "Gateway": "10.7.0.254", "IPRange": "10.7.0.128/25"}]}
        }))
        .unwrap();
        assert_eq!(r.subnet.unwrap().to_string(), "10.7.0.0/24");
        assert_eq!(r.gateway, Some(Ipv4Addr::new(10, 7, 0, 254)));
        assert!(r.internal);
        let e =
            create_request(&json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.7.0.0/33"}]}}))
                .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(create_request(&json!({"Name": ""})).is_err());
        assert_eq!(parse_mac(Some("02:42:ac:11:00:09")).unwrap().unwrap()[5], 9);
        assert!(parse_mac(Some("02:42")).is_err());
    }
}
