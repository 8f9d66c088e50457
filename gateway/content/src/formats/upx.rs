//! UPX-packed Windows programs unpacked as ClamAV unpacks them (`cli_scanpe`'s UPX path and
//! `upx.c`), so what it finds inside the unpacked image, we find too:
//! - the layout: the first section with no file data but a virtual size (UPX0), followed by one
//!   with both (UPX1, whose data is the packed stream); any names;
//! - the method: the loader at the entry point names NRV2B, NRV2D or NRV2E (its code bytes
//!   compared at 0x69 and 0x71), or LZMA (two loader layouts, with the unpacked size and the
//!   LZMA properties read from the loader); a skewed UPX1 (the loader's `mov esi` pointing past
//!   its start) is tried first; without a known loader each NRV method is tried, at the start and
//!   0x15 bytes in;
//! - the image: the original PE header UPX keeps after the imports it packed (found from the
//!   loader's `lea edi, [esi + imports]`, or by a search for the imports' `lea`/`mov`, or
//!   by a search back from the end for a PE header) rebuilt with each section at a file offset
//!   equal to its aligned size so far; when none is found, one section holding everything
//!   behind a header of our own; when the rebuild gives up, the unpacked bytes as they are.
//!
//! The rebuilt image carries Sekisho's DOS stub rather than ClamAV's: same size, so section
//! offsets, and what an embedded program search finds, are the same.

use super::nrv::{self, Method};
use super::pe::{self, align_down, align_up, Unpacked};
use super::{u16_le, u32_le};

// Loader code bytes (x86) by which ClamAV recognises each method.
const NRV2B_LOADER: &[u8; 24] = b"\x11\xdb\x11\xc9\x01\xdb\x75\x07\x8b\x1e\x83\xee\xfc\x11\xdb\x11\xc9\x11\xc9\x75\x20\x41\x01\xdb";
const NRV2D_LOADER: &[u8; 24] = b"\x83\xf0\xff\x74\x78\xd1\xf8\x89\xc5\xeb\x0b\x01\xdb\x75\x07\x8b\x1e\x83\xee\xfc\x11\xdb\x11\xc9";
const NRV2E_LOADER: &[u8; 24] = b"\xeb\x52\x31\xc9\x83\xe8\x03\x72\x11\xc1\xe0\x08\x8a\x06\x46\x83\xf0\xff\x74\x75\xd1\xf8\x89\xc5";
const LZMA1_FIRST: &[u8; 8] = b"\x56\x83\xc3\x04\x53\x50\xc7\x03";
const LZMA1_SECOND: &[u8; 8] = b"\x90\x90\x90\x55\x57\x56\x53\x83";
const LZMA2_LOADER: &[u8; 20] =
    b"\x56\x83\xc3\x04\x53\x50\xc7\x03\x03\x00\x02\x00\x90\x90\x90\x90\x90\x55\x57\x56";

/// Where each method's loader keeps `lea edi, [esi + imports]` (offsets from the entry point).
const NRV2B_IMPORTS: &[u32] = &[0x108, 0x110, 0xd5];
const NRV2D_IMPORTS: &[u32] = &[0x11c, 0x124];
const NRV2E_IMPORTS: &[u32] = &[0x128, 0x130];
const LZMA_IMPORTS: &[u32] = &[0xb16, 0xb1e];

/// Room the rebuild may take past the unpacked size (ClamAV's 8 KiB).
const SLACK: usize = 8192;

/// The packed stream and what the headers say about it.
struct Layout<'a> {
    src: &'a [u8],
    /// Entry point bytes (up to 4 KiB; empty when the entry point is in no section's data).
    ep: &'a [u8],
    /// The entry point's offset from UPX1's start (may be negative).
    ep_off: i64,
    upx0: u32,
    upx1: u32,
    image_base: u32,
    dsize: usize,
}

