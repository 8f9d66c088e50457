//! Scanning a body or a file: extraction, then every engine on every piece.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sekisho_content::formats::{exe, filetype};
use sekisho_content::{walk, Control, Hints, Issue, IssueKind, Limits, Piece};
use serde::Serialize;

use crate::{AvError, Detection, Engine};

/// A detection in one piece.
#[derive(Clone, Debug, Serialize)]
pub struct ScanHit {
    /// What matched.
    #[serde(flatten)]
    pub detection: Detection,
    /// Where: `response.body > gzip > zip:a.exe`.
    pub provenance: String,
    /// File name, when known.
    pub name: Option<String>,
    /// Size of the piece.
    pub size: u64,
    /// SHA-256 of the piece, hex.
    pub sha256: String,
    /// MIME type by magic.
    pub mime: String,
}

/// An executable met in the walk (reported whether or not a signature matched).
#[derive(Clone, Debug, Serialize)]
pub struct ExecutableSeen {
    /// Where: `file > 7z:setup.exe`.
    pub provenance: String,
    /// `PE`, `ELF` or `MACH-O`.
    pub format: &'static str,
    /// The machine (`x86_64`, `i386`, `aarch64`, …).
    pub arch: String,
    /// A DLL, shared object or dylib.
    pub library: bool,
    /// The packer whose marks it carries (`UPX`, `ASPack`, …).
    pub packer: Option<&'static str>,
}

/// Executables reported per scan at most (the rest are still scanned).
const MAX_EXECUTABLES: usize = 1000;
/// Bytes of programs kept for the sandbox per scan, all together.
const PROGRAM_BYTES: usize = 64 << 20;

/// A program or script met inside a container (an archive member, a decoded body, a mail
/// attachment), kept for the sandbox.
#[derive(Clone, Debug)]
pub struct Program {
    /// Where: `response.body > zip:tools/setup.sh`.
    pub provenance: String,
    /// Its name, when the container gave one.
    pub name: Option<String>,
    /// How the sandbox runs it (`elf`, `sh`, `bash`, `python`, `perl`).
    pub kind: &'static str,
    /// Its size.
    pub size: u64,
    /// Its bytes; `None` when keeping them would pass the scan's bound (64 MiB in all), or
    /// the piece was cut short at a limit: it cannot be judged.
    pub data: Option<Bytes>,
}

/// A whole scan's outcome.
#[derive(Clone, Debug, Default)]
pub struct ScanReport {
    /// Detections.
    pub hits: Vec<ScanHit>,
    /// Executables found (at most 1,000).
    pub executables: Vec<ExecutableSeen>,
    /// Limits, encrypted members, corrupt containers, timeouts.
    pub issues: Vec<Issue>,
    /// Pieces scanned.
    pub pieces: u32,
    /// Programs and scripts met inside containers (when asked for: see
    /// [`scan_bytes_keeping`]), in walk order, each content once.
    pub programs: Vec<Program>,
    /// Programs met past twice the number kept, not even listed.
    pub programs_unlisted: u32,
    /// An engine failure (not a timeout), if any.
    pub error: Option<String>,
}

/// A file's verdict for `sekisho scan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileVerdict {
    /// Nothing found, nothing in the way.
    Clean,
    /// A signature matched.
    Infected,
    /// Not fully inspectable (limit, encrypted, corrupt).
    Unscannable,
}

impl ScanReport {
    /// The verdict: infected beats unscannable beats clean.
    pub fn verdict(&self) -> FileVerdict {
        if !self.hits.is_empty() {
            FileVerdict::Infected
        } else if !self.issues.is_empty() || self.error.is_some() {
            FileVerdict::Unscannable
        } else {
            FileVerdict::Clean
        }
    }
}

/// What [`keep_program`] kept so far.
#[derive(Default)]
struct Kept {
    bytes: usize,
    seen: std::collections::HashSet<[u8; 32]>,
}

