//! `[policy]` keys the proxy enforces itself, on the address it actually connects to: which
//! destination networks the forward proxy may reach and which ports CONNECT may open. (The
//! table's other keys belong to the host policy engine.)

use ipnet::IpNet;
use serde::Deserialize;

/// Destination networks and CONNECT ports (`[policy]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct NetPolicy {
    /// Networks the forward proxy never connects to, checked on every address a name resolves
    /// to (so DNS cannot point around it). Default [`DEFAULT_DENY_NETWORKS`]: this host,
    /// loopback, link-local (cloud metadata at 169.254.169.254), multicast and the cloud
    /// metadata addresses outside link-local. `[]` turns the check off.
    #[serde(default)]
    pub deny_networks: Option<Vec<IpNet>>,
    /// Exceptions to `deny_networks` (say `["127.0.0.1/32"]` for a local service the clients may
    /// use). The gateway's own listeners stay refused.
    #[serde(default)]
    pub allow_networks: Vec<IpNet>,
    /// Ports CONNECT may open: numbers or `"low-high"` ranges. Default `[443]` (Squid's
    /// `SSL_ports`).
    #[serde(default)]
    pub connect_ports: Option<Vec<PortSpec>>,
}

/// A port or an inclusive range, as written: `443` or `"8443-8445"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    One(u16),
    /// `"low-high"` or `"port"`.
    Text(String),
}

/// The networks refused when `deny_networks` is not written.
pub const DEFAULT_DENY_NETWORKS: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "100.100.100.200/32",
    "168.63.129.16/32",
    "::/128",
    "::1/128",
    "fe80::/10",
    "ff00::/8",
    "fd00:ec2::254/128",
];

impl PortSpec {
    /// The inclusive range, or why it is not one.
    pub fn range(&self) -> Result<(u16, u16), String> {
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{s:?} is not a port (1-65535)"))
        };
        match self {
            PortSpec::One(0) => Err("0 is not a port (1-65535)".into()),
            PortSpec::One(p) => Ok((*p, *p)),
            PortSpec::Text(t) => {
                let (lo, hi) = match t.split_once('-') {
                    Some((a, b)) => (parse(a)?, parse(b)?),
                    None => (parse(t)?, parse(t)?),
                };
                if lo > hi {
                    return Err(format!("{t:?}: the range is empty"));
                }
                Ok((lo, hi))
            }
        }
    }
}

impl NetPolicy {
    /// The denied networks in force (the defaults when not written).
    pub fn denied(&self) -> Vec<IpNet> {
        match &self.deny_networks {
            Some(v) => v.clone(),
            None => DEFAULT_DENY_NETWORKS
                .iter()
                .map(|n| n.parse().expect("literal network"))
                .collect(),
        }
    }

    /// The CONNECT port ranges in force, or the first entry that is not a port or a range.
    pub fn connect_ranges(&self) -> Result<Vec<(u16, u16)>, String> {
        match &self.connect_ports {
            None => Ok(vec![(443, 443)]),
            Some(v) => v.iter().map(PortSpec::range).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ports_and_ranges() {
        let p: NetPolicy = toml::from_str("connect_ports = [443, \"8443-8445\", \"563\"]").unwrap();
        assert_eq!(
            p.connect_ranges().unwrap(),
            vec![(443, 443), (8443, 8445), (563, 563)]
        );
        for bad in ["[0]", "[\"9-8\"]", "[\"x\"]", "[\"1-70000\"]"] {
            let p: NetPolicy = toml::from_str(&format!("connect_ports = {bad}")).unwrap();
            assert!(p.connect_ranges().is_err(), "{bad}");
        }
        assert_eq!(
            NetPolicy::default().connect_ranges().unwrap(),
            vec![(443, 443)]
        );
    }

    #[test]
    fn defaults_cover_loopback_link_local_and_metadata() {
        let d = NetPolicy::default().denied();
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert!(d.iter().any(|n| n.contains(&ip)), "{ip}");
        }
        let ip: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        assert!(!d.iter().any(|n| n.contains(&ip)));
    }
}
