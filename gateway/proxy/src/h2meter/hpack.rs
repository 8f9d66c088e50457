//! The decoded size of an HPACK header block (RFC 7541), computed without decoding it: each field
//! counts as name + value + 32 octets, as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113
//! §6.5.2). Only the lengths of the dynamic table's entries are kept, so a block of one-byte
//! references to a 4 KB entry (an HPACK bomb) is measured at the cost of its compressed size.
//!
//! Huffman-coded strings are counted at their encoded length: a lower bound for the text headers
//! carry (their codes are 5 to 8 bits), so the size is never overstated for ordinary text. The
//! table may then keep entries the peer's decoder evicted, but only its oldest ones: indexes
//! from the newest entry, the only ones a peer may send, still name the same entries.

use std::collections::VecDeque;

/// Name lengths of the static table's 61 entries (RFC 7541 Appendix A), and value lengths for
/// the entries that carry one.
const STATIC: [(u8, u8); 61] = [
    (10, 0),  // :authority
    (7, 3),   // :method GET
    (7, 4),   // :method POST
    (5, 1),   // :path /
    (5, 11),  // :path /index.html
    (7, 4),   // :scheme http
    (7, 5),   // :scheme https
    (7, 3),   // :status 200
    (7, 3),   // :status 204
    (7, 3),   // :status 206
    (7, 3),   // :status 304
    (7, 3),   // :status 400
    (7, 3),   // :status 404
    (7, 3),   // :status 500
    (14, 0),  // accept-charset
    (15, 13), // accept-encoding: gzip, deflate
    (15, 0),  // accept-language
    (13, 0),  // accept-ranges
    (6, 0),   // accept
    (27, 0),  // access-control-allow-origin
    (3, 0),   // age
    (5, 0),   // allow
    (13, 0),  // authorization
    (13, 0),  // cache-control
    (19, 0),  // content-disposition
    (16, 0),  // content-encoding
    (16, 0),  // content-language
    (14, 0),  // content-length
    (16, 0),  // content-location
    (13, 0),  // content-range
    (12, 0),  // content-type
    (6, 0),   // cookie
    (4, 0),   // date
    (4, 0),   // etag
    (6, 0),   // expect
    (7, 0),   // expires
    (4, 0),   // from
    (4, 0),   // host
    (8, 0),   // if-match
    (17, 0),  // if-modified-since
    (13, 0),  // if-none-match
    (8, 0),   // if-range
    (19, 0),  // if-unmodified-since
    (13, 0),  // last-modified
    (4, 0),   // link
    (8, 0),   // location
    (12, 0),  // max-forwards
    (18, 0),  // proxy-authenticate
    (19, 0),  // proxy-authorization
    (5, 0),   // range
    (7, 0),   // referer
    (7, 0),   // refresh
    (11, 0),  // retry-after
    (6, 0),   // server
    (10, 0),  // set-cookie
    (25, 0),  // strict-transport-security
    (17, 0),  // transfer-encoding
    (10, 0),  // user-agent
    (4, 0),   // vary
    (3, 0),   // via
    (16, 0),  // www-authenticate
];

/// Per-entry overhead in the table and in the header list size.
const ENTRY_OVERHEAD: usize = 32;

/// Why a block could not be measured (the sizer is then out of step with the peer's table and
/// measures nothing more on this connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The block ended inside a field.
    #[error("header block truncated")]
    Truncated,
    /// An integer longer than any index or length could be.
    #[error("HPACK integer overflow")]
    Overflow,
    /// An index past the static and dynamic tables.
    #[error("HPACK index {0} out of range")]
    Index(usize),
    /// A table size update above the size the gateway allows.
    #[error("HPACK table size update to {0} over the limit")]
    TableSize(usize),
}

/// The lengths in a peer's HPACK dynamic table.
#[derive(Debug)]
pub struct Sizer {
    /// (name length, value length), newest first.
    entries: VecDeque<(usize, usize)>,
    size: usize,
    max: usize,
    limit: usize,
}

impl Sizer {
    /// A table allowed `limit` octets (the SETTINGS_HEADER_TABLE_SIZE the gateway sends).
    pub fn new(limit: usize) -> Self {
        Sizer {
            entries: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
        }
    }

    /// The decoded header list size of `block`, updating the table as a decoder would.
    pub fn block_size(&mut self, block: &[u8]) -> Result<usize, SizeError> {
        let mut r = Reader { buf: block, pos: 0 };
        let mut total = 0usize;
        while let Some(&b) = r.buf.get(r.pos) {
            let field = if b & 0x80 != 0 {
                let (name, value) = self.entry(r.int(7)?)?;
                name + value
            } else if b & 0xC0 == 0x40 {
                let (name, value) = self.literal(&mut r, 6)?;
                self.insert(name, value);
                name + value
            } else if b & 0xE0 == 0x20 {
                let max = r.int(5)?;
                if max > self.limit {
                    return Err(SizeError::TableSize(max));
                }
                self.max = max;
                self.evict(0);
                continue;
            } else {
                let (name, value) = self.literal(&mut r, 4)?;
                name + value
            };
            total = total.saturating_add(field + ENTRY_OVERHEAD);
        }
        Ok(total)
    }

