//! `sekisho-urlfilter`: the URL filter. This first part is URL canonicalization per Google Safe
//! Browsing's "URLs and Hashing" rules ([`canonical::canonicalize`]); category lists, the matcher
//! and the stage build on it.

pub mod canonical;

pub use canonical::{canonicalize, Canonical};
