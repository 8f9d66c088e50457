//! A literal prefilter for `@rx` and `@pm`: from each regex, a set of literals one of which
//! every match must contain (found by walking the regex's syntax tree); for `@pm`, its
//! phrases. Rules sharing a transformation chain share one Aho-Corasick automaton, run once
//! per transformed value; a rule whose literals are absent from the value cannot match, and
//! its operator is not run.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// Most strings an exact or required set may hold.
const MAX_SET: usize = 256;
/// Most strings a cross product of exact sets may hold.
const MAX_PRODUCT: usize = 64;
/// Shorter literals filter too little to be worth a slot.
const MIN_LITERAL: usize = 2;

/// What a syntax node guarantees.
#[derive(Debug, Clone, Default)]
struct Info {
    /// Every string the node can match, when they are few (lower-cased).
    exact: Option<Vec<Vec<u8>>>,
    /// Strings one of which every match contains.
    req: Option<Vec<Vec<u8>>>,
}

/// The literals one of which every match of `pattern` (in `regex` syntax, as `Rx` runs it)
/// contains, lower-cased; `None` when there is no useful set.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let set = info(&syntax(pattern)?).req?;
    useful(&set).then_some(set)
}

/// The syntax tree of a pattern in `regex` syntax, bytes-oriented as `Rx` compiles it.
pub(crate) fn syntax(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()
}

fn useful(set: &[Vec<u8>]) -> bool {
    !set.is_empty() && set.iter().all(|s| s.len() >= MIN_LITERAL) && set.len() <= MAX_SET
}

/// How good a requirement is: its shortest literal, then fewer literals.
fn score(set: &[Vec<u8>]) -> (usize, isize) {
    let min = set.iter().map(Vec::len).min().unwrap_or(0);
    (min, -(set.len() as isize))
}

fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if score(&b) > score(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn dedup(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v.dedup();
    v
}

fn info(h: &Hir) -> Info {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Info {
            exact: Some(vec![Vec::new()]),
            req: None,
        },
        HirKind::Literal(l) => {
            let s = l.0.to_ascii_lowercase();
            Info {
                exact: Some(vec![s.clone()]),
                req: Some(vec![s]),
            }
        }
        HirKind::Class(c) => class(c),
        HirKind::Capture(c) => info(&c.sub),
        HirKind::Repetition(r) => repetition(r.min, r.max, &info(&r.sub)),
        HirKind::Concat(children) => concat(children),
        HirKind::Alternation(children) => alternation(children),
    }
}

fn class(c: &Class) -> Info {
    let mut bytes = Vec::new();
    match c {
        Class::Bytes(b) => {
            for r in b.iter() {
                for x in r.start()..=r.end() {
                    bytes.push(vec![x.to_ascii_lowercase()]);
                    if bytes.len() > 16 {
                        return Info::default();
                    }
                }
            }
        }
        Class::Unicode(u) => {
            for r in u.iter() {
                for x in u32::from(r.start())..=u32::from(r.end()) {
                    let Ok(b) = u8::try_from(x) else {
                        return Info::default();
                    };
                    bytes.push(vec![b.to_ascii_lowercase()]);
                    if bytes.len() > 16 {
                        return Info::default();
                    }
                }
            }
        }
    }
    let set = dedup(bytes);
    Info {
        exact: Some(set.clone()),
        req: Some(set),
    }
}

fn repetition(min: u32, max: Option<u32>, sub: &Info) -> Info {
    let exact = match (&sub.exact, max) {
        (Some(e), Some(1)) if min == 0 => {
            let mut v = e.clone();
            v.push(Vec::new());
            Some(dedup(v))
        }
        (Some(e), Some(m)) if m == min && min <= 4 => {
            (0..min).try_fold(vec![Vec::new()], |acc, _| product(&acc, e))
        }
        _ => None,
    }
    .filter(|v| v.len() <= MAX_SET);
    Info {
        exact,
        req: if min >= 1 { sub.req.clone() } else { None },
    }
}

fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_PRODUCT {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    Some(dedup(out))
}

/// A run of exact sets joined into longer literals; a requirement when none is empty.
fn run_req(run: &Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    run.clone().filter(|s| s.iter().all(|x| !x.is_empty()))
}

fn concat(children: &[Hir]) -> Info {
    let mut best = None;
    let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
    let mut whole = true;
    for c in children {
        let i = info(c);
        best = better(best, i.req.clone());
        match (&run, &i.exact) {
            (Some(r), Some(e)) => match product(r, e) {
                Some(p) => run = Some(p),
                None => {
                    best = better(best, run_req(&run));
                    run = Some(e.clone());
                    whole = false;
                }
            },
            (_, e) => {
                best = better(best, run_req(&run));
                run = e.clone();
                whole = false;
            }
        }
    }
    best = better(best, run_req(&run));
    Info {
        exact: if whole { run } else { None },
        req: best,
    }
}

