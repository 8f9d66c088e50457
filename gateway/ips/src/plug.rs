//! The IPS engine's place in the gateway ([`sekisho_core::Engine`]): `[ips]` → the `ips` stage,
//! and the `sekisho_ips_*` metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge};
use sekisho_core::{BuildCx, Built, ConfigError, LoadReport, StagePolicy};

use crate::ruleset::Stats;
use crate::{IpsConfig, IpsStage, RuleSet};

/// The IPS engine: Suricata rules over every phase of a flow. Its counters live across reloads
/// (every rule set it builds counts into them).
pub struct IpsEngine {
    stats: Arc<Stats>,
    /// Datasets kept across reloads (dynamic sets keep what traffic taught them).
    datasets: Arc<crate::datasets::Datasets>,
    /// xbits and threshold counters kept across reloads (and shared by a cluster's nodes).
    hosts: Arc<crate::hosts::HostState>,
    /// The file store, kept across reloads while its folder and budget stay the same.
    store: std::sync::Mutex<Option<(std::path::PathBuf, u64, Arc<crate::filestore::FileStore>)>>,
    metrics: IpsMetrics,
}

impl IpsEngine {
    /// The engine with fresh counters.
    pub fn new() -> Result<Self, prometheus::Error> {
        let stats = Arc::new(Stats::default());
        Ok(IpsEngine {
            metrics: IpsMetrics::new(Arc::clone(&stats))?,
            stats,
            datasets: Arc::default(),
            hosts: Arc::default(),
            store: std::sync::Mutex::default(),
        })
    }
}

impl IpsEngine {
    /// The store for `dir` and `max` (the running one when they did not change).
    fn file_store(&self, dir: &std::path::Path, max: u64) -> Arc<crate::filestore::FileStore> {
        let mut slot = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((d, m, s)) = slot.as_ref() {
            if d == dir && *m == max {
                return Arc::clone(s);
            }
        }
        let s = Arc::new(crate::filestore::FileStore::new(dir, max));
        *slot = Some((dir.to_path_buf(), max, Arc::clone(&s)));
        s
    }
}

impl sekisho_core::Engine for IpsEngine {
    type Config = IpsConfig;

    fn keys(&self) -> Vec<&'static str> {
        let own = [
            "rules",
            "classification",
            "threshold",
            "vars",
            "body_limit",
            "pcre_match_limit",
            "pcre_depth_limit",
            "flow_pcre_budget_ms",
            "data_dir",
            "filestore_dir",
            "filestore_max_bytes",
        ];
        own.into_iter()
            .chain(sekisho_core::StagePolicy::KEYS.iter().copied())
            .collect()
    }

    fn table(&self) -> &'static str {
        "ips"
    }

    fn stage(&self) -> &'static str {
        "ips"
    }

    fn prepare(&self, cfg: &mut IpsConfig, cx: &BuildCx<'_>) -> Result<(), ConfigError> {
        if cfg.rules.is_empty() {
            return Err(ConfigError::new("ips.rules", "no rule files"));
        }
        cfg.load_options(cx.config_dir)
            .map(drop)
            .map_err(|e| ConfigError::new("ips.rules", e))
    }

    fn policy(&self, cfg: &IpsConfig, _cx: &BuildCx<'_>) -> StagePolicy {
        cfg.policy()
    }

    fn build(&self, cfg: &IpsConfig, cx: &BuildCx<'_>) -> Result<Built, ConfigError> {
        let mut opts = cfg
            .load_options(cx.config_dir)
            .map_err(|e| ConfigError::new("ips", e))?;
        opts.stats = Some(Arc::clone(&self.stats));
        opts.datasets = Some(Arc::clone(&self.datasets));
        if let (Some(shared), false) = (cx.shared, cx.check_only) {
            self.hosts.share(shared);
        }
        opts.hosts = Some(Arc::clone(&self.hosts));
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| ".".into());
        let store = self.file_store(
            &cfg.filestore_dir(cx.config_dir, &data_dir),
            cfg.filestore_max_bytes,
        );
        let set = RuleSet::load(&opts).map_err(|e| ConfigError::new("ips", e))?;
        let r = set.report();
        let report = LoadReport {
            summary: format!(
                "ips: {} rules loaded, {} skipped (unsupported), {} with errors, compiled in {} ms",
                r.loaded,
                r.skipped.len(),
                r.errors.len(),
                r.compile_ms
            ),
            details: r
                .config_errors
                .iter()
                .map(|e| format!("warning: {e}"))
                .collect(),
            errors: r.errors.iter().map(|e| e.to_string()).collect(),
            loaded: r.loaded,
        };
        Ok(Built {
            stage: Arc::new(IpsStage::new(Arc::new(set), cfg).with_store(store)),
            report,
        })
    }

    fn activated(&self, report: &LoadReport) {
        self.metrics.rules.set(report.loaded as i64);
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![Box::new(self.metrics.clone())]
    }
}

