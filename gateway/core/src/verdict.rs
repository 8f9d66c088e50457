use serde::{Deserialize, Serialize};

/// What a stage decides about a flow. Ordered by severity: `Allow < Alert < Hold < Block`.
///
/// The pipeline keeps the maximum of all verdicts, so a later stage can never weaken an earlier one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Pass the flow on.
    #[default]
    Allow,
    /// Pass the flow on, but something worth an event was seen.
    Alert,
    /// Keep the body in a bounded buffer until [`crate::Inspector::resolve`] decides.
    Hold,
    /// Refuse the flow: a block page before response headers, a stream reset after.
    Block,
}

impl Verdict {
    /// The more severe of two verdicts.
    #[inline]
    pub fn max(self, other: Verdict) -> Verdict {
        std::cmp::max(self, other)
    }

    /// Lower-case name, as used in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Alert => "alert",
            Verdict::Hold => "hold",
            Verdict::Block => "block",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_is_by_severity() {
        assert!(Verdict::Allow < Verdict::Alert);
        assert!(Verdict::Alert < Verdict::Hold);
        assert!(Verdict::Hold < Verdict::Block);
        assert_eq!(Verdict::Alert.max(Verdict::Block), Verdict::Block);
        assert_eq!(Verdict::Block.max(Verdict::Allow), Verdict::Block);
    }
}
