//! Published ports (`-p`): parsing, and the userland proxy that serves them.
//!
//! Choice: a userland proxy inside the daemon (Docker's `docker-proxy`, as threads): for each
//! published port a socket is bound on the host (`0.0.0.0` unless an address was given) and
//! every TCP connection / UDP flow is relayed to the container's address. This reaches the
//! container from 127.0.0.1, from the host's other addresses and from other containers (via
//! their gateway) with no NAT rules, no `route_localnet`, and the bind itself is the port
//! allocation: a port in use by anything is a Conflict. The cost is a copy through the daemon
//! and the container seeing the gateway as the client's address.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{NetworkError, Result};

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One `-p` request: `[ip:][host_port:]container_port[/proto]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Host address to bind; all IPv4 addresses when `None`.
    pub host_ip: Option<IpAddr>,
    /// Host port; 0 picks a free one.
    pub host_port: u16,
    /// Port inside the container.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

impl FromStr for PortSpec {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| NetworkError::InvalidInput(format!("invalid port spec {s:?}: {why}"));
        let (rest, proto) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, Proto::Tcp),
            Some((r, "udp")) => (r, Proto::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (s, Proto::Tcp),
        };
        let port = |p: &str, zero_ok: bool| -> Result<u16> {
            match p.parse::<u16>() {
                Ok(0) if !zero_ok => Err(bad("port 0 is not a valid container port")),
                Ok(n) => Ok(n),
                Err(_) => Err(bad(&format!("{p:?} is not a port number"))),
            }
        };
        let parts: Vec<&str> = match rest.strip_prefix('[') {
            // [v6]:host:container
            Some(r) => {
                let (ip, tail) = r.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                let mut v = vec![ip];
                v.extend(tail.trim_start_matches(':').split(':'));
                v
            }
            None => rest.split(':').collect(),
        };
        let (host_ip, host_port, container) = match parts.as_slice() {
            [c] => (None, 0, *c),
            [h, c] => (None, if h.is_empty() { 0 } else { port(h, true)? }, *c),
            [ip, h, c] => {
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
                (Some(ip), if h.is_empty() { 0 } else { port(h, true)? }, *c)
            }
            _ => return Err(bad("expected [ip:][hostPort:]containerPort[/proto]")),
        };
        Ok(PortSpec {
            host_ip,
            host_port,
            container_port: port(container, false)?,
            proto,
        })
    }
}

/// A running relay for one published port; stops (closing its connections) when dropped.
pub(crate) struct Proxy {
    /// The address actually bound (with the chosen port).
    pub bound: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Binds `spec` on the host and relays to `target:container_port`.
    pub fn start(spec: &PortSpec, target: Ipv4Addr) -> Result<Proxy> {
        let ip = spec.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let bind = SocketAddr::new(ip, spec.host_port);
        let to = SocketAddr::new(IpAddr::V4(target), spec.container_port);
        let conflict = |e: io::Error| {
            if e.kind() == io::ErrorKind::AddrInUse {
                NetworkError::Conflict(format!("Bind for {bind} failed: port is already allocated"))
            } else if e.kind() == io::ErrorKind::AddrNotAvailable {
                NetworkError::InvalidInput(format!(
                    "cannot publish on {bind}/{}: {ip} is not an address of this host",
                    spec.proto
                ))
            } else {
                NetworkError::io("bind the published port", bind.to_string(), e)
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let (bound, thread) = match spec.proto {
            Proto::Tcp => {
                let l = TcpListener::bind(bind).map_err(conflict)?;
                let bound = l.local_addr().map_err(conflict)?;
                let (stop, conns) = (stop.clone(), conns.clone());
                let t = std::thread::Builder::new()
                    .name(format!("skiff-proxy-{bound}"))
                    .spawn(move || tcp_accept(l, to, &stop, &conns))
                    .map_err(|e| {
                        NetworkError::io("start the proxy thread for", bind.to_string(), e)
                    })?;
                (bound, t)
            }
            Proto::Udp => {
                let s = UdpSocket::bind(bind).map_err(conflict)?;
                let bound = s.local_addr().map_err(conflict)?;
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .map_err(|e| {
                        NetworkError::io("configure the published port", bind.to_string(), e)
                    })?;
                let stop = stop.clone();
                let t = std::thread::Builder::new()
                    .name(format!("skiff-proxy-{bound}"))
                    .spawn(move || udp_relay(s, to, &stop))
                    .map_err(|e| {
                        NetworkError::io("start the proxy thread for", bind.to_string(), e)
                    })?;
                (bound, t)
            }
        };
        Ok(Proxy {
            bound,
            stop,
            conns,
            thread: Some(thread),
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            // wake a blocking accept()
            let mut wake = self.bound;
            if wake.ip().is_unspecified() {
                wake.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            let _ = TcpStream::connect_timeout(&wake, Duration::from_millis(200));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (_, c) in self.conns.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn tcp_accept(
    l: TcpListener,
    to: SocketAddr,
    stop: &AtomicBool,
    conns: &Arc<Mutex<HashMap<u64, TcpStream>>>,
) {
    let next = AtomicU64::new(0);
    for client in l.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let id = next.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = client.try_clone() {
            conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, c);
        }
        let conns = conns.clone();
        let _ = std::thread::Builder::new()
            .name("skiff-proxy-conn".into())
            .spawn(move || {
                if let Ok(upstream) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
                    let _ = upstream.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    pipe(client, upstream);
                }
                conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            });
    }
}

/// Copies both ways until both sides are done.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let t = std::thread::spawn(move || {
        let _ = relay(&a2, &b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let _ = relay(&b, &a);
    let _ = a.shutdown(Shutdown::Write);
    let _ = t.join();
}

/// Bytes moved per `splice` (and the pipe's size).
const SPLICE_CHUNK: usize = 1 << 20;

/// Copies `from` to `to` until `from` ends: in the kernel through a pipe (`splice`, as Go's
/// docker-proxy does), or through a 64 KiB buffer when splicing is not possible.
fn relay(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    use nix::fcntl::{splice, SpliceFFlags};
    let Ok((pr, pw)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return copy_buffered(from, to);
    };
    let size = i32::try_from(SPLICE_CHUNK).unwrap_or(i32::MAX);
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&pw),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(size),
    );
    // Not SPLICE_F_MORE: it corks the socket and holds a small answer back for 200 ms.
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    let mut total = 0u64;
    loop {
        let n = match splice(from, None, &pw, None, SPLICE_CHUNK, flags) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EINVAL) if total == 0 => return copy_buffered(from, to),
            Err(e) => return Err(e.into()),
        };
        let mut left = n;
        while left > 0 {
            match splice(&pr, None, to, None, left, flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        total += n as u64;
    }
}

fn copy_buffered(mut from: &TcpStream, mut to: &TcpStream) -> io::Result<u64> {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Client address → (socket connected to the container, last activity).
type Flows = HashMap<SocketAddr, (Arc<UdpSocket>, Instant)>;

const UDP_IDLE: Duration = Duration::from_secs(60);

fn udp_relay(s: UdpSocket, to: SocketAddr, stop: &Arc<AtomicBool>) {
    let flows: Arc<Mutex<Flows>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, client)) = s.recv_from(&mut buf) else {
            continue;
        };
        let mut map = flows.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, t)| t.elapsed() < UDP_IDLE);
        let up = match map.get_mut(&client) {
            Some((u, t)) => {
                *t = Instant::now();
                u.clone()
            }
            None => {
                let Ok(u) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
                    continue;
                };
                if u.connect(to).is_err()
                    || u.set_read_timeout(Some(Duration::from_millis(500)))
                        .is_err()
                {
                    continue;
                }
                let u = Arc::new(u);
                map.insert(client, (u.clone(), Instant::now()));
                let (u2, back, stop, flows) =
                    (u.clone(), s.try_clone(), stop.clone(), flows.clone());
                if let Ok(back) = back {
                    let _ = std::thread::Builder::new()
                        .name("skiff-proxy-udp".into())
                        .spawn(move || {
                            let mut buf = vec![0u8; 65536];
                            let mut last = Instant::now();
                            while !stop.load(Ordering::SeqCst) && last.elapsed() < UDP_IDLE {
                                if let Ok(n) = u2.recv(&mut buf) {
                                    last = Instant::now();
                                    let _ = back.send_to(&buf[..n], client);
                                }
                            }
                            flows
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&client);
                        });
                }
                u
            }
        };
        drop(map);
        let _ = up.send(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn parses_port_specs() {
        let p: PortSpec = "8080:80".parse().unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto),
            (None, 8080, 80, Proto::Tcp)
        );
        let p: PortSpec = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(p.host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(
            (p.host_port, p.container_port, p.proto),
            (5353, 53, Proto::Udp)
        );
        let p: PortSpec = "80".parse().unwrap();
        assert_eq!(p.host_port, 0);
        let p: PortSpec = "127.0.0.1::80".parse().unwrap();
        assert_eq!(p.host_port, 0);
        let p: PortSpec = "[::1]:8080:80".parse().unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        for bad in ["", "x", "80/sctp", "1:2:3:4", "0", "70000", "nope:80:80"] {
            assert!(
                matches!(bad.parse::<PortSpec>(), Err(NetworkError::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn relays_tcp_and_udp_and_reports_conflicts() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in echo.incoming().flatten() {
                let mut c = c;
                let mut b = [0u8; 5];
                c.read_exact(&mut b).unwrap();
                c.write_all(&b).unwrap();
            }
        });
        let spec = PortSpec {
            host_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            host_port: 0,
            container_port: echo_port,
            proto: Proto::Tcp,
        };
        let p = Proxy::start(&spec, Ipv4Addr::LOCALHOST).unwrap();
        let mut c = TcpStream::connect(p.bound).unwrap();
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");
        let taken = PortSpec {
            host_port: p.bound.port(),
            ..spec
        };
        assert!(matches!(
            Proxy::start(&taken, Ipv4Addr::LOCALHOST),
            Err(NetworkError::Conflict(m)) if m.contains("already allocated")
        ));
        drop(p);

        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut b = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut b) {
                echo.send_to(&b[..n], from).unwrap();
            }
        });
        let spec = PortSpec {
            container_port: echo_port,
            proto: Proto::Udp,
            ..spec
        };
        let p = Proxy::start(&spec, Ipv4Addr::LOCALHOST).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"ping", p.bound).unwrap();
        let mut b = [0u8; 16];
        let n = c.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"ping");
    }
}
