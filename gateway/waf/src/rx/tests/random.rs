//! Random patterns from the syntax the translation handles (literals, classes, escapes,
//! groups, alternation, greedy, lazy and possessive quantifiers, atomic groups, inline
//! options, assertions), each compared with PCRE2 on random subjects: matches and every group
//! must agree. `RX_RANDOM_SEED` and `RX_RANDOM_N` run other and more patterns.

use super::super::{Rx, RxOptions};
use super::compare;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const ATOMS: &[&str] = &[
    "a",
    "b",
    "c",
    "A",
    r"\x{e9}",
    r"\xc9",
    "[a-c]",
    "[^b]",
    ".",
    r"\d",
    r"\w",
    r"\s",
    r"\W",
    "[[:upper:]]",
    r"\n",
    "_",
    " ",
    "[A-Ca]",
    r"[\s\x0b]",
    r"\-",
    r"\h",
];
const ASSERTIONS: &[&str] = &[r"\b", r"\B", "^", "$", r"\A", r"\z"];
const OPTIONS: &[&str] = &["(?i)", "(?-i)", "(?s)", "(?-s)"];
const QUANTIFIERS: &[&str] = &[
    "", "", "", "*", "+", "?", "{2}", "{1,2}", "*?", "+?", "??", "{0,}", "*+", "?+", "{1,2}+",
];
const OPENERS: &[&str] = &["(", "(", "(?:", "(?i:", "(?-i:", "(?>"];

/// Appends a sequence of items to `out`.
fn sequence(rng: &mut Rng, depth: u32, out: &mut String) {
    for _ in 0..rng.below(4) {
        match rng.below(10) {
            0 => out.push_str(rng.pick(ASSERTIONS)),
            1 => out.push_str(rng.pick(OPTIONS)),
            2 | 3 if depth < 3 => {
                out.push_str(rng.pick(OPENERS));
                alternation(rng, depth + 1, out);
                out.push(')');
                out.push_str(rng.pick(QUANTIFIERS));
            }
            _ => {
                out.push_str(rng.pick(ATOMS));
                out.push_str(rng.pick(QUANTIFIERS));
            }
        }
    }
}

fn alternation(rng: &mut Rng, depth: u32, out: &mut String) {
    for i in 0..=rng.below(3) {
        if i > 0 {
            out.push('|');
        }
        sequence(rng, depth, out);
    }
}

fn subject(rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcABC\n\xe9\xc9 1_-\x0b";
    (0..rng.below(9))
        .map(|_| ALPHABET[rng.below(ALPHABET.len())])
        .collect()
}

#[test]
fn random_patterns_agree_with_pcre2() {
    let seed =
        std::env::var("RX_RANDOM_SEED").map_or(0x5eed_1234_abcd_0001, |s| s.parse().unwrap());
    let total = std::env::var("RX_RANDOM_N").map_or(3000, |s| s.parse().unwrap());
    let mut rng = Rng(seed);
    let (mut on_regex, mut gave_up) = (0, 0);
    // PCRE2 runs some of them (see below); its match limit is not what is tested here.
    let unlimited = RxOptions::OPERATOR.with_limits(0, 0);
    for _ in 0..total {
        let mut p = String::new();
        alternation(&mut rng, 0, &mut p);
        let oracle = p.replace('$', r"\z");
        let subjects: Vec<Vec<u8>> = (0..40).map(|_| subject(&mut rng)).collect();
        let refs: Vec<&[u8]> = subjects.iter().map(Vec::as_slice).collect();
        let rx = Rx::compile_with(&p, unlimited).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        match rx.pcre_reason() {
            None => on_regex += 1,
            Some(why) => assert!(
                ["unbounded repetition", "possessive", "atomic"]
                    .iter()
                    .any(|w| why.starts_with(w)),
                "{p:?}: {why}"
            ),
        }
        gave_up += compare(&p, &rx, &oracle, &refs);
    }
    assert!(
        gave_up <= total / 100,
        "PCRE2 gave up on {gave_up} subjects"
    );
    assert!(on_regex > total / 2, "{on_regex} of {total} on regex");
}