/// Unpacks the UPX-packed PE `d`; the image may not exceed `cap` bytes.
pub fn unpack(d: &[u8], cap: usize) -> Unpacked {
    let Some(h) = pe::parse(d) else {
        return Unpacked::NotPacked;
    };
    let Some((s0, s1)) = h.packed_pair() else {
        return Unpacked::NotPacked;
    };
    let ssize = s1.rsz as usize;
    let dsize = u64::from(s0.vsz) + u64::from(s1.vsz);
    if ssize <= 0x19 || dsize <= ssize as u64 {
        return Unpacked::NotPacked;
    }
    if dsize > cap as u64 {
        return Unpacked::OverLimit(dsize);
    }
    let raw = s1.raw as usize;
    let ep = h.entry_code(d);
    let l = Layout {
        src: &d[raw..raw + ssize],
        ep,
        ep_off: i64::from(h.entry) - i64::from(s1.rva),
        upx0: s0.rva,
        upx1: s1.rva,
        image_base: h.image_base as u32,
        dsize: dsize as usize,
    };
    match lzma_loader(&l) {
        Some(found) => lzma(&l, found),
        None => nrv_any(&l),
    }
    .unwrap_or(Unpacked::Failed)
}

/// The NRV method the loader names, if any.
fn nrv_loader(ep: &[u8]) -> Option<(Method, &'static [u32], &'static str)> {
    let named = |code: &[u8; 24]| {
        [0x69, 0x71].iter().any(|&at| {
            ep.get(at..at + 13)
                .is_some_and(|n| code.windows(13).any(|w| w == n))
        })
    };
    [
        (NRV2B_LOADER, Method::B, NRV2B_IMPORTS, "NRV2B"),
        (NRV2D_LOADER, Method::D, NRV2D_IMPORTS, "NRV2D"),
        (NRV2E_LOADER, Method::E, NRV2E_IMPORTS, "NRV2E"),
    ]
    .into_iter()
    .find(|(code, ..)| named(code))
    .map(|(_, m, imports, name)| (m, imports, name))
}

fn nrv_any(l: &Layout<'_>) -> Option<Unpacked> {
    let preferred = nrv_loader(l.ep);
    if let Some((m, imports, name)) = preferred {
        let skew = nrv_skew(l);
        let mut tries = vec![skew];
        if skew != 0 {
            tries.push(0);
        }
        for s in tries {
            if let Some(img) = nrv_try(l, m, imports, s) {
                return Some(Unpacked::Image(img, name));
            }
        }
    }
    let others = [
        (Method::B, NRV2B_IMPORTS, "NRV2B"),
        (Method::D, NRV2D_IMPORTS, "NRV2D"),
        (Method::E, NRV2E_IMPORTS, "NRV2E"),
    ];
    for (m, imports, name) in others {
        if preferred.is_some_and(|(p, ..)| p == m) {
            continue;
        }
        for s in [0, 0x15] {
            if let Some(img) = nrv_try(l, m, imports, s) {
                return Some(Unpacked::Image(img, name));
            }
        }
    }
    None
}

/// How far past UPX1's start the loader's `mov esi, imm32` points (0 when implausible).
fn nrv_skew(l: &Layout<'_>) -> usize {
    let Some(target) = u32_le(l.ep, 2) else {
        return 0;
    };
    let skew = target.wrapping_sub(l.image_base).wrapping_sub(l.upx1) as i32;
    if l.ep.get(1) != Some(&0xbe) || skew <= 0 || skew > 0xfff || skew as usize > l.src.len() {
        return 0;
    }
    skew as usize
}

fn nrv_try(l: &Layout<'_>, m: Method, imports: &[u32], skew: usize) -> Option<Vec<u8>> {
    let src = l.src.get(skew..)?;
    let out = nrv::decompress(m, src, l.dsize)?;
    let dend = out.len();
    Some(rebuild(
        src,
        l.ep_off - skew as i64,
        out,
        l.dsize,
        dend,
        l.upx0,
        imports,
    ))
}

