//! One test per translation rule, with the odd cases.

use super::super::{Rx, RxError, RxOptions};
use super::{agree, is_match, on_pcre, same};

const BYTES: &[&[u8]] = &[
    b"",
    b"a",
    b"A",
    b"abc",
    b"ABC",
    b"a\nb",
    b"\n",
    b"x\x0by",
    b"\xe9",
    b"\xc9",
    b"\xa0",
    b"\x85",
    b"\x00",
    b"a_1",
    b"-/",
    b"\x1b\x07\x08",
    b"a b\tc",
    b"\xff\x80",
];

#[test]
fn dollar_is_end_only() {
    assert!(is_match("a$", b"xa"));
    assert!(
        !is_match("a$", b"xa\n"),
        "DOLLAR_ENDONLY: not before a final newline"
    );
    assert!(!is_match("a$", b"a\nb"));
    assert_eq!(Rx::compile("a$").unwrap().as_str(), r"a\z");
    // Classes, escapes and quotes keep `$` literal.
    assert!(is_match(r"[$]", b"$") && is_match(r"\$", b"$") && is_match(r"\Q$\E", b"$"));
    agree("a$|b", r"a\z|b", &[b"a", b"a\n", b"b\n", b"ab"]);
}

#[test]
fn dollar_under_multiline_is_before_any_newline() {
    agree("(?m)a$", "(?m)a$", &[b"a\nb", b"a", b"a\n", b"ba"]);
    agree("(?m:a$)|b$", r"(?m:a$)|b\z", &[b"a\nx", b"b\n", b"b"]);
    assert!(!is_match("(?m:a)$", b"a\n"), "(?m:…) ends before the $");
}

#[test]
fn plain_options_let_dollar_match_before_a_final_newline() {
    let rx = on_pcre("a$", RxOptions::PLAIN, "$ before a final newline");
    assert!(rx.is_match(b"a\n").unwrap() && rx.is_match(b"a").unwrap());
    assert!(!rx.is_match(b"a\n\n").unwrap());
    assert!(!rx.is_match(b"a\nb").unwrap());
    // And `.` stops at `\n` there.
    let dot = Rx::compile_with("a.b", RxOptions::PLAIN).unwrap();
    assert_eq!(dot.engine(), "regex");
    assert!(!dot.is_match(b"a\nb").unwrap() && dot.is_match(b"a\rb").unwrap());
}

#[test]
fn dollar_in_patterns_only_pcre_runs_is_rewritten() {
    let rx = on_pcre(r"(?=a)a$", RxOptions::OPERATOR, "lookahead");
    assert!(rx.as_str().ends_with(r"(?=a)a\z"), "{}", rx.as_str());
    assert!(rx.is_match(b"a").unwrap() && !rx.is_match(b"a\n").unwrap());
    let rx = on_pcre(r"(?=a)[$]\$(?m)a$", RxOptions::OPERATOR, "lookahead");
    assert!(
        rx.as_str().ends_with(r"(?=a)[$]\$(?m)a$"),
        "{}",
        rx.as_str()
    );
}

#[test]
fn dot_matches_every_byte() {
    same("a.c", &[b"a\nc", b"a\x00c", b"a\xffc", b"ac"]);
    same("(?-s)a.c|x", &[b"a\nc", b"a\rc", b"x"]);
    same("(?s-s:.)(?s:.)", &[b"\n\n", b"a\n", b"\na"]);
}

#[test]
fn caseless_folds_ascii_letters_only() {
    same("(?i)ab", &[b"AB", b"aB", b"ab"]);
    same(r"(?i)\xe9", &[b"\xc9", b"\xe9"]);
    assert!(!is_match(r"(?i)\xe9", b"\xc9"), "no folding above 0x7f");
    same(r"(?i)[a-c][^x]", &[b"Bx", b"BX", b"Cy", b"dy"]);
    same(r"(?i)\x41[\x61]", &[b"aA", b"Aa"]);
    same("a(?i)b|c", &[b"aB", b"C", b"Ab"]);
    same("(a(?i)b)c", &[b"aBc", b"aBC"]);
    same("(?i:a)b", &[b"Ab", b"AB"]);
}

