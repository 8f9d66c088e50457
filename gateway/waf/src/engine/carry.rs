//! A transformation chain's effect on byte sets, worked out once at load: what
//! [`needs::bound`] and [`needs::keeps`] give step by step, as a few set operations. The
//! rule-level checks of `bound` carry every summary of a transaction through the chains of
//! the rules that read it (hundreds per request); folding the transformations one by one
//! each time cost more than the rest of the check.
//!
//! Each transformation's bound adds a constant set to the bytes, or another when the bytes
//! hold one of its trigger bytes (`%` for URL decoding: then every byte). Whether a chain
//! keeps its values as they are fails exactly when the bytes meet one of the chain's
//! forbidden bytes, or always (a transformation that changes every value).

use super::needs::{self, ByteSet, Needs};
use crate::transform::Transform;

/// One transformation's bound: the bytes gain `then` when they meet `on`, else `otherwise`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Add {
    on: ByteSet,
    then: ByteSet,
    otherwise: ByteSet,
}

/// A chain's effect on byte sets (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Carry {
    adds: Box<[Add]>,
    /// Bytes whose presence means some step may change a value beyond ASCII case.
    forbid: ByteSet,
    /// Some step may change any value (a hash, an encoder, `length`).
    never_keeps: bool,
}

impl Carry {
    /// The effect of `transforms`, applied in order.
    pub(crate) fn of(transforms: &[Transform]) -> Carry {
        let mut adds: Vec<Add> = Vec::new();
        let mut forbid = ByteSet::default();
        let mut never_keeps = false;
        for &t in transforms {
            never_keeps |= !needs::keeps(t, ByteSet::default());
            forbid = forbid.union(forbidden(t));
            let add = step(t);
            if add.then.is_empty() && add.otherwise.is_empty() {
                continue;
            }
            // Unconditional adds in a row are one.
            match adds.last_mut() {
                Some(last) if last.on.is_empty() && add.on.is_empty() => {
                    last.otherwise = last.otherwise.union(add.otherwise);
                }
                _ => adds.push(add),
            }
        }
        Carry {
            adds: adds.into(),
            forbid,
            never_keeps,
        }
    }

    /// The bytes a value holding `s` can hold after the chain (a bound: see
    /// [`needs::bound`]).
    fn bound(&self, s: ByteSet) -> ByteSet {
        self.adds.iter().fold(s, |s, a| {
            s.union(match s.intersects(&a.on) {
                true => a.then,
                false => a.otherwise,
            })
        })
    }

    /// Whether the chain keeps every value holding `s` as it was up to ASCII case (see
    /// [`needs::keeps`]).
    fn keeps(&self, s: ByteSet) -> bool {
        !self.never_keeps && !s.intersects(&self.forbid)
    }
}

/// `needs::bound` of `t` as a conditional add, found by asking it about the empty set and
/// about one trigger byte (what it adds beyond that byte), so the two cannot disagree.
fn step(t: Transform) -> Add {
    let otherwise = needs::bound(t, ByteSet::default());
    match trigger(t) {
        Some((on, b)) => Add {
            on,
            then: needs::bound(t, ByteSet::of(&[b])).without(b),
            otherwise,
        },
        None => Add {
            on: ByteSet::default(),
            then: ByteSet::default(),
            otherwise,
        },
    }
}

/// The bytes whose presence changes `t`'s bound from an unconditional add (`needs::bound`'s
/// escape bytes), and one of them.
fn trigger(t: Transform) -> Option<(ByteSet, u8)> {
    use Transform as T;
    let one = |b: u8| Some((ByteSet::of(&[b]), b));
    match t {
        T::UrlDecode | T::UrlDecodeUni => one(b'%'),
        T::HtmlEntityDecode => one(b'&'),
        T::JsDecode | T::CssDecode | T::EscapeSeqDecode => one(b'\\'),
        T::Utf8ToUnicode => Some((ByteSet::HIGH, 0x80)),
        _ => None,
    }
}

/// The bytes that make `t` no longer keep a value (`needs::keeps`, as a set).
fn forbidden(t: Transform) -> ByteSet {
    let mut set = ByteSet::default();
    for b in 0..=255u8 {
        if !needs::keeps(t, ByteSet::of(&[b])) {
            set = set.union(ByteSet::of(&[b]));
        }
    }
    set
}

/// A link's rule-level byte check: whether a value holding some bytes can meet the link's
/// byte needs after its chain, and whether the chain keeps such values as they are. Bytes
/// that hold none of the chain's trigger bytes (most benign values) are judged on their own:
/// the chain then only adds constant bytes, and needs those already meet are dropped at
/// load.
#[derive(Debug, Clone, Default)]
pub(crate) struct ByteCheck {
    carry: Carry,
    needs: Option<Needs>,
    /// Every trigger byte of the chain.
    triggers: ByteSet,
    /// Whether bytes without a trigger are judged on their own (false when the chain's
    /// constant additions set off a later step's trigger).
    quick: bool,
    /// For bytes without a trigger: the needs the chain's constant additions do not meet.
    rest: [ByteSet; 3],
    rest_len: u8,
}

impl ByteCheck {
    /// The check of a link with `transforms` and byte `needs`.
    pub(crate) fn of(transforms: &[Transform], needs: Option<Needs>) -> ByteCheck {
        let carry = Carry::of(transforms);
        let mut added = ByteSet::default();
        let mut quick = true;
        let mut triggers = ByteSet::default();
        for a in carry.adds.iter() {
            quick &= !added.intersects(&a.on);
            triggers = triggers.union(a.on);
            added = added.union(a.otherwise);
        }
        let mut rest = [ByteSet::default(); 3];
        let mut rest_len = 0u8;
        for n in needs.as_ref().map(Needs::sets).unwrap_or_default() {
            if n.intersects(&added) {
                continue;
            }
            match rest.get_mut(usize::from(rest_len)) {
                Some(r) => *r = *n,
                None => quick = false,
            }
            rest_len += 1;
        }
        ByteCheck {
            carry,
            needs,
            triggers,
            quick,
            rest,
            rest_len: rest_len.min(3),
        }
    }