/// Keeps `piece` when the sandbox runs its kind and its content is new: its bytes while
/// [`PROGRAM_BYTES`] allow and fewer than `max` are kept, else only its place (at most `max`
/// more), else a count.
fn keep_program(report: &mut ScanReport, kept: &mut Kept, max: usize, piece: &Piece<'_>) {
    let Some(runner) = sekisho_sandbox::sniff::runner(piece.data) else {
        return;
    };
    let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(piece.data).into();
    if kept.seen.len() < max * 4 && !kept.seen.insert(sha) {
        return;
    }
    let out = &mut report.programs;
    if out.len() >= max * 2 {
        report.programs_unlisted = report.programs_unlisted.saturating_add(1);
        return;
    }
    let fits = out.len() < max && kept.bytes + piece.data.len() <= PROGRAM_BYTES;
    let data = (fits && !piece.truncated).then(|| {
        kept.bytes += piece.data.len();
        Bytes::copy_from_slice(piece.data)
    });
    out.push(Program {
        provenance: piece.provenance.to_string(),
        name: piece.name.map(str::to_string),
        kind: runner.name(),
        size: piece.data.len() as u64,
        data,
    });
}

/// The ClamAV-style name of an issue kind (`Heuristics.Limits.Exceeded` in ClamAV's terms).
pub fn issue_name(kind: IssueKind) -> &'static str {
    match kind {
        IssueKind::Limit => "Sekisho.Limits.Exceeded",
        IssueKind::Encrypted => "Sekisho.Encrypted",
        IssueKind::Corrupt => "Sekisho.Broken",
    }
}

/// Extracts every piece of `data` and scans it. `stop_on_first` ends at the first detection.
pub fn scan_bytes(
    engine: &Engine,
    data: &Bytes,
    root: &str,
    hints: &Hints<'_>,
    limits: &Limits,
    timeout: Duration,
    stop_on_first: bool,
) -> ScanReport {
    scan_bytes_keeping(engine, data, root, hints, limits, timeout, stop_on_first, 0)
}

/// [`scan_bytes`], also keeping up to `programs` of the programs and scripts found inside
/// containers (ELF, sh, bash, python, perl by content: what the sandbox runs) in
/// [`ScanReport::programs`]; past that count they are listed without their bytes.
#[allow(clippy::too_many_arguments)]
pub fn scan_bytes_keeping(
    engine: &Engine,
    data: &Bytes,
    root: &str,
    hints: &Hints<'_>,
    limits: &Limits,
    timeout: Duration,
    stop_on_first: bool,
    programs: usize,
) -> ScanReport {
    // The thread's cached scanner for this rule set (see `Engine::with_scanner`).
    engine.with_scanner(|scanner| {
        let deadline = Instant::now() + timeout;
        let mut report = ScanReport::default();
        let mut timed_out = None;
        let mut kept = Kept::default();
        let issues = walk(data, root, hints, limits, Some(deadline), &mut |piece| {
            report.pieces += 1;
            if programs > 0 && piece.depth > 0 {
                keep_program(&mut report, &mut kept, programs, piece);
            }
            let mime = sekisho_content::sniff_mime(piece.data);
            let filetype = filetype::label(piece.data, piece.name);
            if report.executables.len() < MAX_EXECUTABLES {
                if let Some(e) = exe::inspect(piece.data) {
                    report.executables.push(ExecutableSeen {
                        provenance: piece.provenance.to_string(),
                        format: e.format,
                        arch: e.arch,
                        library: e.library,
                        packer: e.packer,
                    });
                }
            }
            match engine.scan(
                scanner,
                piece.data,
                piece.name,
                piece.provenance,
                filetype,
                deadline,
            ) {
                Ok((found, sha)) => {
                    let hex_sha = hex::encode(sha);
                    for d in found {
                        report.hits.push(ScanHit {
                            detection: d,
                            provenance: piece.provenance.to_string(),
                            name: piece.name.map(str::to_string),
                            size: piece.data.len() as u64,
                            sha256: hex_sha.clone(),
                            mime: mime.to_string(),
                        });
                    }
                    if stop_on_first && !report.hits.is_empty() {
                        return Control::Stop;
                    }
                    Control::Continue
                }
                Err(AvError::Timeout) => {
                    timed_out = Some(piece.provenance.to_string());
                    Control::Stop
                }
                Err(e) => {
                    report.error = Some(format!("{}: {e}", piece.provenance));
                    Control::Stop
                }
            }
        });
        report.issues = issues;
        if let Some(p) = timed_out {
            report.issues.push(Issue {
                kind: IssueKind::Limit,
                provenance: p,
                reason: format!("scan time limit of {timeout:?} reached"),
            });
        }
        report
    })
}