/// The LZMA loader layout, as (unpacked size, properties) read from it.
fn lzma_loader(l: &Layout<'_>) -> Option<(u32, u32)> {
    let at = |o: usize, n: usize| l.ep.get(o..o + n);
    if at(0x2f, 20) == Some(&LZMA2_LOADER[..]) {
        return Some((u32_le(l.ep, 0x21)?, 0x20003));
    }
    if at(0x39, 8) == Some(&LZMA1_FIRST[..]) && at(0x45, 8) == Some(&LZMA1_SECOND[..]) {
        return Some((u32_le(l.ep, 0x2b)?, u32_le(l.ep, 0x41)?));
    }
    None
}

fn lzma(l: &Layout<'_>, (size, props): (u32, u32)) -> Option<Unpacked> {
    let size = size as usize;
    if size > l.dsize {
        return None;
    }
    let mut skew = 0;
    if l.src.len() > 0x15 && l.ep.starts_with(&[0x60, 0xbe]) {
        let target = u32_le(l.ep, 2)?;
        if target.wrapping_sub(l.upx1).wrapping_sub(l.image_base) == 0x15 {
            skew = 0x15;
        }
    }
    let [lc, lp, pb, _] = props.to_le_bytes();
    if lc >= 9 || lp >= 5 || pb >= 5 {
        return None;
    }
    let props = lc + 9 * (5 * pb + lp);
    let stream = l.src.get(skew + 2..)?;
    let dict = u32::try_from(l.dsize).ok()?.max(4096);
    let r = lzma_rust2::LzmaReader::new_with_props(stream, size as u64, props, dict, None).ok()?;
    let mut out = Vec::with_capacity(size);
    let failed =
        std::io::Read::read_to_end(&mut std::io::Read::take(r, size as u64), &mut out).is_err();
    if failed && out.is_empty() {
        return None;
    }
    out.resize(size, 0);
    let img = rebuild(
        &l.src[skew..],
        l.ep_off,
        out,
        size,
        size,
        l.upx0,
        LZMA_IMPORTS,
    );
    Some(Unpacked::Image(img, "LZMA"))
}

/// ClamAV's `pefromupx`: the unpacked bytes `dst` (`dend` written, `dsize` the unpacked size)
/// made into a PE image.
fn rebuild(
    src: &[u8],
    ep_off: i64,
    mut dst: Vec<u8>,
    dsize: usize,
    dend: usize,
    upx0: u32,
    imports: &[u32],
) -> Vec<u8> {
    dst.resize(dsize + SLACK, 0);
    let found = imports_at(src, ep_off, imports)
        .and_then(|imp| original_header(&dst, dsize, imp as usize))
        .or_else(|| header_from_end(&dst, dsize, dend));
    let Some((pehdr, real)) = found else {
        return crafted(&dst[..dend]);
    };
    rebuilt(dst, dsize, pehdr, real, upx0).unwrap_or_else(|mut raw| {
        raw.truncate(dsize);
        raw
    })
}

/// The imports' offset in the unpacked bytes, from the loader's `lea edi, [esi + imm32]`.
fn imports_at(src: &[u8], ep_off: i64, magics: &[u32]) -> Option<u32> {
    let read = |at: i64| usize::try_from(at).ok().and_then(|a| u32_le(src, a));
    let lea = |at: i64| {
        usize::try_from(at).ok().is_some_and(|a| {
            a + 2 <= src.len().saturating_sub(5) && src[a] == 0x8d && src[a + 1] == 0xbe
        })
    };
    if let Some(&m) = magics.iter().find(|&&m| lea(ep_off + i64::from(m) - 2)) {
        return read(ep_off + i64::from(m));
    }
    // No known loader: `lea edi, [esi + imports]` followed by `mov eax, [edi]`.
    let start = usize::try_from(ep_off + 0x80).ok()?;
    let end = src.len().checked_sub(8)?;
    let window = src.get(start..end)?;
    memchr::memmem::find_iter(window, b"\x8d\xbe")
        .map(|p| start + p)
        .find(|&p| src[p + 6] == 0x8b && src[p + 7] == 0x07)
        .and_then(|p| u32_le(src, p + 2))
}

