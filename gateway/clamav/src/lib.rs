//! ClamAV signature databases: `.hdb`/`.hsb` hash sets matched natively, `.ndb` body signatures
//! and an `.ldb` subset translated to YARA-X. Every signature that cannot be used is reported with
//! its name and the reason.

use std::collections::HashMap;
use std::fmt::Write as _;

/// A signature that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    /// The file.
    pub file: String,
    /// The line (1-based).
    pub line: u32,
    /// The signature (or rule) name, when it could be read.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// One hash signature: the size it applies to (any when `None`), its name and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashSig {
    /// Size in bytes, or any.
    pub size: Option<u64>,
    /// Signature name.
    pub name: String,
    /// Database file.
    pub file: String,
    /// Line in it.
    pub line: u32,
}

/// Hash signatures by digest.
#[derive(Default, Debug)]
pub struct HashSet {
    md5: HashMap<[u8; 16], Vec<HashSig>>,
    sha1: HashMap<[u8; 20], Vec<HashSig>>,
    sha256: HashMap<[u8; 32], Vec<HashSig>>,
}

impl HashSet {
    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.md5.values().map(Vec::len).sum::<usize>()
            + self.sha1.values().map(Vec::len).sum::<usize>()
            + self.sha256.values().map(Vec::len).sum::<usize>()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether MD5 / SHA-1 digests are needed at all.
    pub fn wants(&self) -> (bool, bool) {
        (!self.md5.is_empty(), !self.sha1.is_empty())
    }

    /// Signatures matching the digests of a piece of `size` bytes.
    pub fn lookup(
        &self,
        size: u64,
        md5: Option<&[u8; 16]>,
        sha1: Option<&[u8; 20]>,
        sha256: &[u8; 32],
    ) -> Vec<HashSig> {
        let pick = |v: Option<&Vec<HashSig>>| {
            v.into_iter()
                .flatten()
                .filter(|h| h.size.is_none_or(|s| s == size))
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut out = pick(self.sha256.get(sha256));
        if let Some(m) = md5 {
            out.extend(pick(self.md5.get(m)));
        }
        if let Some(s) = sha1 {
            out.extend(pick(self.sha1.get(s)));
        }
        out
    }

    /// Parses a `.hdb` / `.hsb` file's text: `HASH:SIZE:NAME[:FLEVEL]` (size may be `*`).
    pub fn add_file(&mut self, file: &str, text: &str, rejected: &mut Vec<Rejected>) -> usize {
        let mut added = 0;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(':').collect();
            let name = fields.get(2).copied().unwrap_or("").to_string();
            let reject = |reason: &str, rejected: &mut Vec<Rejected>| {
                rejected.push(Rejected {
                    file: file.into(),
                    line: i as u32 + 1,
                    name: name.clone(),
                    reason: reason.into(),
                })
            };
            if fields.len() < 3 || name.is_empty() {
                reject("expected HASH:SIZE:NAME", rejected);
                continue;
            }
            let size = match fields[1] {
                "*" => None,
                s => match s.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        reject("size is not a number or *", rejected);
                        continue;
                    }
                },
            };
            let Ok(digest) = hex::decode(fields[0]) else {
                reject("hash is not hex", rejected);
                continue;
            };
            let entry = HashSig {
                size,
                name: name.clone(),
                file: file.to_string(),
                line: i as u32 + 1,
            };
            match digest.len() {
                16 => self
                    .md5
                    .entry(digest.try_into().unwrap_or([0; 16]))
                    .or_default()
                    .push(entry),
                20 => self
                    .sha1
                    .entry(digest.try_into().unwrap_or([0; 20]))
                    .or_default()
                    .push(entry),
                32 => self
                    .sha256
                    .entry(digest.try_into().unwrap_or([0; 32]))
                    .or_default()
                    .push(entry),
                n => {
                    reject(
                        &format!("hash of {n} bytes is neither MD5, SHA-1 nor SHA-256"),
                        rejected,
                    );
                    continue;
                }
            }
            added += 1;
        }
        added
    }
}

/// A YARA rule translated from a ClamAV signature.
pub struct Translated {
    /// The YARA source text.
    pub source: String,
    /// Signature count in it.
    pub count: usize,
}

