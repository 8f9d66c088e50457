//! MEW 11-packed Windows programs unpacked as ClamAV unpacks them (`cli_scanpe`'s MEW path and
//! `unmew11`): an empty section followed by the packed one, the entry point jumping back into
//! the headers (0x154 or 0x158, "Win9x compatibility" or not) where MEW's loader names where its
//! data starts; the packed section laid after room for the empty one; each stage of the chain
//! decoded by FSG's coder ([`super::unfsg::within`]) to the address the previous stage names,
//! until one names none; the stages become sections of a program rebuilt with 4 KiB alignment.
//! MEW's LZMA stage (a loader that calls its LZMA routine) is not decoded.

use super::pe::{self, align_up, Unpacked};
use super::rebuild;
use super::u32_le;
use super::unfsg;

/// Stages one program may chain (ClamAV has no bound; sections in a PE do).
const MAX_STAGES: usize = 96;

/// Unpacks the MEW-packed PE `d`; the image may not exceed `cap` bytes.
pub fn unpack(d: &[u8], cap: usize) -> Unpacked {
    let Some(h) = pe::parse(d) else {
        return Unpacked::NotPacked;
    };
    let Some((s0, s1)) = h.packed_pair() else {
        return Unpacked::NotPacked;
    };
    let ep = h.entry_code(d);
    if ep.len() < 16 || ep[0] != 0xe9 {
        return Unpacked::NotPacked;
    }
    let loader = h
        .entry
        .wrapping_add(u32_le(ep, 1).unwrap_or(0))
        .wrapping_add(5) as usize;
    if loader != 0x154 && loader != 0x158 {
        return Unpacked::NotPacked;
    }
    let Some(tbuff) = d.get(loader..loader + 0xb0) else {
        return Unpacked::NotPacked;
    };
    let base = h.image_base as u32;
    let esi = u32_le(tbuff, 1).unwrap_or(0).wrapping_sub(base);
    if esi <= s1.rva || esi >= s1.rva.wrapping_add(s1.raw).wrapping_sub(4) {
        return Unpacked::NotPacked;
    }
    let off = esi - s1.rva;
    let (ssize, dsize) = (u64::from(s1.vsz), u64::from(s0.vsz));
    let room = ssize + dsize;
    if u64::from(off) >= room || room > u64::from(u32::MAX) {
        return Unpacked::NotPacked;
    }
    if room.max(u64::from(s1.rsz)) > cap as u64 {
        return Unpacked::OverLimit(room);
    }
    if u64::from(s1.rsz) < u64::from(off) + 12 || u64::from(s1.rsz) > ssize {
        return Unpacked::NotPacked;
    }
    // MEW's LZMA stage: the loader calls its LZMA routine.
    if tbuff[0x7b] == 0xe8 {
        return Unpacked::Failed;
    }
    let mut buf = vec![0u8; room as usize];
    let (raw, rsz) = (s1.raw as usize, s1.rsz as usize);
    buf[dsize as usize..dsize as usize + rsz].copy_from_slice(&d[raw..raw + rsz]);
    let vadd = h.sections[0].rva;
    match stages(&mut buf, off as usize, dsize as usize, base, vadd) {
        Some(image) => Unpacked::Image(image, "MEW"),
        None => Unpacked::Failed,
    }
}

