//! URL filter cost: decisions per second per core including canonicalization, with every UT1
//! category loaded and with a synthetic list of 5,000,000 domains; the load time and resident
//! memory of both (printed). Reads UT1 from ../shared/corpora (or SEKISHO_CORPORA); skipped,
//! saying so, without it. SEKISHO_BENCH_DOMAINS changes the synthetic list size.

#![allow(missing_docs)]

mod common;
use common::{corpus, rss_kib};

use std::io::Write;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sekisho_urlfilter::{canonicalize, UrlFilter, UrlFilterConfig};

fn load(toml_text: &str, what: &str) -> UrlFilter {
    let cfg: UrlFilterConfig = toml::from_str(toml_text).expect("config");
    let before = rss_kib();
    let t = Instant::now();
    let f = UrlFilter::load(&cfg).expect("load");
    let took = t.elapsed();
    let after = rss_kib();
    let db = f.db();
    eprintln!(
        "{what}: {} names, {} domains, {} URLs, {} IPs, {} expressions; load {:.2} s; resident +{} MiB",
        db.names().len(),
        db.domain_count(),
        db.url_count(),
        db.ip_count(),
        db.expression_count(),
        took.as_secs_f64(),
        after.saturating_sub(before) / 1024
    );
    f
}

/// A request mix: browser-like URLs of listed and unlisted hosts, subdomains, paths and queries.
fn urls(listed: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    for (i, d) in listed.iter().enumerate().take(500) {
        v.push(match i % 4 {
            0 => format!("https://{d}/"),
            1 => format!("https://www.{d}/index.html?id={i}"),
            2 => format!("http://cdn{i}.{d}/static/js/app.{i}.js"),
            _ => format!("https://{d}/a/b/../c/%7Euser/page?x=1&y=2"),
        });
    }
    for i in 0..500 {
        v.push(match i % 3 {
            0 => format!("https://portal{i}.hospital-{i}.example.jp/records/view?patient={i}"),
            1 => format!("https://api.service{i}.example.org/v1/claims/{i}"),
            _ => format!("http://static{i}.cdn-example.net/img/logo{i}.png"),
        });
    }
    v
}

/// Judges every URL of the mix; returns how many were blocked (so nothing is optimised away).
fn judge_all(f: &UrlFilter, mix: &[String]) -> usize {
    mix.iter()
        .filter(|u| f.decide_url(0, &canonicalize(u)).action == sekisho_urlfilter::Action::Block)
        .count()
}

fn bench(c: &mut Criterion) {
    let Some(ut1) = corpus("ut1/blacklists") else {
        return;
    };
    let f = load(
        &format!(
            "category_dirs = [{:?}]\n[[policy]]\nname = \"p\"\ndefault = \"block\"\nallow = [\"liste_blanche\"]\nwarn = [\"shopping\"]\nblock = [\"malware\", \"phishing\", \"adult\"]\n",
            ut1.display().to_string()
        ),
        "UT1",
    );
    let listed: Vec<String> = std::fs::read_to_string(ut1.join("gambling/domains"))
        .unwrap_or_default()
        .lines()
        .step_by(50)
        .map(str::to_string)
        .collect();
    let mix = urls(&listed);
    let mut g = c.benchmark_group("urlfilter");
    g.throughput(Throughput::Elements(mix.len() as u64));
    g.bench_function("decide_url_ut1_1000", |b| b.iter(|| judge_all(&f, &mix)));
    g.bench_function("canonicalize_only_1000", |b| {
        b.iter(|| {
            mix.iter()
                .map(|u| canonicalize(u).host.len())
                .sum::<usize>()
        })
    });
    drop(f);

    // Synthetic 5 M domains.
    let n: usize = std::env::var("SEKISHO_BENCH_DOMAINS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    let dir = std::env::temp_dir().join(format!("sekisho-bench-url-{}", std::process::id()));
    let cat = dir.join("synthetic");
    std::fs::create_dir_all(&cat).expect("tmp");
    let tlds = ["com", "net", "org", "jp", "de", "fr", "info", "co.uk"];
    let mut listed = Vec::new();
    {
        let mut w =
            std::io::BufWriter::new(std::fs::File::create(cat.join("domains")).expect("file"));
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = format!("{:x}-site{}.{}", x & 0xff_ffff, i, tlds[i % tlds.len()]);
            if i % (n / 500).max(1) == 0 {
                listed.push(d.clone());
            }
            writeln!(w, "{d}").expect("write");
        }
    }
    let f = load(
        &format!(
            "category_dirs = [{:?}]\n[[policy]]\nname = \"p\"\nblock = [\"synthetic\"]\n",
            dir.display().to_string()
        ),
        &format!("synthetic {n} domains"),
    );
    let mix = urls(&listed);
    g.bench_function("decide_url_5m_domains_1000", |b| {
        b.iter(|| judge_all(&f, &mix))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
