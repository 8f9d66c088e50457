//! Building the engines and each listener's pipeline; starting and reloading the gateway.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sekisho_core::{Built, ConfigError, Pipeline, SharedState, StoreBackend, StoreConfig};
use sekisho_proxy::{Gateway, ProxyError, Wiring};

use crate::config::GatewayConfig;
use crate::plug::Plug;

/// Why the engines are built: entries with errors are skipped at start, refuse a reload (the
/// running pipelines stay) and fail `check-config` with the whole list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Start,
    Reload,
    Check,
}

/// The engines of this process and the way they become pipelines.
pub struct Assembly {
    plugs: Vec<Box<dyn Plug>>,
    /// The cluster's store (`[store] backend = "redis"`), opened at the first start and kept
    /// for the life of the process (engines keep the first they are given).
    shared: std::sync::OnceLock<Shared>,
}

/// The store, as engines see it and with its metrics.
struct Shared {
    store: Arc<sekisho_store::Store>,
    state: Arc<dyn SharedState>,
    config: StoreConfig,
}

/// Every configured engine built, and the pipelines made of them.
struct Assembled {
    built: Vec<Built>,
    pipelines: Vec<Pipeline>,
}

impl Assembly {
    /// Every engine the gateway has ([`crate::engines`]).
    pub fn new() -> Result<Self, ProxyError> {
        Ok(Assembly::with(crate::engines()?))
    }

