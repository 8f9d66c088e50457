//! `sekisho-urlfilter`: the URL filter.
//!
//! * [`canonical`]: URL canonicalization per Google Safe Browsing's "URLs and Hashing" rules.
//! * [`db`]: category lists in the UT1 / squidGuard layout and our own lists; the matcher
//!   (domain suffixes, URL prefixes, IP literals, expressions).
//! * [`filter`]: `[urlfilter]` config, policies (allow / alert / warn / block by category and a
//!   default action) and decisions.
//! * [`stage`]: the `url` stage (CONNECT host and SNI before decryption, every request URL).
//! * [`warn`]: continue links of warning pages, remembered per client and host.

pub mod canonical;
pub mod db;
pub mod filter;
mod plug;
pub mod stage;
pub mod warn;

pub use canonical::{canonicalize, Canonical};
pub use db::{Db, DbError, LineError, Match, MatchKind};
pub use filter::{Action, Decision, MatchInfo, UrlFilter, UrlFilterConfig, UrlFilterError};
pub use plug::UrlEngine;
pub use stage::UrlStage;
pub use warn::{Accepted, WarnStore, CONTINUE_PATH};
