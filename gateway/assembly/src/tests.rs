//! The engine contract from the assembly's side: a new engine plugs in with one line, tables
//! and stages are checked with errors naming file, key and line.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use sekisho_core::{
    BuildCx, Built, ConfigError, Cx, FlowMeta, Inspector, LoadReport, RequestHead, Stage,
    StagePolicy, Verdict,
};
use serde::Deserialize;

use crate::{Assembly, Plug};

/// `[echo]`: blocks requests whose path contains `word`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoConfig {
    word: String,
    #[serde(flatten)]
    stage: StagePolicy,
}

struct EchoEngine;

impl sekisho_core::Engine for EchoEngine {
    type Config = EchoConfig;
    fn table(&self) -> &'static str {
        "echo"
    }
    fn stage(&self) -> &'static str {
        "echo"
    }
    fn prepare(&self, cfg: &mut EchoConfig, _cx: &BuildCx<'_>) -> Result<(), ConfigError> {
        if cfg.word.is_empty() {
            return Err(ConfigError::new("echo.word", "must not be empty"));
        }
        Ok(())
    }
    fn policy(&self, cfg: &EchoConfig, _cx: &BuildCx<'_>) -> StagePolicy {
        cfg.stage
    }
    fn build(&self, cfg: &EchoConfig, _cx: &BuildCx<'_>) -> Result<Built, ConfigError> {
        Ok(Built {
            stage: Arc::new(Echo(cfg.word.clone())),
            report: LoadReport {
                summary: format!("echo: word {:?}", cfg.word),
                loaded: 1,
                ..LoadReport::default()
            },
        })
    }
}

struct Echo(String);

impl Stage for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(EchoInspector(self.0.clone()))
    }
}

struct EchoInspector(String);

impl Inspector for EchoInspector {
    fn on_request_head(&mut self, _cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        if head.uri.path().contains(&self.0) {
            Verdict::Block
        } else {
            Verdict::Allow
        }
    }
}

const LISTENER: &str = "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n";

fn with_echo() -> Assembly {
    let mut plugs = crate::engines().unwrap();
    plugs.push(Box::new(Arc::new(EchoEngine)) as Box<dyn Plug>);
    Assembly::with(plugs)
}

fn err(a: &Assembly, text: &str) -> String {
    match a.parse(text, Path::new("t.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn decide(p: &sekisho_core::Pipeline, url: &str) -> Verdict {
    let meta = FlowMeta::new(
        1,
        "forward",
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    let mut f = p.start(Arc::new(meta));
    let head = RequestHead::new(
        http::Method::GET,
        url.parse().unwrap(),
        http::Version::HTTP_11,
        http::HeaderMap::new(),
        80,
    );
    f.request_head(&head)
}

#[test]
fn a_new_engine_plugs_in_with_one_line() {
    let a = with_echo();
    let text =
        format!("{LISTENER}[echo]\nword = \"secret\"\n[policy]\ndeny_hosts = [\"bad.test\"]\n");
    let cfg = a.parse(&text, Path::new("t.toml")).unwrap();
    let p = &a.pipelines(&cfg).unwrap()[0];
    assert_eq!(
        p.stage_names(),
        ["host_policy", "echo"],
        "every configured engine, in list order"
    );
    assert_eq!(decide(p, "http://ok.test/secret/x"), Verdict::Block);
    assert_eq!(decide(p, "http://ok.test/public"), Verdict::Allow);
    assert_eq!(decide(p, "http://bad.test/public"), Verdict::Block);
    let notes = a.check(&cfg).unwrap();
    assert!(
        notes.iter().any(|n| n == "echo: word \"secret\""),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("stages host_policy, echo;")),
        "{notes:?}"
    );
    // Without the engine in the list its table is an unknown key, with its line.
    let e = err(&Assembly::new().unwrap(), &text);
    assert!(e.starts_with("t.toml: unknown key `echo`"), "{e}");
    assert!(e.contains("(line 4)"), "{e}");
}

#[test]
fn a_listener_picks_and_orders_its_stages() {
    let a = with_echo();
    let text = format!(
        "{LISTENER}stages = [\"echo\"]\n[[listener]]\nname = \"b\"\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\nstages = [\"echo\", \"host_policy\"]\n[echo]\nword = \"w\"\nmode = \"detect\"\n"
    );
    let cfg = a.parse(&text, Path::new("t.toml")).unwrap();
    let ps = a.pipelines(&cfg).unwrap();
    assert_eq!(ps[0].stage_names(), ["echo"]);
    assert_eq!(ps[1].stage_names(), ["echo", "host_policy"]);
    assert_eq!(
        decide(&ps[0], "http://h.test/w"),
        Verdict::Alert,
        "the engine's own policy table applies (detect)"
    );
}

#[test]
fn config_errors_name_file_key_and_line() {
    let a = with_echo();
    let e = err(&a, &format!("{LISTENER}stages = [\"nope\"]\n"));
    assert!(
        e.contains("listener[0].stages: unknown stage \"nope\""),
        "{e}"
    );
    assert!(e.contains("echo"), "the known stages are listed: {e}");
    let e = err(&a, &format!("{LISTENER}stages = [\"echo\"]\n"));
    assert!(
        e.contains("names \"echo\" but there is no [echo] table"),
        "{e}"
    );
    let e = err(&a, &format!("{LISTENER}stages = [\"ips\"]\n"));
    assert!(
        e.contains("names \"ips\" but there is no [ips] table"),
        "{e}"
    );
    let e = err(&a, &format!("{LISTENER}[echo]\nword = \"\"\n"));
    assert_eq!(e, "t.toml: echo.word: must not be empty");
    let e = err(&a, &format!("{LISTENER}\n[echo]\nword = \"w\"\nwrod = 1\n"));
    // TOML reports an unknown key in a table with flattened parts at the table's line: the
    // error names the key's own line instead.
    assert!(
        e.starts_with("t.toml: line 7: unknown key `wrod` in [echo]"),
        "{e}"
    );
    let e = err(
        &a,
        &format!("{LISTENER}[policy]\nresolve_timeout_secs = 0\n"),
    );
    assert!(
        e.contains("policy.resolve_timeout_secs: must be at least 1"),
        "{e}"
    );
    let e = err(
        &a,
        &format!("{LISTENER}[policy]\ndeny_hosts = [\"a..b\"]\n"),
    );
    assert!(e.contains("policy.deny_hosts"), "{e}");
}