    /// The byte sets a value must draw from for the link's operator to match.
    pub(crate) fn needs(&self) -> Option<&Needs> {
        self.needs.as_ref()
    }

    /// For a source whose values hold the bytes `s`: whether some value may meet the link's
    /// needs after the chain, and whether the chain keeps every such value as it was up to
    /// ASCII case.
    pub(crate) fn judge(&self, s: ByteSet) -> (bool, bool) {
        let keeps = self.carry.keeps(s);
        let Some(needs) = &self.needs else {
            return (true, keeps);
        };
        let met = match self.quick && !s.intersects(&self.triggers) {
            true => self
                .rest
                .iter()
                .take(usize::from(self.rest_len))
                .all(|n| n.intersects(&s)),
            false => needs.met(&self.carry.bound(s)),
        };
        (met, keeps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every transformation `needs` knows, for chains of up to three of them.
    const ALL: &[Transform] = &[
        Transform::None,
        Transform::Lowercase,
        Transform::Uppercase,
        Transform::Trim,
        Transform::TrimLeft,
        Transform::TrimRight,
        Transform::RemoveNulls,
        Transform::ReplaceNulls,
        Transform::RemoveWhitespace,
        Transform::CompressWhitespace,
        Transform::RemoveCommentsChar,
        Transform::RemoveComments,
        Transform::ReplaceComments,
        Transform::CmdLine,
        Transform::NormalizePath,
        Transform::NormalizePathWin,
        Transform::UrlDecode,
        Transform::UrlDecodeUni,
        Transform::HtmlEntityDecode,
        Transform::JsDecode,
        Transform::CssDecode,
        Transform::EscapeSeqDecode,
        Transform::Utf8ToUnicode,
        Transform::Length,
        Transform::HexEncode,
        Transform::UrlEncode,
        Transform::Base64Decode,
        Transform::Base64DecodeExt,
        Transform::Base64Encode,
        Transform::HexDecode,
        Transform::SqlHexDecode,
        Transform::Md5,
        Transform::Sha1,
        Transform::ParityEven7bit,
        Transform::ParityOdd7bit,
        Transform::ParityZero7bit,
    ];

    /// The sets the checks meet: each byte alone, and values of a few kinds.
    fn sets() -> Vec<ByteSet> {
        let mut out: Vec<ByteSet> = (0..=255u8).map(|b| ByteSet::of(&[b])).collect();
        for v in [
            &b""[..],
            b"Mozilla/5.0 (X11; Linux x86_64)",
            b"text/html,application/xhtml+xml;q=0.9",
            b"a=1&b=%27",
            b"\\x41 &lt; /* c */",
            "診療 報酬".as_bytes(),
            b"line\r\n\tnext\x00",
        ] {
            out.push(ByteSet::of(v));
        }
        out
    }

    /// Every chain of one or two transformations, and of three ending in one of a few.
    fn chains() -> Vec<Vec<Transform>> {
        let mut chains: Vec<Vec<Transform>> = vec![vec![]];
        for &a in ALL {
            chains.push(vec![a]);
            for &b in ALL {
                chains.push(vec![a, b]);
                for c in [
                    Transform::UrlDecodeUni,
                    Transform::Utf8ToUnicode,
                    Transform::Lowercase,
                ] {
                    chains.push(vec![a, b, c]);
                }
            }
        }
        chains
    }

    fn fold(chain: &[Transform], s: ByteSet) -> (ByteSet, bool) {
        let bound = chain.iter().fold(s, |s, &t| needs::bound(t, s));
        (bound, chain.iter().all(|&t| needs::keeps(t, s)))
    }

    /// The precomputed effect is exactly the step-by-step fold, for every chain of up to
    /// three transformations and every set above.
    #[test]
    fn a_carry_gives_what_the_fold_gives() {
        let sets = sets();
        for chain in &chains() {
            let carry = Carry::of(chain);
            for &s in &sets {
                assert_eq!(
                    (carry.bound(s), carry.keeps(s)),
                    fold(chain, s),
                    "{chain:?} on {s:?}"
                );
            }
        }
    }

    /// The byte check judges as the fold and the needs do, quick path or not, for needs of
    /// several shapes (bytes the chains add, trigger bytes, rare punctuation).
    #[test]
    fn a_byte_check_judges_as_the_fold_and_the_needs() {
        let needs: Vec<Needs> = [
            "<script",
            "[;|&].*['\"]",
            "%[0-9a-f]{2}",
            "\\\\x[0-9a-f]",
            "\\.\\./",
            "=\\(",
            "&#x?[0-9]+;",
        ]
        .iter()
        .map(|p| needs::regex_needs(p).unwrap_or_else(|| panic!("{p} has needs")))
        .collect();
        let sets = sets();
        // Chains of up to two steps: a constant addition setting off a later trigger
        // (`urlEncode` then `urlDecode`) is among them.
        for chain in chains().into_iter().filter(|c| c.len() <= 2) {
            for n in &needs {
                let check = ByteCheck::of(&chain, Some(n.clone()));
                for &s in &sets {
                    let (bound, keeps) = fold(&chain, s);
                    assert_eq!(
                        check.judge(s),
                        (n.met(&bound), keeps),
                        "{chain:?} {n:?} {s:?}"
                    );
                }
            }
        }
    }
}
