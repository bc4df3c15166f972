//! Measures how long connecting a container to a network takes (the container-start cost)
//! and how long disconnecting takes. Root only; uses its own prefix, subnets and namespace.
//!
//! `cargo run --release -p skiff-network --example setup_timing [iterations]`

use std::process::Command;
use std::time::{Duration, Instant};

use skiff_network::{Config, EndpointRequest, NetworkCreate, NetworkManager};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("skiff-net-timing-{}", std::process::id()));
    let mut cfg = Config::new(&dir);
    cfg.prefix = "tmx0".into();
    cfg.bridge_subnet = "10.230.99.0/24".parse().unwrap();
    cfg.ip_forward = false;
    cfg.host_resolv_conf = dir.join("none");
    let m = NetworkManager::open(cfg).unwrap();
    m.reconcile().unwrap();
    m.create_network(NetworkCreate {
        name: "timing".into(),
        subnet: Some("10.231.99.0/24".parse().unwrap()),
        ..Default::default()
    })
    .unwrap();
    let ns = "tmx0-timing";
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(std::process::Stdio::null())
        .status();
    assert!(Command::new("ip")
        .args(["netns", "add", ns])
        .status()
        .unwrap()
        .success());
    let req = EndpointRequest {
        container_id: "f".repeat(64),
        name: Some("c".into()),
        netns: format!("/run/netns/{ns}").into(),
        ..Default::default()
    };
    for (label, ports) in [
        ("no ports", vec![]),
        ("one -p 80", vec!["80".parse().unwrap()]),
    ] {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let t = Instant::now();
            let e = m
                .connect(
                    "timing",
                    EndpointRequest {
                        ports: ports.clone(),
                        ..req.clone()
                    },
                )
                .unwrap();
            up.push(t.elapsed());
            let t = Instant::now();
            m.disconnect("timing", &e.container_id).unwrap();
            down.push(t.elapsed());
        }
        println!(
            "{label}: connect {} | disconnect {}",
            stats(&mut up),
            stats(&mut down)
        );
    }
    m.purge().unwrap();
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&dir);
}

fn stats(v: &mut [Duration]) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        ms(v[v.len() / 2]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1])
    )
}
