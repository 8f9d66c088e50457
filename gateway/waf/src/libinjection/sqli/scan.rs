//! Byte helpers with the C library's exact edge behaviour (a NUL byte in the input acts like the
//! terminator `strchr` finds), and the keyword and fingerprint look-ups.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

use super::fingerprints::FINGERPRINTS;
use super::keywords::KEYWORDS;
use super::token::Kind;

/// A set of bytes as a table.
pub(super) type ByteSet = [bool; 256];

/// The set holding `bytes` and NUL (C's `strchr(set, 0)` finds the terminator).
pub(super) const fn byte_set(bytes: &[u8]) -> ByteSet {
    let mut set = [false; 256];
    set[0] = true;
    let mut i = 0;
    while i < bytes.len() {
        set[bytes[i] as usize] = true;
        i += 1;
    }
    set
}

/// `char_is_white`: space, `\t \n \v \f \r`, NUL and Latin-1 NBSP (0xA0).
pub(super) fn is_white(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0 | 0)
}

/// Byte `i` of `s`, or 0 past the end (the terminator the C code would read there).
pub(super) fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// `s[from..to]`, empty when out of range.
pub(super) fn slice(s: &[u8], from: usize, to: usize) -> &[u8] {
    s.get(from..to).unwrap_or(&[])
}

/// `strlenspn`: length of the prefix of `s[from..]` made of bytes in `set`.
pub(super) fn span(s: &[u8], from: usize, set: &ByteSet) -> usize {
    let rest = s.get(from..).unwrap_or(&[]);
    rest.iter()
        .position(|&c| !set[usize::from(c)])
        .unwrap_or(rest.len())
}

/// `strlencspn`: length of the prefix of `s[from..]` made of bytes not in `set`.
pub(super) fn cspan(s: &[u8], from: usize, set: &ByteSet) -> usize {
    let rest = s.get(from..).unwrap_or(&[]);
    rest.iter()
        .position(|&c| set[usize::from(c)])
        .unwrap_or(rest.len())
}

/// `memchr` from `from`: index of the first `c` at or after `from`.
pub(super) fn find(s: &[u8], from: usize, c: u8) -> Option<usize> {
    let rest = s.get(from..)?;
    memchr::memchr(c, rest).map(|i| from + i)
}

/// `memchr2`: index of the first `c0 c1` pair lying inside `s[from..to]`.
pub(super) fn find_pair(s: &[u8], from: usize, to: usize, c0: u8, c1: u8) -> Option<usize> {
    let hay = s.get(from..to.min(s.len()))?;
    hay.windows(2)
        .position(|w| w[0] == c0 && w[1] == c1)
        .map(|i| from + i)
}

/// `my_memmem`: index of the first `needle` lying inside `s[from..to]`.
pub(super) fn find_sub(s: &[u8], from: usize, to: usize, needle: &[u8]) -> Option<usize> {
    let hay = s.get(from..to.min(s.len()))?;
    memchr::memmem::find(hay, needle).map(|i| from + i)
}

/// The kind libinjection gives a word, operator or phrase (ASCII case ignored), if any.
pub(super) fn lookup(word: &[u8]) -> Option<Kind> {
    static TABLE: LazyLock<HashMap<&[u8], Kind, Fnv>> =
        LazyLock::new(|| KEYWORDS.iter().copied().collect());
    let mut buf = [0u8; 32];
    TABLE.get(upper(word, &mut buf)?).copied()
}

/// The fingerprint is on libinjection's blacklist.
pub(super) fn is_blacklisted(fingerprint: &[u8]) -> bool {
    static TABLE: LazyLock<HashSet<&[u8], Fnv>> =
        LazyLock::new(|| FINGERPRINTS.iter().copied().collect());
    let mut buf = [0u8; 32];
    upper(fingerprint, &mut buf).is_some_and(|key| TABLE.contains(key))
}

/// FNV-1a: the keys are short and not attacker-chosen (the tables are fixed).
#[derive(Default, Clone, Copy)]
struct Fnv;

impl BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

/// The FNV-1a state.
struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `word` with a-z upper-cased, in `buf`; `None` when longer than any table entry can be.
fn upper<'b>(word: &[u8], buf: &'b mut [u8; 32]) -> Option<&'b [u8]> {
    let key = buf.get_mut(..word.len())?;
    for (k, c) in key.iter_mut().zip(word) {
        *k = c.to_ascii_uppercase();
    }
    Some(key)
}
