//! `sekisho-mss`: threat events and communication logs to the MSS collector.
//!
//! [`encode`] (ECS/EVE JSON, CEF, RFC 5424 with RFC 6587 octet counting, HEC batches),
//! [`mask`] (keyed-hash masking), [`chain`] and [`filesink`] (the chained, rotated file sink and
//! its verification), [`spool`] (the append-only disk spool), [`net`] (TCP/TLS connections),
//! [`deliver`] (the per-sink delivery loop with acknowledgements, backoff and loss accounting),
//! [`collector`] (a small collector for pilots and tests) and [`metrics`].

pub mod chain;
pub mod collector;
pub mod config;
pub mod deliver;
pub mod encode;
pub mod filesink;
mod handoff;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod mask;
pub mod metrics;
pub mod net;
pub mod spool;

pub use config::{LogClass, MssConfig, SinkConfig, SinkKind, Transport};
pub use deliver::{Mss, MssError, MssTasks};
pub use encode::Format;
pub use metrics::MssMetrics;
pub use spool::{Pos, Spool, SpoolError, SpoolLimits};
