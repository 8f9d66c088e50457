//! No input panics the rule parser, the matchers or the ClientHello parser.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sekisho_ips::detect::{inspect, Data, Scratch};
use sekisho_ips::matchers::PcreLimits;
use sekisho_ips::rule::parse_rule;
use sekisho_ips::vars::default_vars;

const TOKENS: &[&str] = &[
    "alert",
    "drop",
    "http",
    "tls",
    "any",
    "$HOME_NET",
    "[1.2.3.4,!5.6.7.8]",
    "80:",
    "->",
    "<>",
    "(",
    ")",
    ";",
    ":",
    "\"",
    "|",
    "\\",
    "!",
    ",",
    "msg:\"x\";",
    "sid:1;",
    "content:\"a|41|\";",
    "content:!\"b\";",
    "nocase;",
    "depth:3;",
    "offset:1;",
    "distance:-2;",
    "within:5;",
    "http.uri;",
    "file.data;",
    "dotprefix;",
    "pcre:\"/a(b)\\1/R\";",
    "pcre:\"/x$/\";",
    "isdataat:!2,relative;",
    "bsize:<5;",
    "urilen:1<>9;",
    "byte_test:2,>,1,0,relative;",
    "byte_jump:1,0,relative,align;",
    "flowbits:set,a;",
    "flowbits:isset,a|b;",
    "threshold:type limit, track by_src, count 1, seconds 1;",
    "fast_pattern;",
    "endswith;",
    "startswith;",
    "tls.sni;",
    "http.header_names;",
    "flow:to_client;",
    "0",
    "65536",
    " ",
];

fn rule_like() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|v| v.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(line in rule_like(), raw in ".{0,200}") {
        let vars = default_vars();
        let limits = PcreLimits::default();
        let _ = parse_rule(&line, &vars, &limits, "t.rules", 1);
        let _ = parse_rule(&raw, &vars, &limits, "t.rules", 1);
        let _ = parse_rule(&format!("alert http any any -> any any ({raw})"), &vars, &limits, "t.rules", 1);
    }

    #[test]
    fn parsed_rules_never_panic_on_any_buffer(line in rule_like(), data in prop::collection::vec(any::<u8>(), 0..300)) {
        let vars = default_vars();
        if let Ok(rule) = parse_rule(&line, &vars, &PcreLimits::default(), "t.rules", 1) {
            let mut s = Scratch::default();
            for g in &rule.groups {
                let _ = inspect(&g.items, &Data::new(&data), &mut s);
            }
        }
    }

    #[test]
    fn client_hello_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = sekisho_ips::ja3::ja3_string(&data);
        let mut d = data.clone();
        if !d.is_empty() { d[0] = 0x16; }
        let _ = sekisho_ips::ja3::ja3_string(&d);
    }
}
