//! `sekisho-av`: YARA-X rules and ClamAV signatures over every piece `sekisho-content` extracts,
//! the offline scanner behind `sekisho scan`, and the AV stage.

/// ClamAV signature databases (the `sekisho-clamav` crate).
pub use sekisho_clamav as clamav;
mod config;
mod engine;
pub mod icap;
mod metrics;
mod plug;
pub mod sandbox;
mod scan;
mod stage;

pub use config::{AvConfig, LimitAction};
pub use engine::{Detection, Engine, LoadReport, EXTERNALS};
pub use metrics::AvMetrics;
pub use plug::AvEngine;
pub use scan::{
    issue_name, scan_bytes, scan_bytes_keeping, ExecutableSeen, FileVerdict, Program, ScanHit,
    ScanReport,
};
pub use stage::AvStage;

use std::path::PathBuf;

/// Errors of the AV crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AvError {
    /// A rule or signature file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// YARA-X refused something.
    #[error("yara-x: {0}")]
    Yara(String),
    /// The scan ran out of time.
    #[error("scan time limit reached")]
    Timeout,
}
