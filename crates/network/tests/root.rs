//! Real, root-only tests: network namespaces stand in for containers, busybox serves and
//! fetches inside them. Every test uses its own device/table prefix and subnets, so tests run
//! in parallel and never meet a real skiffd. Traffic stays on loopback and test namespaces.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_network::{
    hosts_file, resolv_conf, Config, DnsSettings, EndpointRequest, NetworkCreate, NetworkError,
    NetworkManager, PortSpec,
};

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn try_sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// A named network namespace (a "container"), with /etc/netns files and processes.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    fn new(name: &str) -> Netns {
        let _ = try_sh(&format!("ip netns del {name} 2>/dev/null"));
        sh(&format!("ip netns add {name}"));
        Netns {
            name: name.into(),
            children: Vec::new(),
        }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    fn exec(&self, cmd: &str) -> (bool, String) {
        try_sh(&format!("ip netns exec {} {cmd}", self.name))
    }

    /// busybox httpd on port 80 serving `body` as /index.html.
    fn serve(&mut self, dir: &std::path::Path, body: &str) {
        std::fs::write(dir.join("index.html"), body).unwrap();
        let c = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "busybox", "httpd", "-f", "-p", "80", "-h",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(c);
    }

    /// Files `ip netns exec` bind-mounts over /etc inside this namespace.
    fn etc(&self, file: &str, content: &str) {
        let d = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(format!("{d}/{file}"), content).unwrap();
    }

    fn req(&self, id: &str, name: &str) -> EndpointRequest {
        EndpointRequest {
            container_id: format!("{id:0<64}"),
            name: Some(name.into()),
            netns: self.path(),
            ..Default::default()
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
        let _ = try_sh(&format!("ip netns del {}", self.name));
    }
}

/// A manager with a test prefix and private state; purges everything when dropped.
struct Env {
    m: Option<NetworkManager>,
    cfg: Config,
    _dir: tempfile::TempDir,
}

impl Env {
    /// `prefix`: 4 characters; `n`: selects the test's subnets 10.23{0,1}.n.0/24.
    fn new(prefix: &str, n: u8) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::new(dir.path().join("state"));
        cfg.prefix = prefix.into();
        cfg.bridge_subnet = format!("10.230.{n}.0/24").parse().unwrap();
        cfg.address_pools = vec![(format!("10.232.{n}.0/24").parse().unwrap(), 26)];
        cfg.ip_forward = false;
        cfg.host_resolv_conf = dir.path().join("no-resolv.conf");
        let m = NetworkManager::open(cfg.clone()).unwrap();
        m.reconcile().unwrap();
        Env {
            m: Some(m),
            cfg,
            _dir: dir,
        }
    }

    fn m(&self) -> &NetworkManager {
        self.m.as_ref().unwrap()
    }

    /// Drops the manager (as a crashed daemon would lose its threads) and opens a new one.
    fn restart(&mut self) -> skiff_network::ReconcileReport {
        self.m = None;
        self.m = Some(NetworkManager::open(self.cfg.clone()).unwrap());
        self.m().reconcile().unwrap()
    }

    fn snapshot(&self) -> (String, String, String, Vec<String>) {
        let p = &self.cfg.prefix;
        let links = sh(&format!(
            "ip -o link | grep -E ': {p}' | cut -d: -f2 || true"
        ));
        let addrs = sh(&format!("ip -o -4 addr | grep -E ': {p}' || true"));
        let table = try_sh(&format!("nft list table ip {p}")).1;
        let mut files: Vec<String> = std::fs::read_dir(&self.cfg.data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        (links, addrs, table, files)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(m) = &self.m {
            let _ = m.purge();
        }
    }
}

fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn eventually(what: &str, mut f: impl FnMut() -> (bool, String)) -> String {
    let t = Instant::now();
    loop {
        let (ok, s) = f();
        if ok {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn published_port_reaches_httpd_from_host_and_other_containers() {
    let env = Env::new("tna0", 1);
    let www = tempfile::tempdir().unwrap();
    let mut a = Netns::new("tna0-a");
    let b = Netns::new("tna0-b");
    let c = Netns::new("tna0-c");
    let ea = env
        .m()
        .connect(
            "bridge",
            EndpointRequest {
                ports: vec!["80".parse().unwrap(), "127.0.0.1:0:80".parse().unwrap()],
                ..a.req("a", "web")
            },
        )
        .unwrap();
    assert_eq!(ea.ip, Some(ip4("10.230.1.2")));
    assert_eq!(ea.mac, "02:42:0a:e6:01:02");
    let eb = env.m().connect("bridge", b.req("b", "client")).unwrap();
    a.serve(www.path(), "hello from a");
    let gw = ea.gateway.unwrap();
    let any = ea.ports[0].host;
    let lo = ea.ports[1].host;
    assert!(any.ip().is_unspecified() && any.port() != 0);
    // from the host through 127.0.0.1 and through the bridge's own address
    for addr in [
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), any.port()),
        SocketAddr::new(gw.into(), any.port()),
        lo,
    ] {
        let body = eventually(&format!("GET {addr}"), || match http_get(addr) {
            Ok(s) => (s.contains("hello from a"), s),
            Err(e) => (false, e.to_string()),
        });
        assert!(body.starts_with("HTTP/1."));
    }
    // from another container: through the published port on the gateway, and directly
    let out = eventually("wget from b", || {
        b.exec(&format!(
            "timeout 5 busybox wget -q -O - http://{gw}:{}/index.html",
            any.port()
        ))
    });
    assert!(out.contains("hello from a"));
    let out = b.exec(&format!(
        "timeout 5 busybox wget -q -O - http://{}/index.html",
        ea.ip.unwrap()
    ));
    assert!(out.1.contains("hello from a"), "{out:?}");
    assert_ne!(eb.ip, ea.ip);
    // the same host port again is a conflict, and leaves nothing behind
    let taken = PortSpec {
        host_port: any.port(),
        ..ea.ports[0].spec
    };
    let err = env
        .m()
        .connect(
            "bridge",
            EndpointRequest {
                ports: vec![taken],
                ..c.req("c", "late")
            },
        )
        .unwrap_err();
    assert!(
        matches!(&err, NetworkError::Conflict(m) if m.contains("already allocated")),
        "{err}"
    );
    assert_eq!(c.exec("ip -o link").1.lines().count(), 1);
    // the default bridge gets no embedded DNS, and a resolv.conf without it
    assert_eq!(env.m().embedded_dns("bridge").unwrap(), None);
    // disconnecting closes the port
    env.m().disconnect("bridge", &ea.container_id).unwrap();
    assert!(http_get(lo).is_err());
}

#[test]
fn containers_on_a_user_network_resolve_each_other() {
    let env = Env::new("tnb0", 2);
    let net = env
        .m()
        .create_network(NetworkCreate {
            name: "tnb0-net".into(),
            subnet: Some("10.231.2.0/24".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    let www = tempfile::tempdir().unwrap();
    let mut a = Netns::new("tnb0-a");
    let b = Netns::new("tnb0-b");
    let ea = env
        .m()
        .connect(
            "tnb0-net",
            EndpointRequest {
                aliases: vec!["web".into()],
                ip: Some(ip4("10.231.2.50")),
                ..a.req("a", "alpha")
            },
        )
        .unwrap();
    let eb = env.m().connect(&net.id, b.req("b", "beta")).unwrap();
    assert_eq!(ea.ip, Some(ip4("10.231.2.50")));
    let ns = env.m().embedded_dns("tnb0-net").unwrap().unwrap();
    assert_eq!(ns, ip4("10.231.2.1"));
    let resolv = resolv_conf(
        env.m().host_resolv_conf(),
        &DnsSettings::default(),
        Some(ns),
    );
    b.etc("resolv.conf", &resolv);
    b.etc("hosts", &hosts_file("beta", None, &[eb.ip.unwrap()], &[]));
    a.serve(www.path(), "alpha here");
    for name in ["alpha", "web", "ALPHA", &ea.container_id[..12]] {
        let out = b.exec(&format!("busybox nslookup {name}"));
        assert!(out.0 && out.1.contains("10.231.2.50"), "{name}: {out:?}");
    }
    let out = eventually("wget http://web/", || {
        b.exec("timeout 5 busybox wget -q -O - http://web/index.html")
    });
    assert!(out.contains("alpha here"));
    // names outside the network: forwarding has nowhere to go and fails cleanly
    let t = Instant::now();
    let out = b.exec("busybox nslookup example.invalid");
    assert!(!out.0, "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(8));
    // a disconnected container's name disappears
    env.m().disconnect("tnb0-net", &ea.container_id).unwrap();
    assert!(!b.exec("busybox nslookup alpha").0);
    // the network cannot be removed while b is attached
    assert!(matches!(
        env.m().remove_network("tnb0-net"),
        Err(NetworkError::Forbidden(_))
    ));
    env.m().release_container(&eb.container_id).unwrap();
    env.m().remove_network("tnb0-net").unwrap();
    assert!(!try_sh(&format!("ip link show {}", net.bridge.unwrap())).0);
}

#[test]
fn internal_network_has_no_way_out_and_none_has_only_lo() {
    let env = Env::new("tnc0", 3);
    let int = env
        .m()
        .create_network(NetworkCreate {
            name: "tnc0-int".into(),
            internal: true,
            ..Default::default()
        })
        .unwrap();
    let ext = env
        .m()
        .create_network(NetworkCreate {
            name: "tnc0-ext".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(int.subnet.unwrap().to_string(), "10.232.3.0/26");
    assert_eq!(ext.subnet.unwrap().to_string(), "10.232.3.64/26");
    let a = Netns::new("tnc0-a");
    let b = Netns::new("tnc0-b");
    let ea = env.m().connect("tnc0-int", a.req("a", "a")).unwrap();
    env.m().connect("tnc0-ext", b.req("b", "b")).unwrap();
    assert_eq!(ea.gateway, None);
    let routes = a.exec("ip route").1;
    assert!(!routes.contains("default"), "{routes}");
    assert!(a.exec("ip route get 192.0.2.1").1.contains("unreachable"));
    assert!(b.exec("ip route").1.contains("default via 10.232.3.65"));
    let table = sh("nft list table ip tnc0");
    assert!(
        table.contains("ip saddr 10.232.3.64/26 oifname != \"") && table.contains("masquerade"),
        "{table}"
    );
    assert!(!table.contains("10.232.3.0/26"), "{table}");
    let ib = int.bridge.unwrap();
    assert!(table.contains(&format!("iifname \"{ib}\" drop")), "{table}");
    // still reaches its own network's gateway
    assert!(a.exec("busybox ping -c1 -W2 10.232.3.1").0);

    let n = Netns::new("tnc0-n");
    let en = env.m().connect("none", n.req("n", "n")).unwrap();
    assert_eq!(en.ip, None);
    let links = n.exec("ip -o link").1;
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    assert!(matches!(
        env.m().connect("host", n.req("n", "n")),
        Err(NetworkError::InvalidInput(_))
    ));
}

#[test]
fn ipam_never_duplicates_and_persists_across_restart() {
    let mut env = Env::new("tnd0", 4);
    env.m()
        .create_network(NetworkCreate {
            name: "tnd0-net".into(),
            subnet: Some("10.231.4.0/29".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    let nss: Vec<Netns> = (0..6).map(|i| Netns::new(&format!("tnd0-{i}"))).collect();
    let mut ips = Vec::new();
    for (i, ns) in nss.iter().take(3).enumerate() {
        ips.push(
            env.m()
                .connect("tnd0-net", ns.req(&format!("c{i}"), &format!("c{i}")))
                .unwrap()
                .ip
                .unwrap(),
        );
    }
    let report = env.restart();
    assert!(
        report.removed_endpoints.is_empty() && report.removed_links.is_empty(),
        "{report:?}"
    );
    assert_eq!(env.m().endpoints("tnd0-net").unwrap().len(), 3);
    for (i, ns) in nss.iter().enumerate().skip(3).take(2) {
        ips.push(
            env.m()
                .connect("tnd0-net", ns.req(&format!("c{i}"), &format!("c{i}")))
                .unwrap()
                .ip
                .unwrap(),
        );
    }
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "{ips:?}");
    assert!(!ips.contains(&ip4("10.231.4.1")));
    // /29: .2-.6 usable, all taken
    let full = env
        .m()
        .connect("tnd0-net", nss[5].req("c5", "c5"))
        .unwrap_err();
    assert!(
        matches!(&full, NetworkError::Conflict(m) if m.contains("no free address")),
        "{full}"
    );
    env.m()
        .disconnect("tnd0-net", &format!("{:0<64}", "c1"))
        .unwrap();
    let static_taken = env.m().connect(
        "tnd0-net",
        EndpointRequest {
            ip: Some(ips[0]),
            ..nss[5].req("c5", "c5")
        },
    );
    assert!(matches!(static_taken, Err(NetworkError::Conflict(_))));
    let e = env.m().connect("tnd0-net", nss[5].req("c5", "c5")).unwrap();
    assert_eq!(e.ip, Some(ips[1]));
    // the address really is on eth0 inside
    assert!(nss[5]
        .exec("ip -o addr show eth0")
        .1
        .contains(&format!("{}/29", ips[1])));
}

#[test]
fn five_hundred_endpoint_cycles_leave_nothing_behind() {
    let env = Env::new("tne0", 5);
    env.m()
        .create_network(NetworkCreate {
            name: "tne0-net".into(),
            subnet: Some("10.231.5.0/24".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    let ns = Netns::new("tne0-a");
    // the default bridge comes up on first use and then stays (like docker0)
    let e = env.m().connect("bridge", ns.req("x", "x")).unwrap();
    env.m().disconnect("bridge", &e.container_id).unwrap();
    let before = env.snapshot();
    assert!(before.2.contains("10.230.5.0/24") && before.2.contains("10.231.5.0/24"));
    let names = "ip -o link | cut -d: -f2";
    let ns_before = ns.exec(names).1;
    for i in 0..500 {
        let net = if i % 2 == 0 { "tne0-net" } else { "bridge" };
        let ports = if i % 10 == 0 {
            vec!["80".parse().unwrap()]
        } else {
            vec![]
        };
        let e = env
            .m()
            .connect(
                net,
                EndpointRequest {
                    ports,
                    ..ns.req("x", "x")
                },
            )
            .unwrap();
        assert_eq!(e.ifname, "eth0");
        env.m().disconnect(net, &e.container_id).unwrap();
    }
    assert_eq!(before, env.snapshot());
    assert_eq!(ns.exec(names).1, ns_before);
    assert!(env
        .m()
        .container_endpoints(&format!("{:0<64}", "x"))
        .is_empty());
    // purge removes the table and every device
    env.m().purge().unwrap();
    let gone = env.snapshot();
    assert_eq!(gone.0, "");
    assert!(!try_sh("nft list table ip tne0").0);
}

#[test]
fn reconcile_cleans_what_a_crash_left() {
    let mut env = Env::new("tnf0", 6);
    let www = tempfile::tempdir().unwrap();
    env.m()
        .create_network(NetworkCreate {
            name: "tnf0-net".into(),
            subnet: Some("10.231.6.0/24".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    let mut a = Netns::new("tnf0-a");
    let b = Netns::new("tnf0-b");
    let ea = env
        .m()
        .connect(
            "tnf0-net",
            EndpointRequest {
                ports: vec!["127.0.0.1:0:80".parse().unwrap()],
                ..a.req("a", "a")
            },
        )
        .unwrap();
    let eb = env.m().connect("tnf0-net", b.req("b", "b")).unwrap();
    a.serve(www.path(), "survivor");
    // the crash: b's container dies with the daemon, a veth and a bridge were created but
    // never recorded, and someone flushed the table
    drop(b);
    sh("ip link add tnf0v0123456789 type veth peer name tnf0orphanpeer");
    sh("ip link add tnf0-0123456789 type bridge");
    sh("nft delete table ip tnf0");
    let report = env.restart();
    assert_eq!(
        report.removed_endpoints,
        vec![format!("tnf0-net/{}", eb.container_id)]
    );
    let mut links = report.removed_links.clone();
    links.sort();
    assert_eq!(links, ["tnf0-0123456789", "tnf0v0123456789"]);
    assert!(!try_sh("ip link show tnf0orphanpeer").0);
    assert!(sh("nft list table ip tnf0").contains("10.231.6.0/24"));
    // b's address is free again; a survived, and its port is served again
    let eps = env.m().endpoints("tnf0-net").unwrap();
    assert_eq!(eps.len(), 1);
    let body = eventually("port after restart", || match http_get(ea.ports[0].host) {
        Ok(s) => (s.contains("survivor"), s),
        Err(e) => (false, e.to_string()),
    });
    assert!(body.contains("survivor"));
    let c = Netns::new("tnf0-c");
    let ec = env
        .m()
        .connect(
            "tnf0-net",
            EndpointRequest {
                ip: eb.ip,
                ..c.req("c", "c")
            },
        )
        .unwrap();
    assert_eq!(ec.ip, eb.ip);
    // the DNS came back with a's name
    c.etc("resolv.conf", "nameserver 10.231.6.1\n");
    let out = c.exec("busybox nslookup a");
    assert!(out.1.contains(&ea.ip.unwrap().to_string()), "{out:?}");
}

#[test]
fn create_validates_and_prune_removes_unused_networks() {
    let env = Env::new("tng0", 7);
    let mut opts = std::collections::BTreeMap::new();
    opts.insert(
        "com.docker.network.bridge.name".to_string(),
        "tng0-custom".to_string(),
    );
    opts.insert(
        "com.docker.network.driver.mtu".to_string(),
        "1400".to_string(),
    );
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("team".to_string(), "net".to_string());
    let n = env
        .m()
        .create_network(NetworkCreate {
            name: "tng0-a".into(),
            subnet: Some("10.231.7.0/24".parse().unwrap()),
            gateway: Some(ip4("10.231.7.254")),
            ip_range: Some("10.231.7.128/25".parse().unwrap()),
            labels: labels.clone(),
            options: opts,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(n.bridge.as_deref(), Some("tng0-custom"));
    assert_eq!(
        (n.mtu, n.gateway, n.labels),
        (1400, Some(ip4("10.231.7.254")), labels)
    );
    let link = sh("ip -o addr show tng0-custom");
    assert!(link.contains("10.231.7.254/24"), "{link}");
    assert!(sh("ip -o link show tng0-custom").contains("mtu 1400"));
    let ns = Netns::new("tng0-x");
    let e = env.m().connect("tng0-a", ns.req("x", "x")).unwrap();
    assert_eq!(e.ip, Some(ip4("10.231.7.128")));
    assert!(ns.exec("ip -o link show eth0").1.contains("mtu 1400"));
    let dup = env.m().create_network(NetworkCreate {
        name: "tng0-a".into(),
        ..Default::default()
    });
    assert!(matches!(dup, Err(NetworkError::Conflict(_))));
    let overlap = env.m().create_network(NetworkCreate {
        name: "tng0-b".into(),
        subnet: Some("10.231.7.128/25".parse().unwrap()),
        ..Default::default()
    });
    assert!(
        matches!(&overlap, Err(NetworkError::Conflict(m)) if m.contains("overlaps")),
        "{overlap:?}"
    );
    let bad_gw = env.m().create_network(NetworkCreate {
        name: "tng0-b".into(),
        subnet: Some("10.231.8.0/24".parse().unwrap()),
        gateway: Some(ip4("10.231.9.1")),
        ..Default::default()
    });
    assert!(matches!(bad_gw, Err(NetworkError::InvalidInput(_))));
    assert!(!try_sh("ip link show | grep tng0-").1.contains("tng0-b"));
    let unused = env
        .m()
        .create_network(NetworkCreate {
            name: "tng0-unused".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(env.m().prune_networks().unwrap(), ["tng0-unused"]);
    assert!(matches!(
        env.m().inspect_network(&unused.id),
        Err(NetworkError::NotFound(_))
    ));
    env.m().release_container(&e.container_id).unwrap();
    assert_eq!(env.m().prune_networks().unwrap(), ["tng0-a"]);
    assert!(!try_sh("ip link show tng0-custom").0);
    let names: Vec<String> = env
        .m()
        .list_networks()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["bridge", "host", "none"]);
    // no network needs rules any more: the table is gone
    assert!(!try_sh("nft list table ip tng0").0);
}

/// An "outside world" namespace behind a test-owned veth on the host (10.233.8.0/24): a
/// container reaches it only through Skiff's masquerade (the outside has no route back to
/// container subnets). Needs forwarding already on; the test never turns it on itself.
#[test]
fn outbound_traffic_is_masqueraded_except_on_internal_networks() {
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .map(|v| v.trim() != "1")
        .unwrap_or(true)
    {
        eprintln!("skipped: net.ipv4.ip_forward is off and this test does not change it");
        return;
    }
    let env = Env::new("tnh0", 8);
    let out = Netns::new("tnh0-o");
    struct Link;
    impl Drop for Link {
        fn drop(&mut self) {
            let _ = try_sh("ip link del tnh0-out");
        }
    }
    let _ = try_sh("ip link del tnh0-out 2>/dev/null");
    sh("ip link add tnh0-out type veth peer name tnh0-outp");
    let _link = Link;
    sh("ip link set tnh0-outp netns tnh0-o");
    sh("ip addr add 10.233.8.1/24 dev tnh0-out && ip link set tnh0-out up");
    out.exec("ip addr add 10.233.8.2/24 dev tnh0-outp");
    assert!(out.exec("ip link set tnh0-outp up").0);
    assert!(out.exec("ip link set lo up").0);
    for (name, internal) in [("tnh0-ext", false), ("tnh0-int", true)] {
        env.m()
            .create_network(NetworkCreate {
                name: name.into(),
                internal,
                ..Default::default()
            })
            .unwrap();
    }
    let a = Netns::new("tnh0-a");
    let b = Netns::new("tnh0-b");
    env.m().connect("tnh0-ext", a.req("a", "a")).unwrap();
    env.m().connect("tnh0-int", b.req("b", "b")).unwrap();
    let ok = a.exec("busybox ping -c1 -W2 10.233.8.2");
    assert!(ok.0, "{ok:?}");
    assert!(!b.exec("busybox ping -c1 -W1 10.233.8.2").0);
    // once the network is gone, so is the masquerade rule
    env.m().release_container(&format!("{:0<64}", "a")).unwrap();
    env.m().remove_network("tnh0-ext").unwrap();
    assert!(!sh("nft list table ip tnh0").contains("masquerade"));
}