fn alternation(children: &[Hir]) -> Info {
    let infos: Vec<Info> = children.iter().map(info).collect();
    let exact = infos
        .iter()
        .map(|i| i.exact.clone())
        .collect::<Option<Vec<_>>>()
        .map(|v| dedup(v.concat()))
        .filter(|v| v.len() <= MAX_SET);
    let req = infos
        .iter()
        .map(|i| better(i.req.clone(), run_req(&i.exact)))
        .collect::<Option<Vec<_>>>()
        .map(|v| dedup(v.concat()))
        .filter(|v| v.len() <= MAX_SET);
    Info { exact, req }
}

/// The automaton of one transformation chain: literals → the rule slots that need them.
#[derive(Debug)]
pub struct Prefilter {
    ac: AhoCorasick,
    /// The slots of each pattern (a literal several rules need is one pattern: the
    /// automaton reports it once per occurrence, not once per rule).
    owners: Vec<Box<[u32]>>,
    /// Slots in this chain.
    slots: usize,
}

impl Prefilter {
    /// Builds the automaton for `rules[slot] = literals` (a DFA: the fastest to run, and
    /// the largest).
    pub fn build(rules: &[Vec<Vec<u8>>]) -> Option<Prefilter> {
        Prefilter::build_as(rules, aho_corasick::AhoCorasickKind::DFA)
    }

    /// [`Self::build`] as a contiguous NFA: for the automaton of every link's literals
    /// (6,619 in CRS v4, most from `@pmFromFile` lists), whose DFA takes 87 MB against the
    /// NFA's 2 MB and runs no faster on short values.
    pub fn build_compact(rules: &[Vec<Vec<u8>>]) -> Option<Prefilter> {
        Prefilter::build_as(rules, aho_corasick::AhoCorasickKind::ContiguousNFA)
    }

    fn build_as(rules: &[Vec<Vec<u8>>], kind: aho_corasick::AhoCorasickKind) -> Option<Prefilter> {
        let mut index: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut pats: Vec<Vec<u8>> = Vec::new();
        let mut owners: Vec<Vec<u32>> = Vec::new();
        for (slot, lits) in rules.iter().enumerate() {
            for l in lits {
                // The automaton ignores ASCII case: so does the grouping.
                let i = *index.entry(l.to_ascii_lowercase()).or_insert_with(|| {
                    pats.push(l.clone());
                    owners.push(Vec::new());
                    pats.len() - 1
                });
                if owners[i].last() != Some(&(slot as u32)) {
                    owners[i].push(slot as u32);
                }
            }
        }
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(kind))
            .build(&pats)
            .ok()?;
        Some(Prefilter {
            ac,
            owners: owners.into_iter().map(Vec::into_boxed_slice).collect(),
            slots: rules.len(),
        })
    }

    /// The slots whose literals occur in `hay`, as a bit set.
    pub fn hits(&self, hay: &[u8]) -> Vec<u64> {
        let mut bits = vec![0u64; self.words()];
        self.add_hits(hay, &mut bits);
        bits
    }

    /// Whether any literal occurs in `hay` (for an automaton of one slot: whether the slot
    /// is hit), stopping at the first.
    pub fn any(&self, hay: &[u8]) -> bool {
        self.ac.is_match(hay)
    }

    /// Words in a bit set of this automaton's slots.
    pub fn words(&self) -> usize {
        self.slots.div_ceil(64)
    }

    /// Sets in `bits` (of [`Self::words`] words) the slots whose literals occur in `hay`.
    pub fn add_hits(&self, hay: &[u8], bits: &mut [u64]) {
        for m in self.ac.find_overlapping_iter(hay) {
            for &slot in self.owners[m.pattern().as_usize()].iter() {
                let slot = slot as usize;
                if let Some(w) = bits.get_mut(slot / 64) {
                    *w |= 1 << (slot % 64);
                }
            }
        }
    }
}

