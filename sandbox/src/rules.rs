//! Behaviour signatures: TOML files the SOC edits (`rules/sandbox/*.toml`), one
//! `[[signature]]` table per behaviour, each with a weight. A signature names the kind of
//! event it counts and conditions on it (a path pattern, write access, a remote address, a
//! port, an error, a prior event on the same path, a file's entropy); it is hit when at
//! least `min_count` events meet them. Unknown keys, bad patterns, weights outside 1 to 10 and
//! duplicate ids are errors naming the file and line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The kinds of event a signature can count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum On {
    /// A program run (the sample's own start excluded).
    Exec,
    /// A file opened.
    Open,
    /// A connection attempt.
    Connect,
    /// A socket bound.
    Bind,
    /// A resolver query.
    Dns,
    /// A file removed.
    Unlink,
    /// A file renamed (the new name is the path).
    Rename,
    /// A link made, symbolic or hard (the path is the link; `target` reads what it leads to).
    Link,
    /// A mode change.
    Chmod,
    /// A `ptrace` call.
    Ptrace,
    /// A mount, unmount or root change.
    Mount,
    /// A process created.
    Fork,
    /// A signal sent to another process.
    Kill,
    /// A change of user or group id.
    Setuid,
    /// An anonymous in-memory file created.
    Memfd,
    /// A sleep.
    Sleep,
    /// An io_uring set up (its operations are not traced one by one).
    IoUring,
    /// A call the sandbox's seccomp filter refused (the path is the call's name: `unshare`,
    /// `setns`, `clone` with a namespace flag, `init_module`, `bpf`, `keyctl`, …; refused
    /// mounts are `mount` events and refused io_uring calls `io_uring` events).
    Refused,
    /// An HTTP request the sinkhole answered (the path is `METHOD http://host/target`).
    Http,
    /// A file left in the scratch folder.
    Dropped,
    /// The run reached its deadline.
    Timeout,
}

/// A signature as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    id: toml::Spanned<String>,
    description: String,
    #[serde(default)]
    category: String,
    weight: u8,
    event: On,
    path: Option<String>,
    not_path: Option<String>,
    argv: Option<String>,
    target: Option<String>,
    write: Option<bool>,
    remote: Option<bool>,
    #[serde(default)]
    port: Vec<u16>,
    error: Option<String>,
    after: Option<On>,
    min_count: Option<u32>,
    min_entropy: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    signature: Vec<Written>,
}

/// A compiled signature.
#[derive(Debug)]
pub struct Signature {
    /// Its id (unique in the set).
    pub id: String,
    /// What it means, for the report.
    pub description: String,
    /// Its family (`network`, `persistence`, …).
    pub category: String,
    /// How much it adds to the score (1 to 10).
    pub weight: u8,
    /// The events it counts.
    pub event: On,
    /// The event's path (or name, address) must match.
    pub path: Option<Regex>,
    /// The event's path must not match.
    pub not_path: Option<Regex>,
    /// The program's arguments, joined by spaces, must match.
    pub argv: Option<Regex>,
    /// A link's target must match (link events only).
    pub target: Option<Regex>,
    /// The file was (or was not) opened to write.
    pub write: Option<bool>,
    /// The address leaves (or does not leave) the machine.
    pub remote: Option<bool>,
    /// The port is one of these (any when empty).
    pub port: Vec<u16>,
    /// The call failed with this error (`EAGAIN`), or succeeded (`"none"`).
    pub error: Option<String>,
    /// An event of this kind on the same path came before.
    pub after: Option<On>,
    /// How many events it takes.
    pub min_count: u32,
    /// A dropped file's entropy (bits per byte) must reach this.
    pub min_entropy: Option<f64>,
    /// Where it is written (`file:line`).
    pub origin: String,
}

/// A behaviour rule file's error.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RuleError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based; 0 when unknown).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Every signature of the behaviour rule files, and a version that changes with their text.
#[derive(Debug)]
pub struct Rules {
    /// The signatures, in file order.
    pub signatures: Vec<Signature>,
    /// The first 16 hex digits of SHA-256 over the files' text, in order.
    pub version: String,
    /// Signatures per file.
    pub files: Vec<(PathBuf, usize)>,
}

impl Rules {
    /// Loads the files (a folder stands for its `*.toml` files, in name order).
    pub fn load(paths: &[PathBuf]) -> Result<Rules, Vec<RuleError>> {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| vec![io_error(p, e)])?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                    .collect();
                inner.sort();
                files.extend(inner);
            } else {
                files.push(p.clone());
            }
        }
        let mut hash = Sha256::new();
        let mut out = Rules {
            signatures: Vec::new(),
            version: String::new(),
            files: Vec::new(),
        };
        let mut errors = Vec::new();
        let mut ids = HashSet::new();
        for f in &files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(io_error(f, e));
                    continue;
                }
            };
            hash.update(text.as_bytes());
            let before = out.signatures.len();
            match parse(f, &text) {
                Ok(sigs) => {
                    for s in sigs {
                        if !ids.insert(s.id.clone()) {
                            errors.push(RuleError {
                                file: f.clone(),
                                line: line_of(&s.origin),
                                message: format!("duplicate signature id {}", s.id),
                            });
                            continue;
                        }
                        out.signatures.push(s);
                    }
                }
                Err(mut e) => errors.append(&mut e),
            }
            out.files.push((f.clone(), out.signatures.len() - before));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let digest = hash.finalize();
        out.version = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(out)
    }
}

