//! Upack-packed Windows programs (Dwing's Upack 0.24 to 0.399, 1.1/1.2 beta), unpacked as
//! ClamAV unpacks them (`cli_scanpe`'s Upack path, `unupack` and `unupack399` in `upack.c`,
//! the range-decoder steps `lzma_upack_esi_*` in `mew.c`). Upack's loader is an LZMA variant
//! whose probability tables live inside the image being unpacked; ClamAV's code is a
//! transcription of the loader's machine code, and this is a transcription of ClamAV's, with
//! its pointers as offsets into the image and every access checked. No maintained crate
//! unpacks Upack.
//!
//! Two layouts: three sections and an optional header of 0x148 bytes (0.39 and two variants
//! ClamAV names by sample), or two sections (0.39's other output, 1.1/1.2). The unpacked image
//! is rebuilt with ClamAV's layout ([`super::rebuild`]).

use super::pe::{self, Unpacked};
use super::rebuild;
use super::u32_le;

/// The range decoder's state: where the next input bytes are, its range and code.
struct Range {
    p0: i64,
    p1: u32,
    p2: u32,
}

/// The image being unpacked, addressed by offset (ClamAV's `dest`).
struct Image {
    d: Vec<u8>,
}

/// Variants of the three-section layout.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V399,
    V0151477,
    V0297729,
}

