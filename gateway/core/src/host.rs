//! Hosts as policy sees them: one spelling per host ([`normalize_host`], every inet_aton form of
//! an IPv4 address read as its dotted quad) and host patterns, exact names and `*.suffix` (any
//! subdomain of the suffix, not the suffix itself).

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// A set of host patterns, matched in O(labels) per lookup.
#[derive(Clone, Debug, Default)]
pub struct HostMatcher {
    exact: HashSet<String>,
    suffixes: HashSet<String>,
}

/// Normalises a host for matching: lower case, no trailing dot, no IPv6 brackets, and an IPv4
/// address in any form a resolver accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`) as a dotted
/// quad, so a second spelling of a denied address is the same address.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim().trim_end_matches('.');
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    let h = h.to_ascii_lowercase();
    match parse_ipv4(&h) {
        Some(v4) => v4.to_string(),
        None => h,
    }
}

impl HostMatcher {
    /// Builds a matcher; an invalid pattern is an error naming it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut m = HostMatcher::default();
        for p in patterns {
            let raw = p.as_ref();
            let (is_suffix, body) = match raw.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let body = normalize_host(body);
            let ip_literal = body.parse::<std::net::IpAddr>().is_ok();
            if body.is_empty()
                || body.len() > 253
                || (!ip_literal
                    && (body.split('.').any(|l| l.is_empty() || l.len() > 63)
                        || !body.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
                        })))
                || (is_suffix && ip_literal)
            {
                return Err(format!(
                    "invalid host pattern {raw:?} (use \"host.example\" or \"*.example\")"
                ));
            }
            if is_suffix {
                m.suffixes.insert(body);
            } else {
                m.exact.insert(body);
            }
        }
        Ok(m)
    }

    /// The pattern that matches `host`, if any (as written in config form).
    pub fn find(&self, host: &str) -> Option<String> {
        let h = normalize_host(host);
        if self.exact.contains(&h) {
            return Some(h);
        }
        if self.suffixes.is_empty() {
            return None;
        }
        let mut rest = h.as_str();
        while let Some((_, tail)) = rest.split_once('.') {
            if self.suffixes.contains(tail) {
                return Some(format!("*.{tail}"));
            }
            rest = tail;
        }
        None
    }

    /// True when `host` matches a pattern.
    pub fn matches(&self, host: &str) -> bool {
        self.find(host).is_some()
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }
}

/// inet_aton forms: `a.b.c.d`, `a.b.c` (c: 16 bits), `a.b` (b: 24 bits), `a` (32 bits); each
/// part decimal, octal (`0…`) or hex (`0x…`). A resolver reads a host in any of these forms as
/// this address, so policy decisions on hosts must too.
pub fn parse_ipv4(h: &str) -> Option<Ipv4Addr> {
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x' || b == b'X')
    {
        return None;
    }
    let parts: Vec<&str> = h.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(x) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))
        {
            (x, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        let v = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        nums.push(v);
    }
    let (last, init) = nums.split_last()?;
    if init.iter().any(|v| *v > 255) {
        return None;
    }
    let bits = 8 * (4 - init.len() as u32);
    if *last >= 1u64 << bits {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in init.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    v |= last;
    Some(Ipv4Addr::from(u32::try_from(v).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_suffix() {
        let m = HostMatcher::new(&["bank.test", "*.health.test", "10.0.0.1", "::1"]).unwrap();
        assert_eq!(m.find("BANK.test."), Some("bank.test".into()));
        assert!(!m.matches("www.bank.test"));
        assert_eq!(m.find("a.b.health.test"), Some("*.health.test".into()));
        assert!(!m.matches("health.test"));
        assert!(!m.matches("xhealth.test"));
        assert!(!m.matches("health.test.evil"));
        assert!(m.matches("10.0.0.1"));
        assert!(m.matches("[::1]"));
        assert!(!m.matches(""));
        // Other spellings of a denied IPv4 address are that address.
        for spelling in [
            "167772161",
            "0x0a000001",
            "012.0.0.1",
            "10.1",
            "10.0.1",
            "10.0.0.1.",
        ] {
            assert!(m.matches(spelling), "{spelling}");
        }
        assert!(!m.matches("10.0.0.2"));
        assert!(!m.matches("deadbeef"), "a name, not an address");
    }

    #[test]
    fn invalid_patterns() {
        for p in ["", "*.", "a..b", "*.10.0.0.1", "a b", &"x".repeat(64)] {
            assert!(HostMatcher::new(&[p]).is_err(), "{p:?}");
        }
    }
}
