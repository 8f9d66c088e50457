//! Engines behind one object-safe face: each [`Engine`]'s typed config read from its own table
//! of the config text (errors keep TOML's line and column), then built into a stage.

use std::marker::PhantomData;
use std::sync::Arc;

use sekisho_core::{BuildCx, Built, ConfigError, Engine, LoadReport, StagePolicy};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// An engine as the assembly sees it (its config type hidden).
pub trait Plug: Send + Sync {
    /// Its table (`av`).
    fn table(&self) -> &'static str;
    /// Its stage name (`av`).
    fn stage(&self) -> &'static str;
    /// Reads and prepares the engine's table from the whole config text: `None` when the table
    /// is absent and the engine is off without it.
    fn configure(
        &self,
        text: &str,
        cx: &BuildCx<'_>,
    ) -> Result<Option<Box<dyn Configured>>, ConfigError>;
    /// The engine's Prometheus collectors.
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>>;
}

/// An engine with its config, ready to build.
pub trait Configured: Send + Sync {
    /// Its table (`av`).
    fn table(&self) -> &'static str;
    /// Its stage name (`av`).
    fn stage(&self) -> &'static str;
    /// Its stage policy.
    fn policy(&self, cx: &BuildCx<'_>) -> StagePolicy;
    /// Loads and compiles.
    fn build(&self, cx: &BuildCx<'_>) -> Result<Built, ConfigError>;
    /// The built stage is in service.
    fn activated(&self, report: &LoadReport);
}

impl<E: Engine> Plug for Arc<E> {
    fn table(&self) -> &'static str {
        E::table(self)
    }

    fn stage(&self) -> &'static str {
        E::stage(self)
    }

    fn configure(
        &self,
        text: &str,
        cx: &BuildCx<'_>,
    ) -> Result<Option<Box<dyn Configured>>, ConfigError> {
        let picked = pick::<E::Config>(text, E::table(self)).map_err(|e| {
            match sekisho_core::de::explain_unknown_key(text, &e.to_string(), &self.keys()) {
                Some(better) => ConfigError::named(better),
                None => e,
            }
        })?;
        let Some(mut cfg) = picked.or_else(|| self.implicit()) else {
            return Ok(None);
        };
        self.prepare(&mut cfg, cx)?;
        Ok(Some(Box::new(Typed {
            engine: Arc::clone(self),
            cfg,
        })))
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        E::collectors(self)
    }
}

struct Typed<E: Engine> {
    engine: Arc<E>,
    cfg: E::Config,
}

impl<E: Engine> Configured for Typed<E> {
    fn table(&self) -> &'static str {
        self.engine.table()
    }

    fn stage(&self) -> &'static str {
        self.engine.stage()
    }

    fn policy(&self, cx: &BuildCx<'_>) -> StagePolicy {
        self.engine.policy(&self.cfg, cx)
    }

    fn build(&self, cx: &BuildCx<'_>) -> Result<Built, ConfigError> {
        self.engine.build(&self.cfg, cx)
    }

    fn activated(&self, report: &LoadReport) {
        self.engine.activated(report)
    }
}

/// Deserialises top-level table `table` of config text; `None` when it is absent.
pub(crate) fn pick<T: serde::de::DeserializeOwned>(
    text: &str,
    table: &'static str,
) -> Result<Option<T>, ConfigError> {
    Pick::<T>::new(table)
        .deserialize(toml::Deserializer::new(text))
        .map_err(|e| ConfigError::named(e.to_string().trim_end()))
}

/// Deserialises one top-level table of a document and skips the others, so the deserializer's
/// errors keep their position in the file.
struct Pick<T> {
    table: &'static str,
    _t: PhantomData<T>,
}

impl<T> Pick<T> {
    fn new(table: &'static str) -> Self {
        Pick {
            table,
            _t: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Pick<T> {
    type Value = Option<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Pick<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a config document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.table {
                found = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}
