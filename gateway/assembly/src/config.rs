//! The whole `sekisho.toml`: the proxy's part and every configured engine's table.

use std::path::{Path, PathBuf};

use sekisho_core::{BuildCx, ConfigError, Engine, RouteOptions};
use sekisho_proxy::{Config, ProxyError};

use crate::plug::{Configured, Plug};

/// A parsed and checked config file.
pub struct GatewayConfig {
    /// Listeners, TLS, events, MSS, metrics, limits, routes.
    pub proxy: Config,
    /// Each route's options for the engines.
    routes: Vec<RouteOptions>,
    /// The engines whose table is present (or that run without one), in stage order.
    pub engines: Vec<Box<dyn Configured>>,
    /// The text it was parsed from.
    text: String,
}

impl GatewayConfig {
    /// Parses config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path, plugs: &[Box<dyn Plug>]) -> Result<Self, ProxyError> {
        let tables: Vec<&str> = plugs.iter().map(|p| p.table()).collect();
        let proxy = Config::parse_with(text, path, &tables)?;
        let err = |e: ConfigError| config_error(path, e);
        let routes = route_options(&proxy);
        let cx = build_cx(&proxy, &routes);
        let mut engines = Vec::new();
        for p in plugs {
            if let Some(c) = p.configure(text, &cx).map_err(err)? {
                let policy = c.policy(&cx);
                if policy.resolve_timeout_secs == Some(0) {
                    return Err(err(ConfigError::new(
                        format!("{}.resolve_timeout_secs", p.table()),
                        "must be at least 1",
                    )));
                }
                engines.push(c);
            }
        }
        let cfg = GatewayConfig {
            proxy,
            routes,
            engines,
            text: text.to_string(),
        };
        cfg.check_stages(plugs)?;
        Ok(cfg)
    }

    /// Every listener's `stages` names known engines whose table is present.
    fn check_stages(&self, plugs: &[Box<dyn Plug>]) -> Result<(), ProxyError> {
        for i in 0..self.proxy.listeners.len() {
            let Some(stages) = self.proxy.stages_of(i) else {
                continue;
            };
            let key = format!("listener[{i}].stages");
            for name in stages {
                let Some(plug) = plugs.iter().find(|p| p.stage() == name) else {
                    let known: Vec<&str> = plugs.iter().map(|p| p.stage()).collect();
                    return Err(self.error(ConfigError::new(
                        &key,
                        format!("unknown stage {name:?} (known: {})", known.join(", ")),
                    )));
                };
                if self.engine(name).is_none() {
                    return Err(self.error(ConfigError::new(
                        &key,
                        format!("names \"{name}\" but there is no [{}] table", plug.table()),
                    )));
                }
            }
        }
        Ok(())
    }

    /// `engine`'s own config from this file, prepared (paths resolved, values checked), for the
    /// commands that use one engine offline (`scan`, `rules check`); `None` without its table.
    pub fn typed<E: Engine>(&self, engine: &E) -> Result<Option<E::Config>, ProxyError> {
        let cx = self.build_cx();
        let Some(mut c) = crate::plug::pick::<E::Config>(&self.text, engine.table())
            .map_err(|e| self.error(e))?
        else {
            return Ok(None);
        };
        engine.prepare(&mut c, &cx).map_err(|e| self.error(e))?;
        Ok(Some(c))
    }

    /// The configured engine whose stage is `stage`.
    pub fn engine(&self, stage: &str) -> Option<&dyn Configured> {
        self.engines
            .iter()
            .find(|e| e.stage() == stage)
            .map(|e| e.as_ref())
    }

    /// Where the config was read from.
    pub fn path(&self) -> &PathBuf {
        &self.proxy.path
    }

    /// The same error naming this config file.
    pub(crate) fn error(&self, e: ConfigError) -> ProxyError {
        config_error(&self.proxy.path, e)
    }

    /// What the engines are told when they are prepared and built.
    pub fn build_cx(&self) -> BuildCx<'_> {
        build_cx(&self.proxy, &self.routes)
    }
}

fn build_cx<'a>(proxy: &'a Config, routes: &'a [RouteOptions]) -> BuildCx<'a> {
    BuildCx {
        config_dir: proxy.path.parent(),
        default_resolve_timeout_secs: proxy.limits.resolve_timeout_secs,
        check_only: false,
        routes,
        shared: None,
    }
}

fn route_options(proxy: &Config) -> Vec<RouteOptions> {
    proxy
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| RouteOptions {
            name: proxy.route_name(i),
            waf: r.waf.clone(),
        })
        .collect()
}

fn config_error(path: &Path, e: ConfigError) -> ProxyError {
    ProxyError::Config {
        file: path.to_path_buf(),
        message: e.to_string(),
    }
}
