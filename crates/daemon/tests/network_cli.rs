//! Docker networking end to end with the real `docker` CLI against skiffd: published ports,
//! user-defined networks with DNS, `--internal`, `none`, `container:<id>`, the /etc files,
//! `docker network` commands, a daemon restart and many create/remove cycles. Every test has
//! its own daemon (own device prefix, derived from its data root) and its own subnets in
//! 10.231.0.0/16-10.235.0.0/16; traffic stays on this machine (loopback, skiffd's bridges and
//! namespaces the tests create).

mod world;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use world::*;

const WEB: &str =
    "mkdir -p /www && echo hello-skiff > /www/index.html && exec httpd -f -p 80 -h /www";

/// A shell command fetching http://host:port/ with busybox nc (busybox-static's wget crashes).
fn get(host: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port} | tail -n 1")
}

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// A world whose daemon uses 10.231.<n>.0/24 for the default bridge and 10.232.<16n>.0/20 for
/// user networks.
fn net_world(n: u8) -> Option<World> {
    if !can_run() {
        return None;
    }
    if on_path("nft").is_none() || on_path("ip").is_none() {
        let msg = "network end-to-end tests need nft and ip (nftables, iproute2)";
        assert!(std::env::var_os("SKIFF_REQUIRE_DOCKER").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    assert!(n < 16);
    let mut w = World::new();
    std::fs::write(
        w.tmp.path().join("daemon.json"),
        format!(
            r#"{{"bip": "10.231.{n}.1/24",
                "default-address-pools": [{{"base": "10.232.{}.0/20", "size": 24}}]}}"#,
            u32::from(n) * 16
        ),
    )
    .unwrap();
    w.restart_daemon();
    Some(w)
}

fn http_get(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Retries `f` for up to 10 s (a server starting in a container).
fn eventually(what: &str, mut f: impl FnMut() -> (bool, String)) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out) = f();
        if ok {
            return out;
        }
        assert!(Instant::now() < deadline, "{what}: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fetch(addr: &str) -> String {
    eventually(&format!("GET http://{addr}/"), || match http_get(addr) {
        Ok(body) => (body.contains("hello-skiff"), body),
        Err(e) => (false, e.to_string()),
    })
}

fn inspect(w: &World, what: &str, format: &str) -> String {
    w.docker(&["inspect", "-f", format, what])
        .trim()
        .to_string()
}

/// The device prefix skiffd derived from this world's data root (its links and table).
fn prefix(w: &World) -> String {
    let id = w.docker(&[
        "network",
        "inspect",
        "-f",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
        "bridge",
    ]);
    let b = id.trim();
    b.strip_suffix('0').unwrap_or(b).to_string()
}

