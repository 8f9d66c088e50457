//! `sekisho-ips`: Suricata-compatible signatures on the traffic the gateway decrypts.
//!
//! * [`rule`]: the rule model and parser (file:line errors; unsupported keywords reported, never
//!   silently ignored).
//! * [`vars`]: `$HOME_NET`-style address and port variables.
//! * [`detect`]: content chains with Suricata's relative-match retry semantics.
//! * [`matchers`]: `pcre` (the linear `regex` engine, PCRE2 with JIT and match limits for what it
//!   cannot run), `byte_test`, `byte_jump`, numeric comparisons.
//! * [`ruleset`]: loading, the per-phase/per-buffer prefilter and evaluation.
//! * [`stage`]: the `ips` pipeline stage.

pub mod bytevars;
pub mod codings;
pub mod content;
pub mod datasets;
pub mod detect;
pub mod events;
pub mod files;
pub mod filestore;
pub mod hosts;
pub mod ja3;
pub mod ja4;
pub mod magic;
pub mod matchers;
mod plug;
pub mod requires;
pub mod rule;
pub mod ruleset;
pub mod stage;
pub mod state;
pub mod transform;
pub mod tx;
pub mod uint;
pub mod uri;
pub mod validity;
pub mod vars;

use std::path::PathBuf;

pub use plug::IpsEngine;
pub use ruleset::{LoadOptions, LoadReport, Phase, RuleSet};
pub use stage::{IpsConfig, IpsStage};

/// The longest evidence excerpt.
pub const MAX_EXCERPT: usize = 256;

/// Errors of the IPS crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpsError {
    /// A file could not be read.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A glob in `rules` is malformed or matches nothing.
    #[error("rules: {0}")]
    Glob(String),
    /// The prefilter could not be built.
    #[error("compile: {0}")]
    Compile(String),
    /// Config.
    #[error("{0}")]
    Config(String),
}
