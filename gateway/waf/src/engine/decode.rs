//! Detection beyond CRS (opt-in, `[waf] decode = ["base64"]`): argument, cookie, header and
//! JSON values that are base64 text are decoded, and the decoded text joins `ARGS` under the
//! same name, so that every rule reading `ARGS` (the whole of CRS's attack detection) sees
//! what the application will see after decoding. CRS alone misses attacks sent this way.
//!
//! A value counts as base64 only when it is long enough, uses one alphabet (standard or
//! URL-safe, padded or not) and decodes to printable UTF-8 text: most benign tokens (ids,
//! session keys, hashes) decode to binary and are left alone, which keeps false positives
//! rare. Work is bounded: at most [`MAX_DECODED`] values and [`MAX_DECODED_BYTES`] bytes per
//! transaction.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::tx::Named;
use super::vars::val;

/// Most decoded values one transaction adds.
pub const MAX_DECODED: usize = 256;
/// Most decoded bytes one transaction adds.
pub const MAX_DECODED_BYTES: usize = 256 * 1024;
/// Shortest value taken for base64 (shorter ones are words as often as encodings).
const MIN_LEN: usize = 8;
/// Least share of printable characters in decoded text, in percent.
const MIN_PRINTABLE: usize = 95;

/// Which decoders run before the rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoding {
    /// Base64 text in values.
    pub base64: bool,
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// The text a base64 value stands for; `None` when the value is not base64 text. Spaces
/// count as `+`: base64 sent unescaped in a query or form has had its `+` decoded to spaces.
pub fn base64_text(value: &[u8]) -> Option<String> {
    if value.contains(&b' ') {
        let plus: Vec<u8> = value
            .iter()
            .map(|&b| if b == b' ' { b'+' } else { b })
            .collect();
        return base64_text(&plus);
    }
    let v = value.trim_ascii();
    let body = v
        .strip_suffix(b"==")
        .or_else(|| v.strip_suffix(b"="))
        .unwrap_or(v);
    if body.len() < MIN_LEN || body.len() % 4 == 1 {
        return None;
    }
    let (mut std_only, mut url_only) = (false, false);
    for &b in body {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => {}
            b'+' | b'/' => std_only = true,
            b'-' | b'_' => url_only = true,
            _ => return None,
        }
    }
    let engine = match (std_only, url_only) {
        (true, true) => return None,
        (_, true) => &URL_SAFE,
        _ => &STANDARD,
    };
    let bytes = engine.decode(body).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    printable(&text).then_some(text)
}

fn printable(text: &str) -> bool {
    let total = text.chars().count();
    let good = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .count();
    total > 0 && good * 100 >= total * MIN_PRINTABLE
}

/// Adds to `out` the decoded text of each value of `from` that is base64 text, under the
/// value's name, within the transaction's bounds (`out` holds what was added before).
pub fn decode_into<'a>(from: impl Iterator<Item = &'a Named>, out: &mut Vec<Named>) {
    let mut bytes: usize = out.iter().map(|(_, v)| v.len()).sum();
    for (name, value) in from {
        if out.len() >= MAX_DECODED || bytes >= MAX_DECODED_BYTES {
            return;
        }
        if let Some(text) = base64_text(value) {
            bytes += text.len();
            out.push((name.clone(), val(text.as_bytes())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Option<String> {
        base64_text(s.as_bytes())
    }

    #[test]
    fn decodes_base64_text_in_every_spelling() {
        let attack = "<script>alert(1)</script>";
        assert_eq!(
            b64("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==").as_deref(),
            Some(attack)
        );
        assert_eq!(
            b64("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg").as_deref(),
            Some(attack)
        );
        assert_eq!(b64("JyBvciAxPTEtLQ==").as_deref(), Some("' or 1=1--"));
        // "+" decoded to a space by the form or query parser.
        assert_eq!(
            b64("PHNjcmlwdD5hbGVydChkb2N1bWVudC5jb29raWUpPC9zY3JpcHQ ").as_deref(),
            Some("<script>alert(document.cookie)</script>")
        );
        // URL-safe alphabet: "??>>" encodes to "Pz8-Pg" there.
        assert_eq!(b64("Pz8-Pj4_Pz8-Pj4_").as_deref(), Some("??>>>???>>>?"));
    }

    #[test]
    fn leaves_words_tokens_and_binary_alone() {
        for v in [
            "patient",
            "record12",
            "8f2a9c1d4b7e",
            "0123456789abcdef0123456789abcdef",
            "A000372026",
            "mixed+and-alphabets",
            "has space in it",
            "/////////+++",
        ] {
            assert_eq!(b64(v), None, "{v}");
        }
    }

    #[test]
    fn any_bytes_give_an_answer() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let alphabet = b"AZaz09+/=-_ \xff\x00";
            let x: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 60)) % alphabet.len() as u64) as usize])
                .collect();
            if let Some(t) = base64_text(&x) {
                assert!(!t.is_empty());
            }
        }
    }

    #[test]
    fn decoding_is_bounded() {
        let one = (val(b"q"), val(b"PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="));
        let many = vec![one; MAX_DECODED * 2];
        let mut out = Vec::new();
        decode_into(many.iter(), &mut out);
        assert_eq!(out.len(), MAX_DECODED);
        decode_into(many.iter(), &mut out);
        assert_eq!(out.len(), MAX_DECODED);
    }
}
