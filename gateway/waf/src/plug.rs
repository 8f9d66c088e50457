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
    /// `mode`, `on_error`, `on_overflow`, ….
    #[serde(flatten)]
    pub stage: StagePolicy,
}

impl WafConfig {
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
        ["rules", "decode"]
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
                        stage: cfg.stage,
                    }
                    .files(cx.config_dir)
                    .map_err(|e| ConfigError::new(format!("route {}: waf", r.name), e))?;
                    let mut all = files.clone();
                    all.extend(more);
                    let (mut w, errs) = Waf::load_lenient(&all);
                    w.set_decoding(decoding);
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
                "waf: {} rules (+{} chained) and {} markers from {} files, {} with errors, engine {:?}, decoding {:?}, {} rules run at load and {} decided there, compiled in {} ms",
                s.rules,
                s.chained,
                s.markers,
                files.len(),
                errors.len(),
                waf.settings().mode,
                cfg.decode,
                s.prelude,
                s.folded,
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
