//! The host policy engine (`[policy]` → stage `host_policy`): refuses hosts on `deny_hosts` by
//! HTTP host, CONNECT host and TLS SNI (the last two before any decryption). It runs on every
//! listener whether or not `[policy]` is written.

use std::sync::Arc;

use sekisho_core::host::HostMatcher;
use sekisho_core::{
    BuildCx, Built, ConfigError, Cx, Evidence, Finding, FlowMeta, Inspector, LoadReport,
    RequestHead, Severity, Stage, StagePolicy, TlsHello, Verdict,
};
use serde::Deserialize;

/// `[policy]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Hosts refused: exact names and `*.suffix` patterns, checked against the HTTP host, the
    /// CONNECT host and the TLS SNI (before decryption).
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub deny_hosts: Vec<String>,
    /// `deny_networks`, `allow_networks`, `connect_ports`: enforced by the proxy on the
    /// addresses it connects to (read here only so the table is checked as one).
    #[serde(flatten)]
    pub network: sekisho_proxy::config::NetPolicy,
    /// `mode`, `on_error`, `on_overflow`.
    #[serde(flatten)]
    pub stage: StagePolicy,
}

/// The engine.
#[derive(Debug, Default)]
pub struct HostPolicyEngine;

impl sekisho_core::Engine for HostPolicyEngine {
    type Config = PolicyConfig;

    fn keys(&self) -> Vec<&'static str> {
        let own = ["deny_hosts"];
        own.into_iter()
            .chain(sekisho_proxy::config::NetPolicy::KEYS.iter().copied())
            .chain(sekisho_core::StagePolicy::KEYS.iter().copied())
            .collect()
    }

    fn table(&self) -> &'static str {
        "policy"
    }

    fn stage(&self) -> &'static str {
        "host_policy"
    }

    fn implicit(&self) -> Option<PolicyConfig> {
        Some(PolicyConfig::default())
    }

    fn prepare(&self, cfg: &mut PolicyConfig, _cx: &BuildCx<'_>) -> Result<(), ConfigError> {
        HostMatcher::new(&cfg.deny_hosts)
            .map(drop)
            .map_err(|e| ConfigError::new("policy.deny_hosts", e))
    }

    fn policy(&self, cfg: &PolicyConfig, _cx: &BuildCx<'_>) -> StagePolicy {
        cfg.stage
    }

    fn build(&self, cfg: &PolicyConfig, _cx: &BuildCx<'_>) -> Result<Built, ConfigError> {
        let deny = HostMatcher::new(&cfg.deny_hosts)
            .map_err(|e| ConfigError::new("policy.deny_hosts", e))?;
        Ok(Built {
            stage: Arc::new(HostPolicy::new(deny)),
            report: LoadReport {
                summary: format!("host_policy: {} deny_hosts patterns", cfg.deny_hosts.len()),
                loaded: cfg.deny_hosts.len(),
                ..LoadReport::default()
            },
        })
    }
}

/// The stage.
pub struct HostPolicy {
    deny: Arc<HostMatcher>,
}

impl HostPolicy {
    /// A policy refusing the hosts that `deny` matches.
    pub fn new(deny: HostMatcher) -> Self {
        HostPolicy {
            deny: Arc::new(deny),
        }
    }
}

impl Stage for HostPolicy {
    fn name(&self) -> &'static str {
        "host_policy"
    }
    fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(HostPolicyInspector {
            deny: Arc::clone(&self.deny),
        })
    }
}

struct HostPolicyInspector {
    deny: Arc<HostMatcher>,
}

impl HostPolicyInspector {
    fn check(&self, cx: &mut Cx<'_>, host: &str, location: &str) -> Verdict {
        match self.deny.find(host) {
            Some(pattern) => {
                let f = Finding::new(
                    "policy",
                    format!("deny_hosts:{pattern}"),
                    format!("host {host} is denied by policy (deny_hosts {pattern})"),
                    Severity::High,
                    "policy-violation",
                    Evidence::new(location, host),
                );
                cx.report(f);
                Verdict::Block
            }
            None => Verdict::Allow,
        }
    }
}

impl Inspector for HostPolicyInspector {
    fn on_tls_hello(&mut self, cx: &mut Cx<'_>, hello: &TlsHello) -> Verdict {
        match &hello.sni {
            Some(sni) => self.check(cx, sni, "tls.sni"),
            None => Verdict::Allow,
        }
    }

    fn on_request_head(&mut self, cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        if head.host.is_empty() {
            return Verdict::Allow;
        }
        let location = if head.method == http::Method::CONNECT {
            "connect.host"
        } else {
            "request.host"
        };
        let v = self.check(cx, &head.host, location);
        if v == Verdict::Block {
            return v;
        }
        // Inside a decrypted tunnel the Host header may name another host than the SNI.
        match head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            Some(h) => {
                let (host, _) = sekisho_core::split_host_port(h, 0);
                if host != head.host {
                    self.check(cx, &host, "request.header.host")
                } else {
                    v
                }
            }
            None => v,
        }
    }
}