/// Translates a ClamAV hex signature to a YARA hex string body.
pub fn hex_to_yara(sig: &str) -> Result<String, String> {
    if let Some(c) = sig.chars().find(|c| !c.is_ascii()) {
        return Err(format!("{c:?} is not a hex signature character"));
    }
    let b = sig.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut bytes_seen = 0usize;
    let mut last_was_jump = false;
    let mut first = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b'*' => {
                if first {
                    return Err("starts with a wildcard jump".into());
                }
                out.push_str(" [-]");
                last_was_jump = true;
                i += 1;
            }
            b'{' => {
                let end = sig[i..].find('}').ok_or("unclosed {")? + i;
                let inner = &sig[i + 1..end];
                let jump = match inner.split_once('-') {
                    None => format!("[{}]", num(inner)?),
                    Some(("", m)) => format!("[0-{}]", num(m)?),
                    Some((n, "")) => format!("[{}-]", num(n)?),
                    Some((n, m)) => format!("[{}-{}]", num(n)?, num(m)?),
                };
                if first {
                    return Err("starts with a jump".into());
                }
                out.push(' ');
                out.push_str(&jump);
                last_was_jump = true;
                i = end + 1;
            }
            b'(' => {
                let end = sig[i..].find(')').ok_or("unclosed (")? + i;
                let inner = &sig[i + 1..end];
                if matches!(inner, "B" | "L" | "W") {
                    return Err(format!("anchor ({inner}) is not supported"));
                }
                let mut alts = Vec::new();
                for alt in inner.split('|') {
                    if alt.is_empty() || alt.len() % 2 != 0 {
                        return Err(format!("alternative {alt:?} is not whole bytes"));
                    }
                    alts.push(hex_pairs(alt)?);
                }
                out.push_str(&format!(" ( {} )", alts.join(" | ")));
                bytes_seen += 1;
                last_was_jump = false;
                i = end + 1;
            }
            b'!' => return Err("negated alternatives !(...) are not supported".into()),
            b'[' => return Err("restricted jumps [n-m] are not supported".into()),
            _ => {
                if i + 1 >= b.len() {
                    return Err("odd number of hex digits".into());
                }
                let pair = &sig[i..i + 2];
                out.push(' ');
                out.push_str(&hex_pair(pair)?);
                bytes_seen += 1;
                last_was_jump = false;
                i += 2;
            }
        }
        first = false;
    }
    if bytes_seen == 0 {
        return Err("no bytes to match".into());
    }
    if last_was_jump {
        return Err("ends with a jump".into());
    }
    Ok(out.trim().to_string())
}

fn num(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("bad jump bound {s:?}"))
}

fn hex_pair(p: &str) -> Result<String, String> {
    let ok = |c: u8| c.is_ascii_hexdigit() || c == b'?';
    let b = p.as_bytes();
    if b.len() == 2 && ok(b[0]) && ok(b[1]) {
        Ok(p.to_ascii_uppercase())
    } else {
        Err(format!("{p:?} is not a hex byte"))
    }
}

fn hex_pairs(s: &str) -> Result<String, String> {
    (0..s.len())
        .step_by(2)
        .map(|i| hex_pair(&s[i..i + 2]))
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.join(" "))
}

/// The YARA condition prefix for a ClamAV target type.
fn target_condition(target: &str) -> Result<&'static str, String> {
    Ok(match target.trim() {
        "0" | "3" | "4" | "5" | "7" | "8" | "11" | "12" | "13" | "14" => "",
        "1" => "uint16(0) == 0x5A4D and ",
        "2" => "uint32(0) == 0xE011CFD0 and ",
        "6" => "uint32(0) == 0x464C457F and ",
        "9" => "(uint32(0) == 0xFEEDFACE or uint32(0) == 0xFEEDFACF or uint32(0) == 0xCEFAEDFE or uint32(0) == 0xCFFAEDFE or uint32(0) == 0xBEBAFECA) and ",
        "10" => "uint32(0) == 0x46445025 and ",
        other => return Err(format!("target type {other} is not supported")),
    })
}

/// The YARA condition for string `var` at a ClamAV offset.
fn offset_condition(offset: &str, var: &str) -> Result<String, String> {
    let offset = offset.trim();
    if offset == "*" {
        return Ok(var.to_string());
    }
    let (base, range) = match offset.split_once(',') {
        Some((b, r)) => (b, Some(num(r)?)),
        None => (offset, None),
    };
    let at = if let Some(n) = base.strip_prefix("EOF-") {
        format!("filesize - {}", num(n)?)
    } else if base.starts_with("EP")
        || base.starts_with('S')
        || base.starts_with("VI")
        || base.starts_with("SE")
    {
        return Err(format!(
            "offset {offset} (entry point / section relative) is not supported"
        ));
    } else {
        num(base)?.to_string()
    };
    Ok(match range {
        None => format!("{var} at {at}"),
        Some(r) => format!("{var} in ({at}..{at} + {r})"),
    })
}

