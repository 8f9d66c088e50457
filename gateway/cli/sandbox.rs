//! `sekisho sandbox run`: one detonation, its report printed for an analyst.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use sekisho_sandbox::{Limits, Report, Rules, Sandbox, Tools, Verdict};

/// Where the bundled behaviour rules are, from the current folder.
const DEFAULT_RULES: &str = "rules/sandbox";

/// Loads the behaviour rules (each error with file and line).
pub fn load_rules(paths: &[PathBuf]) -> anyhow::Result<Rules> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(DEFAULT_RULES)]
    } else {
        paths.to_vec()
    };
    Rules::load(&paths).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("behaviour rules:\n{}", lines.join("\n"))
    })
}

/// Detonates `file` and prints the report.
pub fn run(
    rules: &[PathBuf],
    timeout: u64,
    work_dir: Option<PathBuf>,
    keep: bool,
    file: &Path,
) -> anyhow::Result<ExitCode> {
    if timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    let rules = load_rules(rules)?;
    let sample = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
    let sandbox = Sandbox {
        tools: Tools::default(),
        limits: Limits {
            timeout: Duration::from_secs(timeout),
            cpu_secs: timeout,
            ..Limits::default()
        },
        work_dir: work_dir.unwrap_or_else(|| std::env::temp_dir().join("sekisho-sandbox")),
        keep,
        hidden: Vec::new(),
    };
    let report: Report = sandbox
        .analyze(&sample, &rules)
        .with_context(|| format!("{}", file.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(match report.verdict {
        Verdict::Malicious | Verdict::Suspicious => ExitCode::from(1),
        Verdict::Clean | Verdict::NotDetonated => ExitCode::SUCCESS,
    })
}

/// `rules check` for the behaviour rules beside a config (`rules/sandbox`, when present):
/// prints `FILE: N signatures` per file, or each error with file and line.
pub fn check(config_path: &Path) -> Option<ExitCode> {
    let dir = config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(DEFAULT_RULES);
    if !dir.is_dir() {
        return None;
    }
    Some(match Rules::load(&[dir]) {
        Ok(r) => {
            for (f, n) in &r.files {
                println!("{}: {n} behaviour signatures", f.display());
            }
            println!(
                "sandbox: {} behaviour signatures, version {}",
                r.signatures.len(),
                r.version
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                println!("{e}");
            }
            ExitCode::from(1)
        }
    })
}

/// `sandbox serve`: the worker's API until SIGINT or SIGTERM; prints `listening ADDR`.
pub fn serve(config: &Path) -> anyhow::Result<ExitCode> {
    let c = sekisho_sandbox::serve::WorkerConfig::load(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sandbox")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("signals")?;
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        // SIGHUP reads the behaviour rules again.
        let (reload, reloads) = tokio::sync::mpsc::channel(1);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("signals")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = reload.try_send(());
            }
        });
        let ready = |addr| {
            use std::io::Write;
            println!("listening {addr}");
            let _ = std::io::stdout().flush();
        };
        sekisho_sandbox::serve::serve(c, ready, stop, reloads)
            .await
            .with_context(|| config.display().to_string())
    })?;
    Ok(ExitCode::SUCCESS)
}
