//! The engine's side of networking: `container:<id>` modes and how the daemon's
//! [`crate::NetworkHook`] settings appear in `docker ps`.

use std::collections::HashMap;
use std::path::Path;

use bollard_stubs::models::{ContainerSummaryNetworkSettings, NetworkSettings, Port, PortTypeEnum};
use serde_json::{json, Value};

/// The container a `container:<name|id>` network mode names.
pub(crate) fn joined(mode: Option<&str>) -> Option<&str> {
    mode?.strip_prefix("container:")
}

/// Makes the spec's network namespace the one at `path` (another container's).
pub(crate) fn join_netns(spec: &mut Value, path: &Path) {
    if let Some(nss) = spec
        .pointer_mut("/linux/namespaces")
        .and_then(Value::as_array_mut)
    {
        nss.retain(|n| n["type"] != "network");
        nss.push(json!({"type": "network", "path": path}));
    }
}

/// `Ports` and `NetworkSettings` of a `docker ps` entry, from inspect's settings.
pub(crate) fn summary(ns: &NetworkSettings) -> (Vec<Port>, ContainerSummaryNetworkSettings) {
    let mut ports = Vec::new();
    for (key, binds) in ns.ports.iter().flatten() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(private_port) = port.parse::<u16>() else {
            continue;
        };
        let typ = proto.parse::<PortTypeEnum>().ok();
        match binds.as_deref() {
            None | Some([]) => ports.push(Port {
                ip: None,
                private_port,
                public_port: None,
                typ,
            }),
            Some(bs) => {
                for b in bs {
                    ports.push(Port {
                        ip: b.host_ip.clone(),
                        private_port,
                        public_port: b.host_port.as_deref().and_then(|p| p.parse().ok()),
                        typ,
                    });
                }
            }
        }
    }
    ports.sort_by_key(|p| (p.private_port, p.public_port));
    let networks: HashMap<_, _> = ns.networks.clone().unwrap_or_default();
    (
        ports,
        ContainerSummaryNetworkSettings {
            networks: Some(networks),
        },
    )
}

#[cfg(test)]
mod tests {
    use bollard_stubs::models::PortBinding;

    use super::*;

    #[test]
    fn container_mode_joins_the_other_namespace() {
        assert_eq!(joined(Some("container:abc")), Some("abc"));
        assert_eq!(joined(Some("bridge")), None);
        let mut spec = json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]}});
        join_netns(&mut spec, Path::new("/proc/7/ns/net"));
        assert_eq!(
            spec["linux"]["namespaces"][1],
            json!({"type": "network", "path": "/proc/7/ns/net"})
        );
    }

    #[test]
    fn ps_lists_published_and_exposed_ports() {
        let mut ports = HashMap::new();
        ports.insert(
            "80/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some("8080".into()),
            }]),
        );
        ports.insert("90/udp".to_string(), None);
        let ns = NetworkSettings {
            ports: Some(ports),
            ..Default::default()
        };
        let (p, _) = summary(&ns);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].private_port, 80);
        assert_eq!(p[0].public_port, Some(8080));
        assert_eq!(p[1].typ, Some(PortTypeEnum::UDP));
        assert_eq!(p[1].public_port, None);
    }
}
