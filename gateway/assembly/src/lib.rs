//! `sekisho-assembly`: the one place that knows the list of engines.
//!
//! It reads `sekisho.toml` (the proxy's part with [`sekisho_proxy::Config`], each engine's
//! table with the engine's own config type), builds every configured engine
//! ([`sekisho_core::Engine`]), assembles each listener's pipeline from its `stages` (default:
//! every configured engine in [`engines`] order) and hands the proxy the pipelines; a reload
//! builds every engine anew and swaps the pipelines atomically.
//!
//! Adding an engine: its crate implements [`sekisho_core::Engine`], and [`engines`] gets a line.

mod assemble;
mod config;
pub mod env;
pub mod host_policy;
mod plug;
#[cfg(test)]
mod tests;

pub use assemble::{Assembly, Reloader};
pub use config::GatewayConfig;
pub use plug::{Configured, Plug};

use std::sync::Arc;

/// Every engine the gateway has, in the default stage order: cheap decisions on hosts and URLs
/// first, then the IPS over every phase, the WAF on HTTP transactions, then the AV on bodies. Made once per process: an engine
/// keeps its counters and cross-reload state for the gateway's life.
pub fn engines() -> Result<Vec<Box<dyn Plug>>, prometheus::Error> {
    Ok(vec![
        Box::new(Arc::new(host_policy::HostPolicyEngine)),
        Box::new(Arc::new(sekisho_urlfilter::UrlEngine::default())),
        Box::new(Arc::new(sekisho_ips::IpsEngine::new()?)),
        Box::new(Arc::new(sekisho_waf::WafEngine)),
        Box::new(Arc::new(sekisho_av::AvEngine::new()?)),
    ])
}
