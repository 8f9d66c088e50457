//! `tls_cert_notbefore`, `tls_cert_notafter`, `tls_cert_expired` and `tls_cert_valid`: the
//! validity dates of the server's leaf certificate, as Suricata's
//! `detect-tls-cert-validity.c` compares them.
//!
//! - `tls_cert_notbefore:[<|>]DATE` / `tls_cert_notafter:[<|>]DATE`: equal to, at or before
//!   (`<`), at or after (`>`) `DATE`; `DATE<>DATE` is a range, both ends included, the second
//!   after the first.
//! - A date is a Unix time (digits only, not four of them) or `YYYY[-MM[-DD[( |T)HH[:MM[:SS]]]]]`
//!   in UTC. A month alone stands for its first day. A year alone stands for February 1st of
//!   that year: Suricata sets the month field, counted from 0, to 1 (its
//!   `SCStringPatternToTime`); rules written for it match what it matches.
//! - `tls_cert_expired`: the certificate's notAfter is before now; `tls_cert_valid`: it is not
//!   (Suricata reads notAfter only, not notBefore, for both).
//! - A certificate without dates (none seen, or not parsed) matches none of them.

/// One validity condition of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// A comparison of the notBefore date.
    NotBefore(Cmp),
    /// A comparison of the notAfter date.
    NotAfter(Cmp),
    /// notAfter is in the past.
    Expired,
    /// notAfter is not in the past.
    Valid,
}

/// How a date is compared with the rule's (Unix times, seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// The same second.
    Eq(i64),
    /// At or before.
    AtMost(i64),
    /// At or after.
    AtLeast(i64),
    /// Within the range, both ends included.
    Range(i64, i64),
}

/// The longest date Suricata copies out of the option (`MAX_DATE_LEN` less its terminator).
const MAX_DATE: usize = 19;

impl Validity {
    /// Parses the option of `tls_cert_notbefore` (`after` false) or `tls_cert_notafter`.
    pub fn parse_date(value: &str, after: bool) -> Result<Validity, String> {
        let cmp = parse_cmp(value)?;
        Ok(match after {
            false => Validity::NotBefore(cmp),
            true => Validity::NotAfter(cmp),
        })
    }

    /// Whether a certificate valid from `not_before` to `not_after` meets the condition at
    /// `now` (Unix times).
    pub fn holds(self, (not_before, not_after): (i64, i64), now: i64) -> bool {
        let (date, test) = match self {
            Validity::NotBefore(c) => (not_before, Some(c)),
            Validity::NotAfter(c) => (not_after, Some(c)),
            Validity::Expired | Validity::Valid => (not_after, None),
        };
        // Suricata keeps 0 for "no date" and never matches it.
        if date == 0 {
            return false;
        }
        match (self, test) {
            (_, Some(Cmp::Eq(e))) => date == e,
            (_, Some(Cmp::AtMost(e))) => date <= e,
            (_, Some(Cmp::AtLeast(e))) => date >= e,
            (_, Some(Cmp::Range(a, b))) => date >= a && date <= b,
            (Validity::Expired, None) => now > date,
            (_, None) => now <= date,
        }
    }
}

fn parse_cmp(value: &str) -> Result<Cmp, String> {
    let v = value.trim();
    let (mode, rest) = match v.as_bytes().first() {
        Some(b'<') if !v.starts_with("<>") => (Some('<'), &v[1..]),
        Some(b'>') => (Some('>'), &v[1..]),
        _ => (None, v),
    };
    let (first, second) = match rest.split_once("<>") {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (rest.trim(), None),
    };
    if second.is_some() && mode.is_some() {
        return Err(format!("{value:?}: a range with < or >"));
    }
    let a = epoch_of(first).ok_or_else(|| format!("{value:?}: {first:?} is not a date"))?;
    match (mode, second) {
        (Some('<'), _) => Ok(Cmp::AtMost(a)),
        (Some(_), _) => Ok(Cmp::AtLeast(a)),
        (None, None) => Ok(Cmp::Eq(a)),
        (None, Some(s)) => {
            let b = epoch_of(s).ok_or_else(|| format!("{value:?}: {s:?} is not a date"))?;
            if b <= a {
                return Err(format!("{value:?}: the range's end is not after its start"));
            }
            Ok(Cmp::Range(a, b))
        }
    }
}

/// A date of the option as a Unix time (see the module's documentation).
fn epoch_of(s: &str) -> Option<i64> {
    let ok = |c: char| c == ' ' || c == 'T' || c == 'W' || ('-'..=':').contains(&c);
    if s.is_empty() || s.len() > MAX_DATE || !s.chars().all(ok) {
        return None;
    }
    if s.len() != 4 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    utc(date_fields(s)?)
}