fn yara_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs `rule` over every signature line of a database (split on `sep`), collecting the YARA
/// rules it makes and rejecting (with file, line, name and reason) the ones it cannot.
fn translate_lines(
    file: &str,
    text: &str,
    first_id: usize,
    sep: char,
    rejected: &mut Vec<Rejected>,
    rule: impl Fn(&[&str], usize, usize) -> Result<String, String>,
) -> Translated {
    let mut source = String::new();
    let mut count = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(sep).collect();
        match rule(&f, first_id + count, i + 1) {
            Ok(r) => {
                source.push_str(&r);
                count += 1;
            }
            Err(reason) => rejected.push(Rejected {
                file: file.into(),
                line: i as u32 + 1,
                name: f.first().copied().unwrap_or("").to_string(),
                reason,
            }),
        }
    }
    Translated { source, count }
}

/// The YARA rule text for one translated signature.
fn yara_rule(
    id: usize,
    name: &str,
    file: &str,
    line: usize,
    strings: &str,
    condition: &str,
) -> String {
    format!(
        "rule clamav_{id} {{\n  meta:\n    clamav_name = {n}\n    source_file = {f}\n    line = {line}\n  strings:\n{strings}  condition:\n    {condition}\n}}\n",
        n = yara_string(name),
        f = yara_string(file),
    )
}

/// Translates a `.ndb` file (`Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]`).
pub fn translate_ndb(
    file: &str,
    text: &str,
    first_id: usize,
    rejected: &mut Vec<Rejected>,
) -> Translated {
    translate_lines(file, text, first_id, ':', rejected, |f, id, line| {
        if f.len() < 4 {
            return Err("expected Name:TargetType:Offset:HexSignature".to_string());
        }
        let cond = target_condition(f[1])?;
        let hex = hex_to_yara(f[3])?;
        let at = offset_condition(f[2], "$a")?;
        Ok(yara_rule(
            id,
            f[0],
            file,
            line,
            &format!("    $a = {{ {hex} }}\n"),
            &format!("{cond}{at}"),
        ))
    })
}

/// Translates the supported `.ldb` subset: `Name;TargetDescription;Expression;Subsig0;…` with
/// `&`, `|`, parentheses and per-subsignature counts (`0>2`, `1=0`, `2<3`); hex subsignatures
/// with optional `offset:` prefixes.
pub fn translate_ldb(
    file: &str,
    text: &str,
    first_id: usize,
    rejected: &mut Vec<Rejected>,
) -> Translated {
    translate_lines(file, text, first_id, ';', rejected, |f, id, line| {
        if f.len() < 4 {
            return Err("expected Name;TargetDescription;Expression;Subsig0[;…]".to_string());
        }
        let target = f[1]
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("Target:"))
            .unwrap_or("0");
        let cond = target_condition(target)?;
        let mut strings = String::new();
        let mut offsets = Vec::new();
        for (n, sub) in f[3..].iter().enumerate() {
            if sub.contains("::") {
                return Err(format!(
                    "subsignature {n} has modifiers, which are not supported"
                ));
            }
            if sub.starts_with('/') || sub.contains("pcre") {
                return Err(format!(
                    "subsignature {n} is a PCRE, which is not supported"
                ));
            }
            let (off, hex) = match sub.rsplit_once(':') {
                Some((o, h)) => (Some(o), h),
                None => (None, *sub),
            };
            let hex = hex_to_yara(hex).map_err(|e| format!("subsignature {n}: {e}"))?;
            let _ = writeln!(strings, "    $s{n} = {{ {hex} }}");
            offsets.push(
                off.map(|o| offset_condition(o, &format!("$s{n}")))
                    .transpose()?,
            );
        }
        let expr = translate_expression(f[2], f.len() - 3, &offsets)?;
        Ok(yara_rule(
            id,
            f[0],
            file,
            line,
            &strings,
            &format!("{cond}({expr})"),
        ))
    })
}

