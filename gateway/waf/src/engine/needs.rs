//! A byte prefilter beside the literal one: sets of bytes every match of an operator must
//! draw from (a regex that needs `<`, or one of `;|&` and then a quote), found by walking the
//! regex's syntax tree. A value's bytes are collected once per transformed value; a link
//! whose needs the value cannot meet is not run. Many CRS regexes have no useful required
//! literal (`<[^a-z]*s[^a-z]*c…`) but do need a byte benign values rarely hold.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::transform::Transform;

/// Most sets one link's needs keep (the rarest).
const MAX_NEEDS: usize = 3;
/// Sets costlier than this (see [`cost`]) filter too little to keep.
const MAX_COST: u32 = 40;

/// A set of bytes (lower-cased ASCII letters stand for both cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    /// Every byte.
    pub const ALL: ByteSet = ByteSet([u64::MAX; 4]);
    /// The bytes from 0x80 up.
    pub const HIGH: ByteSet = ByteSet([0, 0, u64::MAX, u64::MAX]);

    /// The bytes of `hay`, lower-cased.
    pub fn of(hay: &[u8]) -> ByteSet {
        // Four sets filled from interleaved bytes (no chain of dependent writes), then
        // merged, and upper-case letters (bits 1 to 26 of word 1) folded onto lower case.
        const UPPER: u64 = 0x07ff_fffe;
        let mut w = [[0u64; 4]; 4];
        let mut chunks = hay.chunks_exact(4);
        for c in &mut chunks {
            for (set, &b) in w.iter_mut().zip(c) {
                set[usize::from(b >> 6)] |= 1 << (b & 63);
            }
        }
        for &b in chunks.remainder() {
            w[0][usize::from(b >> 6)] |= 1 << (b & 63);
        }
        let mut s = [0u64; 4];
        for set in w {
            for (a, b) in s.iter_mut().zip(set) {
                *a |= b;
            }
        }
        s[1] = (s[1] & !UPPER) | ((s[1] & UPPER) << 32);
        ByteSet(s)
    }

    fn insert(&mut self, b: u8) {
        let b = b.to_ascii_lowercase();
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    /// Both sets' bytes.
    pub fn union(self, o: ByteSet) -> ByteSet {
        let mut s = self;
        for (a, b) in s.0.iter_mut().zip(o.0) {
            *a |= b;
        }
        s
    }

    /// Whether the sets share a byte.
    pub fn intersects(&self, o: &ByteSet) -> bool {
        (self.0[0] & o.0[0]) | (self.0[1] & o.0[1]) | (self.0[2] & o.0[2]) | (self.0[3] & o.0[3])
            != 0
    }

    /// Whether the set holds no byte.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The set without `b` (as [`ByteSet::of`] folds it).
    pub fn without(mut self, b: u8) -> ByteSet {
        let b = b.to_ascii_lowercase();
        self.0[usize::from(b >> 6)] &= !(1 << (b & 63));
        self
    }

    fn has(&self, b: u8) -> bool {
        let b = b.to_ascii_lowercase();
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn has_high(&self) -> bool {
        self.0[2] | self.0[3] != 0
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&b| self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0)
    }

    /// How often benign text holds one of these bytes (a rough weight: letters, digits and
    /// space always; UTF-8 lead and continuation bytes in Japanese text; separators often;
    /// other punctuation and control bytes rarely).
    fn cost(&self) -> u32 {
        self.bytes().map(cost).sum()
    }
}

fn cost(b: u8) -> u32 {
    match b {
        b'a'..=b'z' | b'0'..=b'9' | b' ' => 64,
        0x80..=0xff => 16,
        b'.' | b'-' | b'/' | b'_' | b'=' | b',' | b':' | b'+' | b'&' | b'%' => 8,
        b'\t' | b'\n' | b'\r' => 8,
        0x21..=0x7e => 2,
        _ => 1,
    }
}

/// Byte sets a value must hold one byte of each of, for every match of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs(Box<[ByteSet]>);

impl Needs {
    /// Whether a value holding `present` can meet every set.
    pub fn met(&self, present: &ByteSet) -> bool {
        self.0.iter().all(|s| s.intersects(present))
    }

    /// The sets.
    pub fn sets(&self) -> &[ByteSet] {
        &self.0
    }

    fn new(sets: Vec<ByteSet>) -> Option<Needs> {
        (!sets.is_empty()).then(|| Needs(sets.into_boxed_slice()))
    }
}

