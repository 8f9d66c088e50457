//! The AV engine's place in the gateway ([`sekisho_core::Engine`]): `[av]` → the `av` stage.

use std::sync::Arc;

use sekisho_core::{BuildCx, Built, ConfigError, LoadReport, StagePolicy};

use crate::metrics::AvMetrics;
use crate::{AvConfig, AvStage, Engine};

/// The antivirus engine: YARA rules and ClamAV signatures over every body and archive member.
/// Its `sekisho_av_*` counters live across reloads.
#[derive(Clone)]
pub struct AvEngine {
    metrics: AvMetrics,
}

impl AvEngine {
    /// The engine with fresh counters.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(AvEngine {
            metrics: AvMetrics::new()?,
        })
    }
}

impl sekisho_core::Engine for AvEngine {
    type Config = AvConfig;

    fn keys(&self) -> Vec<&'static str> {
        let own = [
            "yara",
            "clamav",
            "cache_dir",
            "max_depth",
            "max_files",
            "max_member_bytes",
            "max_total_bytes",
            "max_soap_document_bytes",
            "scan_timeout_secs",
            "on_limit",
            "icap",
            "sandbox",
        ];
        own.into_iter()
            .chain(sekisho_core::StagePolicy::KEYS.iter().copied())
            .collect()
    }

    fn table(&self) -> &'static str {
        "av"
    }

    fn stage(&self) -> &'static str {
        "av"
    }

    fn prepare(&self, cfg: &mut AvConfig, cx: &BuildCx<'_>) -> Result<(), ConfigError> {
        // Relative paths are relative to the config file's folder (so `--config
        // /etc/sekisho/sekisho.toml` finds its rules wherever it is started from).
        if let Some(dir) = cx.config_dir {
            let cache = (!cfg.cache_dir.as_os_str().is_empty()).then_some(&mut cfg.cache_dir);
            let sandbox = cfg
                .sandbox
                .iter_mut()
                .flat_map(|s| [&mut s.ca_file, &mut s.token_file])
                .flatten();
            for p in cfg
                .yara
                .iter_mut()
                .chain(cfg.clamav.iter_mut())
                .chain(cache)
                .chain(sandbox)
            {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        cfg.validate().map_err(ConfigError::named)
    }

    fn policy(&self, cfg: &AvConfig, cx: &BuildCx<'_>) -> StagePolicy {
        cfg.policy(cx.default_resolve_timeout_secs)
    }

    fn build(&self, cfg: &AvConfig, cx: &BuildCx<'_>) -> Result<Built, ConfigError> {
        // check-config compiles the rules themselves and writes no cache.
        let cache = cfg.cache().filter(|_| !cx.check_only);
        let engine =
            Engine::load(&cfg.yara, &cfg.clamav, cache).map_err(|e| ConfigError::new("av", e))?;
        let r = engine.report();
        let report = LoadReport {
            summary: format!(
                "av: {} YARA rules (ClamAV body signatures included), {} ClamAV hash signatures, {} rejected{}",
                r.yara_rules,
                r.hash_signatures,
                r.rejected.len(),
                if r.from_cache { " (compiled rules from the cache)" } else { "" }
            ),
            details: r
                .rejected
                .iter()
                .map(|rej| {
                    format!(
                        "not loaded: {}:{} {}: {}",
                        rej.file, rej.line, rej.name, rej.reason
                    )
                })
                .collect(),
            errors: Vec::new(),
            loaded: r.yara_rules + r.hash_signatures,
        };
        let icap = crate::icap::Icap::new(&cfg.icap).map_err(ConfigError::named)?;
        let sandbox = cfg
            .sandbox
            .clone()
            .map(crate::sandbox::SandboxClient::new)
            .transpose()
            .map_err(ConfigError::named)?;
        Ok(Built {
            stage: Arc::new(
                AvStage::new(Arc::new(engine), cfg)
                    .with_icap(icap)
                    .with_sandbox(sandbox)
                    .with_metrics(self.metrics.clone()),
            ),
            report,
        })
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.metrics.clone())]
    }
}
