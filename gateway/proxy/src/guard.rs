//! Where the forward proxy may connect: `[policy] deny_networks` / `allow_networks` checked on
//! every address a destination resolves to (the address actually dialled, so a name that
//! resolves to a metadata or loopback address cannot be used to reach it), CONNECT ports, and
//! the gateway's own listeners (no loops, no requests to its metrics through itself).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::config::Config;

/// A set of networks, looked up by one hash probe per prefix length in use.
#[derive(Debug, Default)]
struct NetSet {
    /// (prefix length, is IPv6) → network addresses, masked.
    by_len: Vec<(u8, bool, HashSet<IpAddr>)>,
}

impl NetSet {
    fn new(nets: &[IpNet]) -> NetSet {
        let mut s = NetSet::default();
        for n in nets {
            let key = (n.prefix_len(), matches!(n, IpNet::V6(_)));
            match s.by_len.iter_mut().find(|(l, v6, _)| (*l, *v6) == key) {
                Some((_, _, set)) => {
                    set.insert(n.network());
                }
                None => s.by_len.push((key.0, key.1, HashSet::from([n.network()]))),
            }
        }
        s
    }

    /// The network holding `ip`, if any.
    fn find(&self, ip: IpAddr) -> Option<IpNet> {
        self.by_len.iter().find_map(|(len, v6, set)| {
            if *v6 != ip.is_ipv6() {
                return None;
            }
            let net = IpNet::new(ip, *len).ok()?.trunc();
            set.contains(&net.network()).then_some(net)
        })
    }
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The address is in `deny_networks` (and not in `allow_networks`).
    #[error("destination {ip} is in [policy] deny_networks ({net})")]
    Network {
        /// The address.
        ip: IpAddr,
        /// The denied network holding it.
        net: IpNet,
    },
    /// The address and port are one of the gateway's own listeners.
    #[error("destination {0} is the gateway itself")]
    Own(SocketAddr),
    /// The request already passed through this gateway (its node is in `Via`): a loop.
    #[error("the request already passed through this gateway (Via): a forwarding loop")]
    Loop,
    /// CONNECT to a port outside `connect_ports`.
    #[error("CONNECT to port {0} is not allowed ([policy] connect_ports)")]
    Port(u16),
}

/// The destination policy of the forward listeners, with the other `[policy]` keys the proxy
/// applies itself (swapped as one on reload).
#[derive(Debug)]
pub struct DestGuard {
    deny: NetSet,
    allow: NetSet,
    ports: Vec<(u16, u16)>,
    /// Listener and metrics sockets.
    own: Vec<SocketAddr>,
    /// `[policy] via`.
    pub via: bool,
    /// `[policy] tls_block_page`.
    pub tls_block_page: crate::config::TlsBlockPage,
    /// `[policy] connect_non_tls`.
    pub connect_non_tls: crate::config::ConnectNonTls,
    /// `[policy] stream_types`.
    pub stream_types: Vec<String>,
    /// `[policy] range_requests`.
    pub range_requests: crate::config::RangeRequests,
    /// `[policy] upgrade_protocols`, lower-cased.
    pub upgrade_protocols: Vec<String>,
}

impl Default for DestGuard {
    fn default() -> Self {
        DestGuard {
            deny: NetSet::default(),
            allow: NetSet::default(),
            ports: Vec::new(),
            own: Vec::new(),
            via: true,
            tls_block_page: Default::default(),
            connect_non_tls: Default::default(),
            stream_types: crate::config::NetPolicy::default().streams(),
            range_requests: Default::default(),
            upgrade_protocols: Vec::new(),
        }
    }
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl DestGuard {
    /// The guard for `cfg`, with `own` the sockets the gateway listens on.
    pub fn new(cfg: &Config, own: Vec<SocketAddr>) -> DestGuard {
        DestGuard {
            deny: NetSet::new(&cfg.policy.denied()),
            allow: NetSet::new(&cfg.policy.allow_networks),
            // Checked by Config::validate.
            ports: cfg.policy.connect_ranges().unwrap_or_default(),
            own,
            via: cfg.policy.via(),
            tls_block_page: cfg.policy.tls_block_page,
            connect_non_tls: cfg.policy.connect_non_tls,
            stream_types: cfg.policy.streams(),
            range_requests: cfg.policy.range_requests,
            upgrade_protocols: cfg
                .policy
                .upgrade_protocols
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether the forward proxy may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = plain(ip);
        match self.deny.find(ip) {
            Some(net) if self.allow.find(ip).is_none() => Err(Refused::Network { ip, net }),
            _ => Ok(()),
        }
    }

    /// Whether the forward proxy may connect to `addr` (its network, and not the gateway).
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refused> {
        self.check_ip(addr.ip())?;
        let ip = plain(addr.ip());
        let own = self.own.iter().any(|o| {
            o.port() == addr.port()
                && (plain(o.ip()) == ip || (o.ip().is_unspecified() && is_local(ip)))
        });
        if own {
            return Err(Refused::Own(SocketAddr::new(ip, addr.port())));
        }
        Ok(())
    }

    /// Whether CONNECT may open `port`.
    pub fn check_connect_port(&self, port: u16) -> Result<(), Refused> {
        if self
            .ports
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&port))
        {
            Ok(())
        } else {
            Err(Refused::Port(port))
        }
    }
}

/// Addresses that reach this host whatever it is bound to.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn guard(policy: &str, own: &[&str]) -> DestGuard {
        let text = format!(
            "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[policy]\n{policy}\n"
        );
        let cfg = Config::parse_with(&text, std::path::Path::new("t.toml"), &["policy"]).unwrap();
        DestGuard::new(&cfg, own.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn defaults_refuse_metadata_loopback_and_mapped_spellings() {
        let g = guard("", &[]);
        for ip in [
            "169.254.169.254",
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fe80::1",
        ] {
            assert!(g.check_ip(ip.parse().unwrap()).is_err(), "{ip}");
        }
        for ip in ["10.0.0.1", "203.0.113.5", "2001:db8::1"] {
            assert!(g.check_ip(ip.parse().unwrap()).is_ok(), "{ip}");
        }
        assert_eq!(
            g.check_ip("127.9.9.9".parse().unwrap()),
            Err(Refused::Network {
                ip: "127.9.9.9".parse().unwrap(),
                net: "127.0.0.0/8".parse().unwrap()
            })
        );
    }

    #[test]
    fn allow_networks_open_a_hole_but_never_the_gateway_itself() {
        let g = guard(
            "allow_networks = [\"127.0.0.0/8\"]",
            &["127.0.0.1:3128", "0.0.0.0:9190"],
        );
        assert!(g.check("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(g.check("169.254.169.254:80".parse().unwrap()).is_err());
        assert_eq!(
            g.check("127.0.0.1:3128".parse().unwrap()),
            Err(Refused::Own("127.0.0.1:3128".parse().unwrap()))
        );
        assert!(g.check("127.0.0.2:9190".parse().unwrap()).is_err());
        assert!(g.check("[::ffff:127.0.0.1]:9190".parse().unwrap()).is_err());
        assert!(g.check("10.0.0.1:9190".parse().unwrap()).is_ok());
    }

    #[test]
    fn connect_ports_and_an_empty_deny_list() {
        let g = guard(
            "deny_networks = []\nconnect_ports = [443, \"8000-8999\"]",
            &[],
        );
        assert!(g.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(g.check_connect_port(443).is_ok());
        assert!(g.check_connect_port(8443).is_ok());
        assert_eq!(g.check_connect_port(22), Err(Refused::Port(22)));
    }
}
