//! A stage's expectations against what was observed, in go-ftw's order (runner/run.go
//! `checkResult`): an expected error settles it alone; then status, response_contains, and
//! the log (match_regex, expect_ids, isolated, no_match_regex, no_expect_ids). Unlike go-ftw,
//! every check runs, so a failure lists all that is wrong.

use crate::model::Output;
use crate::run::Observed;

/// Pass or fail, with what failed.
#[derive(Debug, Default)]
pub struct Verdict {
    pub pass: bool,
    pub problems: Vec<String>,
    /// Expected ids that did not fire.
    pub missing: Vec<u64>,
    /// Ids that fired though `no_expect_ids` lists them.
    pub unexpected: Vec<u64>,
}

pub fn check(out: &Output, obs: &Observed) -> Verdict {
    let mut v = Verdict::default();
    if let Some(e) = &obs.marker_error {
        v.problems.push(e.clone());
        return v;
    }
    let ex = &obs.exchange;
    if out.expect_error == Some(true) {
        v.pass = ex.error.is_some();
        if !v.pass {
            v.problems.push("expected an error, got a response".into());
        }
        return v;
    }
    match ex.status {
        None => v.problems.push(format!(
            "no response: {}",
            ex.error.as_deref().unwrap_or("?")
        )),
        Some(status) => status_and_body(out, status, &ex.raw, &mut v),
    }
    log(out, obs, &mut v);
    v.pass = v.problems.is_empty();
    v
}

fn status_and_body(out: &Output, status: u16, raw: &[u8], v: &mut Verdict) {
    if let Some(want) = &out.status {
        let want = want.list();
        if !want.is_empty() && !want.contains(&status) {
            v.problems
                .push(format!("status {status}, expected {want:?}"));
        }
    }
    if let Some(re) = out.response_contains.as_deref().filter(|r| !r.is_empty()) {
        let text = String::from_utf8_lossy(raw);
        if !matches(re, std::iter::once(text.as_ref()), v) {
            v.problems.push(format!("response does not match {re:?}"));
        }
    }
}

fn log(out: &Output, obs: &Observed, v: &mut Verdict) {
    let lines = || obs.lines.iter().map(String::as_str);
    if let Some(re) = out.match_regex() {
        if !matches(re, lines(), v) {
            v.problems.push(format!("log does not match {re:?}"));
        }
    }
    v.missing = out
        .expect_ids()
        .into_iter()
        .filter(|id| !obs.fired.contains(id))
        .collect();
    if !v.missing.is_empty() {
        v.problems.push(format!("missing ids {:?}", v.missing));
    }
    if out.isolated == Some(true) && obs.fired.len() != 1 {
        v.problems
            .push(format!("isolated, but {} rules fired", obs.fired.len()));
    }
    if let Some(re) = out.no_match_regex() {
        if matches(re, lines(), v) {
            v.problems.push(format!("log matches {re:?}"));
        }
    }
    v.unexpected = out
        .log
        .no_expect_ids
        .iter()
        .copied()
        .filter(|id| obs.fired.contains(id))
        .collect();
    if !v.unexpected.is_empty() {
        v.problems
            .push(format!("unexpected ids {:?}", v.unexpected));
    }
}

/// Whether Go-syntax regex `re` (RE2, as Rust's `regex`) matches any of `lines`; a regex that
/// does not compile is a problem of its own.
fn matches<'a>(re: &str, mut lines: impl Iterator<Item = &'a str>, v: &mut Verdict) -> bool {
    match regex::Regex::new(re) {
        Ok(r) => lines.any(|l| r.is_match(l)),
        Err(e) => {
            v.problems.push(format!("bad regex {re:?}: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TestFile;

    fn output(yaml: &str) -> Output {
        let f: TestFile = serde_yaml_ng::from_str(yaml).unwrap();
        f.tests
            .into_iter()
            .next()
            .unwrap()
            .stages
            .into_iter()
            .next()
            .unwrap()
            .output
    }

    fn observed(status: u16, fired: &[u64]) -> Observed {
        let mut o = Observed::default();
        o.exchange.status = Some(status);
        o.fired = fired.iter().copied().collect();
        o.lines = fired
            .iter()
            .map(|id| {
                format!("[id \"{id}\"] [msg \"Inbound Anomaly Score Exceeded (Total Score: 5)\"]")
            })
            .collect();
        o
    }

    #[test]
    fn ids_status_and_regexes() {
        let out = output(
            "tests:\n- stages:\n  - output:\n      status: 200\n      log:\n        expect_ids: [1, 2]\n        no_expect_ids: [3]\n        match_regex: 'Total Score: '\n",
        );
        assert!(check(&out, &observed(200, &[1, 2])).pass);
        let v = check(&out, &observed(403, &[1, 3]));
        assert!(!v.pass);
        assert_eq!(v.missing, vec![2]);
        assert_eq!(v.unexpected, vec![3]);
        assert_eq!(v.problems.len(), 3, "{:?}", v.problems);
    }

    #[test]
    fn no_match_regex_and_isolated() {
        let none = output("tests:\n- stages:\n  - output:\n      log:\n        no_match_regex: '\\[id \"\\d+\"\\]'\n");
        assert!(check(&none, &observed(200, &[])).pass);
        assert!(!check(&none, &observed(200, &[5])).pass);
        let iso = output("tests:\n- stages:\n  - output:\n      isolated: true\n      log:\n        expect_ids: [5]\n");
        assert!(check(&iso, &observed(200, &[5])).pass);
        assert!(!check(&iso, &observed(200, &[5, 6])).pass);
    }

    #[test]
    fn an_expected_error_settles_the_stage() {
        let out =
            output("tests:\n- stages:\n  - output:\n      expect_error: true\n      status: 200\n");
        let mut o = Observed::default();
        o.exchange.error = Some("closed without a response".into());
        assert!(check(&out, &o).pass);
        assert!(!check(&out, &observed(200, &[])).pass);
    }
}