    /// A literal field's name and value lengths (name indexed, or a string of its own).
    fn literal(&self, r: &mut Reader<'_>, prefix: u8) -> Result<(usize, usize), SizeError> {
        let index = r.int(prefix)?;
        let name = if index == 0 {
            r.string()?
        } else {
            self.entry(index)?.0
        };
        Ok((name, r.string()?))
    }

    fn entry(&self, index: usize) -> Result<(usize, usize), SizeError> {
        match index {
            0 => Err(SizeError::Index(0)),
            1..=61 => {
                let (n, v) = STATIC[index - 1];
                Ok((usize::from(n), usize::from(v)))
            }
            _ => self
                .entries
                .get(index - 62)
                .copied()
                .ok_or(SizeError::Index(index)),
        }
    }

    fn insert(&mut self, name: usize, value: usize) {
        let size = name + value + ENTRY_OVERHEAD;
        if size > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.entries.push_front((name, value));
        self.size += size;
    }

    /// Evicts the oldest entries until `room` more octets fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((n, v)) = self.entries.pop_back() else {
                break;
            };
            self.size -= n + v + ENTRY_OVERHEAD;
        }
    }
}

/// A cursor over a header block.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    /// An integer with an N-bit prefix (RFC 7541 §5.1), at most 2^28.
    fn int(&mut self, prefix: u8) -> Result<usize, SizeError> {
        let mask = (1u8 << prefix) - 1;
        let first = *self.buf.get(self.pos).ok_or(SizeError::Truncated)? & mask;
        self.pos += 1;
        if first < mask {
            return Ok(usize::from(first));
        }
        let mut value = usize::from(mask);
        for shift in (0..28).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(SizeError::Truncated)?;
            self.pos += 1;
            value += usize::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(SizeError::Overflow)
    }

    /// A string's length (Huffman: its encoded length, see the module note); skips its octets.
    fn string(&mut self) -> Result<usize, SizeError> {
        let len = self.int(7)?;
        let end = self.pos.checked_add(len).ok_or(SizeError::Overflow)?;
        if end > self.buf.len() {
            return Err(SizeError::Truncated);
        }
        self.pos = end;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal with incremental indexing and a new name (no Huffman).
    fn indexed_literal(name: &str, value: &str) -> Vec<u8> {
        let mut b = vec![0x40, name.len() as u8];
        b.extend_from_slice(name.as_bytes());
        b.extend(encode_len(value.len()));
        b.extend_from_slice(value.as_bytes());
        b
    }

    fn encode_len(n: usize) -> Vec<u8> {
        if n < 127 {
            return vec![n as u8];
        }
        let mut out = vec![0x7F];
        let mut rest = n - 127;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
        out
    }

    #[test]
    fn rfc7541_c3_request_without_huffman() {
        // C.3.1: :method GET, :scheme http, :path /, :authority www.example.com
        let mut s = Sizer::new(4096);
        let first = [
            0x82, 0x86, 0x84, 0x41, 0x0f, b'w', b'w', b'w', b'.', b'e', b'x', b'a', b'm', b'p',
            b'l', b'e', b'.', b'c', b'o', b'm',
        ];
        assert_eq!(
            s.block_size(&first),
            Ok((7 + 3) + (7 + 4) + (5 + 1) + (10 + 15) + 4 * 32)
        );
        assert_eq!(s.size, 57, "one entry of 57 octets, as C.3.1 says");
        // C.3.2 adds cache-control: no-cache and references :authority (index 62).
        let second = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x08, b'n', b'o', b'-', b'c', b'a', b'c', b'h', b'e',
        ];
        assert_eq!(
            s.block_size(&second),
            Ok(10 + 11 + 6 + 25 + (13 + 8) + 5 * 32)
        );
        assert_eq!(s.size, 110);
    }

    #[test]
    fn a_bomb_is_measured_by_what_it_expands_to() {
        let mut s = Sizer::new(4096);
        let value = "a".repeat(4000);
        let mut block = indexed_literal("x", &value);
        block.extend(std::iter::repeat_n(0xbe, 10_000));
        let size = s.block_size(&block).unwrap();
        assert_eq!(size, 10_001 * (1 + 4000 + 32));
    }

    #[test]
    fn eviction_and_size_updates_follow_the_decoder() {
        let mut s = Sizer::new(4096);
        for i in 0..200 {
            s.block_size(&indexed_literal("k", &format!("v{i:03}")))
                .unwrap();
        }
        assert!(s.size <= 4096);
        assert_eq!(s.entries.len(), 4096 / (1 + 4 + 32));
        assert_eq!(s.block_size(&[0x20]), Ok(0));
        assert!(s.entries.is_empty());
        assert_eq!(s.block_size(&[0xbe]), Err(SizeError::Index(62)));
        assert_eq!(s.block_size(&[0x3f, 0xe1, 0x1f]), Ok(0), "back to 4096");
        assert_eq!(
            s.block_size(&[0x3f, 0xe2, 0x1f]),
            Err(SizeError::TableSize(4097))
        );
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let mut s = Sizer::new(4096);
        assert_eq!(s.block_size(&[0x40, 0x05, b'a']), Err(SizeError::Truncated));
        assert_eq!(
            s.block_size(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(SizeError::Overflow)
        );
        assert_eq!(s.block_size(&[0x80]), Err(SizeError::Index(0)));
        assert_eq!(s.block_size(&[0x00, 0x7f]), Err(SizeError::Truncated));
    }
}