fn links_with(prefix: &str) -> Vec<String> {
    let (_, out) = sh("ip -o link show");
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn published_port_reaches_httpd_from_host_and_other_containers() {
    let Some(w) = net_world(1) else { return };
    let port = free_port();
    let publish = format!("{port}:80");
    let id = w.docker(&[
        "run", "-d", "--name", "web", "-p", &publish, IMAGE, "sh", "-c", WEB,
    ]);
    let id = id.trim();
    let ip = inspect(&w, "web", "{{.NetworkSettings.IPAddress}}");
    assert!(ip.starts_with("10.231.1."), "{ip}");
    assert_eq!(
        inspect(&w, "web", "{{.NetworkSettings.Gateway}}"),
        "10.231.1.1"
    );
    assert_eq!(
        inspect(
            &w,
            "web",
            "{{(index .NetworkSettings.Networks \"bridge\").IPAddress}}"
        ),
        ip
    );
    // from the host: loopback and the bridge-facing address
    fetch(&format!("127.0.0.1:{port}"));
    fetch(&format!("10.231.1.1:{port}"));
    // from another container: through the published port and directly
    for cmd in [get("10.231.1.1", port), get(&ip, 80)] {
        let out = w.docker(&["run", "--rm", IMAGE, "sh", "-c", &cmd]);
        assert_eq!(
            out,
            "hello-skiff
",
            "{cmd}"
        );
    }
    // docker port, ps, inspect
    let out = w.docker(&["port", "web"]);
    assert!(out.contains(&format!("80/tcp -> 0.0.0.0:{port}")), "{out}");
    let out = w.docker(&[
        "ps",
        "--format",
        "{{.Ports}}",
        "--filter",
        &format!("id={id}"),
    ]);
    assert!(out.contains(&format!("0.0.0.0:{port}->80/tcp")), "{out}");
    let hp = inspect(
        &w,
        "web",
        "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
    );
    assert_eq!(hp, port.to_string());
    // a taken host port: Docker's message, and no endpoint or address left behind
    let out = w.try_docker(
        &[
            "run", "-d", "--name", "web2", "-p", &publish, IMAGE, "sh", "-c", WEB,
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Bind for 0.0.0.0:{port} failed: port is already allocated"
        )),
        "{err}"
    );
    let eps = w.docker(&["network", "inspect", "-f", "{{len .Containers}}", "bridge"]);
    assert_eq!(eps.trim(), "1");
    w.docker(&["rm", "-f", "web2"]);
    // -p <container port> (a random host port) and -P with EXPOSE
    w.docker(&[
        "run", "-d", "--name", "rnd", "-p", "80", "--expose", "81", "-P", IMAGE, "sh", "-c", WEB,
    ]);
    let out = w.docker(&["port", "rnd", "80/tcp"]);
    let rport: u16 = out.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(rport, 0);
    fetch(&format!("127.0.0.1:{rport}"));
    let out = w.docker(&["port", "rnd"]);
    assert!(out.contains("81/tcp -> 0.0.0.0:"), "{out}");
    // removal frees the address and the port
    w.docker(&["rm", "-f", "web", "rnd"]);
    assert!(http_get(&format!("127.0.0.1:{port}")).is_err());
    let eps = w.docker(&["network", "inspect", "-f", "{{len .Containers}}", "bridge"]);
    assert_eq!(eps.trim(), "0");
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_alias() {
    let Some(w) = net_world(2) else { return };
    w.docker(&["network", "create", "--subnet", "10.233.2.0/24", "app"]);
    w.docker(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "app",
        "--network-alias",
        "database",
        "--ip",
        "10.233.2.50",
        IMAGE,
        "sh",
        "-c",
        WEB,
    ]);
    assert_eq!(
        inspect(
            &w,
            "db",
            "{{(index .NetworkSettings.Networks \"app\").IPAddress}}"
        ),
        "10.233.2.50"
    );
    let out = w.docker(&[
        "run",
        "--rm",
        "--network",
        "app",
        IMAGE,
        "sh",
        "-c",
        &format!(
            "cat /etc/resolv.conf; {} && {}",
            get("db", 80),
            get("database", 80)
        ),
    ]);
    assert!(out.starts_with("nameserver 10.233.2.1\n"), "{out}");
    assert!(out.ends_with("hello-skiff\nhello-skiff\n"), "{out}");
    let out = w.docker(&[
        "run",
        "--rm",
        "--network",
        "app",
        IMAGE,
        "nslookup",
        "database",
    ]);
    assert!(out.contains("10.233.2.50"), "{out}");
    // the default bridge has no DNS for container names
    let out = w.try_docker(&["run", "--rm", IMAGE, "nc", "-w", "2", "db", "80"], None);
    assert!(!out.status.success());
    // the address is taken while db runs
    let out = w.try_docker(
        &[
            "run",
            "--rm",
            "--network",
            "app",
            "--ip",
            "10.233.2.50",
            IMAGE,
            "true",
        ],
        None,
    );
    assert!(!out.status.success());
    // --ip needs a user subnet
    w.docker(&["network", "create", "auto"]);
    let out = w.try_docker(
        &[
            "run",
            "--rm",
            "--network",
            "auto",
            "--ip",
            "10.232.32.9",
            IMAGE,
            "true",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("user configured subnets"));
    // a container connected to a second network gets an address there too
    w.docker(&["network", "connect", "auto", "db"]);
    let ip2 = inspect(
        &w,
        "db",
        "{{(index .NetworkSettings.Networks \"auto\").IPAddress}}",
    );
    assert!(ip2.starts_with("10.232.32."), "{ip2}");
    let out = w.docker(&[
        "run",
        "--rm",
        "--network",
        "auto",
        IMAGE,
        "sh",
        "-c",
        &get("db", 80),
    ]);
    assert_eq!(out, "hello-skiff\n");
    w.docker(&["network", "disconnect", "auto", "db"]);
    // a stopped container connected to a second network joins it when it starts, every time
    w.docker(&[
        "create",
        "--name",
        "late",
        "--network",
        "app",
        IMAGE,
        "sh",
        "-c",
        WEB,
    ]);
    w.docker(&["network", "connect", "--alias", "tardy", "auto", "late"]);
    let out = w.try_docker(&["network", "connect", "auto", "late"], None);
    assert!(!out.status.success());
    for _ in 0..2 {
        w.docker(&["start", "late"]);
        let ip = inspect(
            &w,
            "late",
            "{{(index .NetworkSettings.Networks \"auto\").IPAddress}}",
        );
        assert!(ip.starts_with("10.232.32."), "{ip}");
        let out = w.docker(&[
            "run",
            "--rm",
            "--network",
            "auto",
            IMAGE,
            "sh",
            "-c",
            &get("tardy", 80),
        ]);
        assert_eq!(out, "hello-skiff\n");
        let hosts = w.docker(&["exec", "late", "cat", "/etc/hosts"]);
        assert!(hosts.contains(&format!("{ip}\t")), "{hosts}");
        w.docker(&["stop", "-t", "0", "late"]);
    }
    w.docker(&["network", "disconnect", "auto", "late"]);
    w.docker(&["start", "late"]);
    let nets = inspect(
        &w,
        "late",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    assert_eq!(nets, "app");
    let n = w.docker(&["network", "inspect", "-f", "{{len .Containers}}", "auto"]);
    assert_eq!(n.trim(), "0");
}

/// A test-owned "outside" namespace behind a veth on the host: reachable from containers only
/// through skiffd's forwarding and masquerade (it has no route back to container subnets).
#[test]
fn internal_network_has_no_way_out_and_none_has_only_lo() {
    let Some(w) = net_world(3) else { return };
    struct Outside;
    impl Drop for Outside {
        fn drop(&mut self) {
            let _ = sh("ip link del sknt3-out; ip netns del sknt3-o");
        }
    }
    drop(Outside);
    let _o = Outside;
    for cmd in [
        "ip netns add sknt3-o",
        "ip link add sknt3-out type veth peer name sknt3-outp",
        "ip link set sknt3-outp netns sknt3-o",
        "ip addr add 10.234.3.1/24 dev sknt3-out",
        "ip link set sknt3-out up",
        "ip netns exec sknt3-o ip addr add 10.234.3.2/24 dev sknt3-outp",
        "ip netns exec sknt3-o ip link set sknt3-outp up",
        "ip netns exec sknt3-o ip link set lo up",
    ] {
        let (ok, out) = sh(cmd);
        assert!(ok, "{cmd}: {out}");
    }
    w.docker(&["network", "create", "ext"]);
    w.docker(&["network", "create", "--internal", "int"]);
    let out = w.docker(&[
        "run",
        "--rm",
        "--network",
        "ext",
        IMAGE,
        "ping",
        "-c1",
        "-W3",
        "10.234.3.2",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    let out = w.try_docker(
        &[
            "run",
            "--rm",
            "--network",
            "int",
            IMAGE,
            "ping",
            "-c1",
            "-W2",
            "10.234.3.2",
        ],
        None,
    );
    assert!(!out.status.success());
    let out = w.docker(&["run", "--rm", "--network", "int", IMAGE, "ip", "route"]);
    assert!(!out.contains("default"), "{out}");
    // none: only lo, and it is up
    let out = w.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let out = w.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "ping",
        "-c1",
        "-W2",
        "127.0.0.1",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    assert_eq!(inspect(&w, "bridge", "{{.Driver}}"), "bridge");
    // the masquerade rule lives in skiffd's own table only, and goes with the network
    let p = prefix(&w);
    let (_, table) = sh(&format!("nft list table ip {p}"));
    assert!(table.contains("masquerade"), "{table}");
    w.docker(&["network", "rm", "ext", "int"]);
    let (_, table) = sh(&format!("nft list table ip {p}"));
    assert!(!table.contains("10.232.48."), "{table}");
}

#[test]
fn container_mode_shares_the_network_namespace() {
    let Some(w) = net_world(4) else { return };
    w.docker(&["run", "-d", "--name", "base", IMAGE, "sh", "-c", WEB]);
    let ns = w.docker(&["exec", "base", "readlink", "/proc/self/ns/net"]);
    let id = w.docker(&["inspect", "-f", "{{.Id}}", "base"]);
    for target in ["base", &id.trim()[..12]] {
        let mode = format!("container:{target}");
        let out = w.docker(&[
            "run",
            "--rm",
            "--network",
            &mode,
            IMAGE,
            "sh",
            "-c",
            &format!("readlink /proc/self/ns/net; {}", get("127.0.0.1", 80)),
        ]);
        assert_eq!(out, format!("{}hello-skiff\n", ns), "{mode}");
    }
    let out = w.try_docker(
        &["run", "--rm", "--network", "container:nope", IMAGE, "true"],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No such container: nope"), "{err}");
    w.docker(&["create", "--name", "stopped", IMAGE, "true"]);
    let out = w.try_docker(
        &[
            "run",
            "--rm",
            "--network",
            "container:stopped",
            IMAGE,
            "true",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("non running container"), "{err}");
}

#[test]
fn hosts_and_resolv_conf_follow_the_flags() {
    let Some(w) = net_world(5) else { return };
    let out = w.docker(&[
        "run", "--rm", "--hostname", "hx", "--add-host", "db.local:10.1.2.3",
        "--add-host", "gw:host-gateway", "--dns", "10.9.9.9", "--dns-search", "corp.example",
        "--dns-option", "ndots:2", "--mac-address", "02:42:0a:e7:05:99", IMAGE, "sh", "-c",
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; hostname; cat /sys/class/net/eth0/address",
    ]);
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    assert!(parts[0].starts_with("127.0.0.1\tlocalhost\n"), "{out}");
    assert!(parts[0].contains("10.1.2.3\tdb.local\n"), "{out}");
    assert!(parts[0].contains("10.231.5.1\tgw\n"), "{out}");
    assert!(
        parts[0].contains("10.231.5.") && parts[0].contains("\thx\n"),
        "{out}"
    );
    assert_eq!(
        parts[1], "nameserver 10.9.9.9\nsearch corp.example\noptions ndots:2\n",
        "{out}"
    );
    assert_eq!(parts[2], "hx\n02:42:0a:e7:05:99\n");
    // without flags: the host's resolvers minus loopback ones, Docker's fallback otherwise
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let want: Vec<String> = host
        .lines()
        .filter(|l| l.starts_with("nameserver") && !l.contains(" 127."))
        .map(String::from)
        .collect();
    let out = w.docker(&[
        "run",
        "--rm",
        IMAGE,
        "grep",
        "^nameserver",
        "/etc/resolv.conf",
    ]);
    let got: Vec<&str> = out.lines().collect();
    if want.is_empty() {
        assert_eq!(got, ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]);
    } else {
        assert_eq!(got, want);
    }
    // a bad --add-host is refused at create, leaving nothing
    let out = w.try_docker(
        &["create", "--name", "bad", "--add-host", "x:notanip", IMAGE],
        None,
    );
    assert!(!out.status.success());
    assert!(w.try_docker(&["inspect", "bad"], None).status.code() != Some(0));
}

#[test]
fn network_commands_and_errors() {
    let Some(w) = net_world(6) else { return };
    let id = w.docker(&[
        "network",
        "create",
        "--subnet",
        "10.235.6.0/24",
        "--gateway",
        "10.235.6.254",
        "--ip-range",
        "10.235.6.128/25",
        "--internal",
        "--label",
        "team=a",
        "--opt",
        "com.docker.network.driver.mtu=1400",
        "n1",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let out = w.docker(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}}",
    ]);
    for l in [
        "bridge bridge local",
        "host host local",
        "none null local",
        "n1 bridge local",
    ] {
        assert!(out.lines().any(|x| x == l), "{l}: {out}");
    }
    let out = w.docker(&["network", "ls", "-q", "--filter", "label=team=a"]);
    assert_eq!(out.trim(), &id[..12]);
    let out = w.docker(&["network", "inspect", "n1"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = &v[0];
    assert_eq!(n["Id"], id);
    assert_eq!(n["Internal"], true);
    assert_eq!(n["Labels"]["team"], "a");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.235.6.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.235.6.254");
    assert_eq!(n["IPAM"]["Config"][0]["IPRange"], "10.235.6.128/25");
    // addresses come from the range; the MTU option applies inside
    w.docker(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "n1",
        IMAGE,
        "sleep",
        "60",
    ]);
    let ip = inspect(
        &w,
        "c1",
        "{{(index .NetworkSettings.Networks \"n1\").IPAddress}}",
    );
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(last >= 128, "{ip}");
    let mtu = w.docker(&["exec", "c1", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1400");
    let out = w.docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
        "n1",
    ]);
    assert_eq!(out.trim(), format!("c1 {ip}/24"));
    // errors with Docker's codes and words
    let out = w.try_docker(&["network", "rm", "n1"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has active endpoints"));
    let out = w.try_docker(&["network", "rm", "bridge"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pre-defined network"));
    let out = w.try_docker(&["network", "inspect", "nosuch"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("network nosuch not found"));
    let out = w.try_docker(&["run", "--rm", "--network", "nosuch", IMAGE, "true"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("network nosuch not found"));
    for bad in ["10.235.7.1/24", "10.235.7.0/40", "nonsense"] {
        let out = w.try_docker(&["network", "create", "--subnet", bad, "bad"], None);
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid subnet"),
            "{bad}"
        );
    }
    let out = w.try_docker(
        &["network", "create", "--subnet", "10.235.6.0/25", "overlap"],
        None,
    );
    assert!(!out.status.success());
    let out = w.try_docker(&["network", "create", "n1"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // prune removes unused user networks only
    w.docker(&["network", "create", "unused"]);
    let out = w.docker(&["network", "prune", "-f"]);
    assert!(out.contains("unused") && !out.contains("n1"), "{out}");
    w.docker(&["rm", "-f", "c1"]);
    w.docker(&["network", "rm", "n1"]);
    let out = w.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    // events: create / connect / disconnect / destroy
    // `--until 0s` is "now" in whole seconds: let the last events fall before it
    std::thread::sleep(Duration::from_millis(1100));
    let out = w.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "type=network",
        "--format",
        "{{.Action}}",
    ]);
    for a in ["create", "connect", "disconnect", "destroy"] {
        assert!(out.lines().any(|l| l == a), "{a}: {out}");
    }
}

#[test]
fn daemon_restart_keeps_a_running_container_reachable_and_ipam_state() {
    let Some(mut w) = net_world(7) else { return };
    let port = free_port();
    let publish = format!("{port}:80");
    w.docker(&[
        "run", "-d", "--name", "web", "-p", &publish, IMAGE, "sh", "-c", WEB,
    ]);
    let ip = inspect(&w, "web", "{{.NetworkSettings.IPAddress}}");
    fetch(&format!("127.0.0.1:{port}"));
    let p = prefix(&w);
    let before = links_with(&p);
    // a clean restart, then a kill -9
    w.restart_daemon();
    fetch(&format!("127.0.0.1:{port}"));
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(w.skiffd.id().to_string())
        .status();
    let _ = w.skiffd.wait();
    w.skiffd = spawn_skiffd(w.tmp.path());
    w.wait_socket();
    fetch(&format!("127.0.0.1:{port}"));
    assert_eq!(inspect(&w, "web", "{{.NetworkSettings.IPAddress}}"), ip);
    let mut after = links_with(&p);
    let mut b = before.clone();
    after.sort();
    b.sort();
    assert_eq!(after, b, "links changed across restarts");
    // IPAM remembers: a new container gets another address
    let out = w.docker(&["run", "--rm", IMAGE, "sh", "-c", "ip -4 -o addr show eth0"]);
    assert!(!out.contains(&format!(" {ip}/")), "{out}");
    let out = w.docker(&["run", "--rm", IMAGE, "sh", "-c", &get(&ip, 80)]);
    assert_eq!(out, "hello-skiff\n");
    // once stopped and removed, and the daemon stopped, nothing of it is left
    w.docker(&["rm", "-f", "web"]);
    w.stop_daemon();
    assert_eq!(links_with(&p), Vec::<String>::new());
    assert!(!sh(&format!("nft list table ip {p}")).0);
    w.skiffd = spawn_skiffd(w.tmp.path());
    w.wait_socket();
}

/// One HTTP request on skiffd's socket; returns the status code and body.
fn api(w: &World, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(w.tmp.path().join("d.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}

#[test]
fn five_hundred_create_start_remove_cycles_leave_nothing_behind() {
    let Some(w) = net_world(8) else { return };
    w.docker(&["network", "create", "--subnet", "10.235.8.0/24", "cyc"]);
    // the default bridge comes up with its first container
    w.docker(&["run", "--rm", IMAGE, "true"]);
    let p = prefix(&w);
    let (_, ruleset_before) = sh(&format!("nft list table ip {p}"));
    let links_before = links_with(&p);
    let state = w.tmp.path().join("root/network/networks.json");
    let start = Instant::now();
    let cycles = std::env::var("CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(500);
    for i in 0..cycles {
        let net = if i % 2 == 0 { "bridge" } else { "cyc" };
        let body = format!(
            r#"{{"Image":"{IMAGE}","Cmd":["sleep","30"],"HostConfig":{{"NetworkMode":"{net}","PortBindings":{{"80/tcp":[{{"HostPort":""}}]}}}}}}"#
        );
        let (code, out) = api(&w, "POST", "/containers/create", &body);
        assert_eq!(code, 201, "{out}");
        let id: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = id["Id"].as_str().unwrap().to_string();
        let (code, out) = api(&w, "POST", &format!("/containers/{id}/start"), "");
        assert_eq!(code, 204, "cycle {i}: {out}");
        let (code, out) = api(&w, "DELETE", &format!("/containers/{id}?force=1"), "");
        assert_eq!(code, 204, "cycle {i}: {out}");
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "only {i} cycles in 10 minutes"
        );
    }
    eprintln!(
        "{cycles} create/start/remove cycles in {:?}",
        start.elapsed()
    );
    assert_eq!(links_with(&p), links_before);
    let (_, ruleset) = sh(&format!("nft list table ip {p}"));
    assert_eq!(ruleset, ruleset_before);
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(st["endpoints"].as_array().map(Vec::len), Some(0), "{st}");
    for n in st["networks"].as_array().unwrap() {
        let alloc = &n["pool"]["allocated"];
        assert!(
            alloc.is_null() || alloc.as_array().is_some_and(Vec::is_empty),
            "{n}"
        );
    }
    for net in ["bridge", "cyc"] {
        let n = w.docker(&["network", "inspect", "-f", "{{len .Containers}}", net]);
        assert_eq!(n.trim(), "0");
    }
    let (_, addrs) = sh("ip -4 -o addr show");
    // only the gateways' addresses remain
    assert_eq!(addrs.matches("inet 10.231.8.").count(), 1, "{addrs}");
    assert_eq!(addrs.matches("inet 10.235.8.").count(), 1, "{addrs}");
}
