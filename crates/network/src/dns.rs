//! The embedded DNS of user-defined networks.
//!
//! Placement: one UDP resolver per user-defined network, listening on the network's gateway
//! address (port 53) in the host's namespace, where every container of that network reaches
//! it through the bridge; the container's resolv.conf names the gateway as its nameserver
//! (Docker listens on 127.0.0.11 inside each container instead). It answers A queries for
//! the names and aliases of the network's endpoints from memory and relays every other query
//! unchanged to the container's `--dns` servers or the host's nameservers (a relay that fails
//! or times out answers SERVFAIL). Internal networks do not forward. Only UDP is served.
//!
//! Messages are handled by a small parser (header + one question) with unit tests below.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{NetworkError, Result};

const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const TTL: u32 = 600;
const MAX_FORWARDS_IN_FLIGHT: usize = 64;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// One parsed query: the header fields we need and its single question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    /// Lower-cased, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The raw question section, echoed in answers.
    question: Vec<u8>,
}

/// Parses a query; `Err(Some(id))` when the message is malformed but has an id to answer to.
pub(crate) fn parse_query(msg: &[u8]) -> Result<Query, Option<u16>> {
    if msg.len() < 12 {
        return Err(None);
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 != 0 {
        return Err(None); // a response: never answer those
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qdcount != 1 {
        return Err(Some(id));
    }
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let len = usize::from(*msg.get(pos).ok_or(Some(id))?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return Err(Some(id)); // compression pointers have no place in a question
        }
        total += len + 1;
        if total > 255 {
            return Err(Some(id));
        }
        let label = msg.get(pos..pos + len).ok_or(Some(id))?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    let tail = msg.get(pos..pos + 4).ok_or(Some(id))?;
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    let opcode = u8::try_from((flags >> 11) & 0xf).unwrap_or(0);
    Ok(Query {
        id,
        opcode,
        rd: flags & 0x0100 != 0,
        name: labels.join("."),
        qtype,
        qclass,
        question: msg[12..pos + 4].to_vec(),
    })
}

/// An answer to `q` with `rcode` and A records for `ips`.
pub(crate) fn answer(q: &Query, rcode: u8, ips: &[Ipv4Addr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + q.question.len() + ips.len() * 16);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, opcode, AA, RD echoed, RA
    let flags: u16 = 0x8000
        | (u16::from(q.opcode) << 11)
        | 0x0400
        | if q.rd { 0x0100 } else { 0 }
        | 0x0080
        | u16::from(rcode & 0xf);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    let an = u16::try_from(ips.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&q.question);
    for ip in ips.iter().take(usize::from(an)) {
        out.extend_from_slice(&[0xc0, 0x0c]); // pointer to the question's name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// A bare error answer to a message we could not parse.
fn error_answer(id: u16, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(0x8080u16 | u16::from(rcode)).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// The records of one network and where to forward what they do not cover.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// Lower-cased name → addresses.
    pub names: HashMap<String, Vec<Ipv4Addr>>,
    /// Container address → its own upstream servers (`--dns`, else the host's).
    pub upstreams: HashMap<Ipv4Addr, Vec<IpAddr>>,
    /// Upstreams for clients without an entry.
    pub default_upstreams: Vec<IpAddr>,
    /// False on internal networks.
    pub forward: bool,
}

impl Records {
    /// Adds `ip` under each of `names`.
    pub fn add(&mut self, names: &[String], ip: Ipv4Addr, upstreams: Vec<IpAddr>) {
        for n in names {
            let v = self.names.entry(n.to_ascii_lowercase()).or_default();
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
        self.upstreams.insert(ip, upstreams);
    }

    /// Removes every record pointing at `ip`.
    pub fn remove(&mut self, ip: Ipv4Addr) {
        self.names.retain(|_, v| {
            v.retain(|a| *a != ip);
            !v.is_empty()
        });
        self.upstreams.remove(&ip);
    }
}

/// A running resolver; stops (and joins its thread) when dropped.
pub(crate) struct DnsServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub records: Arc<RwLock<Records>>,
}

impl DnsServer {
    /// Binds `addr:53` (UDP) and serves `records` on a thread.
    pub fn start(addr: Ipv4Addr, records: Records) -> Result<DnsServer> {
        Self::start_on(SocketAddr::new(IpAddr::V4(addr), 53), records)
    }

    pub(crate) fn start_on(addr: SocketAddr, records: Records) -> Result<DnsServer> {
        let sock = UdpSocket::bind(addr)
            .map_err(|e| NetworkError::io("bind the embedded DNS to", addr.to_string(), e))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| NetworkError::io("configure the embedded DNS on", addr.to_string(), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(RwLock::new(records));
        let thread = {
            let (stop, records) = (stop.clone(), records.clone());
            std::thread::Builder::new()
                .name(format!("skiff-dns-{addr}"))
                .spawn(move || serve(sock, &stop, &records))
                .map_err(|e| {
                    NetworkError::io("start the embedded DNS thread for", addr.to_string(), e)
                })?
        };
        Ok(DnsServer {
            stop,
            thread: Some(thread),
            records,
        })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(sock: UdpSocket, stop: &AtomicBool, records: &RwLock<Records>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue, // timeout (to check `stop`) or a transient error
        };
        let msg = &buf[..n];
        let q = match parse_query(msg) {
            Ok(q) => q,
            Err(Some(id)) => {
                let _ = sock.send_to(&error_answer(id, RCODE_FORMERR), peer);
                continue;
            }
            Err(None) => continue,
        };
        if q.opcode != 0 {
            let _ = sock.send_to(&answer(&q, RCODE_NOTIMP, &[]), peer);
            continue;
        }
        let (local, upstreams, forward) = {
            let r = records.read().unwrap_or_else(|p| p.into_inner());
            let local = r.names.get(&q.name).cloned();
            let client = match peer.ip() {
                IpAddr::V4(ip) => Some(ip),
                IpAddr::V6(_) => None,
            };
            let up = client
                .and_then(|c| r.upstreams.get(&c).cloned())
                .unwrap_or_else(|| r.default_upstreams.clone());
            (local, up, r.forward)
        };
        if let Some(ips) = local {
            let ips = if (q.qtype == TYPE_A || q.qtype == TYPE_ANY) && q.qclass == CLASS_IN {
                ips
            } else {
                Vec::new() // the name exists, but has no records of that type (e.g. AAAA)
            };
            let _ = sock.send_to(&answer(&q, 0, &ips), peer);
            continue;
        }
        if !forward || upstreams.is_empty() {
            let rcode = if forward {
                RCODE_SERVFAIL
            } else {
                RCODE_NXDOMAIN
            };
            let _ = sock.send_to(&answer(&q, rcode, &[]), peer);
            continue;
        }
        if in_flight.load(Ordering::Relaxed) >= MAX_FORWARDS_IN_FLIGHT {
            let _ = sock.send_to(&answer(&q, RCODE_SERVFAIL, &[]), peer);
            continue;
        }
        let Ok(reply_sock) = sock.try_clone() else {
            continue;
        };
        in_flight.fetch_add(1, Ordering::Relaxed);
        let counter = in_flight.clone();
        let msg = msg.to_vec();
        let spawned = std::thread::Builder::new()
            .name("skiff-dns-fwd".into())
            .spawn(move || {
                let reply = forward_query(&msg, &upstreams)
                    .unwrap_or_else(|| answer(&q, RCODE_SERVFAIL, &[]));
                let _ = reply_sock.send_to(&reply, peer);
                counter.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Relays `msg` to each upstream in turn; the first answer wins.
fn forward_query(msg: &[u8], upstreams: &[IpAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = match up {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            continue;
        };
        if s.set_read_timeout(Some(FORWARD_TIMEOUT)).is_err()
            || s.connect(SocketAddr::new(*up, 53)).is_err()
            || s.send(msg).is_err()
        {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = s.recv(&mut buf) {
            if n >= 2 && buf[..2] == msg[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(u8::try_from(l.len()).unwrap());
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn parses_a_query() {
        let q = parse_query(&query("Web.Example", TYPE_A)).unwrap();
        assert_eq!((q.id, q.rd, q.qtype), (0x1234, true, TYPE_A));
        assert_eq!(q.name, "web.example");
    }

    #[test]
    fn rejects_malformed_queries() {
        assert_eq!(parse_query(&[1, 2, 3]), Err(None));
        let mut m = query("web", TYPE_A);
        m.truncate(m.len() - 2);
        assert_eq!(parse_query(&m), Err(Some(0x1234)));
        let mut m = query("web", TYPE_A);
        m[12] = 0xc0; // a pointer in the question
        assert_eq!(parse_query(&m), Err(Some(0x1234)));
        let mut m = query("web", TYPE_A);
        m[2] |= 0x80; // a response
        assert_eq!(parse_query(&m), Err(None));
    }

    #[test]
    fn builds_answers() {
        let q = parse_query(&query("web", TYPE_A)).unwrap();
        let a = answer(&q, 0, &[Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0xf, 0);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1);
        assert_eq!(&a[a.len() - 4..], &[10, 0, 0, 2]);
        let nx = answer(&q, RCODE_NXDOMAIN, &[]);
        assert_eq!(nx[3] & 0xf, RCODE_NXDOMAIN);
    }

    #[test]
    fn serves_records_and_fails_forwarding_cleanly() {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let mut r = Records {
            forward: true,
            ..Records::default()
        };
        r.add(&["web".into()], Ipv4Addr::new(10, 0, 0, 2), vec![]);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let _srv = DnsServer::start_on(addr, r).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        c.send_to(&query("WEB", TYPE_A), addr).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[n - 4..n], &[10, 0, 0, 2]);
        // not local, no upstreams: SERVFAIL rather than silence
        c.send_to(&query("example.com", TYPE_A), addr).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert!(n >= 12);
        assert_eq!(buf[3] & 0xf, RCODE_SERVFAIL);
        // an upstream that does not answer: SERVFAIL after the timeout
        _srv.records.write().unwrap().default_upstreams = vec!["127.0.0.1".parse().unwrap()];
        c.send_to(&query("example.com", TYPE_A), addr).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert!(n >= 12);
        assert_eq!(buf[3] & 0xf, RCODE_SERVFAIL);
    }
}
