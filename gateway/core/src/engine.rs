//! The engine contract: how an inspection engine (URL filter, IPS, AV, WAF, sandbox …) plugs into
//! the gateway without the proxy knowing it.
//!
//! An [`Engine`] is made once when the gateway starts and lives across reloads: it owns what must
//! survive a reload (counters, warn-page acknowledgements, per-connection state). Its
//! [`Engine::Config`] is deserialised from its own TOML table; [`Engine::build`] loads and compiles
//! that config into the [`Stage`] it contributes to every pipeline that names it, with a
//! [`LoadReport`] that `check-config`, `rules check` and the logs print. The binary lists the
//! engines and assembles each listener's pipeline; the proxy only receives ready pipelines.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::{Stage, StagePolicy};

/// A configuration error naming the key (`av.scan_timeout_secs`, `listener[1].stages`) or the
/// table it concerns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.text())]
pub struct ConfigError {
    /// The key or table (`ips.rules`, `urlfilter`); empty when `message` names it itself.
    pub key: String,
    /// What is wrong, with file and line where a file is at fault.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ConfigError {
            key: key.into(),
            message: message.to_string(),
        }
    }

    /// An error whose message already names its key (`av.max_depth: must be 1..=64`).
    pub fn named(message: impl std::fmt::Display) -> Self {
        ConfigError::new("", message)
    }

    fn text(&self) -> String {
        if self.key.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.key, self.message)
        }
    }
}

/// What [`Engine::prepare`] and [`Engine::build`] are told about the gateway around them.
#[derive(Clone, Copy, Debug)]
pub struct BuildCx<'a> {
    /// The folder of the config file: relative paths are relative to it.
    pub config_dir: Option<&'a Path>,
    /// Only checking (`check-config`): read everything, create nothing (no caches).
    pub check_only: bool,
    /// `[limits] resolve_timeout_secs`: the decision deadline of a stage that names none.
    pub default_resolve_timeout_secs: u64,
    /// Reverse-proxy routes and what each asks of the WAF (`[[route]] waf`).
    pub routes: &'a [RouteOptions],
    /// The cluster's shared store (`[store]`), built once at start; `None`: state stays in
    /// process. Engines keep the first one they are given (it outlives reloads).
    pub shared: Option<&'a Arc<dyn crate::SharedState>>,
}

/// A reverse-proxy route's options for the engines, by route name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteOptions {
    /// The route's name (as in events and `RequestHead::route`).
    pub name: String,
    /// `waf = false` (no WAF for this route) or `waf = ["exclusions.conf"]` (rule files loaded
    /// after `[waf] rules` for this route only); `None` when the route does not say.
    pub waf: Option<RouteWaf>,
}

/// What a route asks of the WAF.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum RouteWaf {
    /// `true` (the default rules) or `false` (no WAF on this route).
    Enabled(bool),
    /// Extra rule files (paths or globs, relative to the config file) after `[waf] rules`.
    Rules(Vec<String>),
}

/// What loading an engine's files found: printed by `check-config`, logged by `run`.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// One line: what loaded, how much was skipped, how long it took.
    pub summary: String,
    /// Lines worth reading under the summary: entries skipped with their reason and file:line,
    /// warnings.
    pub details: Vec<String>,
    /// Entries with errors (`file:line: message`). `run` skips them; a reload and `check-config`
    /// refuse the files.
    pub errors: Vec<String>,
    /// How many entries (rules, signatures, list entries) are in force.
    pub loaded: usize,
}

/// An engine built from its config: the stage it contributes and what its load found.
pub struct Built {
    /// The stage, shared by every pipeline that names it.
    pub stage: Arc<dyn Stage>,
    /// What loading found.
    pub report: LoadReport,
}

/// An inspection engine. See the module documentation and `ARCHITECTURE.md` for an example.
pub trait Engine: Send + Sync + 'static {
    /// The engine's TOML table, deserialised with unknown keys refused.
    type Config: DeserializeOwned + Send + Sync + 'static;
    /// The table's name in `sekisho.toml` (`av` for `[av]`).
    fn table(&self) -> &'static str;
    /// The stage's name in a listener's `stages` and in events and metrics (`av`).
    fn stage(&self) -> &'static str;
    /// The config to use when the table is absent: `None` (the default) means the engine is off
    /// unless configured.
    fn implicit(&self) -> Option<Self::Config> {
        None
    }
    /// Resolves relative paths and checks everything that can be checked without reading files;
    /// errors name the key.
    fn prepare(&self, cfg: &mut Self::Config, cx: &BuildCx<'_>) -> Result<(), ConfigError>;
    /// The stage's policy (mode, on_error, on_overflow, deadline) in every pipeline.
    fn policy(&self, cfg: &Self::Config, cx: &BuildCx<'_>) -> StagePolicy;
    /// Loads and compiles the engine's files. Called off the async workers, at start, on every
    /// reload and by `check-config`.
    fn build(&self, cfg: &Self::Config, cx: &BuildCx<'_>) -> Result<Built, ConfigError>;
    /// Called when a built stage has gone into service (start, or a reload that swapped every
    /// pipeline), e.g. to set a "rules loaded" gauge.
    fn activated(&self, _report: &LoadReport) {}
    /// Prometheus collectors, registered once when the gateway starts.
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        Vec::new()
    }
    /// The keys its table takes, listed when a mistyped key is refused (serde lists none for
    /// tables with a flattened part, such as [`crate::StagePolicy`]'s keys).
    fn keys(&self) -> Vec<&'static str> {
        Vec::new()
    }
}
