//! Links, addresses and routes through rtnetlink, behind a synchronous API.
//!
//! Every operation runs on a fresh, short-lived thread with its own current-thread tokio
//! runtime: the caller may be a tokio worker (no nested runtime), and entering a container's
//! network namespace (`setns`) only ever changes that throwaway thread. A netlink socket stays
//! bound to the namespace it was created in, so one operation can hold a host socket and a
//! container socket at once.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};
use nix::sched::{setns, CloneFlags};
use rtnetlink::Handle;

use crate::error::{NetworkError, Result};

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

/// The errno of a netlink error answer, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Runs `f` with a host netlink handle and, when `netns` is given, one inside that namespace.
fn run<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle, Option<Handle>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let netns: Option<PathBuf> = netns.map(Path::to_path_buf);
    std::thread::spawn(move || -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| NetworkError::io("start a runtime for", "netlink", e))?;
        let _guard = rt.enter();
        let (conn, host, _) = rtnetlink::new_connection()
            .map_err(|e| NetworkError::io("open a netlink socket", "host namespace", e))?;
        rt.spawn(conn);
        let inner = match &netns {
            None => None,
            Some(path) => {
                let ns = File::open(path)
                    .map_err(|e| NetworkError::io("open the network namespace", path, e))?;
                setns(&ns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetworkError::io("enter the network namespace", path, e.into()))?;
                let (conn, h, _) = rtnetlink::new_connection()
                    .map_err(|e| NetworkError::io("open a netlink socket in", path, e))?;
                rt.spawn(conn);
                Some(h)
            }
        };
        rt.block_on(f(host, inner))
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(NetworkError::netlink(format!("look up link {name}"), e)),
    }
}

fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