/// A bound on the bytes `t` can leave in a value holding `s`: never smaller than `s`
/// (so the bound after a chain also bounds every value along it, as `multiMatch` tests
/// them). Decoders that only act on an escape byte (`%`, `&`, `\\`) keep the set when it is
/// absent and give every byte when present; binary outputs give every byte.
pub fn bound(t: Transform, s: ByteSet) -> ByteSet {
    use Transform as T;
    let add = |extra: &[u8]| s.union(ByteSet::of(extra));
    let when = |escape: u8| if s.has(escape) { ByteSet::ALL } else { s };
    match t {
        T::None | T::Lowercase | T::Uppercase | T::Trim | T::TrimLeft | T::TrimRight => s,
        T::RemoveNulls | T::RemoveWhitespace | T::RemoveCommentsChar => s,
        T::CmdLine | T::CompressWhitespace | T::ReplaceNulls => add(b" "),
        // Past a comment's end, ModSecurity copies the string's terminating NUL.
        T::RemoveComments | T::ReplaceComments => add(b" \0"),
        T::NormalizePath | T::NormalizePathWin => add(b"/."),
        T::UrlDecode | T::UrlDecodeUni => match s.has(b'%') {
            true => ByteSet::ALL,
            false => add(b" "),
        },
        T::HtmlEntityDecode => when(b'&'),
        T::JsDecode | T::CssDecode | T::EscapeSeqDecode => when(b'\\'),
        T::Utf8ToUnicode if s.has_high() => add(b"%u0123456789abcdef"),
        T::Utf8ToUnicode => s,
        T::Length => add(b"0123456789"),
        T::HexEncode => add(b"0123456789abcdef"),
        T::UrlEncode => add(b"%+0123456789abcdef"),
        T::Base64Decode | T::Base64DecodeExt | T::Base64Encode | T::HexDecode => ByteSet::ALL,
        T::SqlHexDecode | T::Md5 | T::Sha1 => ByteSet::ALL,
        T::ParityEven7bit | T::ParityOdd7bit | T::ParityZero7bit => ByteSet::ALL,
    }
}

/// Whether `t` leaves every value whose bytes lie in `s` as it was, up to ASCII case (so a
/// literal found case-insensitively after it was there before it).
pub fn keeps(t: Transform, s: ByteSet) -> bool {
    use Transform as T;
    let none_of = |bytes: &[u8]| !bytes.iter().any(|&b| s.has(b));
    const SPACE: &[u8] = b" \t\n\x0b\x0c\r\xa0";
    match t {
        T::None | T::Lowercase | T::Uppercase => true,
        // Several stop at a NUL, as the C strings they read end there.
        _ if s.has(0) => false,
        T::UrlDecode | T::UrlDecodeUni => none_of(b"%+"),
        T::HtmlEntityDecode => none_of(b"&"),
        T::JsDecode | T::CssDecode | T::EscapeSeqDecode => none_of(b"\\"),
        T::Utf8ToUnicode => !s.has_high(),
        T::RemoveNulls | T::ReplaceNulls => true,
        T::RemoveWhitespace | T::CompressWhitespace => none_of(SPACE),
        T::Trim | T::TrimLeft | T::TrimRight => none_of(SPACE),
        T::CmdLine => none_of(SPACE) && none_of(b"\\\"'^,;"),
        T::ReplaceComments => none_of(b"/"),
        T::RemoveComments | T::RemoveCommentsChar => none_of(b"/*<-#"),
        T::NormalizePath => none_of(b"/."),
        T::NormalizePathWin => none_of(b"/.\\"),
        _ => false,
    }
}

/// Whether `t` leaves every value whose bytes lie in `s` exactly as it was, and reports no
/// change (so applying it can be skipped).
pub fn keeps_exactly(t: Transform, s: ByteSet) -> bool {
    use Transform as T;
    !matches!(t, T::Lowercase | T::Uppercase | T::CmdLine) && keeps(t, s)
}

/// The needs of `pattern` (in `regex` syntax, as `Rx` runs it); `None` when no set is rare
/// enough to be worth checking.
pub fn regex_needs(pattern: &str) -> Option<Needs> {
    Needs::new(needs(&super::prefilter::syntax(pattern)?))
}

/// The needs of `@pm` phrases: each phrase's rarest byte, together.
pub fn phrase_needs(phrases: &[Vec<u8>]) -> Option<Needs> {
    let mut union = ByteSet::default();
    for p in phrases {
        let rarest = p
            .iter()
            .map(|&b| ByteSet::of(&[b]))
            .min_by_key(ByteSet::cost)?;
        union = union.union(rarest);
    }
    Needs::new(best(vec![union]))
}

/// The rarest sets, within the cost bound, duplicates removed.
fn best(mut sets: Vec<ByteSet>) -> Vec<ByteSet> {
    sets.retain(|s| s.cost() <= MAX_COST);
    sets.sort_by_key(|s| (s.cost(), *s));
    sets.dedup();
    sets.truncate(MAX_NEEDS);
    sets
}

fn needs(h: &Hir) -> Vec<ByteSet> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(l) => best(l.0.iter().map(|&b| ByteSet::of(&[b])).collect()),
        HirKind::Class(c) => class(c).map_or_else(Vec::new, |s| best(vec![s])),
        HirKind::Capture(c) => needs(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => needs(&r.sub),
        HirKind::Repetition(_) => Vec::new(),
        HirKind::Concat(children) => best(children.iter().flat_map(needs).collect()),
        HirKind::Alternation(children) => {
            let mut union = ByteSet::default();
            for c in children {
                match needs(c).first() {
                    Some(s) => union = union.union(*s),
                    None => return Vec::new(),
                }
            }
            best(vec![union])
        }
    }
}

