//! The WAF's place in the gateway ([`sekisho_core::Engine`]): `[waf]` → the `waf` stage.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sekisho_core::{BuildCx, Built, ConfigError, LoadReport, RouteWaf, StagePolicy};
use serde::Deserialize;

use crate::engine::{Decoding, Waf};
use crate::stage::WafStage;

/// `[waf]` in `sekisho.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WafConfig {
    /// SecLang files and globs, loaded in the order given (`crs-setup.conf`,
    /// `rules/*.conf`); relative paths are beside the config file.
    #[serde(deserialize_with = "sekisho_core::de::one_or_many")]
    pub rules: Vec<String>,
    /// Decoders run before the rules (detection beyond CRS): `["base64"]` adds the decoded
    /// text of base64 argument, cookie, header and JSON values to `ARGS`. None by default.
    #[serde(default)]
    pub decode: Vec<String>,
    /// MiB for what the rules are known not to match, by value, kept across transactions
    /// (the same header values, names and arguments are not run through those rules again;
    /// per rule set, the least used evicted first). 0 turns it off. Default 32.
    #[serde(default = "default_value_memo_mb")]
    pub value_memo_mb: u64,
    /// `mode`, `on_error`, `on_overflow`, ….
    #[serde(flatten)]
    pub stage: StagePolicy,
}

fn default_value_memo_mb() -> u64 {
    32
}

impl WafConfig {
    /// The value memo's budget in bytes.
    pub fn value_memo_bytes(&self) -> u64 {
        self.value_memo_mb.saturating_mul(1 << 20)
    }

    /// The decoders `decode` names.
    pub fn decoding(&self) -> Result<Decoding, String> {
        let mut d = Decoding::default();
        for name in &self.decode {
            match name.as_str() {
                "base64" => d.base64 = true,
                other => return Err(format!("unknown decoder {other:?} (known: base64)")),
            }
        }
        Ok(d)
    }

    /// The rule files in load order: each pattern's matches sorted by name.
    pub fn files(&self, base: Option<&Path>) -> Result<Vec<PathBuf>, String> {
        let mut out = Vec::new();
        for pat in &self.rules {
            let p = Path::new(pat);
            let p = match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.to_path_buf(),
            };
            let text = p.to_string_lossy();
            let mut found: Vec<PathBuf> = glob::glob(&text)
                .map_err(|e| format!("{pat:?}: {e}"))?
                .filter_map(Result::ok)
                .filter(|f| f.is_file())
                .collect();
            if found.is_empty() {
                return Err(format!("{pat:?} matches no file"));
            }
            found.sort();
            out.extend(found);
        }
        Ok(out)
    }
}

/// The WAF engine.
#[derive(Default)]
pub struct WafEngine;

impl sekisho_core::Engine for WafEngine {
    type Config = WafConfig;

    fn keys(&self) -> Vec<&'static str> {
        ["rules", "decode", "value_memo_mb"]
            .into_iter()
            .chain(StagePolicy::KEYS.iter().copied())
            .collect()
    }

    fn table(&self) -> &'static str {
        "waf"
    }

    fn stage(&self) -> &'static str {
        "waf"
    }

    fn prepare(&self, cfg: &mut WafConfig, cx: &BuildCx<'_>) -> Result<(), ConfigError> {
        if cfg.rules.is_empty() {
            return Err(ConfigError::new("waf.rules", "no rule files"));
        }
        if cfg.value_memo_mb > 65_536 {
            return Err(ConfigError::new(
                "waf.value_memo_mb",
                format!("{} MiB is over 65536", cfg.value_memo_mb),
            ));
        }
        cfg.decoding()
            .map_err(|e| ConfigError::new("waf.decode", e))?;
        cfg.files(cx.config_dir)
            .map(drop)
            .map_err(|e| ConfigError::new("waf.rules", e))
    }

    fn policy(&self, cfg: &WafConfig, _cx: &BuildCx<'_>) -> StagePolicy {
        cfg.stage
    }

    fn build(&self, cfg: &WafConfig, cx: &BuildCx<'_>) -> Result<Built, ConfigError> {
        let files = cfg
            .files(cx.config_dir)
            .map_err(|e| ConfigError::new("waf.rules", e))?;
        let t = Instant::now();
        let decoding = cfg
            .decoding()
            .map_err(|e| ConfigError::new("waf.decode", e))?;
        let (mut waf, mut errors) = Waf::load_lenient(&files);
        waf.set_decoding(decoding);
        waf.set_value_memo(cfg.value_memo_bytes());
        let mut routes = HashMap::new();
        let mut details = Vec::new();
        for r in cx.routes {
            match &r.waf {
                None | Some(RouteWaf::Enabled(true)) => {}
                Some(RouteWaf::Enabled(false)) => {
                    routes.insert(r.name.clone(), None);
                    details.push(format!("route {}: no WAF (waf = false)", r.name));
                }
                Some(RouteWaf::Rules(extra)) => {
                    let more = WafConfig {
                        rules: extra.clone(),
                        decode: Vec::new(),
                        value_memo_mb: cfg.value_memo_mb,
                        stage: cfg.stage,
                    }
                    .files(cx.config_dir)
                    .map_err(|e| ConfigError::new(format!("route {}: waf", r.name), e))?;
                    let mut all = files.clone();
                    all.extend(more);
                    let (mut w, errs) = Waf::load_lenient(&all);
                    w.set_decoding(decoding);
                    w.set_value_memo(cfg.value_memo_bytes());
                    let new: Vec<_> = errs
                        .into_iter()
                        .filter(|e| !errors.iter().any(|x| x.origin == e.origin))
                        .collect();
                    errors.extend(new);
                    details.push(format!(
                        "route {}: {} rules with its exclusions",
                        r.name,
                        w.summary().rules
                    ));
                    routes.insert(r.name.clone(), Some(Arc::new(w)));
                }
            }
        }
        let s = waf.summary();
        details.extend(
            s.ignored
                .iter()
                .map(|d| format!("ignored (no effect in this engine): {d}")),
        );
        let report = LoadReport {
            summary: format!(
                "waf: {} rules (+{} chained) and {} markers from {} files, {} with errors, engine {:?}, decoding {:?}, {} rules run at load and {} decided there, {} operator parameters fixed there, value memo {} MiB, compiled in {} ms",
                s.rules,
                s.chained,
                s.markers,
                files.len(),
                errors.len(),
                waf.settings().mode,
                cfg.decode,
                s.prelude,
                s.folded,
                s.constant_params,
                cfg.value_memo_mb,
                t.elapsed().as_millis()
            ),
            details,
            errors: errors.iter().map(|e| e.to_string()).collect(),
            loaded: s.rules,
        };
        Ok(Built {
            stage: Arc::new(WafStage::new(Arc::new(waf), routes)),
            report,
        })
    }
}