async fn names(h: &Handle) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut links = h.link().get().execute();
    while let Some(m) = links
        .try_next()
        .await
        .map_err(|e| NetworkError::netlink("list links", e))?
    {
        if let Some(n) = link_name(&m) {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// Names of all links in the host namespace.
pub(crate) fn list_links() -> Result<Vec<String>> {
    run(None, |h, _| async move { names(&h).await })
}

/// Creates the bridge `name` with `gateway/prefix` and `mtu` if it does not exist, and sets it up.
pub(crate) fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8, mtu: u32) -> Result<()> {
    let name = name.to_string();
    run(None, move |h, _| async move {
        let idx = match index_of(&h, &name).await? {
            Some(i) => i,
            None => {
                h.link()
                    .add()
                    .bridge(name.clone())
                    .execute()
                    .await
                    .or_else(|e| {
                        if errno(&e) == Some(EEXIST) {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| NetworkError::netlink(format!("create bridge {name}"), e))?;
                index_of(&h, &name).await?.ok_or_else(|| {
                    NetworkError::NotFound(format!("bridge {name} vanished after creation"))
                })?
            }
        };
        h.link()
            .set(idx)
            .mtu(mtu)
            .up()
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(format!("set bridge {name} up"), e))?;
        h.address()
            .add(idx, IpAddr::V4(gateway), prefix)
            .execute()
            .await
            .or_else(|e| {
                if errno(&e) == Some(EEXIST) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| {
                NetworkError::netlink(
                    format!("add address {gateway}/{prefix} to bridge {name}"),
                    e,
                )
            })
    })
}

/// Deletes the host link `name` (a bridge or a veth, whose peer goes with it); absent is fine.
pub(crate) fn delete_link(name: &str) -> Result<()> {
    delete_links(&[name.to_string()])
}

/// Deletes several host links in one netlink session; absent ones are skipped.
pub(crate) fn delete_links(names: &[String]) -> Result<()> {
    let names = names.to_vec();
    run(None, move |h, _| async move {
        for name in names {
            if let Some(idx) = index_of(&h, &name).await? {
                match h.link().del(idx).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(ENODEV) => {}
                    Err(e) => return Err(NetworkError::netlink(format!("delete link {name}"), e)),
                }
            }
        }
        Ok(())
    })
}

/// Brings `lo` up inside `netns` (all a `none` container gets).
pub(crate) fn loopback_up(netns: &Path) -> Result<()> {
    run(Some(netns), |_, c| async move {
        let c = c.expect("namespace handle");
        lo_up(&c).await
    })
}

async fn lo_up(c: &Handle) -> Result<()> {
    if let Some(lo) = index_of(c, "lo").await? {
        c.link()
            .set(lo)
            .up()
            .execute()
            .await
            .map_err(|e| NetworkError::netlink("set lo up in the container", e))?;
    }
    Ok(())
}

/// What to build for one endpoint.
pub(crate) struct VethSpec {
    pub netns: PathBuf,
    pub host_if: String,
    pub bridge: String,
    /// Name inside the container; `None` picks the first free `ethN`.
    pub ifname: Option<String>,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route; `None` on internal networks.
    pub gateway: Option<Ipv4Addr>,
}

/// Creates the veth pair (host side in the bridge, peer born inside the container's namespace),
/// configures the container side and returns its interface name. On failure nothing is left.
pub(crate) fn create_endpoint(spec: VethSpec) -> Result<String> {
    let netns = spec.netns.clone();
    run(Some(&netns), move |h, c| async move {
        let c = c.expect("namespace handle");
        let ifname = match spec.ifname.clone() {
            Some(n) => n,
            None => {
                let existing = names(&c).await?;
                (0..)
                    .map(|i| format!("eth{i}"))
                    .find(|n| !existing.contains(n))
                    .expect("a free ethN")
            }
        };
        let br = index_of(&h, &spec.bridge).await?.ok_or_else(|| {
            NetworkError::NotFound(format!("bridge {} does not exist", spec.bridge))
        })?;
        let ns = File::open(&spec.netns)
            .map_err(|e| NetworkError::io("open the network namespace", &spec.netns, e))?;
        let mut req = h.link().add().veth(ifname.clone(), spec.host_if.clone());
        {
            let msg = req.message_mut();
            msg.attributes.push(LinkAttribute::Controller(br));
            msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
            for a in msg.attributes.iter_mut() {
                if let LinkAttribute::LinkInfo(infos) = a {
                    for i in infos.iter_mut() {
                        if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = i {
                            peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
                            peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
                            peer.attributes
                                .push(LinkAttribute::Address(spec.mac.to_vec()));
                        }
                    }
                }
            }
        }
        req.execute().await.map_err(|e| {
            NetworkError::netlink(
                format!(
                    "create veth {} / {ifname} into bridge {}",
                    spec.host_if, spec.bridge
                ),
                e,
            )
        })?;
        drop(ns);
        let configured = async {
            let idx = index_of(&c, &ifname).await?.ok_or_else(|| {
                NetworkError::NotFound(format!("{ifname} did not appear in the container"))
            })?;
            c.link()
                .set(idx)
                .up()
                .execute()
                .await
                .map_err(|e| NetworkError::netlink(format!("set {ifname} up"), e))?;
            c.address()
                .add(idx, IpAddr::V4(spec.ip), spec.prefix)
                .execute()
                .await
                .map_err(|e| {
                    NetworkError::netlink(format!("add {}/{} to {ifname}", spec.ip, spec.prefix), e)
                })?;
            lo_up(&c).await?;
            if let Some(gw) = spec.gateway {
                match c.route().add().v4().gateway(gw).execute().await {
                    Ok(()) => {}
                    // a second network: the first one keeps the default route
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    Err(e) => {
                        return Err(NetworkError::netlink(
                            format!("add default route via {gw}"),
                            e,
                        ))
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = configured {
            if let Ok(Some(i)) = index_of(&h, &spec.host_if).await {
                let _ = h.link().del(i).execute().await;
            }
            return Err(e);
        }
        Ok(ifname)
    })
}
