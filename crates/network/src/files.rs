//! Contents of a container's `/etc/hosts` and `/etc/resolv.conf` (the engine writes the files).

use std::net::{IpAddr, Ipv4Addr};

/// Docker's defaults when no usable nameserver is left.
const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The `/etc/hosts` of a container: the localhost lines, `--add-host` entries, then the
/// container's own addresses under its hostname (and `hostname.domainname` when set).
pub fn hosts_file(
    hostname: &str,
    domainname: Option<&str>,
    own: &[Ipv4Addr],
    extra_hosts: &[(String, IpAddr)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra_hosts {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    let names = match domainname.filter(|d| !d.is_empty()) {
        Some(d) => format!("{hostname}.{d} {hostname}"),
        None => hostname.to_string(),
    };
    for ip in own {
        s.push_str(&format!("{ip}\t{names}\n"));
    }
    s
}

/// What a container asked for: `--dns`, `--dns-search`, `--dns-option`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// `--dns`: replaces the host's nameservers.
    pub servers: Vec<IpAddr>,
    /// `--dns-search`: replaces the host's search domains.
    pub search: Vec<String>,
    /// `--dns-option`: replaces the host's options.
    pub options: Vec<String>,
}

/// A parsed resolv.conf (only the parts that matter here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<IpAddr>,
    /// `search` (and `domain`) domains.
    pub search: Vec<String>,
    /// `options` words.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text; unknown or malformed lines are ignored (as libc does).
    pub fn parse(text: &str) -> ResolvConf {
        let mut r = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // "fe80::1%eth0": drop the zone, we cannot use it inside a container anyway
                    if let Some(ip) = words.next().and_then(|w| w.split('%').next()?.parse().ok()) {
                        r.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => r.search = words.map(String::from).collect(),
                Some("options") => r.options.extend(words.map(String::from)),
                _ => {}
            }
        }
        r
    }

    /// Reads and parses a file; a missing or unreadable file is an empty configuration.
    pub fn read(path: &std::path::Path) -> ResolvConf {
        std::fs::read_to_string(path)
            .map(|t| ResolvConf::parse(&t))
            .unwrap_or_default()
    }
}

/// The servers the embedded DNS forwards to for a container: its `--dns` if any, else the
/// host's (loopback ones included: the embedded DNS runs in the host's namespace).
pub fn upstream_servers(host: &ResolvConf, dns: &DnsSettings) -> Vec<IpAddr> {
    if dns.servers.is_empty() {
        host.nameservers.clone()
    } else {
        dns.servers.clone()
    }
}

/// The `/etc/resolv.conf` of a container.
///
/// * `embedded = Some(ip)` (user-defined networks): the only nameserver is Skiff's DNS at
///   `ip`; the real servers are used by that DNS for forwarding, listed in a comment.
/// * `embedded = None` (the default bridge): the `--dns` servers, else the host's with
///   loopback nameservers dropped (unreachable from the container), else Docker's fallback
///   8.8.8.8 / 8.8.4.4.
pub fn resolv_conf(host: &ResolvConf, dns: &DnsSettings, embedded: Option<Ipv4Addr>) -> String {
    let search = if dns.search.is_empty() {
        &host.search
    } else {
        &dns.search
    };
    let mut options = if dns.options.is_empty() {
        host.options.clone()
    } else {
        dns.options.clone()
    };
    let mut s = String::new();
    match embedded {
        Some(ip) => {
            s.push_str(&format!("nameserver {ip}\n"));
            let ext: Vec<String> = upstream_servers(host, dns)
                .iter()
                .map(ToString::to_string)
                .collect();
            s.push_str(&format!("# ExtServers: [{}]\n", ext.join(" ")));
            if !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push("ndots:0".to_string());
            }
        }
        None => {
            let servers: Vec<IpAddr> = if dns.servers.is_empty() {
                host.nameservers
                    .iter()
                    .copied()
                    .filter(|ip| !ip.is_loopback())
                    .collect()
            } else {
                dns.servers.clone()
            };
            if servers.is_empty() {
                for f in FALLBACK_DNS {
                    s.push_str(&format!("nameserver {f}\n"));
                }
            }
            for ip in servers {
                s.push_str(&format!("nameserver {ip}\n"));
            }
        }
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # lan\n\
                        nameserver fe80::1%eth0\nsearch example.com corp\noptions edns0 trust-ad\n";

    #[test]
    fn parses_host_resolv_conf() {
        let r = ResolvConf::parse(HOST);
        assert_eq!(r.nameservers.len(), 3);
        assert_eq!(r.search, vec!["example.com", "corp"]);
        assert_eq!(r.options, vec!["edns0", "trust-ad"]);
    }

    #[test]
    fn default_bridge_drops_loopback_nameservers() {
        let r = ResolvConf::parse(HOST);
        let s = resolv_conf(&r, &DnsSettings::default(), None);
        assert!(!s.contains("127.0.0.53"));
        assert!(s.contains("nameserver 10.0.0.2\n"));
        assert!(s.contains("search example.com corp\n"));
        let only_local = ResolvConf::parse("nameserver 127.0.0.1\n");
        let s = resolv_conf(&only_local, &DnsSettings::default(), None);
        assert_eq!(s, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn user_networks_use_the_embedded_dns() {
        let r = ResolvConf::parse(HOST);
        let dns = DnsSettings {
            servers: vec!["1.1.1.1".parse().unwrap()],
            search: vec!["svc".into()],
            options: vec![],
        };
        let s = resolv_conf(&r, &dns, Some(Ipv4Addr::new(10, 5, 0, 1)));
        assert!(s.starts_with("nameserver 10.5.0.1\n# ExtServers: [1.1.1.1]\n"));
        assert!(s.contains("search svc\n"));
        assert!(s.contains("options edns0 trust-ad ndots:0\n"));
        assert_eq!(s.matches("nameserver").count(), 1);
    }

    #[test]
    fn hosts_lists_extra_hosts_and_own_addresses() {
        let h = hosts_file(
            "web",
            Some("example.org"),
            &[Ipv4Addr::new(10, 0, 0, 2)],
            &[("db".into(), "10.0.0.9".parse().unwrap())],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.9\tdb\n"));
        assert!(h.ends_with("10.0.0.2\tweb.example.org web\n"));
    }
}
