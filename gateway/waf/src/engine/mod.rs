//! The SecLang engine: rule files compiled into a [`Waf`] (rules per phase, settings), and
//! [`Transaction`]s that run a request and its response through phases 1 to 5 as ModSecurity
//! 2 does, recording every matched rule and the decision.

mod actions;
mod bound;
mod build;
mod carry;
mod chains;
mod decode;
mod exec;
mod fold;
mod gate;
mod macros;
mod memo;
mod needs;
mod ops;
mod prefilter;
mod reqbody;
mod rule;
mod settings;
mod store;
mod target;
mod tx;
mod vars;

#[cfg(test)]
mod tests;

pub use build::{LoadError, LoadSummary};
pub use decode::Decoding;
pub use rule::{severity_name, AllowScope, Disruptive};
pub use settings::{BodyProcessor, LimitAction, Mode, Settings};
pub use tx::{Intervention, MatchedRule, RequestHead, Transaction};

use rule::CRule;

/// A compiled rule set: settings and the rules of each phase in file order.
#[derive(Debug)]
pub struct Waf {
    settings: Settings,
    /// Rules per phase (index 0 = phase 1); markers appear in every phase.
    phases: [Vec<CRule>; 5],
    summary: LoadSummary,
    /// Literal prefilters by transformation chain id.
    prefilters: std::collections::HashMap<u32, prefilter::Prefilter>,
    /// Every link's literals, for the rule-level check.
    literals: Option<prefilter::Prefilter>,
    /// Transformation chains.
    chains: chains::Chains,
    /// What every transaction starts with (see `fold`).
    prelude: fold::Prelude,
    /// Transformation caches between transactions.
    caches: chains::Pool,
    /// What pure links are known not to match, by value, across transactions.
    memo: memo::ValueMemo,
    /// Each phase's step table (see `gate`).
    steps: [gate::Steps; 5],
}

impl Waf {
    /// Turns on the decoders that run before the rules (detection beyond CRS).
    pub fn set_decoding(&mut self, d: Decoding) {
        self.settings.decoding = d;
    }

    /// Sets the value memo's budget in bytes (0 turns it off; see `memo`): what links are
    /// known not to match a value, kept across transactions. Emptied by the change.
    pub fn set_value_memo(&mut self, bytes: u64) {
        self.memo = self.memo.resized(bytes);
    }

    /// How many values the value memo holds.
    pub fn value_memo_len(&self) -> usize {
        self.memo.len()
    }

    /// The engine settings the rule files chose.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What was loaded.
    pub fn summary(&self) -> &LoadSummary {
        &self.summary
    }

    /// Rules (chain starters and `SecAction`s) per file, in file name order.
    pub fn rules_per_file(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for r in self.phases.iter().flatten().filter(|r| r.marker.is_none()) {
            let file = r.origin.rsplit_once(':').map_or(r.origin.as_str(), |o| o.0);
            *out.entry(file.to_string()).or_insert(0) += 1;
        }
        out
    }

    /// The rules of phase `p` (1 to 5).
    fn phase(&self, p: u8) -> &[CRule] {
        self.phases
            .get(usize::from(p.saturating_sub(1)))
            .map_or(&[], |v| v.as_slice())
    }

    /// Phase `p`'s step table (parallel to [`Waf::phase`]).
    fn steps(&self, p: u8) -> &gate::Steps {
        self.steps
            .get(usize::from(p.saturating_sub(1)))
            .unwrap_or(&gate::NONE)
    }
}
