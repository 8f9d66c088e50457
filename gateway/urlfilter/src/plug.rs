//! The URL filter's place in the gateway ([`sekisho_core::Engine`]): `[urlfilter]` → the `url`
//! stage. Warning-page acknowledgements live in the engine, so a reload keeps them.

use std::sync::Arc;

use sekisho_core::{BuildCx, Built, ConfigError, LoadReport, StagePolicy};

use crate::{UrlFilter, UrlFilterConfig, UrlStage, WarnStore};

/// How many malformed list lines a load report lists (the rest are counted).
const DETAILS_SHOWN: usize = 20;

/// The URL filter engine: category folders and lists, per-client policies, warning pages,
/// splice categories.
#[derive(Default)]
pub struct UrlEngine {
    warn: Arc<WarnStore>,
}

impl sekisho_core::Engine for UrlEngine {
    type Config = UrlFilterConfig;

    fn keys(&self) -> Vec<&'static str> {
        let own = [
            "category_dirs",
            "categories",
            "list",
            "policy",
            "splice",
            "warn_ttl_secs",
            "max_expressions",
        ];
        own.into_iter()
            .chain(sekisho_core::StagePolicy::KEYS.iter().copied())
            .collect()
    }

    fn table(&self) -> &'static str {
        "urlfilter"
    }

    fn stage(&self) -> &'static str {
        "url"
    }

    fn prepare(&self, cfg: &mut UrlFilterConfig, cx: &BuildCx<'_>) -> Result<(), ConfigError> {
        cfg.resolve_paths(cx.config_dir);
        cfg.validate().map_err(ConfigError::named)
    }

    fn policy(&self, cfg: &UrlFilterConfig, _cx: &BuildCx<'_>) -> StagePolicy {
        cfg.policy()
    }

    fn build(&self, cfg: &UrlFilterConfig, cx: &BuildCx<'_>) -> Result<Built, ConfigError> {
        let f = UrlFilter::load(cfg).map_err(|e| ConfigError::new("urlfilter", e))?;
        let db = f.db();
        let (errors, n) = db.errors();
        let mut details: Vec<String> = errors
            .iter()
            .take(DETAILS_SHOWN)
            .map(|e| format!("skipped: {e}"))
            .collect();
        if n > details.len() {
            details.push(format!(
                "{} more malformed lines skipped",
                n - details.len()
            ));
        }
        let report = LoadReport {
            summary: format!(
                "urlfilter: {} categories and lists, {} domains, {} URLs, {} IPs, {} expressions, {} malformed lines skipped, loaded in {} ms; policies {:?}",
                db.names().len(),
                db.domain_count(),
                db.url_count(),
                db.ip_count(),
                db.expression_count(),
                n,
                f.load_time.as_millis(),
                f.policies().iter().map(|p| p.name.as_str()).collect::<Vec<_>>()
            ),
            details,
            errors: Vec::new(),
            loaded: db.domain_count() + db.url_count() + db.ip_count() + db.expression_count(),
        };
        if let (Some(shared), false) = (cx.shared, cx.check_only) {
            self.warn.share(shared);
        }
        Ok(Built {
            stage: Arc::new(UrlStage::new(Arc::new(f), Arc::clone(&self.warn))),
            report,
        })
    }
}