fn translate_expression(
    expr: &str,
    subsigs: usize,
    offsets: &[Option<String>],
) -> Result<String, String> {
    let b = expr.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            b'&' => out.push_str(" and "),
            b'|' => out.push_str(" or "),
            b'(' => {
                depth += 1;
                out.push('(');
            }
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parentheses".into());
                }
                out.push(')');
                if b.get(i + 1)
                    .is_some_and(|c| matches!(c, b'=' | b'>' | b'<'))
                {
                    return Err("counts on groups are not supported".into());
                }
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i + 1 < b.len() && b[i + 1].is_ascii_digit() {
                    i += 1;
                }
                let n: usize = expr[start..=i]
                    .parse()
                    .map_err(|_| "bad subsignature index")?;
                if n >= subsigs {
                    return Err(format!(
                        "expression names subsignature {n}, which does not exist"
                    ));
                }
                let op = b.get(i + 1).copied();
                if matches!(op, Some(b'=' | b'>' | b'<')) {
                    let s = i + 2;
                    let mut e = s;
                    while e < b.len() && b[e].is_ascii_digit() {
                        e += 1;
                    }
                    if e == s {
                        return Err("count without a number".into());
                    }
                    if b.get(e) == Some(&b',') {
                        return Err("unique-match counts (n,m) are not supported".into());
                    }
                    let op = match op {
                        Some(b'=') => "==",
                        Some(b'>') => ">",
                        _ => "<",
                    };
                    out.push_str(&format!("#s{n} {op} {}", &expr[s..e]));
                    i = e - 1;
                } else {
                    match &offsets[n] {
                        Some(c) => out.push_str(&format!("({c})")),
                        None => out.push_str(&format!("$s{n}")),
                    }
                }
            }
            b' ' => {}
            c => {
                return Err(format!(
                    "unexpected {:?} in the logical expression",
                    c as char
                ))
            }
        }
        i += 1;
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_in_a_hex_signature_is_an_error_not_a_panic() {
        // Found by the clamav_sig fuzz target: a byte pair cut inside a UTF-8 character.
        assert!(hex_to_yara("\u{fffd}").is_err());
        assert!(hex_to_yara("41\u{e9}42").is_err());
        let mut rejected = Vec::new();
        let t = translate_ndb("x.ndb", "Sig:0:*:4142\u{fffd}\n", 0, &mut rejected);
        assert_eq!((t.count, rejected.len()), (0, 1));
    }

    #[test]
    fn hex_translation() {
        assert_eq!(hex_to_yara("4142??43").unwrap(), "41 42 ?? 43");
        assert_eq!(
            hex_to_yara("41a?*42{4}43{-2}44{3-}45{1-9}46").unwrap(),
            "41 A? [-] 42 [4] 43 [0-2] 44 [3-] 45 [1-9] 46"
        );
        assert_eq!(
            hex_to_yara("41(4243|44)45").unwrap(),
            "41 ( 42 43 | 44 ) 45"
        );
        for bad in [
            "*41",
            "41*",
            "4",
            "zz",
            "41!(42)",
            "41(B)42",
            "",
            "{3}41",
            "41[1-2]42",
        ] {
            assert!(hex_to_yara(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ndb_and_ldb() {
        let mut rej = Vec::new();
        let t = translate_ndb("x.ndb", "Good.Sig:0:*:414243\nPe.Sig:1:0:4d5a\nEof.Sig:0:EOF-4,2:41424344\nBad.Sig:0:EP+1:4142\nBroken\n", 0, &mut rej);
        assert_eq!(t.count, 3);
        assert_eq!(rej.len(), 2);
        assert_eq!(rej[0].name, "Bad.Sig");
        assert!(rej[0].reason.contains("entry point"));
        assert_eq!(rej[1].line, 5);
        assert!(
            t.source.contains("$a at filesize - 4")
                || t.source.contains("$a in (filesize - 4..filesize - 4 + 2)")
        );
        let mut rej = Vec::new();
        let l = translate_ldb(
            "x.ldb",
            "L.One;Engine:51-255,Target:0;(0&1)|2>1;414243;0:444546;4748\nL.Pcre;Target:0;0&1;4142;/abc/\nL.Uniq;Target:0;0>2,1;4142\n",
            10,
            &mut rej,
        );
        assert_eq!(l.count, 1, "{rej:?}");
        assert!(
            l.source.contains("(($s0 and ($s1 at 0)) or #s2 > 1)"),
            "{}",
            l.source
        );
        assert_eq!(rej.len(), 2);
    }

    #[test]
    fn hash_sets() {
        let mut h = HashSet::default();
        let mut rej = Vec::new();
        let md5 = "44d88612fea8a8f36de82e1278abb02f";
        let n = h.add_file(
            "a.hdb",
            &format!("{md5}:68:Eicar-Test\n{md5}:*:Any-Size\nnothex:1:X\n00:1:Short\n"),
            &mut rej,
        );
        assert_eq!(n, 2);
        assert_eq!(rej.len(), 2);
        let m: [u8; 16] = hex::decode(md5).unwrap().try_into().unwrap();
        let names = |v: Vec<HashSig>| v.into_iter().map(|h| h.name).collect::<Vec<_>>();
        assert_eq!(
            names(h.lookup(68, Some(&m), None, &[0; 32])),
            vec!["Eicar-Test", "Any-Size"]
        );
        let any = h.lookup(69, Some(&m), None, &[0; 32]);
        assert_eq!(
            (any[0].name.as_str(), any[0].file.as_str(), any[0].line),
            ("Any-Size", "a.hdb", 2)
        );
    }
}
