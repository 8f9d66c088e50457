//! Names from ModSecurity v2's tests/regression/rule/15-json.t (issue #1576) and the
//! behaviour of apache2/msc_json.c with yajl 2.

use super::*;
use crate::body::ArgOrigin;

fn run(body: &str) -> (Vec<(String, String)>, Option<String>) {
    run_with(body.as_bytes(), &Limits::default())
}

fn run_with(body: &[u8], limits: &Limits) -> (Vec<(String, String)>, Option<String>) {
    let mut args = ArgList::new(limits.max_args);
    let err = json(body, limits, &mut args);
    assert!(args.args().iter().all(|a| a.origin == ArgOrigin::Json));
    let pairs = args
        .args()
        .iter()
        .map(|a| {
            (
                String::from_utf8_lossy(&a.name).into(),
                String::from_utf8_lossy(&a.value).into(),
            )
        })
        .collect();
    (pairs, err)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn flat_object() {
    assert_eq!(
        run(r#"{"foo":"bar","mod":"sec"}"#),
        (pairs(&[("foo", "bar"), ("mod", "sec")]), None)
    );
}

#[test]
fn issue_1576_nested_arrays_repeat_their_key() {
    let body = r#"{
        "foo":"bar",
        "mod":"sec",
        "ops":[["um","um e meio"],"dois","tres",{"eins":["zwei","drei"]}],
        "whee":"lhebs"
    }"#;
    let expected = pairs(&[
        ("foo", "bar"),
        ("mod", "sec"),
        ("ops.ops.ops", "um"),
        ("ops.ops.ops", "um e meio"),
        ("ops.ops", "dois"),
        ("ops.ops", "tres"),
        ("ops.ops.eins.eins", "zwei"),
        ("ops.ops.eins.eins", "drei"),
        ("whee", "lhebs"),
    ]);
    assert_eq!(run(body), (expected, None));
}

#[test]
fn top_level_arrays_are_called_array() {
    assert_eq!(
        run(r#"["um","um e meio"]"#).0,
        pairs(&[("array.array", "um"), ("array.array", "um e meio")])
    );
    assert_eq!(
        run(r#"["um","um e meio",{"tres":"quatro","cinco":"seis"}]"#).0,
        pairs(&[
            ("array.array", "um"),
            ("array.array", "um e meio"),
            ("array.array.tres", "quatro"),
            ("array.array.cinco", "seis")
        ])
    );
    assert_eq!(run("[[1]]").0, pairs(&[("array.array.array", "1")]));
}

#[test]
fn nested_objects_and_key_restoration() {
    assert_eq!(
        run(r#"{"a":{"b":{"c":1},"d":2},"e":3}"#).0,
        pairs(&[("a.b.c", "1"), ("a.d", "2"), ("e", "3")])
    );
    // After an array closes the key stays the array's.
    assert_eq!(
        run(r#"{"a":[1],"b":2}"#).0,
        pairs(&[("a.a", "1"), ("b", "2")])
    );
}

#[test]
fn keys_with_dots_are_cut_at_their_dots() {
    // v2 cuts its prefix at the last '.', wherever it came from.
    assert_eq!(
        run(r#"{"a.b":{"c":1},"d":2}"#).0,
        pairs(&[("a.b.c", "1"), ("a.d", "2")])
    );
}

#[test]
fn scalars_and_literals() {
    assert_eq!(run("25"), (pairs(&[("", "25")]), None));
    assert_eq!(run(r#""x""#).0, pairs(&[("", "x")]));
    assert_eq!(
        run(r#"{"t":true,"f":false,"n":null,"x":-1.5e+3,"e":""}"#).0,
        pairs(&[
            ("t", "true"),
            ("f", "false"),
            ("n", ""),
            ("x", "-1.5e+3"),
            ("e", "")
        ])
    );
    assert_eq!(run(r#"{"":1}"#).0, pairs(&[("", "1")]));
    assert_eq!(run(r#"{"a":{"":1}}"#).0, pairs(&[("a.", "1")]));
    assert_eq!(run("{}"), (vec![], None));
    assert_eq!(run("[]"), (vec![], None));
}

#[test]
fn string_escapes_as_yajl_decodes_them() {
    let (got, err) = run(r#"{"k":"a\"b\\c\/d\n\u0041\u00e9\u20ac\ud83d\ude00"}"#);
    assert_eq!(err, None);
    assert_eq!(got[0].1, "a\"b\\c/d\nAé€😀");
    // An unpaired high surrogate becomes '?' and swallows the next character.
    let mut args = ArgList::new(10);
    assert_eq!(
        json(br#"{"k":"\ud800xyz"}"#, &Limits::default(), &mut args),
        None
    );
    assert_eq!(args.args()[0].value, b"?yz");
    // \u0000 is a NUL byte.
    let mut args = ArgList::new(10);
    json(br#"{"k":"a\u0000b"}"#, &Limits::default(), &mut args);
    assert_eq!(args.args()[0].value, b"a\0b");
}

#[test]
fn depth_limit_as_in_15_json_t() {
    let body = br#"{"key1":{"key2":{"key3":{"key4":{"key5":"thevalue"}}}}}"#;
    let five = Limits {
        json_max_depth: 5,
        ..Limits::default()
    };
    assert_eq!(
        run_with(body, &five),
        (pairs(&[("key1.key2.key3.key4.key5", "thevalue")]), None)
    );
    let three = Limits {
        json_max_depth: 3,
        ..Limits::default()
    };
    assert_eq!(
        run_with(body, &three),
        (
            vec![],
            Some("JSON parsing error: JSON depth limit exceeded".into())
        )
    );
}

#[test]
fn ten_thousand_levels_deep() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let (got, err) = run_with(deep(10_000).as_bytes(), &Limits::default());
    assert_eq!(err, None);
    assert_eq!(got.len(), 1);
    // "array" then ".array" for each level, and the key.
    assert_eq!(got[0].0.len(), 5 + 10_000 * 6);
    let (got, err) = run_with(deep(10_001).as_bytes(), &Limits::default());
    assert_eq!(
        err.as_deref(),
        Some("JSON parsing error: JSON depth limit exceeded")
    );
    assert!(got.is_empty());
    // A million levels: refused early, no recursion anywhere.
    let (_, err) = run_with(deep(1_000_000).as_bytes(), &Limits::default());
    assert_eq!(
        err.as_deref(),
        Some("JSON parsing error: JSON depth limit exceeded")
    );
    let objects = format!("{}1{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    let (_, err) = run_with(objects.as_bytes(), &Limits::default());
    assert_eq!(
        err.as_deref(),
        Some("JSON parsing error: JSON depth limit exceeded")
    );
}

#[test]
fn syntax_errors_keep_earlier_arguments() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (r#"{"a":"x", bad}"#, &[("a", "x")], "JSON parsing error: lexical error: invalid char in json text.\n"),
        (r#"{"a":1,}"#, &[("a", "1")], "JSON parsing error: parse error: invalid object key (must be a string)\n"),
        (r#"{"a" 1}"#, &[], "JSON parsing error: parse error: object key and value must be separated by a colon (':')\n"),
        (r#"{"a":1 "b":2}"#, &[("a", "1")], "JSON parsing error: parse error: after key and value, inside map, I expect ',' or '}'\n"),
        ("[1 2]", &[("array.array", "1")], "JSON parsing error: parse error: after array element, I expect ',' or ']'\n"),
        ("[1,]", &[("array.array", "1")], "JSON parsing error: parse error: unallowed token at this point in JSON text\n"),
        ("{} x", &[], "JSON parsing error: parse error: trailing garbage\n"),
        ("01", &[("", "0")], "JSON parsing error: parse error: trailing garbage\n"),
        (r#"{"a":tru}"#, &[], "JSON parsing error: lexical error: invalid string in json text.\n"),
        (r#"{"a":-}"#, &[], "JSON parsing error: lexical error: malformed number, a digit is required after the minus sign.\n"),
        (r#"{"a":1.}"#, &[], "JSON parsing error: lexical error: malformed number, a digit is required after the decimal point.\n"),
        (r#"{"a":1e}"#, &[], "JSON parsing error: lexical error: malformed number, a digit is required after the exponent.\n"),
        ("{\"a\":\"\x01\"}", &[], "JSON parsing error: lexical error: invalid character inside string.\n"),
        (r#"{"a":"\q"}"#, &[], "JSON parsing error: lexical error: inside a string, '\\' occurs before a character which it may not.\n"),
        (r#"{"a":"\u12G4"}"#, &[], "JSON parsing error: lexical error: invalid (non-hex) character occurs after '\\u' inside string.\n"),
        ("/* c */ {}", &[], "JSON parsing error: lexical error: probable comment found in input text, comments are not enabled.\n"),
        (r#"{"a":"x","b":"#, &[("a", "x")], "JSON parser error: parse error: premature EOF\n"),
        (r#"{"a":"x"#, &[], "JSON parser error: parse error: premature EOF\n"),
        ("  ", &[], "JSON parser error: parse error: premature EOF\n"),
        ("[-", &[], "JSON parser error: lexical error: malformed number, a digit is required after the minus sign.\n"),
        ("[nul", &[], "JSON parser error: lexical error: invalid string in json text.\n"),
    ];
    for (body, args, err) in cases {
        assert_eq!(run(body), (pairs(args), Some(err.to_string())), "{body}");
    }
    assert_eq!(run(""), (vec![], None));
}

#[test]
fn utf8_is_checked_for_shape_only() {
    let mut args = ArgList::new(10);
    // Overlong and surrogate encodings have the right shape: yajl lets them through.
    assert_eq!(
        json(
            b"{\"a\":\"\xc0\x80\xed\xa0\x80\"}",
            &Limits::default(),
            &mut args
        ),
        None
    );
    assert_eq!(args.args()[0].value, b"\xc0\x80\xed\xa0\x80");
    let mut args = ArgList::new(10);
    assert_eq!(
        json(b"{\"a\":\"\xff\"}", &Limits::default(), &mut args).as_deref(),
        Some("JSON parsing error: lexical error: invalid bytes in UTF8 string.\n")
    );
    assert_eq!(
        json(b"{\"a\":\"\xc3x\"}", &Limits::default(), &mut args).as_deref(),
        Some("JSON parsing error: lexical error: invalid bytes in UTF8 string.\n")
    );
}

#[test]
fn argument_limit_stops_the_parse() {
    let body: String = format!("[{}]", vec!["1"; 10_000].join(","));
    let (got, err) = run_with(body.as_bytes(), &Limits::default());
    assert_eq!(got.len(), 1000);
    assert_eq!(
        err.as_deref(),
        Some("JSON parsing error: More than 1000 JSON keys")
    );
    // The limit counts the query string's arguments too.
    let mut args = ArgList::new(2);
    args.push(b"q".to_vec(), b"1".to_vec(), ArgOrigin::QueryString);
    let err = json(
        br#"{"a":1,"b":2}"#,
        &Limits {
            max_args: 2,
            ..Limits::default()
        },
        &mut args,
    );
    assert_eq!(
        err.as_deref(),
        Some("JSON parsing error: More than 2 JSON keys")
    );
    assert_eq!(args.len(), 2);
}

#[test]
fn name_budget_bounds_deep_long_keys() {
    let key = "k".repeat(1000);
    let body = format!(
        "{}{}",
        format!("{{\"{key}\":").repeat(500),
        format!("[{}]", vec!["1"; 900].join(",")) + &"}".repeat(500)
    );
    let (got, err) = run_with(body.as_bytes(), &Limits::default());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("JSON argument names longer than")),
        "{err:?}"
    );
    assert!(got.len() < 900);
}

#[test]
fn one_mebibyte_string() {
    let body = format!("{{\"a\":\"{}\"}}", "x".repeat(1 << 20));
    let (got, err) = run(&body);
    assert_eq!(err, None);
    assert_eq!(got[0].1.len(), 1 << 20);
}