#[test]
fn classes_are_ascii_and_c_locale() {
    for p in [
        r"\w", r"\W", r"\d", r"\D", r"\s", r"\S", r"\h", r"\H", r"\v", r"\V", r"\N", r"\b", r"\B",
    ] {
        same(p, BYTES);
    }
    assert!(is_match(r"\s", b"\x0b"), "\\s has VT (PCRE2, PCRE >= 8.34)");
    assert!(!is_match(r"\w", b"\xe9") && !is_match(r"\s", b"\xa0"));
    assert!(is_match(r"\h", b"\xa0") && is_match(r"\v", b"\x85") && !is_match(r"\v", b"v"));
}

#[test]
fn posix_classes() {
    for name in [
        "alpha", "digit", "alnum", "word", "space", "blank", "cntrl", "graph", "print", "punct",
        "xdigit", "ascii", "lower", "upper",
    ] {
        let all: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let subjects: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        same(&format!("[[:{name}:]]"), &subjects);
        same(&format!("[^[:^{name}:]x]"), &subjects);
        same(&format!("(?i)[[:{name}:]]"), &subjects);
    }
    assert!(
        is_match("(?i)[[:lower:]]", b"A"),
        "PCRE2: caseless lower is alpha"
    );
    // Not POSIX syntax: `[` is a literal.
    same("[[:a]", &[b"[", b":", b"a", b"]"]);
    same("[[.]", &[b"[", b".", b"x"]);
}

#[test]
fn class_syntax() {
    same(r"[]a]", &[b"]", b"a", b"b"]);
    same(r"[^]a]", &[b"]", b"a", b"b"]);
    same(r"[a-]x[-a]", &[b"-x-", b"ax-", b"bxa"]);
    same(r"[\--9A-Z_a-z]", &[b"-", b".", b"9", b":", b"_", b"^"]);
    same(r"[%--]", &[b"%", b"+", b"-", b"."]);
    same(r"[a-z-9]", &[b"-", b"9", b"m", b"8"]);
    same(r"[\d-]", &[b"-", b"1", b"a"]);
    same(r"[\b]", &[b"\x08", b"b"]);
    same(r"[\x00-\x1f\x7f-\xff]", BYTES);
    same(r"[\0\01\012\101]", &[b"\x00", b"\x01", b"\n", b"A", b"1"]);
    same(r"[\/\-\]\\\^]", &[b"/", b"-", b"]", b"\\", b"^", b"a"]);
    same(
        r"[\e\a\cA\o{101}]",
        &[b"\x1b", b"\x07", b"\x01", b"A", b"e"],
    );
    same(r"[^\x00-\xff]|x", &[b"a", b"x"]);
    same(r"[\w.]+", &[b"a.b-c"]);
}

#[test]
fn escapes() {
    same(
        r"\/\-\e\a\f\cA\c[\x41\x{42}\x4\o{103}",
        &[b"/-\x1b\x07\x0c\x01\x1bAB\x04C"],
    );
    same(r"\0\07\012\0123", &[b"\x00\x07\n\n3"]);
    same(r"\x{e2}\x80\x98", &[b"\xe2\x80\x98", b"\xe2\x80"]);
    same(r"\Q.*\E+x", &[b".*x", b".**x", b"ab"]);
    same(r"a\E\Q\Eb", &[b"ab"]);
    same(r"a\E+b\Q\E+", &[b"aabb", b"ab"]);
    same(r"\G\Aa", &[b"a", b"ba"]);
    same(r"\babc\B", &[b"abcd", b"abc", b" abcd"]);
    same("caf\u{e9}", &["caf\u{e9}".as_bytes(), b"caf\xc3"]);
    same("[\u{e9}]", &[b"\xc3", b"\xa9", b"e"]);
}

