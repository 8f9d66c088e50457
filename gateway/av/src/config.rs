//! `[av]` in `sekisho.toml`.

use std::path::PathBuf;

use sekisho_content::Limits;

use crate::icap::IcapConfig;
use sekisho_core::StagePolicy;
use serde::Deserialize;

/// What a limit exceeded, an encrypted member or a corrupt container turns into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitAction {
    /// Block (in prevent mode): never a silent pass.
    #[default]
    Block,
    /// Let it pass with an event.
    Alert,
}

/// The AV stage's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvConfig {
    /// YARA rule files or folders (`.yar`, `.yara`).
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub yara: Vec<PathBuf>,
    /// ClamAV databases or folders (`.hdb`, `.hsb`, `.ndb`, `.ldb`).
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub clamav: Vec<PathBuf>,
    /// Where compiled rules are cached (default `cache/av`); `""` disables the cache.
    #[serde(default = "default_cache")]
    pub cache_dir: PathBuf,
    /// Nesting depth (default 16).
    #[serde(default = "d_depth")]
    pub max_depth: u32,
    /// Members per archive (default 10,000).
    #[serde(default = "d_files")]
    pub max_files: u32,
    /// Bytes per member (default 100 MiB).
    #[serde(default = "d_member")]
    pub max_member_bytes: u64,
    /// Decoded bytes per scan (default 400 MiB).
    #[serde(default = "d_total")]
    pub max_total_bytes: u64,
    /// Bytes per decoded SOAP document (default 50 MiB).
    #[serde(default = "d_soap")]
    pub max_soap_document_bytes: u64,
    /// Time per scan (default 120 s).
    #[serde(default = "d_timeout")]
    pub scan_timeout_secs: u64,
    /// Verdict for limits, encrypted and corrupt containers: `block` (default) or `alert`.
    #[serde(default)]
    pub on_limit: LimitAction,
    /// ICAP servers (`[[av.icap]]`) asked about bodies the engine's own signatures pass.
    #[serde(default)]
    pub icap: Vec<IcapConfig>,
    /// The sandbox worker (`[av.sandbox]`) that programs and scripts the signatures pass are
    /// submitted to, the flow held for its verdict.
    #[serde(default)]
    pub sandbox: Option<crate::sandbox::SandboxConfig>,
    /// `mode` (`prevent` | `detect`), `on_error` (`fail-closed` | `fail-open`), `on_overflow`
    /// (`block` | `pass-and-alert`, for bodies over the hold limits), `resolve_timeout_secs`
    /// (the decision deadline for a held body; at least `scan_timeout_secs`).
    #[serde(flatten)]
    pub stage: StagePolicy,
}

fn default_cache() -> PathBuf {
    PathBuf::from("cache/av")
}
fn d_depth() -> u32 {
    16
}
fn d_files() -> u32 {
    10_000
}
fn d_member() -> u64 {
    100 << 20
}
fn d_total() -> u64 {
    400 << 20
}
fn d_soap() -> u64 {
    50 << 20
}
fn d_timeout() -> u64 {
    120
}

impl Default for AvConfig {
    fn default() -> Self {
        AvConfig {
            yara: vec![PathBuf::from("rules/yara")],
            clamav: vec![PathBuf::from("rules/clamav")],
            cache_dir: default_cache(),
            max_depth: d_depth(),
            max_files: d_files(),
            max_member_bytes: d_member(),
            max_total_bytes: d_total(),
            max_soap_document_bytes: d_soap(),
            scan_timeout_secs: d_timeout(),
            on_limit: LimitAction::Block,
            icap: Vec::new(),
            sandbox: None,
            stage: StagePolicy::default(),
        }
    }
}

impl AvConfig {
    /// The extraction limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_depth: self.max_depth,
            max_files: self.max_files,
            max_member_bytes: self.max_member_bytes,
            max_total_bytes: self.max_total_bytes,
            max_soap_document_bytes: self.max_soap_document_bytes,
        }
    }

    /// The stage policy. Its decision deadline is `resolve_timeout_secs` when set, else the
    /// larger of the gateway's default (`default_resolve_secs`) and `scan_timeout_secs` plus the
    /// longest ICAP `timeout_secs`, so the scan's and the servers' own time limits come first.
    pub fn policy(&self, default_resolve_secs: u64) -> StagePolicy {
        let mut p = self.stage;
        p.resolve_timeout_secs = Some(
            p.resolve_timeout_secs
                .unwrap_or(default_resolve_secs.max(self.own_time_secs())),
        );
        p
    }

    /// The longest a body can take here: the scan, the slowest ICAP server, then the
    /// sandbox's hold.
    fn own_time_secs(&self) -> u64 {
        let icap = self.icap.iter().map(|i| i.timeout_secs).max().unwrap_or(0);
        let hold = self.sandbox.as_ref().map_or(0, |s| s.hold_timeout_secs);
        self.scan_timeout_secs
            .saturating_add(icap)
            .saturating_add(hold)
    }

    /// The cache folder, or none when disabled.
    pub fn cache(&self) -> Option<&std::path::Path> {
        (!self.cache_dir.as_os_str().is_empty()).then_some(self.cache_dir.as_path())
    }

    /// Checks values; returns `key: problem`.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_depth == 0 || self.max_depth > 64 {
            return Err("av.max_depth: must be 1..=64".into());
        }
        if self.max_files == 0 {
            return Err("av.max_files: must be at least 1".into());
        }
        if self.max_member_bytes == 0 || self.max_total_bytes < self.max_member_bytes {
            return Err(
                "av.max_total_bytes: must be at least av.max_member_bytes (and both above 0)"
                    .into(),
            );
        }
        if self.scan_timeout_secs == 0 {
            return Err("av.scan_timeout_secs: must be at least 1".into());
        }
        if let Some(deadline) = self.stage.resolve_timeout_secs {
            if deadline < self.own_time_secs() {
                let icap = self.icap.iter().map(|i| i.timeout_secs).max();
                let mut needed = match icap {
                    Some(t) => format!(
                        "av.scan_timeout_secs ({}) plus the longest av.icap timeout_secs ({t})",
                        self.scan_timeout_secs
                    ),
                    None => format!("av.scan_timeout_secs ({})", self.scan_timeout_secs),
                };
                if let Some(s) = &self.sandbox {
                    needed += &format!(
                        " plus av.sandbox.hold_timeout_secs ({})",
                        s.hold_timeout_secs
                    );
                }
                return Err(format!(
                    "av.resolve_timeout_secs ({deadline}) is shorter than {needed}: the stage \
                     would stop waiting before the scan's own time limit; raise \
                     av.resolve_timeout_secs or lower the others"
                ));
            }
        }
        for i in &self.icap {
            i.validate()?;
        }
        if let Some(s) = &self.sandbox {
            s.validate()?;
        }
        if self.yara.is_empty()
            && self.clamav.is_empty()
            && self.icap.is_empty()
            && self.sandbox.is_none()
        {
            return Err(
                "av: name at least one `yara` or `clamav` rule path, an [[av.icap]] server or an [av.sandbox] worker"
                    .into(),
            );
        }
        Ok(())
    }
}
