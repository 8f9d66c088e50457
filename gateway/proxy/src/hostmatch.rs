//! Host patterns (re-exported from `sekisho_core::host`, where every engine can reach them).

pub use sekisho_core::host::{normalize_host, HostMatcher};
