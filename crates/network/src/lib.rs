//! Docker's networking model for Skiff, as a library the daemon calls.
//!
//! A container is represented by its network namespace: a path such as `/proc/<pid>/ns/net`
//! or a bind-mounted nsfs file. [`NetworkManager`] owns the networks (`bridge`, `host`,
//! `none` and user-defined bridge networks), their address pools, the containers' endpoints,
//! the published ports and the embedded DNS, and persists them under a data directory.
//!
//! # Design
//!
//! * **Links, addresses, routes**: netlink through `rtnetlink` (its tokio connection driven
//!   by a private current-thread runtime): no process is spawned on the container start path. Each operation runs on a
//!   throwaway thread so `setns` never touches the caller's threads; the API is synchronous
//!   (call it from `spawn_blocking` in async code).
//! * **Endpoints**: a veth pair whose host side (`<prefix>v<hex>`) joins the network's bridge
//!   and whose peer is created directly inside the container's namespace as `ethN`, with the
//!   MAC (`02:42:` + the IPv4 address, like Docker, or `--mac-address`), the MTU, the address,
//!   `lo` up and a default route via the gateway (not on `--internal` networks).
//! * **Firewall**: Skiff writes only its own table `ip <prefix>` with the `nft` CLI, the whole
//!   table per change in one atomic `nft -f -` transaction: masquerade for non-internal
//!   subnets, forwarding accept/isolation rules, nothing else. The table is deleted when no
//!   network needs it. With `Config::ip_forward` the daemon turns on `net.ipv4.ip_forward`
//!   (as Docker does) when a non-internal network is brought up.
//! * **Published ports**: a userland TCP/UDP proxy inside the daemon (see the `ports` module):
//!   reachable through 127.0.0.1, the host's other addresses and the gateway from other
//!   containers, with no NAT rules.
//! * **Embedded DNS**: one UDP resolver per user-defined network on `<gateway>:53`, answering
//!   endpoint names and aliases and relaying the rest to the container's `--dns` servers or the
//!   host's; containers get `nameserver <gateway>` (Docker uses 127.0.0.11 in each container).
//!   The default bridge has no DNS, like Docker.
//! * **State**: one JSON file, atomically replaced after every change. Runtime parts (proxies,
//!   DNS servers) live in the process; [`NetworkManager::reconcile`] (call it once after
//!   [`NetworkManager::open`]) restarts them, drops endpoints whose namespace is gone and
//!   deletes links named with Skiff's prefix that no state refers to, so a daemon killed at any
//!   point leaves nothing a restart cannot clean. The prefix of one instance must not be a
//!   prefix of another instance's.
//!
//! Not covered: IPv6, the `macvlan`/`overlay` drivers, DNS over TCP, hairpin NAT (the proxy
//! replaces it), overlap checks against the host's own routes.

#![forbid(unsafe_code)]

mod dns;
mod error;
mod files;
mod hostnet;
mod ipam;
mod manager;
mod netlink;
mod nft;
mod ports;
mod state;

pub use error::{NetworkError, Result};
pub use files::{hosts_file, resolv_conf, upstream_servers, DnsSettings, ResolvConf};
pub use ipam::Ipv4Net;
pub use manager::{
    Config, Endpoint, EndpointRequest, Network, NetworkCreate, NetworkManager, NetworkMode,
    PublishedPort, ReconcileReport,
};
pub use ports::{PortSpec, Proto};