impl Image {
    fn has(&self, at: i64, n: i64) -> bool {
        at >= 0 && n >= 0 && at.checked_add(n).is_some_and(|e| e <= self.d.len() as i64)
    }
    fn byte(&self, at: i64) -> Option<u8> {
        self.has(at, 1).then(|| self.d[at as usize])
    }
    fn rd(&self, at: i64) -> Option<u32> {
        self.has(at, 4)
            .then(|| u32_le(&self.d, at as usize))
            .flatten()
    }
    fn wr(&mut self, at: i64, v: u32) -> Option<()> {
        if !self.has(at, 4) {
            return None;
        }
        self.d[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
        Some(())
    }
    /// Copies `n` dwords from `from` to `to`, both moved past them (the loader's `rep movsd`).
    fn copy_words(&mut self, from: &mut i64, to: &mut i64, n: i64) -> Option<()> {
        for _ in 0..n {
            let v = self.rd(*from)?;
            self.wr(*to, v)?;
            *from += 4;
            *to += 4;
        }
        Some(())
    }
    fn set(&mut self, at: i64, v: u8) -> Option<()> {
        *self.d.get_mut(usize::try_from(at).ok()?)? = v;
        Some(())
    }

    /// `lzma_upack_esi_00`: one bit with the probability at `prob`.
    fn bit(&mut self, r: &mut Range, prob: i64) -> Option<u32> {
        let bound = r.p1 >> 11;
        let p = self.rd(prob)?;
        let bound = bound.wrapping_mul(p);
        let code = self.rd(r.p0)?.swap_bytes().wrapping_sub(r.p2);
        let bit = if code < bound {
            r.p1 = bound;
            self.wr(prob, p.wrapping_add(0x800u32.wrapping_sub(p) >> 5))?;
            0
        } else {
            r.p2 = r.p2.wrapping_add(bound);
            r.p1 = r.p1.wrapping_sub(bound);
            self.wr(prob, p.wrapping_sub(p >> 5))?;
            1
        };
        if r.p1 & 0xff00_0000 == 0 {
            r.p2 <<= 8;
            r.p1 <<= 8;
            r.p0 += 1;
        }
        Some(bit)
    }

    /// `lzma_upack_esi_50`: a bit tree from `start` while below `limit`; (last probability,
    /// value less `limit`).
    fn tree(&mut self, r: &mut Range, start: u32, limit: u32, probs: i64) -> Option<(i64, u32)> {
        let mut v = start;
        let mut edx = 0;
        for _ in 0..64 {
            edx = probs + i64::from(v.wrapping_shl(2));
            let b = self.bit(r, edx)?;
            v = v.wrapping_add(v).wrapping_add(b);
            if v >= limit {
                return Some((edx, v.wrapping_sub(limit)));
            }
        }
        let _ = edx;
        None
    }

    /// `lzma_upack_esi_54`: a length; (ecx, edx, value).
    fn length(&mut self, r: &mut Range, eax: u32, ecx: u32, edx: i64) -> Option<(u32, i64, u32)> {
        let mut ecx = (ecx & !0xff) | 8;
        let first = self.bit(r, edx)?;
        let edx = edx + 4;
        let mut al = (eax & !0xff) | 1;
        if first != 0 {
            al |= 8;
            if self.bit(r, edx)? != 0 {
                ecx <<= 5;
                al = 0x11;
            }
        }
        let base = al;
        let (edx, v) = self.tree(r, 1, ecx, edx + i64::from(al.wrapping_shl(2)))?;
        Some((ecx, edx, base.wrapping_add(v)))
    }
}

/// Unpacks the Upack-packed PE `d`; the image may not exceed `cap` bytes.
pub fn unpack(d: &[u8], cap: usize) -> Unpacked {
    let Some(h) = pe::parse(d) else {
        return Unpacked::NotPacked;
    };
    let Some(layout) = Layout::of(d, &h) else {
        return Unpacked::NotPacked;
    };
    // ClamAV's size limit: the largest of the buffer, the head and section 2's data.
    let need = layout
        .dsize
        .max(layout.ssize)
        .max(u64::from(h.sections[1].ursz));
    if need > cap as u64 {
        return Unpacked::OverLimit(need);
    }
    let Some(mut img) = layout.load(d, &h) else {
        return Unpacked::NotPacked;
    };
    match unupack(&mut img, &layout, &h) {
        Some(image) => Unpacked::Image(image, "Upack"),
        None => Unpacked::Failed,
    }
}

/// What `cli_scanpe` works out before calling `unupack`.
struct Layout {
    /// Three sections and the 0x148-byte optional header.
    three: bool,
    /// The bytes at the entry point (at least 168).
    ep_code: Vec<u8>,
    /// The entry point's file offset (ClamAV's `peinfo->ep`).
    ep: i64,
    ssize: u64,
    dsize: u64,
    off: u32,
    vma: u32,
    base: u32,
}

impl Layout {
    fn of(d: &[u8], h: &pe::Headers) -> Option<Layout> {
        let s = &h.sections;
        let opt = super::u16_le(d, h.pe_offset + 20)?;
        let three = opt == 0x148 && s.len() == 3;
        let two = opt != 0x148 && s.len() == 2 && h.packed_pair().is_some();
        if !three && !two {
            return None;
        }
        let base = u32::try_from(h.image_base).ok()?;
        let ep = h.raw_offset(h.entry)?;
        let code = d.get(ep..)?;
        if code.len() < 168 {
            return None;
        }
        let min = s.iter().map(|s| s.rva).min()?;
        let esi = u32_le(code, 1)?;
        let is_399 = code[0] == 0xbe && esi.wrapping_sub(base) > min;
        let wanted = if three {
            is_399 && (code[5..7] == [0xad, 0x50] || code[5..7] == [0xff, 0x36])
        } else {
            code[0] == 0x60 && code[1] == 0xe8 && u32_le(code, 2)? == 9
                || code[0] == 0xbe
                    && esi.wrapping_sub(base) < min
                    && esi > base
                    && code[5..8] == [0xad, 0x8b, 0xf8]
        };
        if !wanted {
            return None;
        }
        let uraw = |i: usize| -> Option<u32> {
            let table = h.pe_offset + 24 + usize::from(opt);
            u32_le(d, table + 40 * i + 20)
        };
        let (a, b) = (u64::from(s[0].vsz), u64::from(s[1].vsz));
        let (c, ssize, off, vma) = if three {
            let ssize = u64::from(s[0].ursz) + u64::from(uraw(0)?);
            (
                u64::from(s[2].vsz),
                ssize,
                s[0].rva,
                base.wrapping_add(s[0].rva),
            )
        } else {
            let raw1 = uraw(1)?;
            (
                u64::from(s[1].rva),
                u64::from(raw1),
                0,
                s[1].rva.wrapping_sub(raw1),
            )
        };
        Some(Layout {
            three,
            ep_code: code[..code.len().min(4096)].to_vec(),
            ep: ep as i64,
            ssize,
            dsize: a + b + c,
            off,
            vma,
            base,
        })
    }