/// A class's bytes; `None` for one that reaches past a byte.
fn class(c: &Class) -> Option<ByteSet> {
    let mut s = ByteSet::default();
    match c {
        Class::Bytes(b) => {
            for r in b.iter() {
                for x in r.start()..=r.end() {
                    s.insert(x);
                }
            }
        }
        Class::Unicode(u) => {
            for r in u.iter() {
                for x in u32::from(r.start())..=u32::from(r.end()) {
                    s.insert(u8::try_from(x).ok()?);
                }
            }
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every transformation the reader knows, as named in rules.
    const NAMES: &[&str] = crate::seclang::names::TRANSFORMATIONS;

    /// `n` values of up to `max_len` bytes drawn from `alphabet` (xorshift, fixed seed).
    fn random_values(seed: u64, n: usize, max_len: u64, alphabet: &[u8]) -> Vec<Vec<u8>> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        (0..n)
            .map(|_| {
                let len = next() % max_len;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    fn bytes(p: &str) -> Vec<String> {
        regex_needs(p)
            .map(|n| {
                n.0.iter()
                    .map(|s| String::from_utf8_lossy(&s.bytes().collect::<Vec<_>>()).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn finds_rare_bytes_every_match_holds() {
        assert_eq!(bytes("(?i)<[^a-z]*script"), vec!["<"]);
        assert_eq!(
            bytes(r"^(?:[^']*'|[^\x22]*\x22|[^`]*`)\s*;"),
            vec![";", "\"'`"]
        );
        assert_eq!(bytes("(?:a|<)b"), Vec::<String>::new());
        assert_eq!(bytes("x(?:<)?y"), Vec::<String>::new());
        assert_eq!(bytes(r"\)(?:\(|\|)"), vec![")", "(|"]);
        assert_eq!(bytes("(?i)select"), Vec::<String>::new());
    }

    #[test]
    fn byte_sets_hold_each_byte_lower_cased() {
        let alphabet: Vec<u8> = (0..=255).collect();
        for v in random_values(0x2545_f491_4f6c_dd1d, 2_000, 40, &alphabet) {
            let mut one_by_one = ByteSet::default();
            for &b in &v {
                one_by_one.insert(b);
            }
            assert_eq!(ByteSet::of(&v), one_by_one, "{v:?}");
        }
    }

    #[test]
    fn met_only_when_every_set_is_present() {
        let n = regex_needs(r"'.*;").expect("needs");
        assert!(n.met(&ByteSet::of(b"a'b;c")));
        assert!(!n.met(&ByteSet::of(b"a'b c")));
        assert!(!n.met(&ByteSet::of(b"patient record 12 claim")));
    }

    /// For random values over an alphabet rich in escapes, every transformation's output
    /// holds only bytes its bound allows.
    #[test]
    fn bounds_hold_for_every_transformation() {
        const ALPHABET: &[u8] = b"aZ09 %+&#;\\/.*-'\"<>uUxX\t\n\0\xa0\xc3\xa9=,^(";
        let mut out = Vec::new();
        for x in random_values(0x9e37_79b9_7f4a_7c15, 20_000, 24, ALPHABET) {
            for n in NAMES {
                let t = Transform::from_name(n).expect("known");
                t.apply(&x, &mut out);
                let b = bound(t, ByteSet::of(&x));
                assert_eq!(
                    ByteSet::of(&out).union(b),
                    b,
                    "{n} of {:?} gave {:?}",
                    String::from_utf8_lossy(&x),
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }

    /// For random values, a transformation that `keeps` a value's bytes leaves it as it was
    /// (up to case), and one that `keeps_exactly` leaves it byte for byte and reports no change.
    #[test]
    fn kept_values_are_unchanged() {
        const ALPHABET: &[u8] = b"aZ09 %+&#;\\/.*-'\"<>uUxX\t\0\xa0\xc3=,^(";
        let mut out = Vec::new();
        let mut kept = 0;
        for x in random_values(0x2545_f491_4f6c_dd1d, 20_000, 12, ALPHABET) {
            for name in NAMES {
                let t = Transform::from_name(name).expect("known");
                if keeps(t, ByteSet::of(&x)) {
                    kept += 1;
                    let changed = t.apply(&x, &mut out);
                    assert!(
                        out.eq_ignore_ascii_case(&x),
                        "{name} changed {x:?} to {out:?}"
                    );
                    if keeps_exactly(t, ByteSet::of(&x)) {
                        assert!(out == x && !changed, "{name} changed {x:?} to {out:?}");
                    }
                }
            }
        }
        assert!(kept > 10_000);
    }

    #[test]
    fn phrases_need_their_rarest_bytes() {
        let n = phrase_needs(&[b"<?php".to_vec(), b"${".to_vec()]).expect("needs");
        assert!(n.met(&ByteSet::of(b"x${y")));
        assert!(!n.met(&ByteSet::of(b"php code")));
        assert!(phrase_needs(&[b"select".to_vec()]).is_none());
    }
}
