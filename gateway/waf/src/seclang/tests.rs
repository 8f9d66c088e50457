#![allow(clippy::unwrap_used)]
use super::*;

fn parse(text: &str) -> Result<Vec<Directive>, ParseError> {
    parse_str(text, Path::new("t.conf"))
}

#[test]
fn a_crs_style_rule_with_continuations_quotes_and_macros() {
    let text = r#"
# comment
SecRule REQUEST_HEADERS:User-Agent|!REQUEST_HEADERS:Referer|&TX:x "@pmFromFile scanners-user-agents.data" \
    "id:913100,\
    phase:1,\
    block,\
    capture,\
    t:none,t:lowercase,\
    msg:'Found User-Agent, associated with a scanner',\
    logdata:'Matched Data: %{TX.0} found within %{MATCHED_VAR_NAME}: %{MATCHED_VAR}',\
    setvar:'tx.inbound_anomaly_score_pl1=+%{tx.critical_anomaly_score}'"
"#;
    let d = parse(text).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].line, 3);
    let DirectiveKind::Rule(r) = &d[0].kind else {
        panic!()
    };
    assert_eq!(r.id(), Some(913100));
    assert_eq!(r.line, 3);
    assert_eq!(r.variables.len(), 3);
    assert_eq!(r.variables[0].key, Some(Key::Name("User-Agent".into())));
    assert!(r.variables[1].exclude && r.variables[2].count);
    assert_eq!(r.operator.name, "pmFromFile");
    assert_eq!(r.operator.param, "scanners-user-agents.data");
    assert_eq!(
        r.action("msg"),
        Some("Found User-Agent, associated with a scanner")
    );
    assert_eq!(
        r.actions.iter().filter(|a| a.name == "t").count(),
        2,
        "{:?}",
        r.actions
    );
    assert!(r
        .action("setvar")
        .unwrap()
        .ends_with("%{tx.critical_anomaly_score}"));
}

#[test]
fn operators_regex_keys_escapes_and_chains() {
    let text = concat!(
        "SecRule ARGS:/^id_(a|b)$/|XML:/* \"!@rx ^\\d+\\\"x\" \"id:1,phase:2,chain,deny\"\n",
        "  SecRule REQUEST_METHOD \"@streq POST\" \"chain\"\n",
        "  SecRule ARGS \"foo|bar\" \"t:none\"\n",
        "SecMarker END-X\n",
        "SecRuleEngine DetectionOnly\n",
        "SecRuleUpdateTargetById 932240 \"!REQUEST_COOKIES:/^_ga(?:_\\w+)?$/\"\n",
    );
    let d = parse(text).unwrap();
    assert_eq!(d.len(), 4, "the chain is one directive");
    let DirectiveKind::Rule(r) = &d[0].kind else {
        panic!()
    };
    assert_eq!(r.variables[0].key, Some(Key::Regex("^id_(a|b)$".into())));
    assert_eq!(r.variables[1].key, Some(Key::Name("/*".into())));
    assert!(r.operator.negated);
    assert_eq!(
        r.operator.param, "^\\d+\"x",
        "\\\" is a quote, other escapes stay"
    );
    let second = r.chained.as_deref().unwrap();
    assert_eq!(second.operator.param, "POST");
    let third = second.chained.as_deref().unwrap();
    assert_eq!(
        (third.operator.name, third.operator.param.as_str()),
        ("rx", "foo|bar")
    );
    assert_eq!(third.line, 3);
    assert_eq!(d[1].kind, DirectiveKind::Marker("END-X".into()));
    assert!(
        matches!(&d[2].kind, DirectiveKind::Setting { name: "SecRuleEngine", args } if args == &["DetectionOnly"])
    );
    let DirectiveKind::UpdateTargetById { targets, .. } = &d[3].kind else {
        panic!()
    };
    assert_eq!(targets[0].key, Some(Key::Regex("^_ga(?:_\\w+)?$".into())));
}

#[test]
fn every_mistake_names_its_line() {
    let cases = [
        (
            "SecRule ARGS \"@rx a\" \"id:1\"\nSecFoo bar\n",
            2,
            "unknown directive \"SecFoo\"",
        ),
        (
            "\n\nSecRule ARGS \"@nope a\" \"id:1\"\n",
            3,
            "unknown operator @nope",
        ),
        (
            "SecRule ARGZ \"@rx a\" \"id:1\"\n",
            1,
            "unknown variable \"ARGZ\"",
        ),
        (
            "SecRule ARGS \"@rx a\" \"id:1,explode\"\n",
            1,
            "unknown action \"explode\"",
        ),
        (
            "SecRule ARGS \"@rx a\" \"id:1,t:upsideDown\"\n",
            1,
            "unknown transformation t:upsideDown",
        ),
        ("SecRule ARGS \"@rx a\n", 1, "not closed"),
        (
            "SecRule ARGS \"@rx a\" \"id:1,msg:'oops\"\n",
            1,
            "single quote is not closed",
        ),
        (
            "SecRule ARGS \"@rx a\" \"id:1,chain\"\n",
            1,
            "no rule follows",
        ),
        (
            "SecRule ARGS \"@rx a\" \"id:1,chain\"\nSecMarker X\n",
            2,
            "the chain needs a SecRule",
        ),
        (
            "SecRule ARGS:/x \"@rx a\" \"id:1\"\n",
            1,
            "not closed with /",
        ),
        ("SecMarker\n", 1, "takes 1 argument"),
        ("Include x.conf\n", 1, "Include is only allowed"),
    ];
    for (text, line, needle) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("t.conf:{line}: ")),
            "{e}"
        );
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn includes_follow_globs_in_name_order() {
    let dir = std::env::temp_dir().join(format!("sekisho-waf-inc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("main.conf"),
        "SecRuleEngine On\nInclude rules/*.conf\n",
    )
    .unwrap();
    std::fs::write(dir.join("rules/b.conf"), "SecMarker B\n").unwrap();
    std::fs::write(dir.join("rules/a.conf"), "SecMarker A\n").unwrap();
    std::fs::write(dir.join("rules/skip.data"), "not rules\n").unwrap();
    let d = parse_file(&dir.join("main.conf")).unwrap();
    let markers: Vec<_> = d
        .iter()
        .filter_map(|d| match &d.kind {
            DirectiveKind::Marker(m) => Some((m.clone(), d.file.file_name().unwrap().to_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(
        markers,
        [("A".into(), "a.conf".into()), ("B".into(), "b.conf".into())]
    );
    std::fs::write(dir.join("rules/a.conf"), "Include ../main.conf\n").unwrap();
    let e = parse_file(&dir.join("main.conf")).unwrap_err();
    assert!(e.message.contains("nested more than"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn globs() {
    assert!(glob_match(b"*.conf", b"REQUEST-901.conf"));
    assert!(!glob_match(b"*.conf", b"x.conf.example"));
    assert!(glob_match(b"R?Q*", b"REQ-1"));
    assert!(glob_match(b"*", b""));
    assert!(!glob_match(b"a", b""));
}