    /// The buffer `unupack` works in: the file's head, moved where section 3 maps in the
    /// three-section layout, and section 2's data.
    fn load(&self, d: &[u8], h: &pe::Headers) -> Option<Image> {
        let s = &h.sections;
        let dsize = usize::try_from(self.dsize).ok()?;
        let ssize = usize::try_from(self.ssize).ok()?;
        let s1_at = s[1].rva.checked_sub(self.off)? as usize;
        let s1_len = s[1].ursz as usize;
        let fits = |at: usize, n: usize| at.checked_add(n).is_some_and(|e| e <= dsize);
        if !fits(s1_at, s1_len) || ssize > dsize {
            return None;
        }
        let mut img = vec![0u8; dsize];
        img[..ssize].copy_from_slice(d.get(..ssize)?);
        if self.three {
            let at = s[2].rva.checked_sub(s[0].rva)? as usize;
            if !fits(at, ssize) {
                return None;
            }
            img.copy_within(..ssize, at);
        }
        let table = h.pe_offset + 24 + usize::from(super::u16_le(d, h.pe_offset + 20)?);
        let raw1 = u32_le(d, table + 40 + 20)? as usize;
        img[s1_at..s1_at + s1_len].copy_from_slice(d.get(raw1..raw1 + s1_len)?);
        Some(Image { d: img })
    }
}

/// Offset of virtual address `va` in the image whose first byte is at `vma`.
fn at(va: u32, vma: u32) -> i64 {
    i64::from(va.wrapping_sub(vma))
}

/// What the loader's set-up leaves for the decoder and the call fixing after it.
struct Plan {
    original_ep: u32,
    ebx: i64,
    edi: i64,
    end_edi: i64,
    shl: u32,
    paddr: i64,
    /// Where the byte the call fixing looks for is.
    alvalue: i64,
    /// Calls to fix.
    calls: u32,
    /// ECX (and EAX) the decoder starts with.
    ecx: u32,
}

fn unupack(img: &mut Image, l: &Layout, h: &pe::Headers) -> Option<Vec<u8>> {
    let plan = if l.three {
        setup_three(img, l)?
    } else {
        setup_two(img, l)?
    };
    if plan.edi > plan.end_edi {
        return None;
    }
    decode(img, &plan)?;
    fix_calls(img, &plan)?;
    let rsz = plan.end_edi - plan.edi;
    let va = h.sections.first()?.rva;
    let start = if l.three { 0 } else { i64::from(va) };
    if !img.has(start, rsz) {
        return None;
    }
    let data = &img.d[start as usize..(start + rsz) as usize];
    let section = rebuild::Unpacked {
        rva: va,
        vsz: rsz as u32,
        data,
    };
    rebuild::rebuild(&[section], l.base, plan.original_ep, (0, 0))
}

/// `unupack`'s three-section set-up (0.39 and the samples ClamAV names 0151477 and 0297729).
fn setup_three(img: &mut Image, l: &Layout) -> Option<Plan> {
    let buff = &l.ep_code;
    let mut version = if buff[5] == 0xff && buff[6] == 0x36 {
        Version::V0297729
    } else {
        Version::V399
    };
    let vma = l.vma;
    let mut esi = at(u32_le(buff, 1)?, vma);
    if !img.has(esi, 12) {
        return None;
    }
    let original_ep = img.rd(esi)?.wrapping_sub(vma);
    esi += 8;
    let ep = l.ep;
    let (mut edi, mut alvalue, lngjmpoff);
    if version == Version::V399 {
        edi = at(img.rd(esi)?, vma);
        if img.byte(ep + 0xa)? != 0xeb || !img.has(ep + 0xa, 2) {
            return None;
        }
        esi = i64::from(img.byte(ep + 0xb)? as i8) + ep + 0xc;
        alvalue = esi + 0x1a;
        if !img.has(alvalue, 2) || img.byte(alvalue)? != 0xeb {
            return None;
        }
        alvalue += 1;
        alvalue += i64::from(img.byte(alvalue)?) + 1 + 0xa;
        lngjmpoff = 8;
    } else {
        if !img.has(ep + 7, 5) || img.byte(ep + 7)? != 0xe9 {
            return None;
        }
        edi = 0;
        esi = i64::from(img.rd(ep + 8)? as i32) + ep + 0xc;
        alvalue = esi + 0x25;
        lngjmpoff = 10;
    }
    if !img.has(alvalue, 2) || img.byte(alvalue)? != 0xb5 {
        return None;
    }
    alvalue += 1;
    let count = u32::from(img.byte(alvalue)?);
    if !img.has(alvalue, lngjmpoff + 5) || img.byte(alvalue + lngjmpoff)? != 0xe9 {
        return None;
    }
    let mut shl = img.rd(alvalue + lngjmpoff + 1)?;
    shl = if version == Version::V399 {
        let skew = img.byte(esi + 0x1b)? as i8;
        shl.wrapping_add(esi as u32)
            .wrapping_add(skew as u32)
            .wrapping_add(0x1c + 0x18)
    } else {
        shl.wrapping_add(esi as u32).wrapping_add(0x35)
    };
    alvalue = i64::from(shl) + 43;
    let (mut aljump, mut shroff) = (8, 24);
    if !img.has(alvalue - 1, 2) || img.byte(alvalue - 1)? != 0xe3 {
        alvalue = i64::from(shl) + 46;
        if !img.has(alvalue - 1, 2) || img.byte(alvalue - 1)? != 0xe3 {
            return None;
        }
        if version != Version::V0297729 {
            version = Version::V0151477;
        }
        aljump = 7;
        shroff = 26;
    }
    alvalue += i64::from(img.byte(alvalue)?) + 1;
    if !img.has(alvalue, aljump + 5) || img.byte(alvalue + aljump)? != 0xe9 {
        return None;
    }
    // Unsigned 32-bit arithmetic, as in ClamAV (a backward jump wraps there too).
    let jump = img.rd(alvalue + aljump + 1)?;
    alvalue += i64::from(jump.wrapping_add(aljump as u32 + 1 + 4 + 27));
    if version == Version::V0297729 {
        alvalue += 2;
    }
    let sh = i64::from(shl) + shroff;
    if !img.has(sh, 3) || img.byte(sh)? != 0xc1 || img.byte(sh + 1)? != 0xed {
        return None;
    }
    let shl = u32::from(img.byte(sh + 2)?);
    let count = count * 0x100;
    if !(2..=8).contains(&shl) {
        return None;
    }
    if version == Version::V0297729 {
        if !img.has(esi + 6, 10) || img.byte(esi + 6)? != 0xbe || img.byte(esi + 11)? != 0xbf {
            return None;
        }
        let src = img.rd(esi + 7)?;
        if src < l.base || src > vma {
            return None;
        }
        edi = at(img.rd(esi + 12)?, vma);
        esi = at(src, l.base);
    } else {
        if !img.has(esi + 7, 5) || img.byte(esi + 7)? != 0xbe {
            return None;
        }
        esi = at(img.rd(esi + 8)?, vma);
    }
    let (words, reach) = if version == Version::V0297729 {
        (0x16, 0x64)
    } else {
        (0x27, 0x34)
    };
    let span = i64::from(words * 4);
    if !img.has(edi, span + 24 + 4 * i64::from(count)) || !img.has(esi, span + reach + 4) {
        return None;
    }
    img.copy_words(&mut esi, &mut edi, i64::from(words))?;
    let mut calls = img.rd(esi + 4)?;
    let paddr = at(img.rd(edi - 4)?, vma);
    let ebx = edi;
    init_probs(img, &mut edi, count)?;
    let mut edi = at(img.rd(esi + 0xc)?, vma);
    if version == Version::V0297729 {
        edi = at(vma, l.base);
    }
    let end_edi = if version == Version::V0297729 {
        calls = img.rd(esi + 0x40)?;
        at(img.rd(esi + 0x64)?, vma)
    } else {
        at(img.rd(esi + 0x34)?, vma)
    };
    Some(Plan {
        original_ep,
        ebx,
        edi,
        end_edi,
        shl,
        paddr,
        alvalue,
        calls,
        ecx: 0,
    })
}

/// The decoder's state words (-1, 0, four 1s) and `count` probabilities of 0x400 at `edi`.
fn init_probs(img: &mut Image, edi: &mut i64, count: u32) -> Option<()> {
    img.wr(*edi, 0xffff_ffff)?;
    *edi += 4;
    img.wr(*edi, 0)?;
    *edi += 4;
    for _ in 0..4 {
        img.wr(*edi, 1)?;
        *edi += 4;
    }
    for _ in 0..count {
        img.wr(*edi, 0x400)?;
        *edi += 4;
    }
    Some(())
}

/// `unupack`'s two-section set-up (0.39's two-section output, 1.1/1.2).
fn setup_two(img: &mut Image, l: &Layout) -> Option<Plan> {
    let buff = &l.ep_code;
    let v11 = buff[0] == 0xbe && buff[5] == 0xad && buff[6] == 0x8b && buff[7] == 0xf8;
    let (ep_jmp, stosd_count, context_bits, al_off) = if v11 {
        (0x1a4, 0x1b, 0x41, 0x184)
    } else {
        (0x217, 0x3a, 0x5f, 0x1c1)
    };
    let mut esi = i64::from(l.vma) + l.ep;
    let alvalue = esi + al_off;
    if !img.has(esi, ep_jmp + 4) {
        return None;
    }
    let jump = img.rd(esi + ep_jmp)?;
    let original_ep = ((esi + ep_jmp + 4) as u32).wrapping_add(jump);
    let count = u32::from(img.byte(esi + stosd_count)?) * 0x100;
    let shl = 8u32.wrapping_sub(u32::from(img.byte(esi + context_bits)?));
    if !(2..=8).contains(&shl) {
        return None;
    }
    let base = l.base;
    let (ebx, edi, end_edi, paddr, ecx, save_esi);
    if !v11 {
        esi += 4;
        let ecx0 = img.rd(esi + 2)?;
        img.wr(esi + 2, 0)?;
        if ecx0 == 0 {
            return None;
        }
        esi -= i64::from(ecx0) - 2;
        if !img.has(esi, 12) {
            return None;
        }
        let ebx_u = esi - at(img.rd(esi)?, base);
        esi += 4;
        let save2 = at(img.rd(esi)?, base);
        let mut d = save2;
        esi += 4;
        let n = img.rd(esi)? as i32;
        if n < 0 {
            return None;
        }
        esi += 4;
        let n = i64::from(n);
        if (i64::from(count) + n) * 4 > i64::from(u32::MAX)
            || !img.has(esi, n * 4)
            || !img.has(d, (n + i64::from(count)) * 4)
        {
            return None;
        }
        img.copy_words(&mut esi, &mut d, n)?;
        if !img.has(save2, 8) {
            return None;
        }
        let mut loops = img.rd(save2)?;
        let save2 = save2 + 4;
        esi = save2;
        // The loader steps over its import records; more steps than the image has dwords
        // cannot stay inside it.
        if loops == 0 || i64::from(loops) > img.d.len() as i64 / 4 + 1 {
            return None;
        }
        loop {
            esi += ebx_u + 4;
            loops -= 1;
            if loops == 0 || !img.has(esi, 0) {
                break;
            }
        }
        let fill = img.rd(esi)?;
        esi += 4;
        for _ in 0..count {
            img.wr(d, fill)?;
            d += 4;
        }
        let v = img.rd(esi + 0x10)?.wrapping_add(ebx_u as u32);
        img.wr(esi + 0x10, v)?;
        let e = esi + 0x14;
        let first = at(img.rd(save2)?, base);
        let s = save2 + 4;
        if !img.has(e - 4, 12 + 16) || !img.has(s + 0x24, 4) || !img.has(s + 0x40, 4) {
            return None;
        }
        paddr = at(img.rd(e - 4)?, base);
        end_edi = at(img.rd(s + 0x24)?, base);
        let (x, y) = (img.rd(e)?, img.rd(e + 4)?);
        img.wr(e, y)?;
        img.wr(e + 4, x)?;
        ebx = e;
        edi = first;
        ecx = 0;
        save_esi = s;
    } else {
        let mut s = 0x148;
        let mut d = at(img.rd(s)?, base);
        s += 4;
        let save_edi = d;
        paddr = at(img.rd(s)?, base);
        s += 4;
        d += 4;
        ebx = d;
        if (u64::from(count) + 6) * 4 > u64::from(u32::MAX)
            || !img.has(d, (6 + i64::from(count)) * 4)
        {
            return None;
        }
        init_probs(img, &mut d, count)?;
        edi = at(img.rd(s)?, base);
        s += 8;
        end_edi = at(img.rd(s - 0x28)?, base);
        ecx = 0;
        save_esi = save_edi;
    }
    let plan = Plan {
        original_ep,
        ebx,
        edi,
        end_edi,
        shl,
        paddr,
        alvalue,
        calls: 0,
        ecx,
    };
    if plan.edi > plan.end_edi {
        return None;
    }
    // The call count is read after decoding (the loader's tables are unpacked by then).
    decode(img, &plan)?;
    let calls = if v11 {
        img.rd(i64::from(l.vma) + l.ep + 0x174)?
    } else {
        img.rd(save_esi + 0x40)?
    };
    Some(Plan {
        calls,
        ecx: u32::MAX,
        ..plan
    })
}

/// Runs the decoder of a plan once: a two-section plan is decoded by its set-up already
/// (marked by an ECX of `u32::MAX`).
fn decode(img: &mut Image, plan: &Plan) -> Option<()> {
    if plan.ecx == u32::MAX {
        return Some(());
    }
    unupack399(img, plan)
}

/// `unupack399`: the LZMA-like decoder, writing from `edi` until `end_edi` (at least one
/// step, as the loader's loop tests at its end).
fn unupack399(img: &mut Image, plan: &Plan) -> Option<()> {
    let ebx = plan.ebx;
    let mut d = Decoder {
        r: Range {
            p0: plan.paddr,
            p1: img.rd(ebx)?,
            p2: img.rd(ebx + 4)?,
        },
        state: [0u32; 6],
        ecx: plan.ecx,
        eax_copy: plan.ecx,
        edi: plan.edi,
        start: plan.edi,
        ebx,
        shl: plan.shl,
    };
    for i in 0..6 {
        d.state[i] = img.rd(ebx + 4 * i as i64)?;
    }
    loop {
        d.step(img)?;
        if d.edi >= plan.end_edi {
            return Some(());
        }
    }
}

/// The decoder's registers between steps.
struct Decoder {
    r: Range,
    state: [u32; 6],
    ecx: u32,
    eax_copy: u32,
    edi: i64,
    start: i64,
    ebx: i64,
    shl: u32,
}

impl Decoder {
    /// One step: a literal, a one-byte repeat, or a match (and the byte after it).
    fn step(&mut self, img: &mut Image) -> Option<()> {
        let ebx = self.ebx;
        let mut eax = self.eax_copy;
        let mut edx = ebx + i64::from(eax.wrapping_shl(2)) + 0x58;
        if img.bit(&mut self.r, edx)? == 0 {
            let byte = self.literal(img, eax)?;
            self.ecx = 0;
            img.set(self.edi, byte)?;
            self.edi += 1;
            return Some(());
        }
        let al = if (eax & 0xff) + 0xf9 > 0xff { 11 } else { 8 };
        eax = (eax & !0xff) | al;
        let mut ebp = self.state[2];
        self.ecx = (self.ecx & !0xff) | 0x30;
        edx += i64::from(self.ecx);
        let len;
        if img.bit(&mut self.r, edx)? == 0 {
            eax = eax.wrapping_sub(1);
            let t = ebp;
            ebp = self.state[4];
            self.state[4] = self.state[3];
            self.state[3] = t;
            self.eax_copy = eax;
            self.state[5] = ebp;
            let (_, _, n) = img.length(&mut self.r, eax, self.ecx, ebx + 0xbc0)?;
            ebp = distance(img, &mut self.r, ebx, n)?;
            len = n;
        } else {
            edx += i64::from(self.ecx);
            if img.bit(&mut self.r, edx)? != 0 {
                edx += 0x60;
                if img.bit(&mut self.r, edx)? != 0 {
                    edx += i64::from(self.ecx);
                    let b = img.bit(&mut self.r, edx)?;
                    let t = ebp;
                    ebp = self.state[4];
                    self.state[4] = self.state[3];
                    self.state[3] = t;
                    if b != 0 {
                        std::mem::swap(&mut ebp, &mut self.state[5]);
                    }
                } else {
                    std::mem::swap(&mut ebp, &mut self.state[3]);
                }
            } else {
                edx += i64::from(self.ecx);
                if img.bit(&mut self.r, edx)? == 0 {
                    // One byte from the last distance.
                    self.eax_copy = eax | 1;
                    let b = img.byte(self.edi - i64::from(self.state[2]))?;
                    img.set(self.edi, b)?;
                    self.edi += 1;
                    self.ecx = (self.ecx & !0xff) | 0x80;
                    return Some(());
                }
            }
            self.eax_copy = eax;
            let (ecx, _, n) = img.length(&mut self.r, eax, self.ecx, ebx + 0x778)?;
            eax = ecx;
            len = n;
        }
        self.copy(img, ebp, len, eax)
    }