fn io_error(f: &Path, e: std::io::Error) -> RuleError {
    RuleError {
        file: f.to_path_buf(),
        line: 0,
        message: format!("cannot read: {e}"),
    }
}

fn line_of(origin: &str) -> usize {
    origin
        .rsplit_once(':')
        .and_then(|(_, l)| l.parse().ok())
        .unwrap_or(0)
}

/// The signatures of one file's text.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Signature>, Vec<RuleError>> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let parsed: File = toml::from_str(text).map_err(|e| {
        vec![RuleError {
            file: file.to_path_buf(),
            line: e.span().map_or(0, |s| line(s.start)),
            message: e.message().to_string(),
        }]
    })?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for w in parsed.signature {
        let at = line(w.id.span().start);
        match compile(w, &format!("{}:{at}", file.display())) {
            Ok(s) => out.push(s),
            Err(message) => errors.push(RuleError {
                file: file.to_path_buf(),
                line: at,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn compile(w: Written, origin: &str) -> Result<Signature, String> {
    let id = w.id.into_inner();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "signature id {id:?}: letters, digits, '.', '_' and '-' only"
        ));
    }
    if !(1..=10).contains(&w.weight) {
        return Err(format!(
            "signature {id}: weight {} is not 1 to 10",
            w.weight
        ));
    }
    let rx = |field: &str, p: Option<String>| {
        p.map(|p| Regex::new(&p).map_err(|e| format!("signature {id}: {field}: {e}")))
            .transpose()
    };
    if w.min_entropy.is_some_and(|e| !(0.0..=8.0).contains(&e)) {
        return Err(format!(
            "signature {id}: min_entropy is bits per byte, 0 to 8"
        ));
    }
    if w.target.is_some() && w.event != On::Link {
        return Err(format!(
            "signature {id}: target applies to link events only"
        ));
    }
    if w.min_count == Some(0) {
        return Err(format!("signature {id}: min_count must be at least 1"));
    }
    Ok(Signature {
        path: rx("path", w.path)?,
        not_path: rx("not_path", w.not_path)?,
        argv: rx("argv", w.argv)?,
        target: rx("target", w.target)?,
        id,
        description: w.description,
        category: w.category,
        weight: w.weight,
        event: w.event,
        write: w.write,
        remote: w.remote,
        port: w.port,
        error: w.error,
        after: w.after,
        min_count: w.min_count.unwrap_or(1),
        min_entropy: w.min_entropy,
        origin: origin.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_compile_and_errors_name_the_line() {
        let ok = "[[signature]]\nid = \"net.connect\"\ndescription = \"d\"\nweight = 3\nevent = \"connect\"\nremote = true\n";
        let s = parse(Path::new("a.toml"), ok).expect("compiles");
        assert_eq!(
            (s[0].id.as_str(), s[0].weight, s[0].min_count),
            ("net.connect", 3, 1)
        );
        let bad_key = format!("{ok}colour = \"red\"\n");
        let e = parse(Path::new("a.toml"), &bad_key).expect_err("unknown key");
        assert!(e[0].to_string().starts_with("a.toml:"), "{}", e[0]);
        assert!(e[0].message.contains("colour"), "{}", e[0]);
        let bad_rx = "\n\n[[signature]]\nid = \"x\"\ndescription = \"d\"\nweight = 2\nevent = \"open\"\npath = \"(\"\n";
        let e = parse(Path::new("b.toml"), bad_rx).expect_err("bad pattern");
        assert_eq!(e[0].line, 4, "{}", e[0]);
        assert!(e[0].message.contains("path"), "{}", e[0]);
        let heavy = ok.replace("weight = 3", "weight = 11");
        assert!(parse(Path::new("c.toml"), &heavy).is_err());
        let unknown_event = ok.replace("\"connect\"", "\"teleport\"");
        assert!(parse(Path::new("d.toml"), &unknown_event).is_err());
        let link = ok
            .replace("\"connect\"", "\"link\"")
            .replace("remote = true", "target = '^/etc/'");
        let s = parse(Path::new("e.toml"), &link).expect("a link signature compiles");
        assert!(s[0]
            .target
            .as_ref()
            .is_some_and(|t| t.is_match("/etc/shadow")));
        let misplaced = ok.replace("remote = true", "target = '^/etc/'");
        let e = parse(Path::new("f.toml"), &misplaced).expect_err("target on a connect");
        assert!(e[0].message.contains("link events only"), "{}", e[0]);
    }
}