/// Year, month (1-12), day, hour, minute, second of `YYYY[-MM[-DD[( |T)HH[:MM[:SS]]]]]`.
fn date_fields(s: &str) -> Option<[i64; 6]> {
    let (date, time) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim_start())),
        None => (s, None),
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.map_or(Vec::new(), |t| t.split(':').collect());
    // A time needs the whole date; each field as many digits as strptime reads.
    if d.len() > 3 || t.len() > 3 || (!t.is_empty() && d.len() < 3) {
        return None;
    }
    let num = |f: Option<&&str>, max_len: usize, lo: i64, hi: i64| -> Option<Option<i64>> {
        let Some(f) = f else { return Some(None) };
        let n: i64 = (!f.is_empty() && f.len() <= max_len && f.bytes().all(|b| b.is_ascii_digit()))
            .then(|| f.parse().ok())??;
        (lo..=hi).contains(&n).then_some(Some(n))
    };
    let year = num(d.first(), 4, 0, 9999)??;
    let month = num(d.get(1), 2, 1, 12)?;
    let day = num(d.get(2), 2, 1, 31)?;
    let hour = num(t.first(), 2, 0, 23)?.unwrap_or(0);
    let minute = num(t.get(1), 2, 0, 59)?.unwrap_or(0);
    let second = num(t.get(2), 2, 0, 61)?.unwrap_or(0);
    let (month, day) = match (month, day) {
        (Some(m), Some(d)) => (m, d),
        (Some(m), None) => (m, 1),
        // Suricata's month field (from 0) set to 1: February.
        (None, _) => (2, 1),
    };
    Some([year, month, day, hour, minute, second])
}

/// Seconds since 1970 of a UTC date (month 1-12). A day past the month's end runs on into
/// the next, as Suricata's `SCMkTimeUtc` adds the day to the month's first.
fn utc([year, month, day, hour, minute, second]: [i64; 6]) -> Option<i64> {
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let first = time::Date::from_calendar_date(i32::try_from(year).ok()?, month, 1).ok()?;
    let start = first.midnight().assume_utc().unix_timestamp();
    Some(start + (((day - 1) * 24 + hour) * 60 + minute) * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_suricata_reads_them() {
        assert_eq!(epoch_of("1445852105"), Some(1_445_852_105));
        assert_eq!(epoch_of("2015-10-22"), Some(1_445_472_000));
        assert_eq!(epoch_of("2015-10-22T23:59:59"), Some(1_445_558_399));
        assert_eq!(epoch_of("2015-10-22 23:59"), Some(1_445_558_340));
        assert_eq!(epoch_of("2015-10-22T23"), Some(1_445_554_800));
        assert_eq!(epoch_of("2015-10"), Some(1_443_657_600));
        // Four digits are a year, and a year alone is February 1st.
        assert_eq!(epoch_of("2015"), Some(1_422_748_800));
        assert_eq!(epoch_of("2000-02-29"), Some(951_782_400));
        assert_eq!(epoch_of("1970-01-01"), Some(0));
        // strptime takes any day up to 31: February 31st is March 3rd, as in Suricata.
        assert_eq!(epoch_of("2015-02-31"), epoch_of("2015-03-03"));
        for bad in [
            "",
            "20151022x",
            "2015-13",
            "2015-10-22T24",
            "23:59",
            "2015-10T12",
            "a",
        ] {
            assert_eq!(epoch_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn comparisons_ranges_and_errors() {
        assert_eq!(
            parse_cmp("<2015-10-22T23:59:59"),
            Ok(Cmp::AtMost(1_445_558_399))
        );
        assert_eq!(parse_cmp(" >2015-10-22"), Ok(Cmp::AtLeast(1_445_472_000)));
        assert_eq!(
            parse_cmp("2000-10-22<>2020-05-15"),
            Ok(Cmp::Range(972_172_800, 1_589_500_800))
        );
        assert!(parse_cmp("2020-05-15<>2000-10-22").is_err());
        assert!(parse_cmp("<2000<>2001").is_err());
        assert!(parse_cmp("soon").is_err());
    }

    #[test]
    fn conditions_on_a_certificate() {
        let cert = (100_000, 200_000);
        let at = |v: &str| Validity::parse_date(v, true).unwrap();
        assert!(at("200000").holds(cert, 0));
        assert!(!at("200001").holds(cert, 0));
        assert!(at("<200001").holds(cert, 0));
        assert!(at("<200000").holds(cert, 0));
        assert!(!at("<199999").holds(cert, 0));
        assert!(at(">199999").holds(cert, 0));
        assert!(at("150000<>250000").holds(cert, 0));
        assert!(!at("250000<>350000").holds(cert, 0));
        assert!(Validity::parse_date("<100000", false)
            .unwrap()
            .holds(cert, 0));
        assert!(!Validity::parse_date(">100001", false)
            .unwrap()
            .holds(cert, 0));
        assert!(Validity::Expired.holds(cert, 200_001));
        assert!(!Validity::Expired.holds(cert, 200_000));
        assert!(Validity::Valid.holds(cert, 200_000));
        // Valid reads notAfter only, as Suricata does.
        assert!(Validity::Valid.holds(cert, 10));
        // No date: nothing matches.
        assert!(!Validity::Valid.holds((100_000, 0), 10));
        assert!(!Validity::Expired.holds((100_000, 0), 10));
    }
}
