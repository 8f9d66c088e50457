//! The verdict cache: a report by the sample's SHA-256 and the behaviour rules' version, kept
//! 30 days when malicious and 24 hours otherwise (a clean verdict ages faster: new rules or a
//! sample that waits for a date may change it), bounded in entries, shared by every
//! submitter. A new rule set changes the version, so old verdicts are not reused.

use std::time::{Duration, Instant};

use crate::report::{Report, Verdict};

/// How long verdicts are kept.
#[derive(Debug, Clone, Copy)]
pub struct Ttl {
    /// Malicious verdicts.
    pub malicious: Duration,
    /// Every other verdict.
    pub other: Duration,
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl {
            malicious: Duration::from_secs(30 * 24 * 3600),
            other: Duration::from_secs(24 * 3600),
        }
    }
}

/// Reports by (SHA-256, rules version).
pub struct VerdictCache {
    map: quick_cache::sync::Cache<(String, String), (Report, Instant)>,
    ttl: Ttl,
}

impl VerdictCache {
    /// A cache of at most `entries` reports.
    pub fn new(entries: usize, ttl: Ttl) -> VerdictCache {
        VerdictCache {
            map: quick_cache::sync::Cache::new(entries.max(1)),
            ttl,
        }
    }

    /// The cached report of a sample under a rule version, unless it expired.
    pub fn get(&self, sha256: &str, version: &str) -> Option<Report> {
        let key = (sha256.to_string(), version.to_string());
        let (report, until) = self.map.get(&key)?;
        if Instant::now() >= until {
            self.map.remove(&key);
            return None;
        }
        Some(report)
    }

    /// Keeps a report (reports of runs that hit a bound of the sandbox are kept too: the
    /// same sample would hit it again).
    pub fn put(&self, report: &Report) {
        let ttl = match report.verdict {
            Verdict::Malicious => self.ttl.malicious,
            _ => self.ttl.other,
        };
        let key = (report.sha256.clone(), report.rules_version.clone());
        self.map.insert(key, (report.clone(), Instant::now() + ttl));
    }

    /// How many reports it holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    fn report(verdict: Verdict, sha: &str) -> Report {
        let rules = Rules {
            signatures: Vec::new(),
            version: "v1".into(),
            files: Vec::new(),
        };
        let mut r = Report::not_detonated(b"x", &rules, String::new());
        r.verdict = verdict;
        r.sha256 = sha.into();
        r
    }

    #[test]
    fn verdicts_expire_by_kind_and_rule_version() {
        let c = VerdictCache::new(
            10,
            Ttl {
                malicious: Duration::from_secs(60),
                other: Duration::ZERO,
            },
        );
        c.put(&report(Verdict::Malicious, "a"));
        c.put(&report(Verdict::Clean, "b"));
        assert!(c.get("a", "v1").is_some());
        assert!(c.get("a", "v2").is_none(), "another rule version");
        assert!(c.get("b", "v1").is_none(), "clean expired at once");
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = VerdictCache::new(4, Ttl::default());
        for i in 0..100 {
            c.put(&report(Verdict::Clean, &i.to_string()));
        }
        assert!(c.len() <= 8, "{}", c.len());
    }
}
