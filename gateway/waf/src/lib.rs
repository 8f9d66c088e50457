//! The WAF engine: SecLang rule files (ModSecurity's rule language), as OWASP CRS v4 writes
//! them, read unmodified. This first part is the reader: directives, rules with their
//! variables, operator and actions, `Include` with globs, every problem named by file and line.

pub mod operators;
pub mod rx;
pub mod seclang;

pub use rx::{Rx, RxError, RxOptions};

pub use seclang::{
    parse_file, parse_str, Action, Directive, DirectiveKind, Operator, ParseError, Rule, Variable,
};
