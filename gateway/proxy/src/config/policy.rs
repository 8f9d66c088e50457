//! `[policy]` keys the proxy enforces itself: which destination networks the forward proxy may
//! reach (on the address it actually connects to), which ports CONNECT may open, whether it adds
//! `Via`, and how a blocked HTTPS site is refused. (The table's other keys belong to the host
//! policy engine.)

use ipnet::IpNet;
use serde::Deserialize;

/// Destination networks, CONNECT ports, `via` and `tls_block_page` (`[policy]`).
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
    /// Ports CONNECT may open: numbers or `"low-high"` ranges. Default `[443, 80]` (Squid's
    /// `SSL_ports`, and HTTP, whose cleartext tunnels are inspected).
    #[serde(default)]
    pub connect_ports: Option<Vec<PortSpec>>,
    /// Whether the proxy adds a `Via` header to requests and responses (default `true`, RFC 9110
    /// §7.6.3). nginx origins do not compress responses to requests carrying `Via` unless
    /// `gzip_proxied` says so; `false` drops it (forwarding loops are still refused by address:
    /// the gateway never connects to its own listeners).
    #[serde(default)]
    pub via: Option<bool>,
    /// How a blocked HTTPS site is refused (default `"bump"`): `"bump"` accepts the CONNECT,
    /// completes the TLS handshake with a minted certificate and shows the block page inside the
    /// session (nothing is sent upstream), as Squid's ssl_bump with deny_info does; `"refuse"`
    /// answers the CONNECT with a 403 that browsers do not render. Hosts that are never
    /// decrypted (`[tls] splice`, URL categories marked splice) are refused either way, with an
    /// event saying the page could not be shown.
    #[serde(default)]
    pub tls_block_page: TlsBlockPage,
    /// What a CONNECT tunnel that does not start with TLS gets (default `"inspect"`):
    /// cleartext HTTP/1 and HTTP/2 with prior knowledge are served and inspected like plain
    /// proxied requests (to the CONNECT target); anything else, and everything with
    /// `"refuse"`, is closed with an event.
    #[serde(default)]
    pub connect_non_tls: ConnectNonTls,
    /// A folder of page templates and texts: `<lang>/page.html` and `<lang>/messages.toml`,
    /// replacing the bundled English (`en`) and Japanese (`ja`) files or adding a language
    /// (relative to the config file's folder).
    #[serde(default)]
    pub page_dir: Option<std::path::PathBuf>,
    /// The pages' language when the client's `Accept-Language` names none we have (default
    /// `"en"`).
    #[serde(default)]
    pub page_language: Option<String>,
    /// Protocols besides WebSocket a request may upgrade to (`Upgrade: h2c`, `TLS/1.0` …),
    /// whose connection is then joined uninspected (default none, as Squid's
    /// `http_upgrade_request_protocols`). WebSocket is always carried and inspected frame by
    /// frame; any other protocol is taken off the request's `Upgrade`, so the origin answers
    /// in HTTP/1.1 and the exchange stays inspected.
    #[serde(default)]
    pub upgrade_protocols: Vec<String>,
    /// Content types that are streams (default [`DEFAULT_STREAM_TYPES`]): their bodies pass
    /// the holding stages unheld (each stage's `streams = "hold"` keeps holding them). A type
    /// matches its parameters and `+suffix` forms (`application/grpc` matches
    /// `application/grpc+proto; charset=…`). Long-poll JSON endpoints can be added here.
    #[serde(default)]
    pub stream_types: Option<Vec<String>>,
    /// `Range` requests on a listener with a stage that scans whole files (the AV stage), which
    /// would otherwise see a file in pieces, each passing alone: `"whole"` (default) fetches the
    /// whole file, scans it and answers the range asked for (206; several ranges get the whole
    /// file, 200); `"refuse"` answers 403; `"pass"` forwards the range and raises an event
    /// (`range-passed`) saying the file was inspected in pieces.
    #[serde(default)]
    pub range_requests: RangeRequests,
}

/// `range_requests`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RangeRequests {
    /// Fetch the whole file, scan it, answer the range (the default).
    #[default]
    Whole,
    /// Refuse range requests (403).
    Refuse,
    /// Forward them, with an event.
    Pass,
}

/// Content types streamed unheld when `stream_types` is not written.
pub const DEFAULT_STREAM_TYPES: &[&str] = &[
    "text/event-stream",
    "application/grpc",
    "application/grpc-web",
    "application/x-ndjson",
    "multipart/x-mixed-replace",
];

/// Whether `content_type` is one of `types` (case-insensitive; parameters and `+suffix` ignored).
pub fn is_stream_type(types: &[String], content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    types.iter().any(|t| {
        let t = t.trim().to_ascii_lowercase();
        media == t
            || media
                .strip_prefix(t.as_str())
                .is_some_and(|rest| rest.starts_with('+'))
    })
}

/// `tls_block_page`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsBlockPage {
    /// Show the page inside the TLS session (the default).
    #[default]
    Bump,
    /// Refuse the CONNECT (or close the tunnel) with no page.
    Refuse,
}

/// `connect_non_tls`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConnectNonTls {
    /// Serve and inspect cleartext HTTP; refuse the rest.
    #[default]
    Inspect,
    /// Refuse whatever is not TLS.
    Refuse,
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
    /// Its keys (listed when `[policy]` has a mistyped one).
    pub const KEYS: &'static [&'static str] = &[
        "deny_networks",
        "allow_networks",
        "connect_ports",
        "via",
        "tls_block_page",
        "connect_non_tls",
        "page_dir",
        "page_language",
        "stream_types",
        "range_requests",
        "upgrade_protocols",
    ];

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

    /// The pages in force: the bundled ones with `page_dir` over them.
    pub fn pages(&self) -> Result<crate::pages::Pages, String> {
        crate::pages::Pages::load(
            self.page_dir.as_deref(),
            self.page_language.as_deref().unwrap_or("en"),
        )
    }

    /// The stream content types in force.
    pub fn streams(&self) -> Vec<String> {
        match &self.stream_types {
            Some(v) => v.clone(),
            None => DEFAULT_STREAM_TYPES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Whether `Via` is added (default yes).
    pub fn via(&self) -> bool {
        self.via.unwrap_or(true)
    }

    /// The CONNECT port ranges in force, or the first entry that is not a port or a range.
    pub fn connect_ranges(&self) -> Result<Vec<(u16, u16)>, String> {
        match &self.connect_ports {
            // HTTPS, and cleartext HTTP tunnels (inspected: `connect_non_tls`).
            None => Ok(vec![(443, 443), (80, 80)]),
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
            vec![(443, 443), (80, 80)]
        );
    }

    #[test]
    fn stream_types_match_parameters_and_suffixes_only() {
        let t = NetPolicy::default().streams();
        assert!(is_stream_type(&t, "text/event-stream"));
        assert!(is_stream_type(&t, "Text/Event-Stream; charset=utf-8"));
        assert!(is_stream_type(&t, "application/grpc+proto"));
        assert!(!is_stream_type(&t, "application/grpcx"));
        assert!(!is_stream_type(&t, "text/html"));
        assert!(!is_stream_type(&t, ""));
        let p: NetPolicy = toml::from_str("stream_types = [\"application/json\"]").unwrap();
        assert!(is_stream_type(&p.streams(), "application/json"));
        assert!(!is_stream_type(&p.streams(), "text/event-stream"));
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