#[test]
fn quantifiers() {
    same(
        "a{2}b{1,}c{1,3}?d*?e+?",
        &[b"aabcccdde", b"aabcde", b"abcde"],
    );
    same("x{", &[b"x{"]);
    same("x{a}", &[b"x{a}"]);
    same("x{2}{", &[b"xx{"]);
    same(r"(a|ab)(c|bcd)(d*)", &[b"abcd", b"abcdd"]);
    same(r"(a+?)(a*)", &[b"aaa"]);
    same(r"(?:(a)|(b))+", &[b"ab", b"ba", b"abab"]);
    same(r"(a)|(b)", &[b"b"]);
}

#[test]
fn quantifier_spellings_that_differ_between_pcre2_versions_go_to_pcre() {
    // `{,3}` is literal before PCRE2 10.43 and a quantifier since; `{ 1}` likewise.
    on_pcre("a{,3}", RxOptions::OPERATOR, "{ that PCRE2 versions");
    on_pcre("a{ 1}", RxOptions::OPERATOR, "{ that PCRE2 versions");
}

#[test]
fn captures_number_like_pcre() {
    same(r"(?<y>\d{4})-(?'m'\d\d)-(?P<d>\d\d)", &[b"on 2024-01-31."]);
    same(r"((a)(b)?)(c)", &[b"ac", b"abc"]);
    let rx = Rx::compile(r"(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)").unwrap();
    let c = rx.captures(b"abcdefghijk").unwrap().unwrap();
    assert_eq!(c.len(), 10, "groups 0..=9 only");
    assert_eq!(c[9].as_deref(), Some(&b"i"[..]));
    assert_eq!(rx.groups(), 11);
    let c = Rx::compile("(a)|(b)")
        .unwrap()
        .captures(b"b")
        .unwrap()
        .unwrap();
    assert_eq!(c, vec![Some(b"b".to_vec()), None, Some(b"b".to_vec())]);
    assert_eq!(Rx::compile("a").unwrap().captures(b"b").unwrap(), None);
}

#[test]
fn extended_mode() {
    same("(?x) a b # c (d\n c", &[b"abc", b"a b c"]);
    same("(?x)[ ]a", &[b" a", b"a"]);
    same("(?x: a )b c", &[b"ab c", b"abc"]);
}

#[test]
fn comments_and_option_gaps() {
    same("a(?#x)b", &[b"ab"]);
    // PCRE2 skips a comment before a quantifier, but refuses one after an option setting.
    on_pcre("a(?#x)*", RxOptions::OPERATOR, "quantifier after");
    assert!(Rx::compile("a(?i)*").is_err());
}

#[test]
fn possessive_and_atomic_only_where_provably_plain() {
    // A set followed by a disjoint set: giving back can never help.
    let rx = Rx::compile(r"a*+b").unwrap();
    assert_eq!((rx.engine(), rx.as_str()), ("regex", "a*b"));
    same(r"\d++\.[^x]?+$|z", &[b"12.", b"1.2"]);
    same(r"(?>\w+)\s", &[b"ab c", b"ab"]);
    same(r"(?>abc)d|x", &[b"abcd", b"x"]);
    same(r"x(?>a|ab)", &[b"xab", b"xa"]);
    same(r"a{3}+b", &[b"aaab", b"aab"]);
    // Where it matters, PCRE2 runs it.
    let rx = on_pcre(r"a*+a", RxOptions::OPERATOR, "possessive");
    assert!(!rx.is_match(b"aaa").unwrap());
    let rx = on_pcre(r"(?>a|ab)c", RxOptions::OPERATOR, "atomic");
    assert!(!rx.is_match(b"abc").unwrap() && rx.is_match(b"ac").unwrap());
    on_pcre(r"\w++\b", RxOptions::OPERATOR, "possessive");
}

