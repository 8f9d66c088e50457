//! Upstreams that ask for a client certificate (`[tls] on_client_certificate_request`). The
//! gateway cannot present the client's certificate, so it cannot inspect such a flow: with
//! `splice` (the default) the host is remembered (bounded, for a day) and its next tunnels are
//! spliced, the client presenting its own certificate, each with an `uninspected` event; with
//! `block` the client keeps getting the page that says so. The first request, made before the
//! gateway knew, gets that page too (its ClientHello is not replayed).

use std::time::{Duration, Instant};

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

/// Hosts that asked for a client certificate, and when.
pub(crate) struct CertRequests {
    policy: OnCertRequest,
    seen: quick_cache::sync::Cache<String, Instant>,
}

impl CertRequests {
    /// Remembers up to 10,000 hosts under `policy`.
    pub(crate) fn new(policy: OnCertRequest) -> CertRequests {
        CertRequests {
            policy,
            seen: quick_cache::sync::Cache::new(10_000),
        }
    }

    /// `host:port` asked for a client certificate; whether its next tunnels are spliced.
    pub(crate) fn asked(&self, host: &str, port: u16) -> bool {
        if self.policy == OnCertRequest::Block {
            return false;
        }
        self.seen.insert(key(host, port), Instant::now());
        true
    }

    /// Whether a tunnel to `host:port` is spliced because it asked for a client certificate.
    pub(crate) fn splice(&self, host: &str, port: u16) -> bool {
        self.policy == OnCertRequest::Splice
            && self
                .seen
                .get(&key(host, port))
                .is_some_and(|t| t.elapsed() < REMEMBER)
    }
}

fn key(host: &str, port: u16) -> String {
    format!("{}:{port}", host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_remembers_and_block_does_not() {
        let s = CertRequests::new(OnCertRequest::Splice);
        assert!(!s.splice("claims.test", 443));
        assert!(s.asked("Claims.test", 443));
        assert!(s.splice("claims.test", 443));
        assert!(
            !s.splice("claims.test", 8443),
            "another port is another service"
        );
        let b = CertRequests::new(OnCertRequest::Block);
        assert!(!b.asked("claims.test", 443));
        assert!(!b.splice("claims.test", 443));
    }
}
