//! The zip methods of PKZIP 1.x that no maintained crate decodes: Implode (method 6:
//! Shannon-Fano trees over a 4 or 8 KiB window, APPNOTE 5.3) and Shrink (method 1: LZW with
//! 9- to 13-bit codes and partial clearing, APPNOTE 5.1). Both decode at most the member's
//! declared size and at most the cap.

/// Bits, least significant first.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    have: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits {
            data,
            pos: 0,
            acc: 0,
            have: 0,
        }
    }
    fn fill(&mut self) {
        while self.have <= 24 {
            let b = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            self.acc |= u32::from(b) << self.have;
            self.have += 8;
        }
    }
    fn peek(&mut self, n: u32) -> u32 {
        self.fill();
        self.acc & ((1u32 << n) - 1)
    }
    fn take(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.acc >>= n;
        self.have -= n;
        v
    }
    /// True once more bits were consumed than the input holds.
    fn overrun(&self) -> bool {
        self.pos.saturating_sub((self.have / 8) as usize) > self.data.len()
    }
}

/// A Shannon-Fano tree as a 16-bit lookup: (symbol, bit length) per bit pattern.
struct Tree {
    table: Vec<(u16, u8)>,
}

impl Tree {
    /// Reads a tree of `count` symbols: a byte giving the description's length, then per byte
    /// a run of (count, bit length) (APPNOTE 5.3.5).
    fn read(data: &[u8], at: &mut usize, count: usize) -> Result<Tree, String> {
        let n = usize::from(*data.get(*at).ok_or("tree cut short")?) + 1;
        *at += 1;
        let mut lengths = Vec::with_capacity(count);
        for _ in 0..n {
            let b = *data.get(*at).ok_or("tree cut short")?;
            *at += 1;
            let run = usize::from(b >> 4) + 1;
            let len = (b & 0xf) + 1;
            lengths.extend(std::iter::repeat_n(len, run));
        }
        if lengths.len() != count {
            return Err(format!(
                "a tree of {} codes where {count} are due",
                lengths.len()
            ));
        }
        Ok(Tree::build(&lengths))
    }

    fn build(lengths: &[u8]) -> Tree {
        // Sort by length (stable), assign codes from the longest down, reverse the bits.
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| lengths[i]);
        let mut codes = vec![0u16; lengths.len()];
        let (mut code, mut step, mut last) = (0u32, 0u32, 0u8);
        for &i in order.iter().rev() {
            code = code.wrapping_add(step);
            if lengths[i] != last {
                last = lengths[i];
                step = 1 << (16 - u32::from(last));
            }
            codes[i] = (code as u16).reverse_bits();
        }
        let mut table = vec![(0u16, 0u8); 1 << 16];
        for (sym, (&len, &c)) in lengths.iter().zip(&codes).enumerate() {
            let c = usize::from(c) & ((1 << len) - 1);
            let mut idx = c;
            while idx < table.len() {
                table[idx] = (sym as u16, len);
                idx += 1 << len;
            }
        }
        Tree { table }
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, String> {
        let (sym, len) = self.table[bits.peek(16) as usize];
        if len == 0 {
            return Err("a code no tree holds".into());
        }
        bits.take(u32::from(len));
        Ok(sym)
    }
}

/// Method 6. `flags`: the general purpose bits (bit 1: 8 KiB window, bit 2: a literal tree).
pub fn explode(data: &[u8], size: u64, flags: u16, cap: usize) -> Result<Vec<u8>, String> {
    let big_window = flags & 2 != 0;
    let literal_tree = flags & 4 != 0;
    let mut at = 0;
    let literals = if literal_tree {
        Some(Tree::read(data, &mut at, 256)?)
    } else {
        None
    };
    let lengths = Tree::read(data, &mut at, 64)?;
    let distances = Tree::read(data, &mut at, 64)?;
    let want = usize::try_from(size).unwrap_or(usize::MAX).min(cap);
    let mut out: Vec<u8> = Vec::with_capacity(want.min(1 << 20));
    let mut bits = Bits::new(&data[at..]);
    let low_bits = if big_window { 7 } else { 6 };
    let min_match = if literal_tree { 3 } else { 2 };
    while out.len() < want {
        if bits.overrun() {
            return Err("the compressed data ends early".into());
        }
        if bits.take(1) == 1 {
            let b = match &literals {
                Some(t) => t.decode(&mut bits)? as u8,
                None => bits.take(8) as u8,
            };
            out.push(b);
            continue;
        }
        let low = bits.take(low_bits) as usize;
        let dist = ((distances.decode(&mut bits)? as usize) << low_bits | low) + 1;
        let mut len = lengths.decode(&mut bits)? as usize;
        if len == 63 {
            len += bits.take(8) as usize;
        }
        len += min_match;
        for _ in 0..len {
            if out.len() >= want {
                break;
            }
            // Before the start of the output the window holds zeros.
            let b = out.len().checked_sub(dist).map_or(0, |i| out[i]);
            out.push(b);
        }
    }
    Ok(out)
}