/// The original PE header UPX keeps after the packed imports at `imp`, as (its offset, the
/// bytes of image before the imports).
fn original_header(dst: &[u8], dsize: usize, imp: usize) -> Option<(usize, usize)> {
    if imp >= dsize {
        return None;
    }
    let inside = |p: usize, n: usize| p.checked_add(n).is_some_and(|e| e <= dsize);
    let mut p = imp;
    while inside(p, 8) && u32_le(dst, p) != Some(0) {
        p += 8;
        while inside(p, 2) && dst[p] != 0 {
            p += 1;
            while inside(p, 2) && dst[p] != 0 {
                p += 1;
            }
            p += 1;
        }
        p += 1;
    }
    p += 4;
    check_header(dst, dsize, p).map(|_| (p, imp))
}

/// A PE header at `p` whose section table fits: (section alignment, section count).
fn check_header(dst: &[u8], dsize: usize, p: usize) -> Option<(u32, usize)> {
    if p.checked_add(0xf8)? > dsize || u32_le(dst, p)? != 0x4550 {
        return None;
    }
    let valign = u32_le(dst, p + 0x38).filter(|&v| v != 0)?;
    let count = usize::from(u16_le(dst, p + 6)?);
    if count == 0 || p + 0xf8 + count * 0x28 > dsize {
        return None;
    }
    Some((valign, count))
}

/// A PE header searched for back from the end of what was unpacked.
fn header_from_end(dst: &[u8], dsize: usize, dend: usize) -> Option<(usize, usize)> {
    let last = dend.checked_sub(0xf8 + 0x28).filter(|&l| l > 0)?;
    memchr::memmem::rfind_iter(&dst[..last + 4], b"PE\0\0")
        .filter(|&p| p >= 1 && p <= last)
        .find(|&p| check_header(dst, dsize, p).is_some())
        .map(|p| (p, p))
}

/// Each section placed at a file offset, behind our DOS header and the original PE header.
/// `Err` hands back the unpacked bytes when the sections do not fit.
fn rebuilt(
    mut dst: Vec<u8>,
    dsize: usize,
    pehdr: usize,
    real: usize,
    upx0: u32,
) -> Result<Vec<u8>, Vec<u8>> {
    let Some((valign, count)) = check_header(&dst, dsize, pehdr) else {
        return Err(dst);
    };
    let mut foffset = align_up((0xd0 + 0xf8 + 0x28 * count) as u32, valign);
    for s in 0..count {
        let at = pehdr + 0xf8 + s * 0x28;
        let vsize = align_up(u32_le(&dst, at + 8).unwrap_or(0), valign);
        let urva = align_down(u32_le(&dst, at + 12).unwrap_or(0), valign);
        let within = urva >= upx0
            && vsize > 0
            && u64::from(urva) + u64::from(vsize) <= u64::from(upx0) + real as u64
            && real > 0;
        if !within {
            return Err(dst);
        }
        for (k, v) in [vsize, urva, vsize, foffset].into_iter().enumerate() {
            dst[at + 8 + k * 4..at + 12 + k * 4].copy_from_slice(&v.to_le_bytes());
        }
        foffset = foffset.checked_add(vsize).ok_or_else(|| dst.clone())?;
    }
    dst[pehdr + 8..pehdr + 12].copy_from_slice(b"CLAM");
    dst[pehdr + 0x3c..pehdr + 0x40].copy_from_slice(&valign.to_le_bytes());
    let total = foffset as usize;
    if total > dsize + SLACK {
        return Err(dst);
    }
    let mut out = vec![0u8; total];
    let head = 0xf8 + 0x28 * count;
    out[..0xd0].copy_from_slice(&dos_header());
    out[0xd0..0xd0 + head].copy_from_slice(&dst[pehdr..pehdr + head]);
    for s in 0..count {
        let at = pehdr + 0xf8 + s * 0x28;
        let field = |o: usize| u32_le(&dst, at + o).unwrap_or(0) as usize;
        let (size, to, rva) = (field(16), field(20), field(12));
        let from = rva.wrapping_sub(upx0 as usize);
        if to + size > total || from > dsize || from + size > dst.len() {
            dst.truncate(dsize);
            return Ok(dst);
        }
        out[to..to + size].copy_from_slice(&dst[from..from + size]);
    }
    Ok(out)
}