    /// An assembly of the given engines (tests add their own).
    pub fn with(plugs: Vec<Box<dyn Plug>>) -> Self {
        Assembly {
            plugs,
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Reads a config file, applies the environment's overrides ([`crate::env`]:
    /// `SEKISHO__<TABLE>__<KEY>` and the [`crate::env::ALIASES`]) and checks it.
    pub fn load(&self, path: &Path) -> Result<GatewayConfig, ProxyError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProxyError::Config {
            file: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        let (text, notes) =
            crate::env::apply(&text, std::env::vars()).map_err(|message| ProxyError::Config {
                file: path.to_path_buf(),
                message: format!("from the environment: {message}"),
            })?;
        for note in &notes {
            tracing::info!(config = %path.display(), "from the environment: {note}");
        }
        GatewayConfig::parse(&text, path, &self.plugs).map_err(|e| match e {
            ProxyError::Config { file, message } if !notes.is_empty() => ProxyError::Config {
                file,
                message: format!("{message} (set from the environment: {})", notes.join("; ")),
            },
            e => e,
        })
    }

    /// Parses and checks config text (`path` names it in errors).
    pub fn parse(&self, text: &str, path: &Path) -> Result<GatewayConfig, ProxyError> {
        GatewayConfig::parse(text, path, &self.plugs)
    }

    /// Builds every configured engine and each listener's pipeline, as `sekisho run` does.
    pub fn pipelines(&self, cfg: &GatewayConfig) -> Result<Vec<Pipeline>, ProxyError> {
        Ok(self.assemble(cfg, Purpose::Start)?.pipelines)
    }

    fn assemble(&self, cfg: &GatewayConfig, purpose: Purpose) -> Result<Assembled, ProxyError> {
        let mut cx = cfg.build_cx();
        cx.check_only = purpose == Purpose::Check;
        if purpose != Purpose::Check {
            self.open_store(cfg)?;
            cx.shared = self.shared.get().map(|s| &s.state);
        }
        let mut built = Vec::with_capacity(cfg.engines.len());
        for e in &cfg.engines {
            let b = e.build(&cx).map_err(|err| cfg.error(err))?;
            refuse_errors(cfg, e.table(), &b, purpose)?;
            if purpose != Purpose::Check {
                log_report(e.table(), &b);
            }
            built.push(b);
        }
        let mut pipelines = Vec::with_capacity(cfg.proxy.listeners.len());
        for i in 0..cfg.proxy.listeners.len() {
            let mut p = Pipeline::new();
            p.set_resolve_timeout(Duration::from_secs(cx.default_resolve_timeout_secs));
            let all: Vec<String> = cfg.engines.iter().map(|e| e.stage().to_string()).collect();
            for name in cfg.proxy.stages_of(i).unwrap_or(&all) {
                let k = cfg
                    .engines
                    .iter()
                    .position(|e| e.stage() == name)
                    .ok_or_else(|| {
                        cfg.error(ConfigError::new(
                            format!("listener[{i}].stages"),
                            format!("unknown stage {name:?}"),
                        ))
                    })?;
                p.push(Arc::clone(&built[k].stage), cfg.engines[k].policy(&cx));
            }
            pipelines.push(p);
        }
        Ok(Assembled { built, pipelines })
    }

    /// Opens `[store]` (Redis) the first time a config with one starts; later configs keep
    /// the store in use (a changed `[store]` takes effect at the next start, and says so).
    fn open_store(&self, cfg: &GatewayConfig) -> Result<(), ProxyError> {
        let Some(sc) = cfg
            .proxy
            .store
            .as_ref()
            .filter(|s| s.backend == StoreBackend::Redis)
        else {
            return Ok(());
        };
        if let Some(s) = self.shared.get() {
            if &s.config != sc {
                tracing::warn!("store: [store] changed; the store in use stays until a restart");
            }
            return Ok(());
        }
        let store = sekisho_store::Store::open(sc)
            .map_err(|e| cfg.error(ConfigError::new("store", e.to_string())))?;
        let state: Arc<dyn SharedState> = store.clone();
        let _ = self.shared.set(Shared {
            store,
            state,
            config: sc.clone(),
        });
        Ok(())
    }

    /// The built engines are in service.
    fn activate(cfg: &GatewayConfig, a: &Assembled) {
        for (e, b) in cfg.engines.iter().zip(&a.built) {
            e.activated(&b.report);
        }
    }

    /// What `check-config` prints: the proxy's checks, each engine's load report, each
    /// listener's stages with their decision deadlines. Any entry with errors fails the check.
    pub fn check(&self, cfg: &GatewayConfig) -> Result<Vec<String>, ProxyError> {
        let mut notes = sekisho_proxy::check(&cfg.proxy)?;
        let a = self.assemble(cfg, Purpose::Check)?;
        for b in &a.built {
            notes.push(b.report.summary.clone());
            notes.extend(b.report.details.iter().map(|d| format!("  {d}")));
        }
        for (i, p) in a.pipelines.iter().enumerate() {
            let deadlines: Vec<String> = p
                .deadlines()
                .iter()
                .map(|(s, d)| format!("{s} ({}s)", d.as_secs()))
                .collect();
            notes.push(format!(
                "listener {} ({}): stages {}; decision deadlines for held bodies: {}",
                cfg.proxy.listener_name(i),
                match cfg.proxy.listeners[i].kind {
                    sekisho_proxy::config::ListenerKind::Forward => "forward",
                    sekisho_proxy::config::ListenerKind::Reverse => "reverse",
                },
                p.stage_names().join(", "),
                deadlines.join(", ")
            ));
            if let Some(d) = sekisho_proxy::describe_listener(&cfg.proxy, i)? {
                notes.push(format!("  {d}"));
            }
        }
        Ok(notes)
    }

    /// Builds the engines and the gateway (binding every listener), and a reload handle.
    pub async fn gateway(
        self: Arc<Self>,
        cfg: GatewayConfig,
    ) -> Result<(Gateway, Reloader), ProxyError> {
        self.gateway_after(cfg, || Ok(())).await
    }

    /// [`Assembly::gateway`], running `prepare` once every engine has built (their rules
    /// compiled) and before the gateway opens anything: what `prepare` creates (a new CA) is
    /// created only for a config that otherwise starts.
    pub async fn gateway_after(
        self: Arc<Self>,
        cfg: GatewayConfig,
        prepare: impl FnOnce() -> Result<(), ProxyError>,
    ) -> Result<(Gateway, Reloader), ProxyError> {
        let a = self.assemble(&cfg, Purpose::Start)?;
        prepare()?;
        let mut collectors: Vec<_> = self.plugs.iter().flat_map(|p| p.collectors()).collect();
        if let Some(s) = self.shared.get() {
            collectors.extend(s.store.collectors());
        }
        let gw = Gateway::build(
            cfg.proxy.clone(),
            Wiring {
                pipelines: a.pipelines.clone(),
                collectors,
            },
        )
        .await?;
        Assembly::activate(&cfg, &a);
        let reloader = Reloader {
            assembly: self,
            proxy: gw.reloader(),
        };
        Ok((gw, reloader))
    }
}

/// Entries with errors: logged and skipped at start, refused on reload and by `check-config`.
fn refuse_errors(
    cfg: &GatewayConfig,
    table: &str,
    b: &Built,
    purpose: Purpose,
) -> Result<(), ProxyError> {
    let errors = &b.report.errors;
    if errors.is_empty() {
        return Ok(());
    }
    let message = match purpose {
        Purpose::Start => return Ok(()),
        Purpose::Reload => format!("{} rule(s) with errors, first: {}", errors.len(), errors[0]),
        Purpose::Check => format!(
            "{} rule(s) with errors (`sekisho run` skips them):\n  {}",
            errors.len(),
            errors.join("\n  ")
        ),
    };
    Err(cfg.error(ConfigError::new(table, message)))
}

fn log_report(table: &str, b: &Built) {
    for e in &b.report.errors {
        tracing::error!("{table}: {e} (skipped)");
    }
    for d in &b.report.details {
        tracing::warn!("{table}: {d}");
    }
    tracing::info!(
        engine = table,
        loaded = b.report.loaded,
        "{}",
        b.report.summary
    );
}

/// Rebuilds every engine from a config file and swaps the pipelines in (SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    assembly: Arc<Assembly>,
    proxy: sekisho_proxy::Reloader,
}

impl Reloader {
    /// Reads `path`, builds every engine anew and puts the new pipelines into service; on any
    /// error the running ones stay (and `sekisho_reloads_total{result="error"}` counts it).
    /// Compiles rules: call it off the async workers.
    pub fn reload_file(&self, path: &Path) -> Result<(), ProxyError> {
        let staged = self
            .assembly
            .load(path)
            .and_then(|cfg| Ok((self.assembly.assemble(&cfg, Purpose::Reload)?, cfg)));
        match staged {
            Ok((a, cfg)) => {
                self.proxy.apply(&cfg.proxy, a.pipelines.clone())?;
                Assembly::activate(&cfg, &a);
                Ok(())
            }
            Err(e) => {
                self.proxy.failed(path, &e);
                Err(e)
            }
        }
    }
}
