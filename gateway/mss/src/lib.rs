//! `sekisho-mss`: threat logs to the MSS collector. This first part: the encoders
//! ([`encode`]: ECS/EVE JSON, CEF, RFC 5424 with RFC 6587 octet counting) and the append-only disk
//! spool ([`spool`]) that will sit in front of every network sink. Sinks, masking, the hash
//! chain, `sekisho collector` and `sekisho logs verify` build on them.

pub mod encode;
pub mod spool;

pub use encode::{encode, Format};
pub use spool::{Pos, Spool, SpoolError, SpoolLimits};