/// Our DOS header and stub, 0xd0 bytes, with the PE header at 0xd0.
fn dos_header() -> [u8; 0xd0] {
    let mut h = [0u8; 0xd0];
    h[..2].copy_from_slice(b"MZ");
    h[0x18] = 0x40;
    h[0x3c] = 0xd0;
    let note = b"Rebuilt by Sekisho from a UPX-packed program for scanning; never run it.\r\n$";
    h[0x40..0x40 + note.len()].copy_from_slice(note);
    h
}

/// No PE header in the unpacked bytes: one section holding them all behind a header of ours.
fn crafted(data: &[u8]) -> Vec<u8> {
    let size = align_up(data.len() as u32, 0x1000);
    let mut out = vec![0u8; size as usize + 0x200];
    out[..0xd0].copy_from_slice(&dos_header());
    let pe = 0xd0;
    out[pe..pe + 4].copy_from_slice(b"PE\0\0");
    let put16 =
        |o: &mut Vec<u8>, at: usize, v: u16| o[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |o: &mut Vec<u8>, at: usize, v: u32| o[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put16(&mut out, pe + 4, 0x14c);
    put16(&mut out, pe + 6, 1);
    put16(&mut out, pe + 20, 0xe0);
    put16(&mut out, pe + 22, 0x010f);
    let opt = pe + 24;
    put16(&mut out, opt, 0x10b);
    put32(&mut out, opt + 16, 0x1000);
    put32(&mut out, opt + 28, 0x40_0000);
    put32(&mut out, opt + 32, 0x1000);
    put32(&mut out, opt + 36, 0x200);
    put32(&mut out, opt + 56, size + 0x1000);
    put32(&mut out, opt + 60, 0x200);
    put16(&mut out, opt + 68, 2);
    put32(&mut out, opt + 92, 16);
    let sec = pe + 0xf8;
    out[sec..sec + 8].copy_from_slice(b".unpack\0");
    for (k, v) in [size, 0x1000, size, 0x200].into_iter().enumerate() {
        put32(&mut out, sec + 8 + k * 4, v);
    }
    put32(&mut out, sec + 36, 0xe000_0060);
    out[0x200..0x200 + data.len()].copy_from_slice(data);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::formats::nrv::encode;
    use crate::formats::pe::sample::pe32;

    fn align(n: usize, a: usize) -> usize {
        n.div_ceil(a) * a
    }

    /// The program hidden in the packed one: a 0x400-byte PE.
    pub(crate) fn payload() -> Vec<u8> {
        let mut e = pe32(&[(0x200, 0x1000, 0x200, 0x200)], 0x1000, 0x400);
        e[0x200..0x210].copy_from_slice(b"payload program!");
        e
    }

    /// What the loader unpacks: a 0x1000-byte data section ending with `e`, the packed
    /// imports (none: a zero word), then the original PE header as UPX keeps it.
    pub(crate) fn unpacked(e: &[u8]) -> Vec<u8> {
        let mut data = vec![0x90u8; 0x1000];
        data[0x1000 - e.len()..].copy_from_slice(e);
        data.extend_from_slice(&[0; 4]);
        let orig = pe32(&[(0x1000, 0x1000, 0x1000, 0x400)], 0x1000, 0x400);
        data.extend_from_slice(&orig[0x80..0x80 + 0xf8 + 0x28]);
        data
    }

    /// A UPX layout: UPX0 (0x2000 bytes, no data) at 0x1000, UPX1 at 0x3000 holding the NRV2B
    /// stream of `data` and then the loader (the entry point), whose `lea edi, [esi + 0x1000]`
    /// names the imports when `imports` is set.
    pub(crate) fn packed(data: &[u8], loader_named: bool, imports: bool) -> Vec<u8> {
        let mut upx1 = encode::literals(data);
        let loader_at = align(upx1.len(), 0x10);
        upx1.resize(loader_at, 0);
        let mut loader = vec![0xccu8; 0x200];
        loader[..2].copy_from_slice(&[0x60, 0xbe]);
        loader[2..6].copy_from_slice(&(0x40_0000u32 + 0x3000).to_le_bytes());
        if loader_named {
            loader[0x69..0x69 + 13].copy_from_slice(&NRV2B_LOADER[..13]);
        }
        if imports {
            loader[0x106..0x108].copy_from_slice(&[0x8d, 0xbe]);
            loader[0x108..0x10c].copy_from_slice(&0x1000u32.to_le_bytes());
        }
        upx1.extend_from_slice(&loader);
        let rsz = align(upx1.len(), 0x200);
        let sections = [
            (0x2000, 0x1000, 0, 0),
            (align(rsz, 0x1000) as u32, 0x3000, rsz as u32, 0x400),
        ];
        let mut d = pe32(&sections, 0x3000 + loader_at as u32, 0x400 + rsz);
        d[0x400..0x400 + upx1.len()].copy_from_slice(&upx1);
        d
    }

    fn image(d: &[u8]) -> Vec<u8> {
        match unpack(d, 1 << 20) {
            Unpacked::Image(img, method) => {
                assert_eq!(method, "NRV2B");
                img
            }
            other => panic!("not unpacked: {other:?}"),
        }
    }

    #[test]
    fn the_image_is_rebuilt_from_the_header_upx_kept() {
        let e = payload();
        for (named, imports) in [(true, true), (false, true), (true, false)] {
            let img = image(&packed(&unpacked(&e), named, imports));
            // Header area aligned to 0x1000, then the one section: the program ends the image.
            assert_eq!(img.len(), 0x2000, "named {named} imports {imports}");
            assert_eq!(&img[0x2000 - e.len()..], &e[..]);
            let h = pe::parse(&img).unwrap();
            assert_eq!((h.sections.len(), h.sections[0].raw), (1, 0x1000));
            assert_eq!(&img[0xd0 + 8..0xd0 + 12], b"CLAM");
        }
    }

    #[test]
    fn without_a_header_the_bytes_get_one_of_ours() {
        let data: Vec<u8> = (0..0x1800u32).map(|i| (i % 251) as u8).collect();
        let img = image(&packed(&data, true, false));
        assert_eq!(img.len(), 0x2000 + 0x200);
        assert_eq!(&img[0x200..0x200 + data.len()], &data[..]);
        let h = pe::parse(&img).unwrap();
        assert_eq!(h.sections[0].raw, 0x200);
        assert!(img[0x200 + data.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn limits_damage_and_plain_programs() {
        let d = packed(&unpacked(&payload()), true, true);
        // UPX0 0x2000 + UPX1 0x2000 (its data rounded to the section alignment).
        assert_eq!(unpack(&d, 0x1000), Unpacked::OverLimit(0x4000));
        let mut broken = d.clone();
        // Zero bits: an offset that grows past any i32 in every method, at every start.
        broken[0x400..0x1400].fill(0);
        assert!(matches!(unpack(&broken, 1 << 20), Unpacked::Failed));
        let plain = pe32(&[(0x1000, 0x1000, 0x200, 0x400)], 0x1000, 0x600);
        assert_eq!(unpack(&plain, 1 << 20), Unpacked::NotPacked);
        assert_eq!(unpack(b"MZ not a program", 1 << 20), Unpacked::NotPacked);
        for cut in [0x200, 0x401, 0x800, d.len() - 1] {
            let _ = unpack(&d[..cut], 1 << 20);
        }
    }
}
