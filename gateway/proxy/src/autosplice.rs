//! Upstreams the gateway cannot inspect, and what the operator chose for them.
//!
//! - A server that asks for a client certificate (`[tls] on_client_certificate_request`): the
//!   gateway cannot present the client's certificate. With `splice` (the default) the server's
//!   `host:port` is remembered and its next tunnels are spliced, the client presenting its own
//!   certificate; with `block` the client keeps getting the page that says so.
//! - A server that speaks only a TLS version or cipher the gateway refuses (TLS 1.0/1.1, ciphers
//!   without forward secrecy): blocked with a page naming the way to allow it (the default,
//!   `[tls] on_legacy_upstream = "block"`), or spliced from the next tunnel on for every such
//!   server (`"splice"`) or for the hosts in `[tls] legacy_splice`.
//!
//! The request that met the server's demand gets the page in every case: its ClientHello is not
//! replayed. Hosts are remembered for a day, 10,000 of each kind at most.

use std::time::{Duration, Instant};

use crate::hostmatch::HostMatcher;

/// How long a host is remembered.
const REMEMBER: Duration = Duration::from_secs(24 * 3600);

/// `on_client_certificate_request`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCertRequest {
    /// Splice the host's next tunnels (the default).
    #[default]
    Splice,
    /// Keep refusing with a page.
    Block,
}

/// `on_legacy_upstream`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLegacy {
    /// Refuse with a page naming the version or cipher and `legacy_splice` (the default).
    #[default]
    Block,
    /// Splice every legacy server's next tunnels.
    Splice,
}

/// Hosts (or `host:port`s) remembered for a while (a day unless told) with the time they were
/// last seen; 10,000 at most (the least used go first).
pub(crate) struct Remembered(quick_cache::sync::Cache<String, Instant>, Duration);

impl Remembered {
    /// Remembers for a day.
    pub(crate) fn new() -> Remembered {
        Remembered::for_(REMEMBER)
    }

    /// Remembers for `ttl`.
    pub(crate) fn for_(ttl: Duration) -> Remembered {
        Remembered(quick_cache::sync::Cache::new(10_000), ttl)
    }

    /// Remembers `key` (case-insensitive) as seen now.
    pub(crate) fn remember(&self, key: &str) {
        self.0.insert(key.to_ascii_lowercase(), Instant::now());
    }

    /// Whether `key` was seen within the time remembered.
    pub(crate) fn recent(&self, key: &str) -> bool {
        self.0
            .get(&key.to_ascii_lowercase())
            .is_some_and(|t| t.elapsed() < self.1)
    }
}

fn host_port(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// Servers that asked for a client certificate, or speak only legacy TLS, by `host:port`; and
/// those whose first flight was unremarkable (`crate::preflight`).
pub(crate) struct AutoSplice {
    on_cert: OnCertRequest,
    on_legacy: OnLegacy,
    legacy_list: HostMatcher,
    legacy_categories: Vec<String>,
    /// Servers that need no pre-flight dial; `None`: pre-flight is off.
    unremarkable: Option<Remembered>,
    /// What legacy servers speak, probed once a day each.
    pub(crate) named: crate::legacyprobe::Named,
    cert: Remembered,
    legacy: Remembered,
}

/// Why a tunnel is spliced without inspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// The server asks for a client certificate.
    ClientCertificate,
    /// The server speaks only a legacy TLS version or cipher.
    Legacy,
}

impl Why {
    /// `tls.error.code` and the event's `rule.id` of such a splice.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Why::ClientCertificate => "uninspected-client-certificate",
            Why::Legacy => "uninspected-legacy-tls",
        }
    }
}

impl AutoSplice {
    /// The operator's choices.
    pub(crate) fn new(
        on_cert: OnCertRequest,
        on_legacy: OnLegacy,
        legacy_list: HostMatcher,
    ) -> AutoSplice {
        AutoSplice {
            on_cert,
            on_legacy,
            legacy_list,
            legacy_categories: Vec::new(),
            unremarkable: None,
            named: crate::legacyprobe::Named::new(),
            cert: Remembered::new(),
            legacy: Remembered::new(),
        }
    }

    /// `host:port` asked for a client certificate: remembered; whether its tunnels are spliced.
    pub(crate) fn asked_for_certificate(&self, host: &str, port: u16) -> bool {
        self.cert.remember(&host_port(host, port));
        self.on_cert == OnCertRequest::Splice
    }

    /// Legacy servers in these URL categories are spliced too (`legacy_splice_categories`).
    pub(crate) fn with_legacy_categories(mut self, categories: Vec<String>) -> AutoSplice {
        self.legacy_categories = categories;
        self
    }