/// Whether `slot` is set in `bits`.
pub fn has(bits: &[u64], slot: u32) -> bool {
    bits.get(slot as usize / 64)
        .is_some_and(|w| w & (1 << (slot % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(p: &str) -> Option<Vec<String>> {
        required_literals(p).map(|v| {
            v.into_iter()
                .map(|s| String::from_utf8_lossy(&s).into_owned())
                .collect()
        })
    }

    #[test]
    fn finds_what_every_match_contains() {
        assert_eq!(req("(?i)union\\s+select"), Some(vec!["select".into()]));
        assert_eq!(req("(?i:a|b)cd"), Some(vec!["acd".into(), "bcd".into()]));
        assert_eq!(
            req("(?:etc/passwd|boot\\.ini)"),
            Some(vec!["boot.ini".into(), "etc/passwd".into()])
        );
        assert_eq!(req("a.*b"), None);
        assert_eq!(req("(?:foo)?bar"), Some(vec!["bar".into()]));
        assert_eq!(req("x(?:ab|c)*y"), None);
        assert_eq!(req("(?:abc|.)"), None);
        assert_eq!(
            req("[<>]script"),
            Some(vec!["<script".into(), ">script".into()])
        );
    }

    #[test]
    fn hits_are_case_insensitive() {
        let p = Prefilter::build(&[vec![b"select".to_vec()], vec![b"passwd".to_vec()]])
            .expect("builds");
        let bits = p.hits(b"1 UNION SELECT 2");
        assert!(has(&bits, 0) && !has(&bits, 1));
    }
}

/// Every CRS regex against every payload of CRS's regression tests (raw, URL-decoded and
/// lower-cased): where the regex matches, one of its required literals must be present, and
/// a byte of each of its byte needs.
#[cfg(test)]
mod crs_soundness {
    use super::*;
    use crate::public_corpora::{corpora, corpus};
    use crate::rx::Rx;
    use crate::transform::Transform;
    use std::path::PathBuf;

    fn files(dir: &std::path::Path, ext: &str, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, ext, out);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }

    /// The quoted or bare values of `data:`, `uri:` and header lines in the test files.
    fn payloads() -> Vec<Vec<u8>> {
        let mut yamls = Vec::new();
        files(&corpora().join("crs/tests"), "yaml", &mut yamls);
        let mut out = Vec::new();
        for y in yamls {
            let text = std::fs::read_to_string(&y).unwrap_or_default();
            for line in text.lines() {
                let t = line.trim();
                let Some((_, v)) = t.split_once(": ") else {
                    continue;
                };
                let v = v.trim().trim_matches('"').trim_matches('\'');
                if v.len() < 2 {
                    continue;
                }
                let raw = v.as_bytes().to_vec();
                let mut dec = Vec::new();
                Transform::UrlDecodeUni.apply(&raw, &mut dec);
                let low = dec.to_ascii_lowercase();
                out.extend([raw, dec, low]);
            }
        }
        out
    }

    #[test]
    fn crs_regexes_never_match_without_a_required_literal() {
        let Some(rules) = corpus("crs/rules") else {
            return;
        };
        let mut confs = Vec::new();
        files(&rules, "conf", &mut confs);
        if confs.is_empty() {
            eprintln!("CRS corpus absent: skipped");
            return;
        }
        let inputs = payloads();
        let (mut checked, mut with_literals, mut with_needs) = (0, 0, 0);
        for f in confs {
            let dirs = crate::seclang::parse_file(&f).expect("parses");
            let mut ops = Vec::new();
            for d in dirs {
                if let crate::seclang::DirectiveKind::Rule(r) = d.kind {
                    let mut link = Some(&r);
                    while let Some(l) = link {
                        if l.operator.name == "rx" && !l.operator.param.contains("%{") {
                            ops.push(l.operator.param.clone());
                        }
                        link = l.chained.as_deref();
                    }
                }
            }
            for p in ops {
                let Ok(rx) = Rx::compile(&p) else { continue };
                checked += 1;
                if rx.engine() != "regex" {
                    continue;
                }
                let needs = super::super::needs::regex_needs(rx.as_str());
                with_needs += usize::from(needs.is_some());
                let lits = required_literals(rx.as_str());
                with_literals += usize::from(lits.is_some());
                let pf = lits
                    .as_ref()
                    .map(|l| Prefilter::build(std::slice::from_ref(l)).expect("builds"));
                for x in &inputs {
                    if !rx.is_match(x).unwrap_or(false) {
                        continue;
                    }
                    if let (Some(pf), Some(lits)) = (&pf, &lits) {
                        assert!(
                            has(&pf.hits(x), 0),
                            "{p}\nmatches {:?} without any of {:?}",
                            String::from_utf8_lossy(x),
                            lits.iter()
                                .map(|l| String::from_utf8_lossy(l))
                                .collect::<Vec<_>>()
                        );
                    }
                    if let Some(n) = &needs {
                        assert!(
                            n.met(&super::super::needs::ByteSet::of(x)),
                            "{p}\nmatches {:?} without the bytes of {n:?}",
                            String::from_utf8_lossy(x)
                        );
                    }
                }
            }
        }
        println!(
            "{with_literals} of {checked} CRS regexes have required literals, {with_needs} byte \
             needs; {} inputs",
            inputs.len()
        );
        assert!(with_literals > 100 && with_needs > 50);
    }
}
