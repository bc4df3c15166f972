//! What the host already uses: its IPv4 routes (so automatically chosen subnets never shadow
//! them, as Docker does) and a machine-wide lock that serializes subnet choices between
//! several Skiff instances (each with its own prefix) choosing at the same time.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::ipam::Ipv4Net;

/// The lock file shared by every instance on the machine.
const LOCK_FILE: &str = "/run/skiff-network.lock";

/// One route of the main table: its destination and device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub dest: Ipv4Net,
    pub dev: String,
}

/// Parses `/proc/net/route` (little-endian hex destination and mask); the default route and
/// malformed lines are left out.
pub(crate) fn parse_routes(text: &str) -> Vec<Route> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, dest, mask) = (f.first()?, hex(f.get(1)?)?, hex(f.get(7)?)?);
            let prefix = u8::try_from(mask.count_ones()).ok()?;
            if prefix == 0 {
                return None;
            }
            Some(Route {
                dest: Ipv4Net::new(Ipv4Addr::from(dest), prefix).ok()?,
                dev: (*dev).to_string(),
            })
        })
        .collect()
}

/// The host's routes (none when `/proc/net/route` cannot be read).
pub(crate) fn routes() -> Vec<Route> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default()
}

/// Whether `net` overlaps a route of a device other than `except`.
pub(crate) fn clashes(routes: &[Route], net: &Ipv4Net, except: &[&str]) -> bool {
    routes
        .iter()
        .any(|r| r.dest.overlaps(net) && !except.contains(&r.dev.as_str()))
}

/// Holds the machine-wide lock until dropped; `None` when the lock file cannot be used
/// (then instances are only as safe as their configured subnets).
pub(crate) fn machine_lock() -> Option<Flock<File>> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(LOCK_FILE))
        .ok()?;
    Flock::lock(f, FlockArg::LockExclusive).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_route() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r = parse_routes(t);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].dest.to_string(), "192.0.2.0/24");
        assert_eq!(r[1].dest.to_string(), "172.17.0.0/16");
        assert_eq!(r[1].dev, "docker0");
        let n: Ipv4Net = "172.17.5.0/24".parse().unwrap();
        assert!(clashes(&r, &n, &[]));
        assert!(!clashes(&r, &n, &["docker0"]));
        assert!(!clashes(&r, &"172.18.0.0/16".parse().unwrap(), &[]));
    }
}