/// Method 1.
pub fn unshrink(data: &[u8], size: u64, cap: usize) -> Result<Vec<u8>, String> {
    const MAX_BITS: u32 = 13;
    const TABLE: usize = 1 << MAX_BITS;
    const FREE: u16 = u16::MAX;
    let want = usize::try_from(size).unwrap_or(usize::MAX).min(cap);
    // prefix[c] = previous code (FREE when the slot is free), suffix[c] = last byte.
    let mut prefix = vec![FREE; TABLE];
    let mut suffix = vec![0u8; TABLE];
    for (i, s) in suffix.iter_mut().enumerate().take(256) {
        *s = i as u8;
    }
    let mut out: Vec<u8> = Vec::with_capacity(want.min(1 << 20));
    let mut bits = Bits::new(data);
    let mut width = 9u32;
    let mut next_free = 257usize;
    let mut prev: Option<usize> = None;
    let mut added = false;
    let mut stack = Vec::new();
    while out.len() < want {
        if bits.overrun() {
            return Err("the compressed data ends early".into());
        }
        let code = bits.take(width) as usize;
        if code == 256 {
            match bits.take(width) {
                1 if width < MAX_BITS => width += 1,
                // A clear with nothing added since the last one frees nothing: skipping it
                // keeps a stream of clears from costing a table sweep each.
                2 if added => {
                    partial_clear(&mut prefix);
                    next_free = free_slot(&prefix, 257);
                    added = false;
                }
                2 => {}
                other => return Err(format!("control code {other} after 256")),
            }
            continue;
        }
        let Some(p) = prev else {
            if code > 255 {
                return Err("the first code is not a byte".into());
            }
            out.push(code as u8);
            prev = Some(code);
            continue;
        };
        // The string for `code`, walked back from its last byte. A code not yet defined
        // (KwKwK) is prev's string followed by that string's first byte.
        let defined = code < 256 || prefix[code] != FREE;
        let mut c = if defined { code } else { p };
        stack.clear();
        loop {
            if c < 256 {
                stack.push(c as u8);
                break;
            }
            if prefix[c] == FREE || stack.len() >= TABLE {
                return Err("a code built on a cleared one".into());
            }
            stack.push(suffix[c]);
            c = usize::from(prefix[c]);
        }
        let first = c as u8;
        stack.reverse();
        if !defined {
            stack.push(first);
        }
        let room = want - out.len();
        out.extend_from_slice(&stack[..stack.len().min(room)]);
        if next_free < TABLE {
            prefix[next_free] = p as u16;
            suffix[next_free] = first;
            next_free = free_slot(&prefix, next_free + 1);
            added = true;
        }
        prev = Some(code);
    }
    Ok(out)
}

/// Frees every code that is no other code's prefix (APPNOTE 5.1.4).
fn partial_clear(prefix: &mut [u16]) {
    let mut used = vec![false; prefix.len()];
    for &p in prefix.iter().skip(257) {
        if p != u16::MAX {
            used[usize::from(p)] = true;
        }
    }
    for (c, p) in prefix.iter_mut().enumerate().skip(257) {
        if !used[c] {
            *p = u16::MAX;
        }
    }
}

fn free_slot(prefix: &[u16], from: usize) -> usize {
    (from..prefix.len())
        .find(|&c| prefix[c] == u16::MAX)
        .unwrap_or(prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LSB-first bit writer for hand-made streams.
    struct W {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl W {
        fn put(&mut self, v: u32, n: u32) {
            self.acc |= u64::from(v) << self.n;
            self.n += n;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        fn done(mut self) -> Vec<u8> {
            if self.n > 0 {
                self.out.push(self.acc as u8);
            }
            self.out
        }
    }

    #[test]
    fn shannon_fano_codes_follow_appnote() {
        // Four symbols of lengths 2,2,2,2: codes 00,01,10,11 assigned from the last symbol.
        let t = Tree::build(&[2, 2, 2, 2]);
        let mut seen: Vec<u16> = (0..4u32).map(|bits| t.table[bits as usize].0).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3]);
        // Lengths 1 and 2,2: the short code takes half the space.
        let t = Tree::build(&[2, 1, 2]);
        assert_eq!(t.table.iter().filter(|(s, _)| *s == 1).count(), 1 << 15);
    }

    #[test]
    fn unshrink_literals_and_repeats() {
        // "ababab": a, b, (ab)=257, (ba)=258? codes: a b 257 257 → a b ab ab
        let mut w = W {
            out: Vec::new(),
            acc: 0,
            n: 0,
        };
        for c in [b'a' as u32, b'b' as u32, 257, 257] {
            w.put(c, 9);
        }
        let data = w.done();
        assert_eq!(unshrink(&data, 6, 1 << 20).unwrap(), b"ababab");
        // KwKwK: a, then code 257 before it is defined = "aa".
        let mut w = W {
            out: Vec::new(),
            acc: 0,
            n: 0,
        };
        for c in [b'a' as u32, 257] {
            w.put(c, 9);
        }
        assert_eq!(unshrink(&w.done(), 3, 100).unwrap(), b"aaa");
        assert!(unshrink(&[0xff, 0xff, 0xff], 10, 100).is_err());
        assert_eq!(unshrink(&data, 6, 4).unwrap(), b"abab");
    }

    #[test]
    fn explode_rejects_bad_trees_and_bounds_output() {
        assert!(explode(&[], 10, 0, 100).is_err());
        assert!(explode(&[0x00, 0x05], 10, 0, 100).is_err());
        // Hostile bytes: an error or at most the cap, never a panic.
        let junk: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for flags in [0, 2, 4, 6] {
            if let Ok(out) = explode(&junk, 1 << 30, flags, 1000) {
                assert!(out.len() <= 1000);
            }
        }
    }
}
