//! The verdict cache: a report by the sample's SHA-256 and the behaviour rules' version, kept
//! 30 days when malicious and 24 hours otherwise (a clean verdict ages faster: new rules or a
//! sample that waits for a date may change it), bounded in entries and in bytes (each report
//! weighs its JSON size), shared by every submitter. A new rule set changes the version, so old verdicts are not reused.

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
    map: quick_cache::sync::Cache<(String, String), Cached, ByBytes>,
    ttl: Ttl,
    /// The least weight an entry counts for (`bytes / entries`), so the entry bound holds too.
    floor: u64,
}

/// A report, until when it is reused, and its weight.
#[derive(Clone)]
struct Cached {
    report: Report,
    until: Instant,
    weight: u64,
}

/// Weighs an entry by its report's size.
#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<(String, String), Cached> for ByBytes {
    fn weight(&self, _key: &(String, String), v: &Cached) -> u64 {
        v.weight
    }
}

impl VerdictCache {
    /// A cache of at most `entries` reports and `bytes` of them (their JSON size).
    pub fn new(entries: usize, bytes: u64, ttl: Ttl) -> VerdictCache {
        let entries = entries.max(1);
        let bytes = bytes.max(1);
        VerdictCache {
            map: quick_cache::sync::Cache::with_weighter(entries, bytes, ByBytes),
            ttl,
            floor: (bytes / entries as u64).max(1),
        }
    }

    /// The report for a sample under a rules version, while it is still reused.
    pub fn get(&self, sha256: &str, version: &str) -> Option<Report> {
        let key = (sha256.to_string(), version.to_string());
        let c = self.map.get(&key)?;
        if Instant::now() >= c.until {
            self.map.remove(&key);
            return None;
        }
        Some(c.report)
    }

    /// How long `report` is reused.
    pub fn ttl_of(&self, report: &Report) -> Duration {
        match report.verdict {
            Verdict::Malicious => self.ttl.malicious,
            _ => self.ttl.other,
        }
    }

    /// Keeps a report (one larger than the whole cache is not kept).
    pub fn put(&self, report: &Report) {
        let ttl = self.ttl_of(report);
        let size = serde_json::to_vec(report).map_or(u64::MAX, |v| v.len() as u64);
        let key = (report.sha256.clone(), report.rules_version.clone());
        let weight = size.saturating_add((key.0.len() + key.1.len()) as u64);
        let cached = Cached {
            report: report.clone(),
            until: Instant::now() + ttl,
            weight: weight.max(self.floor),
        };
        self.map.insert(key, cached);
    }

    /// Bytes the reports held weigh.
    pub fn weight(&self) -> u64 {
        self.map.weight()
    }

    /// Reports held.
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
            1 << 20,
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
    fn the_cache_is_bounded_in_entries_and_bytes() {
        let c = VerdictCache::new(4, 1 << 20, Ttl::default());
        for i in 0..100 {
            c.put(&report(Verdict::Clean, &i.to_string()));
        }
        assert!(c.len() <= 8, "{}", c.len());
        // Reports of ~20 KB each in a 1 MiB cache: some fit, never more than the bytes.
        let c = VerdictCache::new(100_000, 1 << 20, Ttl::default());
        for i in 0..200 {
            let mut r = report(Verdict::Clean, &i.to_string());
            r.output = "x".repeat(20_000);
            c.put(&r);
        }
        assert!(c.weight() <= 1 << 20, "{}", c.weight());
        assert!((1..=52).contains(&c.len()), "{}", c.len());
        let mut huge = report(Verdict::Malicious, "huge");
        huge.output = "x".repeat(2 << 20);
        c.put(&huge);
        assert!(c.get("huge", "v1").is_none(), "larger than the whole cache");
    }
}
