//! Sets of bytes: what one position of a PCRE pattern in non-UTF mode can match (a literal, a
//! bracket class, `\d`, `.`), with the classes PCRE2's default (C locale, ASCII-only) character
//! tables give.

/// A set of bytes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    /// The empty set.
    pub(crate) const EMPTY: ByteSet = ByteSet([0; 4]);
    /// Every byte.
    pub(crate) const ALL: ByteSet = ByteSet([u64::MAX; 4]);

    /// The set of one byte.
    pub(crate) fn byte(b: u8) -> ByteSet {
        let mut s = ByteSet::EMPTY;
        s.insert(b);
        s
    }

    /// The bytes `lo..=hi` (empty when `lo > hi`).
    pub(crate) fn range(lo: u8, hi: u8) -> ByteSet {
        let mut s = ByteSet::EMPTY;
        for b in lo..=hi {
            s.insert(b);
        }
        s
    }

    /// Adds a byte.
    pub(crate) fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    /// Whether the set has `b`.
    pub(crate) fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    /// The bytes in either set.
    pub(crate) fn union(self, o: ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] | o.0[i]))
    }

    /// The bytes in both sets.
    pub(crate) fn intersect(self, o: ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] & o.0[i]))
    }

    /// The bytes not in the set.
    pub(crate) fn complement(self) -> ByteSet {
        ByteSet(self.0.map(|w| !w))
    }

    /// Whether the set has no byte.
    pub(crate) fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The set with the other ASCII case of every letter added (PCRE's default tables fold
    /// only ASCII letters).
    pub(crate) fn fold_ascii_case(self) -> ByteSet {
        let mut out = self;
        for b in (b'A'..=b'Z').chain(b'a'..=b'z') {
            if self.contains(b) {
                out.insert(b ^ 0x20);
            }
        }
        out
    }

    /// The maximal runs `lo..=hi` of the set, in order.
    pub(crate) fn ranges(&self) -> Vec<(u8, u8)> {
        let mut out = Vec::new();
        let mut start: Option<u8> = None;
        for b in 0..=255u8 {
            match (self.contains(b), start) {
                (true, None) => start = Some(b),
                (false, Some(s)) => {
                    out.push((s, b - 1));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, 255));
        }
        out
    }
}

/// `\d`: ASCII digits.
pub(crate) fn digit() -> ByteSet {
    ByteSet::range(b'0', b'9')
}

/// `\w`: ASCII letters, digits and `_`.
pub(crate) fn word() -> ByteSet {
    alpha().union(digit()).union(ByteSet::byte(b'_'))
}

/// `\s`: space, `\t`, `\n`, VT (0x0b, included since PCRE 8.34 and in PCRE2), `\f`, `\r`.
pub(crate) fn space() -> ByteSet {
    ByteSet::range(0x09, 0x0d).union(ByteSet::byte(b' '))
}

/// `\h` in non-UTF mode: tab, space and NBSP (0xa0).
pub(crate) fn hspace() -> ByteSet {
    ByteSet::byte(0x09)
        .union(ByteSet::byte(b' '))
        .union(ByteSet::byte(0xa0))
}

/// `\v` in non-UTF mode: LF, VT, FF, CR and NEL (0x85). Not the single byte VT.
pub(crate) fn vspace() -> ByteSet {
    ByteSet::range(0x0a, 0x0d).union(ByteSet::byte(0x85))
}

fn alpha() -> ByteSet {
    ByteSet::range(b'A', b'Z').union(ByteSet::range(b'a', b'z'))
}

/// A POSIX class by name (`alpha` for `[:alpha:]`), C locale. Under caseless matching PCRE2
/// turns `lower` and `upper` into `alpha`.
pub(crate) fn posix(name: &[u8], caseless: bool) -> Option<ByteSet> {
    let graph = ByteSet::range(0x21, 0x7e);
    Some(match name {
        b"alpha" => alpha(),
        b"lower" if caseless => alpha(),
        b"upper" if caseless => alpha(),
        b"lower" => ByteSet::range(b'a', b'z'),
        b"upper" => ByteSet::range(b'A', b'Z'),
        b"digit" => digit(),
        b"alnum" => alpha().union(digit()),
        b"word" => word(),
        b"space" => space(),
        b"blank" => ByteSet::byte(b' ').union(ByteSet::byte(b'\t')),
        b"cntrl" => ByteSet::range(0, 0x1f).union(ByteSet::byte(0x7f)),
        b"graph" => graph,
        b"print" => ByteSet::range(0x20, 0x7e),
        b"punct" => graph.intersect(alpha().union(digit()).complement()),
        b"xdigit" => digit()
            .union(ByteSet::range(b'A', b'F'))
            .union(ByteSet::range(b'a', b'f')),
        b"ascii" => ByteSet::range(0, 0x7f),
        _ => return None,
    })
}