    /// Servers are dialled before the client is answered, those found unremarkable remembered
    /// for `remember` (`[tls] preflight`).
    pub(crate) fn with_preflight(mut self, remember: Duration) -> AutoSplice {
        self.unremarkable = Some(Remembered::for_(remember));
        self
    }

    /// `legacy_splice_categories`.
    pub(crate) fn legacy_categories(&self) -> &[String] {
        &self.legacy_categories
    }

    /// Whether a tunnel to `host:port` is dialled before the client is answered.
    pub(crate) fn preflight_due(&self, host: &str, port: u16) -> bool {
        self.unremarkable
            .as_ref()
            .is_some_and(|u| !u.recent(&host_port(host, port)))
    }

    /// `host:port`'s first flight was unremarkable.
    pub(crate) fn unremarkable(&self, host: &str, port: u16) {
        if let Some(u) = &self.unremarkable {
            u.remember(&host_port(host, port));
        }
    }

    /// `host:port` speaks only legacy TLS: remembered; whether its tunnels are spliced.
    /// `in_category`: the host is in one of `legacy_splice_categories` for the listener asking.
    pub(crate) fn legacy(&self, host: &str, port: u16, in_category: bool) -> bool {
        self.legacy.remember(&host_port(host, port));
        self.legacy_allowed(host, in_category)
    }

    fn legacy_allowed(&self, host: &str, in_category: bool) -> bool {
        self.on_legacy == OnLegacy::Splice || self.legacy_list.matches(host) || in_category
    }

    /// Whether a tunnel to `host:port` is spliced, and why. What servers did is remembered for
    /// every listener; what it means is decided per tunnel (`in_category` is asked only of a
    /// legacy server).
    pub(crate) fn splice(
        &self,
        host: &str,
        port: u16,
        in_category: impl FnOnce() -> bool,
    ) -> Option<Why> {
        let key = host_port(host, port);
        if self.on_cert == OnCertRequest::Splice && self.cert.recent(&key) {
            return Some(Why::ClientCertificate);
        }
        (self.legacy.recent(&key) && self.legacy_allowed(host, in_category()))
            .then_some(Why::Legacy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_choices() {
        let list = HostMatcher::new(&["old.test".to_string()]).unwrap_or_else(|e| panic!("{e}"));
        let s = AutoSplice::new(OnCertRequest::Splice, OnLegacy::Block, list);
        assert_eq!(s.splice("claims.test", 443, || false), None);
        assert!(s.asked_for_certificate("Claims.test", 443));
        assert_eq!(
            s.splice("claims.test", 443, || false),
            Some(Why::ClientCertificate)
        );
        assert_eq!(
            s.splice("claims.test", 8443, || false),
            None,
            "another port, another service"
        );
        assert!(
            !s.legacy("device.test", 443, false),
            "legacy: blocked unless listed"
        );
        assert_eq!(s.splice("device.test", 443, || false), None);
        assert!(s.legacy("old.test", 443, false));
        assert!(s.legacy("modality.test", 443, true), "by category");
        assert_eq!(s.splice("modality.test", 443, || true), Some(Why::Legacy));
        assert_eq!(
            s.splice("modality.test", 443, || false),
            None,
            "another listener's categories do not splice it"
        );
        assert_eq!(s.splice("old.test", 443, || false), Some(Why::Legacy));
        let b = AutoSplice::new(
            OnCertRequest::Block,
            OnLegacy::Splice,
            HostMatcher::new(&[] as &[String]).unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(!b.asked_for_certificate("claims.test", 443));
        assert_eq!(b.splice("claims.test", 443, || false), None);
        assert!(b.legacy("device.test", 443, false));
        assert_eq!(b.splice("device.test", 443, || false), Some(Why::Legacy));
        assert!(!b.preflight_due("claims.test", 443), "pre-flight off");
        let p = b.with_preflight(Duration::from_secs(60));
        assert!(p.preflight_due("claims.test", 443));
        p.unremarkable("Claims.test", 443);
        assert!(!p.preflight_due("claims.test", 443));
        assert!(p.preflight_due("claims.test", 8443));
        let every = AutoSplice::new(
            OnCertRequest::Splice,
            OnLegacy::Block,
            HostMatcher::new(&[] as &[String]).unwrap_or_else(|e| panic!("{e}")),
        )
        .with_preflight(Duration::ZERO);
        every.unremarkable("claims.test", 443);
        assert!(every.preflight_due("claims.test", 443), "0: every tunnel");
    }
}