/// Which counter of [`Stats`] a metric reads.
type StatField = fn(&Stats) -> &AtomicU64;

/// `sekisho_ips_*`: the rules in force and the engine's counters, read at each scrape. Clones
/// share the same metrics.
#[derive(Clone)]
struct IpsMetrics {
    stats: Arc<Stats>,
    rules: IntGauge,
    counters: Vec<(IntCounter, StatField)>,
}

impl IpsMetrics {
    fn new(stats: Arc<Stats>) -> Result<Self, prometheus::Error> {
        let counter = IntCounter::new;
        let counters: Vec<(IntCounter, StatField)> = vec![
            (
                counter(
                    "sekisho_ips_candidates_total",
                    "IPS rules verified after the prefilter",
                )?,
                |s| &s.candidates,
            ),
            (
                counter(
                    "sekisho_ips_matches_total",
                    "IPS rules that matched (before thresholds and noalert)",
                )?,
                |s| &s.matches,
            ),
            (
                counter(
                    "sekisho_ips_pcre_limit_hits_total",
                    "pcre evaluations stopped by the PCRE2 match limit",
                )?,
                |s| &s.pcre_limit_hits,
            ),
            (
                counter(
                    "sekisho_ips_pcre_budget_exhausted_total",
                    "Flows whose pcre time budget ran out",
                )?,
                |s| &s.pcre_budget_exhausted,
            ),
            (
                counter(
                    "sekisho_ips_step_limit_hits_total",
                    "Content inspections cut by the recursion limit",
                )?,
                |s| &s.step_limit_hits,
            ),
            (
                counter(
                    "sekisho_ips_thresholded_total",
                    "IPS alerts suppressed by threshold, detection_filter or suppress",
                )?,
                |s| &s.thresholded,
            ),
            (
                counter(
                    "sekisho_ips_xbits_full_total",
                    "xbits sets refused because the gateway holds its maximum of bits",
                )?,
                |s| &s.xbits_full,
            ),
            (
                counter(
                    "sekisho_ips_dataset_full_total",
                    "dataset adds refused because the set was at its memcap",
                )?,
                |s| s.dataset_full.as_ref(),
            ),
            (
                counter(
                    "sekisho_ips_filestore_stored_total",
                    "files kept by filestore rules",
                )?,
                |s| &s.filestore_stored,
            ),
            (
                counter(
                    "sekisho_ips_filestore_refused_total",
                    "files filestore rules asked for that were not kept (budget spent or disk error)",
                )?,
                |s| &s.filestore_refused,
            ),
        ];
        Ok(IpsMetrics {
            stats,
            rules: IntGauge::new("sekisho_ips_rules_loaded", "IPS rules in the running set")?,
            counters,
        })
    }
}

impl Collector for IpsMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.rules.desc();
        for (c, _) in &self.counters {
            d.extend(c.desc());
        }
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = self.rules.collect();
        for (c, field) in &self.counters {
            let v = field(&self.stats).load(Relaxed);
            c.inc_by(v.saturating_sub(c.get()));
            out.extend(c.collect());
        }
        out
    }
}
