//! `sekisho rules check`: compile the `[ips]` and `[waf]` rule files and report what loads.
//! `sekisho rules test-url`: judge URLs with the `[urlfilter]` lists and policies.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use sekisho_ips::{IpsConfig, RuleSet};

/// Prints per-file counts, one line per skipped rule (`sid N skipped: unsupported keyword K`)
/// and per broken rule (`file:line: sid N: syntax error: …`), and a total; only the per-rule
/// lines say "skipped" or "unsupported", so tools can collect SIDs from them. Exit status 1 when
/// any rule has a syntax error (or a classification/threshold line is broken), 0 otherwise.
pub fn check(ips: &IpsConfig, config_path: &Path) -> anyhow::Result<ExitCode> {
    let opts = ips
        .load_options(config_path.parent())
        .with_context(|| format!("{}: [ips]", config_path.display()))?;
    let set = RuleSet::load(&opts)?;
    let r = set.report();
    for f in &r.files {
        println!(
            "{}: {} loaded, {} not run, {} broken, {} disabled (commented out)",
            f.path, f.loaded, f.skipped, f.errors, f.disabled
        );
    }
    for s in &r.skipped {
        println!("{s}");
    }
    for e in &r.errors {
        println!("{e}");
    }
    for e in &r.config_errors {
        println!("{e}");
    }
    println!(
        "total: {} rules loaded, {} not run, {} broken; pcre: {} linear, {} PCRE2; compiled in {} ms",
        r.loaded,
        r.skipped.len(),
        r.errors.len(),
        r.linear_pcres,
        r.backtracking_pcres,
        r.compile_ms
    );
    Ok(
        if r.errors.is_empty() && r.config_errors.iter().all(|e| e.contains("not supported")) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// Judges each URL and prints what matched and the action (see `--help`).
pub fn test_url(
    cfg: &sekisho_urlfilter::UrlFilterConfig,
    config_path: &Path,
    client: std::net::IpAddr,
    listener: &str,
    policy: Option<&str>,
    urls: &[String],
) -> anyhow::Result<ExitCode> {
    use sekisho_urlfilter::{canonicalize, filter::canonical_host, UrlFilter};
    let f =
        UrlFilter::load(cfg).with_context(|| format!("{}: [urlfilter]", config_path.display()))?;
    let (errors, n) = f.db().errors();
    for e in errors {
        eprintln!("warning: {e} (line skipped)");
    }
    if n > errors.len() {
        eprintln!("warning: {} more malformed lines skipped", n - errors.len());
    }
    let p = match policy {
        Some(name) => f
            .policies()
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("no policy named {name:?}"))?,
        None => f.policy_for(listener, client),
    };
    let pol = &f.policies()[p];
    for (i, u) in urls.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let c = canonicalize(u);
        println!("canonical: {}", c.url());
        println!("policy: {} (default {})", pol.name, pol.default.as_str());
        let d = f.decide_url(p, &c);
        if d.matches.is_empty() {
            println!("match: none");
        }
        for m in &d.matches {
            let info = f.describe(m);
            println!(
                "match: {} {} {} {} ({}) -> {}",
                info.source,
                info.category,
                info.kind.as_str(),
                info.entry,
                info.list,
                pol.action_for(m.name)
                    .map(|a| a.as_str())
                    .unwrap_or("no action (default applies)")
            );
        }
        let host = canonical_host(&c.host);
        let hd = f.decide_host(p, &c.host);
        println!(
            "before decryption (CONNECT host / SNI {}): {}",
            host.host,
            hd.action.as_str()
        );
        if let Some(cat) = f.splice_match(&c.host) {
            println!("splice: yes ({cat}: tunnelled without decryption unless blocked)");
        }
        match &d.deciding {
            Some(m) => {
                let info = f.describe(m);
                println!(
                    "action: {} ({} {}, {} entry {})",
                    d.action.as_str(),
                    info.source,
                    info.category,
                    info.kind.as_str(),
                    info.entry
                );
            }
            None => println!(
                "action: {} (policy {} default)",
                d.action.as_str(),
                pol.name
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rules check` for `[waf]`: rules per file, every error (`file:line: message`), directives
/// with no effect here, and a total. Exit status 1 when any rule has an error.
pub fn check_waf(waf: &sekisho_waf::WafConfig, config_path: &Path) -> anyhow::Result<ExitCode> {
    let files = waf
        .files(config_path.parent())
        .map_err(|e| anyhow::anyhow!("{}: waf.rules: {e}", config_path.display()))?;
    let t = std::time::Instant::now();
    let (set, errors) = sekisho_waf::engine::Waf::load_lenient(&files);
    let per_file = set.rules_per_file();
    for f in &files {
        let name = f.display().to_string();
        let n = per_file.get(&name).copied().unwrap_or(0);
        let broken = errors
            .iter()
            .filter(|e| e.origin.starts_with(&format!("{name}:")))
            .count();
        println!("{name}: {n} rules loaded, {broken} broken");
    }
    for e in &errors {
        println!("{e}");
    }
    let s = set.summary();
    for d in &s.ignored {
        println!("{d}: accepted, no effect in this engine");
    }
    println!(
        "waf total: {} rules loaded (+{} chained), {} markers, {} removed by exclusions, {} broken; engine {:?}; {} rules run at load and {} decided there, {} operator parameters fixed there; compiled in {} ms",
        s.rules,
        s.chained,
        s.markers,
        s.removed,
        errors.len(),
        set.settings().mode,
        s.prelude,
        s.folded,
        s.constant_params,
        t.elapsed().as_millis()
    );
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
