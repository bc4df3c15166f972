//! Skiff's nftables table: masquerade and forwarding policy for its bridges.
//!
//! Choice: Debian's `nft` CLI. Every change regenerates Skiff's whole table from the manager's
//! state and feeds it to `nft -f -` as one transaction (`table` + `delete table` + the new
//! table), so the kernel sees either the old or the new rules, never a half state, and a
//! restart converges by simply applying again. Only the table `ip <prefix>` is ever written or
//! deleted; rules Skiff did not create are never read or touched. When no network needs rules
//! the table is deleted.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{NetworkError, Result};
use crate::ipam::Ipv4Net;

/// What one bridge network contributes to the ruleset.
#[derive(Debug, Clone)]
pub(crate) struct BridgeRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
    pub masquerade: bool,
}

/// The `nft -f` script that makes table `ip <table>` hold exactly the rules for `nets`
/// (deleting the table when `nets` is empty).
pub(crate) fn script(table: &str, nets: &[BridgeRules]) -> String {
    let mut s = format!("table ip {table}\ndelete table ip {table}\n");
    if nets.is_empty() {
        return s;
    }
    s.push_str(&format!("table ip {table} {{\n"));
    s.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    for n in nets.iter().filter(|n| !n.internal && n.masquerade) {
        s.push_str(&format!(
            "\t\tip saddr {} oifname != \"{}\" masquerade\n",
            n.subnet, n.bridge
        ));
    }
    s.push_str("\t}\n");
    s.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n");
    for n in nets {
        // isolation between Skiff networks (Docker's DOCKER-ISOLATION chains)
        let others: Vec<String> = nets
            .iter()
            .filter(|o| o.bridge != n.bridge)
            .map(|o| format!("\"{}\"", o.bridge))
            .collect();
        if !others.is_empty() {
            s.push_str(&format!(
                "\t\tiifname \"{}\" oifname {{ {} }} drop\n",
                n.bridge,
                others.join(", ")
            ));
        }
    }
    for n in nets {
        let b = &n.bridge;
        s.push_str(&format!("\t\tiifname \"{b}\" oifname \"{b}\" accept\n"));
        if n.internal {
            s.push_str(&format!(
                "\t\tiifname \"{b}\" drop\n\t\toifname \"{b}\" drop\n"
            ));
        } else {
            s.push_str(&format!(
                "\t\tiifname \"{b}\" accept\n\t\toifname \"{b}\" ct state established,related accept\n\t\toifname \"{b}\" drop\n"
            ));
        }
    }
    s.push_str("\t}\n}\n");
    s
}

/// Applies `script(table, nets)` atomically.
pub(crate) fn apply(table: &str, nets: &[BridgeRules]) -> Result<()> {
    run_nft(table, &script(table, nets))
}

fn run_nft(table: &str, script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetworkError::io("run", "nft", e))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .map_err(|e| NetworkError::io("write the ruleset to", "nft", e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| NetworkError::io("wait for", "nft", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Nft {
            table: table.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_deletes_the_table() {
        assert_eq!(script("sk", &[]), "table ip sk\ndelete table ip sk\n");
    }

    #[test]
    fn internal_networks_get_no_masquerade() {
        let s = script(
            "sk",
            &[
                BridgeRules {
                    bridge: "sk0".into(),
                    subnet: "10.9.0.0/16".parse().unwrap(),
                    internal: false,
                    masquerade: true,
                },
                BridgeRules {
                    bridge: "sk-int".into(),
                    subnet: "10.8.0.0/24".parse().unwrap(),
                    internal: true,
                    masquerade: true,
                },
            ],
        );
        assert!(s.contains("ip saddr 10.9.0.0/16 oifname != \"sk0\" masquerade"));
        assert!(!s.contains("10.8.0.0/24"));
        assert!(s.contains("iifname \"sk-int\" drop"));
        assert!(s.contains("iifname \"sk0\" oifname { \"sk-int\" } drop"));
    }
}
