//! The WAF: SecLang rule files (ModSecurity's rule language), as OWASP CRS v4 writes them,
//! read unmodified and run as ModSecurity 2.9 runs them: the reader (`seclang`), operators
//! (`operators`, `rx`, `libinjection`), transformations (`transform`), request body processors
//! (`body`), the engine with its phases and transactions (`engine`), and the `waf` stage
//! (`stage`, `plug`).

pub mod body;
pub mod engine;
pub mod libinjection;
pub mod operators;
pub mod plug;
pub mod rx;
pub mod seclang;
pub mod stage;
pub mod transform;

/// Where the public corpora are, for the tests over CRS (one file shared by every crate's tests).
#[cfg(test)]
#[path = "../../../tests/common/public_corpora.rs"]
mod public_corpora;

pub use rx::{Rx, RxError, RxOptions};

pub use seclang::{
    parse_file, parse_str, Action, Directive, DirectiveKind, Operator, ParseError, Rule, Variable,
};

pub use plug::{WafConfig, WafEngine};
pub use stage::WafStage;