    /// A match: `len` bytes from `ebp` back, then the byte after them.
    fn copy(&mut self, img: &mut Image, ebp: u32, len: u32, eax: u32) -> Option<()> {
        let back = i64::from(ebp);
        let n = i64::from(len);
        let edi = self.edi;
        if !img.has(edi, n) || !img.has(edi - back, n + 1) {
            return None;
        }
        self.state[2] = ebp;
        for i in 0..n {
            img.d[(edi + i) as usize] = img.d[(edi + i - back) as usize];
        }
        let next = img.byte(edi + n - back)?;
        let _ = eax;
        img.set(edi + n, next)?;
        self.edi = edi + n + 1;
        self.ecx = 0x80;
        Some(())
    }

    /// A literal byte (loc_4838d8 on): the state moves on, then the byte is decoded with the
    /// previous byte's context, matched against the byte at the last distance while a match
    /// came just before.
    fn literal(&mut self, img: &mut Image, mut eax: u32) -> Option<u8> {
        loop {
            let al = eax & 0xff;
            let al = if al + 0xfd > 0xff { al - 3 } else { 0 };
            eax = (eax & !0xff) | al;
            if al < 7 {
                break;
            }
        }
        self.eax_copy = eax;
        let edi = self.edi;
        let ctx = if edi > self.start && edi < img.d.len() as i64 {
            u32::from(img.byte(edi - 1)?) >> self.shl
        } else {
            0
        };
        let probs = self.ebx + i64::from(ctx.wrapping_mul(0x300).wrapping_shl(2)) + 0x1008;
        eax = (eax & !0xff) | 1;
        let r = &mut self.r;
        if self.ecx == 0 {
            let limit = (self.ecx & 0xffff_00ff) | 0x100;
            return Some(img.tree(r, eax, limit, probs)?.1 as u8);
        }
        let mut cl = (self.ecx & 0xff) as u8;
        let m = img.byte(edi - i64::from(self.state[2]))?;
        loop {
            let bit = if m & cl != 0 { 0x200 } else { 0x100 };
            eax = (eax & 0xffff_00ff) | bit;
            let b = img.bit(r, probs + i64::from(eax.wrapping_shl(2)))?;
            let al = ((eax & 0xff) * 2 + b) & 0xff;
            eax = (eax & !0xff) | al;
            cl >>= 1;
            if cl == 0 {
                return Some(al as u8);
            }
            let ah = (((eax >> 8) & 0xff) as u8).wrapping_sub(al as u8) & 1;
            if ah == 0 {
                eax = (eax & 0xffff_0000) | al;
                return Some(img.tree(r, eax, 0x100, probs)?.1 as u8);
            }
        }
    }
}

/// A match's distance after its length `len` (loc_4839af and on in ClamAV's transcription).
fn distance(img: &mut Image, r: &mut Range, ebx: i64, len: u32) -> Option<u32> {
    let slot = len.wrapping_sub(1).min(3);
    let probs = ebx + i64::from((slot << 6).wrapping_shl(2)) + 0x378;
    let (_, v) = img.tree(r, 1, 0x40, probs)?;
    let mut ebp = v;
    if v & 0xff >= 4 {
        ebp = 2 + (v & 1);
        let mut bits = (v >> 1).wrapping_sub(1);
        if bits == 0 || bits > 32 {
            return None;
        }
        ebp = ebp.wrapping_shl(bits & 0xff);
        let mut probs = ebx + i64::from(ebp.wrapping_shl(2)) + 0x178;
        if bits & 0xff > 5 {
            bits = (bits & !0xff) | ((bits & 0xff) - 4);
            let mut direct = 0u32;
            let mut n = bits;
            loop {
                let code = img.rd(r.p0)?.swap_bytes();
                r.p1 >>= 1;
                let code = code.wrapping_sub(r.p2);
                direct <<= 1;
                if code >= r.p1 {
                    direct += 1;
                    r.p2 = r.p2.wrapping_add(r.p1);
                }
                if r.p1 & 0xff00_0000 == 0 {
                    r.p2 <<= 8;
                    r.p1 <<= 8;
                    r.p0 += 1;
                }
                n = n.wrapping_sub(1);
                if n == 0 {
                    break;
                }
            }
            bits = (n & !0xff) | 4;
            ebp = ebp.wrapping_add(direct << 4);
            probs = ebx + 0x18;
        }
        let limit = 1u32.wrapping_shl(bits & 0xff);
        let (_, mut rev) = img.tree(r, 1, limit, probs)?;
        let mut t = ((rev as i32) >> 31) as u32;
        let mut n = bits;
        loop {
            t = t.wrapping_add(t).wrapping_add(rev & 1);
            rev >>= 1;
            n = n.wrapping_sub(1);
            if n == 0 {
                break;
            }
        }
        ebp = ebp.wrapping_add(t);
    }
    Some(ebp.wrapping_add(1))
}

/// The loader's last step: relative calls and jumps whose first operand byte is the marker
/// byte at `alvalue` get their absolute, byte-swapped target made relative again.
fn fix_calls(img: &mut Image, plan: &Plan) -> Option<()> {
    let search = u32::from(img.byte(plan.alvalue)?);
    let base = plan.edi;
    let mut ecx = 0i64;
    let mut left = plan.calls;
    while left > 0 {
        let b = img.byte(base + ecx)?;
        if b != 0xe8 && b != 0xe9 {
            ecx += 1;
            continue;
        }
        let adr = base + ecx + 1;
        ecx += 1;
        let v = img.rd(adr)?;
        if v & 0xff != search {
            continue;
        }
        let fixed = (v & 0xffff_ff00)
            .swap_bytes()
            .wrapping_sub(ecx as u32)
            .wrapping_sub(4);
        img.wr(adr, fixed)?;
        ecx += 4;
        left -= 1;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_programs_are_not_upack_and_nothing_panics() {
        let plain = pe::sample::pe32(&[(0x1000, 0x1000, 0x400, 0x200)], 0x1000, 0x800);
        assert_eq!(unpack(&plain, 1 << 20), Unpacked::NotPacked);
        assert_eq!(unpack(b"MZ", 1 << 20), Unpacked::NotPacked);
        for n in 0..plain.len() {
            let _ = unpack(&plain[..n], 1 << 20);
        }
    }

    /// ClamAV's own Upack sample, when a ClamAV checkout is at hand (it is not copied into
    /// this repository): unpacked, and the program inside found where clamscan finds it.
    #[test]
    fn clamavs_upack_sample_unpacks() {
        let Some(d) = clamav_sample("clam-upack.exe") else {
            eprintln!("no ClamAV checkout beside the repository: skipped");
            return;
        };
        match unpack(&d, 64 << 20) {
            Unpacked::Image(img, "Upack") => {
                // ClamAV's rebuilt image holds a zip at 16492 with the test program in it
                // (`CL_TYPE_ZIPSFX signature found at 16492` in clamscan's debug output).
                let inner = clamav_sample("clam.exe").unwrap();
                let at = memchr::memmem::find(&img, b"PK\x03\x04");
                assert_eq!(at, Some(16492), "where clamscan finds the zip");
                let zip = std::io::Cursor::new(&img[16492..]);
                let mut z = zip::ZipArchive::new(zip).expect("the zip reads");
                let mut member = Vec::new();
                std::io::Read::read_to_end(&mut z.by_index(0).unwrap(), &mut member).unwrap();
                assert_eq!(member, inner);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A file of ClamAV's `clamav_hdb_scanfiles`, un-XOR'd with the key of ClamAV's
    /// `xor_testfile.py`.
    fn clamav_sample(name: &str) -> Option<Vec<u8>> {
        let show = |path: &str| {
            let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../.mirror/Cisco-Talos+clamav/repo");
            let out = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(&repo)
                .arg("show")
                .arg(format!("HEAD:unit_tests/input/{path}"))
                .output()
                .ok()?;
            out.status.success().then_some(out.stdout)
        };
        let script = String::from_utf8(show("xor_testfile.py")?).ok()?;
        let key: Vec<u8> = script
            .split("xor_key = b'\\\n")
            .nth(1)?
            .lines()
            .take_while(|l| !l.starts_with('\''))
            .flat_map(|l| l.trim_end_matches('\\').bytes())
            .collect();
        let data = show(&format!("clamav_hdb_scanfiles/{name}.xor"))?;
        (!key.is_empty()).then(|| {
            data.iter()
                .zip(key.iter().cycle())
                .map(|(b, k)| b ^ k)
                .collect()
        })
    }
}