#[test]
fn backtracking_features_run_on_pcre2() {
    for (p, why) in [
        (r"(a)\1", "backreference"),
        (r"a(?=b)", "lookahead"),
        (r"(?<!a)b", "lookbehind"),
        (r"a\Kb", "\\K"),
        (r"a\Z", "\\Z"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"(a|(?R))", "backreference, recursion"),
        (r"(*SKIP)a", "verb"),
        (r"\p{L}", "Unicode property"),
        (r"\R", "\\R"),
        (r"(?m)^a", "^ under multiline"),
        (r"(?U)a+", "option n, U or J"),
        (r"\101", "backreference or octal"),
        (r"[\Qa-c\E]", "\\Q…\\E in a class"),
    ] {
        on_pcre(p, RxOptions::OPERATOR, why);
    }
    let rx = on_pcre(r"(a)\1", RxOptions::OPERATOR, "backreference");
    assert!(rx.is_match(b"xaa").unwrap() && !rx.is_match(b"ab").unwrap());
    assert!(
        Rx::compile(r"\101").unwrap().is_match(b"A").unwrap(),
        "octal 101"
    );
}

#[test]
fn pcre2_match_limit_is_an_error() {
    let p = r"^(?=x?)(a+)+$";
    let hay = [&[b'a'; 30][..], b"b"].concat();
    let rx = on_pcre(p, RxOptions::OPERATOR, "lookahead");
    assert_eq!(rx.is_match(&hay), Err(RxError::MatchLimit));
    assert_eq!(rx.captures(&hay), Err(RxError::MatchLimit));
    assert!(rx.is_match(b"aaaa").unwrap());
    let depth = Rx::compile_with(p, RxOptions::OPERATOR.with_limits(0, 5)).unwrap();
    assert_eq!(
        depth.is_match(&hay),
        Err(RxError::MatchLimit),
        "depth limit"
    );
    // The pattern's own lower limit still applies; a higher one does not lift ours.
    let short = b"aaaaaaab";
    assert_eq!(rx.is_match(short), Ok(false));
    let own = Rx::compile(&format!("(*LIMIT_MATCH=10){p}")).unwrap();
    assert_eq!(own.is_match(short), Err(RxError::MatchLimit));
    let high = Rx::compile(&format!("(*LIMIT_MATCH=99999999){p}")).unwrap();
    assert_eq!(high.is_match(&hay), Err(RxError::MatchLimit));
    assert!(high
        .as_str()
        .starts_with("(*LIMIT_MATCH=99999999)(*LIMIT_MATCH=1500)"));
    // The translated pattern has no limit: linear time, same answer.
    let linear = Rx::compile(r"^(a+)+$").unwrap();
    assert_eq!(
        (linear.engine(), linear.is_match(&hay)),
        ("regex", Ok(false))
    );
}

#[test]
fn variable_keys_are_caseless() {
    let rx = Rx::compile_with("^id_", RxOptions::VARIABLE_KEY).unwrap();
    assert_eq!(rx.engine(), "regex");
    assert!(rx.is_match(b"ID_x").unwrap() && !rx.is_match(b"xid_").unwrap());
    let rx = Rx::compile_with("(?-i)^id_$", RxOptions::VARIABLE_KEY).unwrap();
    assert!(!rx.is_match(b"ID_").unwrap() && !rx.is_match(b"id_\n").unwrap());
}

#[test]
fn errors_are_compile_errors() {
    for p in [
        "(",
        ")",
        "[a",
        "a**",
        r"\x{100}",
        "a{3,2}",
        "*",
        "(?<=a+)b",
        r"\c",
        "(?z)",
        r"\u0041",
        "[[:foo:]]",
        "[z-a]",
        r"\",
        "a{65536}",
    ] {
        let e = Rx::compile(p).map(|r| r.as_str().to_string());
        assert!(matches!(e, Err(RxError::Compile(_))), "{p:?}: {e:?}");
    }
}

#[test]
fn send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Rx>();
}
