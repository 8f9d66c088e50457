//! `sekisho scan`: the AV engine over files and folders, offline.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use sekisho_av::icap::{Asked, Icap, IcapMethod, Message};
use sekisho_av::{scan_bytes, AvConfig, Engine, FileVerdict, LimitAction, ScanReport};
use sekisho_content::{Hints, Issue, IssueKind};

fn files(paths: &[PathBuf], out: &mut Vec<PathBuf>, errors: &mut Vec<(PathBuf, String)>) {
    for p in paths {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut children: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                    children.sort();
                    files(&children, out, errors);
                }
                Err(e) => errors.push((p.clone(), e.to_string())),
            },
            Ok(m) if m.is_file() => out.push(p.clone()),
            Ok(_) => {}
            Err(e) => errors.push((p.clone(), e.to_string())),
        }
    }
}

fn read_bounded(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let f = std::fs::File::open(path)?;
    let mut data = Vec::new();
    f.take(max + 1).read_to_end(&mut data)?;
    let cut = data.len() as u64 > max;
    data.truncate(max as usize);
    Ok((data, cut))
}

/// Shows a file to every `[[av.icap]]` server: as a download to `respmod` servers, as an upload
/// to `reqmod` ones. Their detections join the report; a server that could not answer is an
/// error (it fails closed) or a warning (it fails open).
fn ask_icap(
    icap: &(Icap, tokio::runtime::Runtime),
    path: &Path,
    data: &[u8],
    report: &mut ScanReport,
) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let target = format!("/{}", name.as_deref().unwrap_or("file"));
    let mut answers: Vec<Asked> = Vec::new();
    for (method, verb) in [(IcapMethod::Respmod, "GET"), (IcapMethod::Reqmod, "PUT")] {
        if icap.0.none_for(method) {
            continue;
        }
        let m = Message {
            method: verb,
            host: "sekisho-scan",
            target: &target,
            content_type: Some("application/octet-stream"),
            file_name: name.as_deref(),
            ..Message::default()
        };
        answers.extend(icap.1.block_on(icap.0.ask(method, &m, data, Duration::MAX)));
    }
    for a in answers {
        if let Some(hit) = a.hit("file", name.as_deref(), data) {
            report.hits.push(hit);
        } else if let Err(e) = &a.result {
            let why = format!("ICAP server {}: {e}", a.server);
            if a.on_error == sekisho_core::OnError::FailClosed {
                report.error.get_or_insert(why);
            } else {
                eprintln!("sekisho: warning: {}: {why} (fails open)", path.display());
            }
        }
    }
}

/// A line on stdout. A reader that went away (`sekisho scan … | head`) ends the scan quietly
/// with exit status 2 (its report could not be delivered), never a panic.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(2);
        }
    }};
}

pub fn run(av: &AvConfig, json: bool, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let engine = Engine::load(&av.yara, &av.clamav, av.cache())?;
    let icap = if av.icap.is_empty() {
        None
    } else {
        let servers = Icap::new(&av.icap).map_err(anyhow::Error::msg)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Some((servers, rt))
    };
    for rej in &engine.report().rejected {
        eprintln!(
            "sekisho: warning: {}:{}: {} not loaded: {}",
            rej.file, rej.line, rej.name, rej.reason
        );
    }
    let mut list = Vec::new();
    let mut errors = Vec::new();
    files(paths, &mut list, &mut errors);
    let limits = av.limits();
    let timeout = Duration::from_secs(av.scan_timeout_secs);
    let (mut infected, mut scanned) = (0usize, 0usize);
    for (p, e) in &errors {
        eprintln!("{}: ERROR {e}", p.display());
    }
    for path in &list {
        let (data, cut) = match read_bounded(path, limits.max_total_bytes) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{}: ERROR {e}", path.display());
                errors.push((path.clone(), e.to_string()));
                continue;
            }
        };
        scanned += 1;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let hints = Hints {
            name: name.as_deref(),
            ..Hints::default()
        };
        let data = Bytes::from(data);
        let mut report = scan_bytes(&engine, &data, "file", &hints, &limits, timeout, false);
        if report.hits.is_empty() {
            if let Some(icap) = &icap {
                ask_icap(icap, path, &data, &mut report);
            }
        }
        if let Some(e) = &report.error {
            errors.push((path.clone(), e.clone()));
        }
        if cut {
            report.issues.push(Issue {
                kind: IssueKind::Limit,
                provenance: "file".into(),
                reason: format!(
                    "file larger than max_total_bytes ({}); only the start was scanned",
                    limits.max_total_bytes
                ),
            });
        }
        let verdict = report.verdict();
        let counts = match verdict {
            FileVerdict::Infected => true,
            // Limits, encryption and corruption count as found by `on_limit`; an engine or ICAP
            // error is an error (exit status 2), not a detection.
            FileVerdict::Unscannable => {
                av.on_limit == LimitAction::Block && !report.issues.is_empty()
            }
            FileVerdict::Clean => false,
        };
        if counts {
            infected += 1;
        }
        if json {
            let v = serde_json::json!({
                "path": path.display().to_string(),
                "verdict": match verdict { FileVerdict::Clean => "clean", FileVerdict::Infected => "infected", FileVerdict::Unscannable => "unscannable" },
                "detections": report.hits,
                "executables": report.executables,
                "issues": report.issues.iter().map(|i| serde_json::json!({
                    "kind": i.kind.as_str(), "name": sekisho_av::issue_name(i.kind), "provenance": i.provenance, "reason": i.reason,
                })).collect::<Vec<_>>(),
                "error": report.error,
            });
            out!("{v}");
        } else if report.hits.is_empty() && report.issues.is_empty() {
            match &report.error {
                Some(e) => out!("{}: ERROR {e}", path.display()),
                None => out!("{}: OK", path.display()),
            }
        } else {
            let mut seen = std::collections::BTreeSet::new();
            for h in &report.hits {
                if seen.insert((h.detection.rule.clone(), h.provenance.clone())) {
                    out!(
                        "{}: {} FOUND ({})",
                        path.display(),
                        h.detection.rule,
                        h.provenance
                    );
                }
            }
            // Issues count as found when [av] on_limit = "block" (ClamAV's --alert-exceeds-max,
            // --alert-encrypted, --alert-broken), otherwise they are reported as unscanned.
            let word = if av.on_limit == LimitAction::Block {
                "FOUND"
            } else {
                "UNSCANNED"
            };
            for i in &report.issues {
                out!(
                    "{}: {} {word} ({}: {})",
                    path.display(),
                    sekisho_av::issue_name(i.kind),
                    i.provenance,
                    i.reason
                );
            }
        }
    }
    if !json {
        out!("\n----------- SCAN SUMMARY -----------");
        out!(
            "Signatures: {} YARA rules, {} hash signatures",
            engine.report().yara_rules,
            engine.report().hash_signatures
        );
        out!("Scanned files: {scanned}");
        out!("Infected files: {infected}");
        out!("Errors: {}", errors.len());
    }
    Ok(if infected > 0 {
        ExitCode::from(1)
    } else if !errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
