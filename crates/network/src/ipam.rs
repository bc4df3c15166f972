//! IPv4 subnets and address allocation (pure logic; persisted by the manager).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{NetworkError, Result};

/// An IPv4 prefix such as `172.18.0.0/16`, always stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// A prefix; fails when `addr` has host bits set (Docker: "invalid subnet").
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self> {
        if prefix > 32 {
            return Err(NetworkError::InvalidInput(format!(
                "invalid subnet {addr}/{prefix}: the prefix length must be at most 32"
            )));
        }
        let net = Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        };
        if net.addr != addr {
            return Err(NetworkError::InvalidInput(format!(
                "invalid subnet {addr}/{prefix}: it should be {net}"
            )));
        }
        Ok(net)
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first and last address of the prefix, as integers.
    fn range(&self) -> (u32, u32) {
        let first = u32::from(self.addr);
        (first, first | !mask(self.prefix))
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.range().1)
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn covers(&self, other: &Ipv4Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The first usable host address (Docker's default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.range().0.saturating_add(1))
    }

    /// The `n`-th sub-prefix of length `len` inside this one, if it exists.
    pub fn nth_subnet(&self, len: u8, n: u32) -> Option<Ipv4Net> {
        if len < self.prefix || len > 32 {
            return None;
        }
        let count = 1u64 << (len - self.prefix);
        if u64::from(n) >= count {
            return None;
        }
        let step = 1u64 << (32 - len);
        let start = u64::from(self.range().0) + u64::from(n) * step;
        let start = u32::try_from(start).ok()?;
        Some(Ipv4Net {
            addr: Ipv4Addr::from(start),
            prefix: len,
        })
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            NetworkError::InvalidInput(format!(
                "invalid subnet {s:?}: expected an IPv4 CIDR such as 172.18.0.0/16"
            ))
        };
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        Ipv4Net::new(addr, prefix)
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = NetworkError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

/// The address pool of one network: which addresses are handed out, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The network's subnet.
    pub subnet: Ipv4Net,
    /// The gateway (the bridge's own address); never handed out.
    pub gateway: Ipv4Addr,
    /// Where dynamic addresses come from (`--ip-range`); the subnet when absent.
    pub range: Option<Ipv4Net>,
    /// Addresses in use.
    pub allocated: BTreeSet<Ipv4Addr>,
    /// The last dynamically allocated address: allocation rolls forward from it, like Docker,
    /// so a released address is not reused at once.
    pub last: Option<Ipv4Addr>,
}

impl Pool {
    /// A pool; checks the gateway and range against the subnet.
    pub fn new(subnet: Ipv4Net, gateway: Option<Ipv4Addr>, range: Option<Ipv4Net>) -> Result<Self> {
        if subnet.prefix() > 30 {
            return Err(NetworkError::InvalidInput(format!(
                "subnet {subnet} is too small: at least a /30 is needed for a gateway and one address"
            )));
        }
        let gateway = gateway.unwrap_or_else(|| subnet.first_host());
        if !subnet.contains(gateway) || gateway == subnet.addr() || gateway == subnet.broadcast() {
            return Err(NetworkError::InvalidInput(format!(
                "gateway {gateway} is not a usable address of subnet {subnet}"
            )));
        }
        if let Some(r) = range {
            if !subnet.covers(&r) {
                return Err(NetworkError::InvalidInput(format!(
                    "ip range {r} is not inside subnet {subnet}"
                )));
            }
        }
        Ok(Pool {
            subnet,
            gateway,
            range,
            allocated: BTreeSet::new(),
            last: None,
        })
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.subnet.addr()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
    }

