//! libinjection's own test data, read from a checkout named by `LIBINJECTION_TESTS` (skipped
//! with a note when unset): every `tests/test-{tokens,folding,sqli,html5}-*.txt` file must give
//! its expected output exactly, and the `data/` samples must stay within upstream's own
//! thresholds (`make check`: at most 18 SQLi samples missed, 18 XSS samples missed, 21 false
//! positives flagged).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::html5::{Html5, Kind, Start};
use super::sqli::testing;

fn checkout() -> Option<PathBuf> {
    let dir = std::env::var_os("LIBINJECTION_TESTS").map(PathBuf::from);
    if dir.is_none() {
        eprintln!("LIBINJECTION_TESTS is not set: libinjection's test files are not run");
    }
    dir
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".txt")
        })
        .collect();
    out.sort();
    out
}

/// Trailing space, tab, CR and LF removed, as the C test driver's `modp_rtrim`.
fn rtrim(s: &[u8]) -> &[u8] {
    let n = s.len()
        - s.iter()
            .rev()
            .take_while(|c| b" \t\r\n".contains(c))
            .count();
    &s[..n]
}

/// The input and expected sections of a `--TEST--`/`--INPUT--`/`--EXPECTED--` file.
fn sections(raw: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (mut input, mut expected, mut part) = (Vec::new(), Vec::new(), 0);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        match (part, line) {
            (0, b"--TEST--\n") => part = 1,
            (1, b"--INPUT--\n") => part = 2,
            (2, b"--EXPECTED--\n") => part = 3,
            (2, l) => input.extend_from_slice(l),
            (3, l) => expected.extend_from_slice(l),
            _ => {}
        }
    }
    (part == 3).then(|| (rtrim(&input).to_vec(), rtrim(&expected).to_vec()))
}

fn html5_tokens(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut h5 = Html5::new(input, Start::Data);
    while h5.next() {
        let name = match h5.kind {
            Kind::DataText => "DATA_TEXT",
            Kind::TagNameOpen => "TAG_NAME_OPEN",
            Kind::TagNameClose => "TAG_NAME_CLOSE",
            Kind::TagNameSelfclose => "TAG_NAME_SELFCLOSE",
            Kind::TagClose => "TAG_CLOSE",
            Kind::AttrName => "ATTR_NAME",
            Kind::AttrValue => "ATTR_VALUE",
            Kind::TagComment => "TAG_COMMENT",
            Kind::Doctype => "DOCTYPE",
        };
        let t = h5.token();
        out.extend_from_slice(format!("{name},{},", t.len()).as_bytes());
        out.extend_from_slice(t.split(|&b| b == 0).next().unwrap_or(&[]));
        out.push(b'\n');
    }
    out
}

/// What the C test driver prints for one test file.
fn actual(kind: &str, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match kind {
        "tokens" => testing::tokens(input)
            .iter()
            .for_each(|t| testing::print(t, &mut out)),
        "folding" => testing::folded(input)
            .iter()
            .for_each(|t| testing::print(t, &mut out)),
        "sqli" => {
            if let Some(fp) = super::sqli(input) {
                out.extend_from_slice(fp.as_str().as_bytes());
            }
        }
        "html5" => out = html5_tokens(input),
        "xss" => out = format!("{}", u8::from(super::xss(input))).into_bytes(),
        _ => unreachable!(),
    }
    rtrim(&out).to_vec()
}

#[test]
fn upstream_test_files_all_pass() {
    let Some(dir) = checkout() else { return };
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for kind in ["tokens", "folding", "sqli", "html5", "xss"] {
        for path in files(&dir.join("tests"), &format!("test-{kind}-")) {
            let raw = std::fs::read(&path).unwrap();
            let Some((input, expected)) = sections(&raw) else {
                continue;
            };
            let got = actual(kind, &input);
            let entry = counts.entry(kind).or_default();
            entry.1 += 1;
            if got == expected {
                entry.0 += 1;
            } else {
                failures.push(format!(
                    "{}: input {:?}\n  expected {:?}\n  got      {:?}",
                    path.display(),
                    String::from_utf8_lossy(&input),
                    String::from_utf8_lossy(&expected),
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
    for (kind, (pass, total)) in &counts {
        eprintln!("test-{kind}-*: {pass}/{total} pass");
    }
    assert!(
        counts.get("sqli").is_some_and(|c| c.1 > 0),
        "no test-sqli files in {}",
        dir.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `reader.c`'s URL decoding: `+` is a space; `%XY` decodes only when two more bytes follow
/// the `%` within the line (a `%41` ending the line stays as is) and both are hex digits.
fn url_decode(s: &[u8]) -> Vec<u8> {
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Samples of a data file: non-empty lines not starting with `#`, URL-decoded. Like
/// `reader.c` (`fgets` then `strlen`), a line ends at a NUL byte (one `sqli-forums.txt` line has
/// one).
fn samples(path: &Path) -> Vec<Vec<u8>> {
    let raw = std::fs::read(path).unwrap();
    raw.split(|&b| b == b'\n')
        .map(|l| rtrim(l.split(|&b| b == 0).next().unwrap_or(&[])))
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .map(url_decode)
        .collect()
}

/// (flagged, total) over the data files starting with `prefix`.
fn flagged(dir: &Path, prefix: &str, detect: fn(&[u8]) -> bool) -> (usize, usize) {
    files(&dir.join("data"), prefix)
        .iter()
        .flat_map(|p| samples(p))
        .fold((0, 0), |(hit, n), s| (hit + usize::from(detect(&s)), n + 1))
}

#[test]
fn upstream_samples_within_upstream_thresholds() {
    let Some(dir) = checkout() else { return };
    let (sqli_hit, sqli_n) = flagged(&dir, "sqli-", |s| super::sqli(s).is_some());
    let (xss_hit, xss_n) = flagged(&dir, "xss", super::xss);
    let (fp_hit, fp_n) = flagged(&dir, "false_positives", |s| super::sqli(s).is_some());
    eprintln!(
        "data/sqli-*: {sqli_hit}/{sqli_n} flagged ({} missed)",
        sqli_n - sqli_hit
    );
    eprintln!(
        "data/xss*: {xss_hit}/{xss_n} flagged ({} missed)",
        xss_n - xss_hit
    );
    eprintln!("data/false_positives.txt: {fp_hit}/{fp_n} flagged");
    assert!(
        sqli_n > 0 && xss_n > 0 && fp_n > 0,
        "no samples in {}",
        dir.display()
    );
    assert!(
        sqli_n - sqli_hit <= 18,
        "SQLi samples missed: {}",
        sqli_n - sqli_hit
    );
    assert!(
        xss_n - xss_hit <= 18,
        "XSS samples missed: {}",
        xss_n - xss_hit
    );
    assert!(fp_hit <= 21, "false positives flagged: {fp_hit}");
}