/// `unmew11` without its LZMA part: the chain of stages, then the rebuilt program.
fn stages(buf: &mut [u8], off: usize, dsize: usize, base: u32, vadd: u32) -> Option<Vec<u8>> {
    let total = buf.len();
    let vma = base.checked_add(vadd)?;
    if off + 12 > total {
        return None;
    }
    let head = dsize + off;
    let entry = u32_le(buf, head + 4)?;
    let mut next = u32_le(buf, head + 8)?;
    let mut src = head + 12;
    let mut src_len = (total - dsize).checked_sub(12 + off)?;
    // (raw, size) of each stage's output, from the start of the image.
    let mut sects: Vec<(u32, u32)> = Vec::new();
    let mut start = 0u32;
    loop {
        let dst = next.wrapping_sub(vma) as usize;
        let dst_len = (total as u64).checked_sub(dst as u64)? as usize;
        if src_len == 0 || src + src_len > total || dst_len == 0 {
            return None;
        }
        let (end, out_end) = unfsg::within(buf, (src, src_len), (dst, dst_len))?;
        next = u32_le(buf, end)?;
        src_len = src_len.checked_sub(end + 4 - src)?;
        src = end + 4;
        let val = align_up(u32::try_from(out_end).ok()?, 0x1000);
        if !sects.is_empty() && val < start {
            return None;
        }
        let size = val - start;
        if u64::from(start) + u64::from(size) > dsize as u64 || sects.len() >= MAX_STAGES {
            return None;
        }
        sects.push((start, size));
        start = val;
        if next == 0 {
            break;
        }
    }
    let secs: Vec<rebuild::Unpacked<'_>> = sects
        .iter()
        .map(|&(raw, size)| rebuild::Unpacked {
            rva: raw + vadd,
            vsz: size,
            data: &buf[raw as usize..(raw + size) as usize],
        })
        .collect();
    rebuild::rebuild_aligned(&secs, base, entry.wrapping_sub(base), (0, 0), 0x1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pe::sample::pe32;
    use crate::formats::unfsg::tests::literals;

    /// MEW's layout: an empty section at 0x1000 (0x2000 bytes), the packed one at 0x3000 (file
    /// 0x400) with the entry point at 0x3300 jumping to the loader at 0x154, whose `mov esi`
    /// names the data 0x10 into the packed section: the entry point, where the one stage goes
    /// (the empty section's start), the stage coded by FSG's coder, then a zero (no next stage).
    fn sample(data: &[u8]) -> Vec<u8> {
        let sections = [(0x2000, 0x1000, 0, 0), (0x1000, 0x3000, 0x400, 0x400)];
        let mut d = pe32(&sections, 0x3300, 0x800);
        let ep = 0x700;
        d[ep] = 0xe9;
        let rel = 0x154u32.wrapping_sub(0x3300 + 5);
        d[ep + 1..ep + 5].copy_from_slice(&rel.to_le_bytes());
        d[0x155..0x159].copy_from_slice(&(0x40_0000u32 + 0x3010).to_le_bytes());
        let head = 0x410;
        d[head + 4..head + 8].copy_from_slice(&0x40_1000u32.to_le_bytes());
        d[head + 8..head + 12].copy_from_slice(&0x40_1000u32.to_le_bytes());
        let stage = literals(data);
        d[head + 12..head + 12 + stage.len()].copy_from_slice(&stage);
        d
    }

    #[test]
    fn stages_decode_and_become_sections() {
        let data: Vec<u8> = (0..0x200u32).map(|i| (i * 11 % 256) as u8).collect();
        let Unpacked::Image(img, method) = unpack(&sample(&data), 1 << 20) else {
            panic!("not unpacked");
        };
        assert_eq!((method, img.len()), ("MEW", 0x200 + 0x1000));
        assert_eq!(&img[0x200..0x200 + data.len()], &data[..]);
        let h = pe::parse(&img).unwrap();
        assert_eq!(
            (h.entry, h.sections.len(), h.sections[0].rva),
            (0x1000, 1, 0x1000)
        );
    }

    #[test]
    fn limits_damage_and_lookalikes() {
        let d = sample(b"one stage");
        assert_eq!(unpack(&d, 0x1000), Unpacked::OverLimit(0x3000));
        // A stage that never ends.
        let mut bad = d.clone();
        bad[0x41c..0x700].fill(0);
        assert!(matches!(unpack(&bad, 1 << 20), Unpacked::Failed));
        // The LZMA loader is not decoded.
        let mut lzma = d.clone();
        lzma[0x154 + 0x7b] = 0xe8;
        assert!(matches!(unpack(&lzma, 1 << 20), Unpacked::Failed));
        let mut other = d.clone();
        other[0x700] = 0x90;
        assert!(matches!(unpack(&other, 1 << 20), Unpacked::NotPacked));
        for n in [0x200, 0x420, 0x500, d.len() - 1] {
            let _ = unpack(&d[..n], 1 << 20);
        }
    }
}