    /// Hands out `want` (a static `--ip`) or the next free address of the range.
    pub fn allocate(&mut self, want: Option<Ipv4Addr>, network: &str) -> Result<Ipv4Addr> {
        if let Some(ip) = want {
            if !self.usable(ip) {
                return Err(NetworkError::InvalidInput(format!(
                    "address {ip} is not a usable address of network {network} (subnet {}, gateway {})",
                    self.subnet, self.gateway
                )));
            }
            if !self.allocated.insert(ip) {
                return Err(NetworkError::Conflict(format!(
                    "address {ip} is already in use on network {network}"
                )));
            }
            return Ok(ip);
        }
        let (lo, hi) = self.range.unwrap_or(self.subnet).range();
        let start = self
            .last
            .map(u32::from)
            .filter(|l| (lo..=hi).contains(l))
            .map_or(lo, |l| if l >= hi { lo } else { l + 1 });
        let mut candidate = start;
        loop {
            let ip = Ipv4Addr::from(candidate);
            if self.usable(ip) && !self.allocated.contains(&ip) {
                self.allocated.insert(ip);
                self.last = Some(ip);
                return Ok(ip);
            }
            candidate = if candidate >= hi { lo } else { candidate + 1 };
            if candidate == start {
                return Err(NetworkError::Conflict(format!(
                    "no free address left on network {network} ({})",
                    self.range.unwrap_or(self.subnet)
                )));
            }
        }
    }

    /// Returns an address to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.allocated.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects_subnets() {
        assert_eq!(net("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert!(matches!(
            "10.1.0.1/16".parse::<Ipv4Net>(),
            Err(NetworkError::InvalidInput(m)) if m.contains("10.1.0.0/16")
        ));
        assert!("10.1.0.0".parse::<Ipv4Net>().is_err());
        assert!("10.1.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("x/8".parse::<Ipv4Net>().is_err());
        assert!(net("10.0.0.0/8").overlaps(&net("10.3.0.0/16")));
        assert!(!net("10.0.0.0/16").overlaps(&net("10.1.0.0/16")));
        assert_eq!(
            net("10.0.0.0/8").nth_subnet(16, 3),
            Some(net("10.3.0.0/16"))
        );
        assert_eq!(net("10.0.0.0/8").nth_subnet(16, 256), None);
        assert_eq!(net("0.0.0.0/0").broadcast(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn allocates_without_duplicates_and_rolls_forward() {
        let mut p = Pool::new(net("10.0.0.0/29"), None, None).unwrap();
        let got: Vec<_> = (0..5).map(|_| p.allocate(None, "n").unwrap()).collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 0, 0, 6));
        assert!(matches!(
            p.allocate(None, "n"),
            Err(NetworkError::Conflict(_))
        ));
        p.release(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(p.allocate(None, "n").unwrap(), Ipv4Addr::new(10, 0, 0, 3));
        p.release(Ipv4Addr::new(10, 0, 0, 2));
        p.release(Ipv4Addr::new(10, 0, 0, 5));
        // rolls forward from .3 rather than reusing .2 first
        assert_eq!(p.allocate(None, "n").unwrap(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(p.allocate(None, "n").unwrap(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn static_addresses_and_ranges() {
        let mut p = Pool::new(
            net("10.0.0.0/24"),
            Some(Ipv4Addr::new(10, 0, 0, 254)),
            Some(net("10.0.0.128/25")),
        )
        .unwrap();
        assert_eq!(p.allocate(None, "n").unwrap(), Ipv4Addr::new(10, 0, 0, 128));
        let s = Ipv4Addr::new(10, 0, 0, 7);
        assert_eq!(p.allocate(Some(s), "n").unwrap(), s);
        assert!(matches!(
            p.allocate(Some(s), "n"),
            Err(NetworkError::Conflict(_))
        ));
        assert!(matches!(
            p.allocate(Some(Ipv4Addr::new(10, 0, 0, 254)), "n"),
            Err(NetworkError::InvalidInput(_))
        ));
        assert!(p.allocate(Some(Ipv4Addr::new(10, 0, 1, 1)), "n").is_err());
        assert!(Pool::new(net("10.0.0.0/24"), Some(Ipv4Addr::new(10, 0, 1, 1)), None).is_err());
        assert!(Pool::new(net("10.0.0.0/24"), None, Some(net("10.0.1.0/25"))).is_err());
    }
}
