//! PowerPoint 97-2003 (`PowerPoint Document` stream, [MS-PPT]): embedded OLE objects live in
//! `ExOleObjStg` records (type 0x1011), zlib-compressed when the record instance is 1 (a 4-byte
//! decompressed size, then the zlib stream). Records are walked as ClamAV does: a container
//! (version 0xF) is entered, an atom is skipped by its length.

use std::io::Read;

const EX_OLE_OBJ_STG: u16 = 0x1011;

/// An embedded object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Its bytes (an OLE2 compound file, usually), at most the cap.
    pub data: Vec<u8>,
    /// Cut at the cap, or its record or zlib stream ended early.
    pub cut: bool,
}

/// The embedded objects of a `PowerPoint Document` stream (at most `max`, each at most `cap`
/// bytes, `total` bytes in all), and whether a limit left some out.
pub fn objects(stream: &[u8], max: usize, cap: usize, total: usize) -> (Vec<Object>, bool) {
    let mut out = Vec::new();
    let mut used = 0usize;
    let mut at = 0usize;
    loop {
        let Some(h) = stream.get(at..at + 8) else {
            return (out, false);
        };
        let ver_inst = u16::from_le_bytes([h[0], h[1]]);
        let kind = u16::from_le_bytes([h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if ver_inst & 0xf == 0xf {
            at += 8;
            continue;
        }
        let end = (at + 8).saturating_add(len);
        let body = &stream[at + 8..end.min(stream.len())];
        let short = end > stream.len();
        if kind == EX_OLE_OBJ_STG {
            if out.len() >= max || used >= total {
                return (out, true);
            }
            let o = object(body, ver_inst >> 4 == 1, cap.min(total - used), short);
            used += o.data.len();
            out.push(o);
        }
        at = end;
    }
}

fn object(body: &[u8], compressed: bool, cap: usize, short: bool) -> Object {
    if !compressed {
        let data = body[..body.len().min(cap)].to_vec();
        return Object {
            cut: short || body.len() > cap,
            data,
        };
    }
    let mut data = Vec::new();
    let z = body.get(4..).unwrap_or_default();
    let mut r = flate2::read::ZlibDecoder::new(z).take((cap as u64).saturating_add(1));
    let failed = r.read_to_end(&mut data).is_err();
    let over = data.len() > cap;
    data.truncate(cap);
    Object {
        data,
        cut: short || failed || over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(ver_inst: u16, kind: u16, body: &[u8]) -> Vec<u8> {
        let mut r = ver_inst.to_le_bytes().to_vec();
        r.extend_from_slice(&kind.to_le_bytes());
        r.extend_from_slice(&(body.len() as u32).to_le_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn objects_in_containers_plain_and_compressed() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"compressed object").unwrap();
        let mut packed = 17u32.to_le_bytes().to_vec();
        packed.extend(z.finish().unwrap());
        let mut inner = record(0, 0x0fba, b"some text atom");
        inner.extend(record(0x10, EX_OLE_OBJ_STG, &packed));
        inner.extend(record(0, EX_OLE_OBJ_STG, b"plain object"));
        let mut stream = record(0x0f, 0x03e8, &inner);
        stream.truncate(8);
        stream.extend(inner);
        let (found, more) = objects(&stream, 10, 1 << 20, 1 << 20);
        assert!(!more);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0],
            Object {
                data: b"compressed object".to_vec(),
                cut: false
            }
        );
        assert_eq!(found[1].data, b"plain object");
        let (small, _) = objects(&stream, 10, 5, 100);
        assert!(small.iter().all(|o| o.cut && o.data.len() == 5));
        assert_eq!(
            objects(&stream, 1, 100, 100),
            (vec![found[0].clone()], true)
        );
        // The total budget ends the reading too, and says so.
        let (few, more) = objects(&stream, 10, 100, 17);
        assert!(few.len() == 1 && more);
        let cut = &stream[..stream.len() - 3];
        assert!(objects(cut, 10, 100, 1000).0[1].cut);
        assert!(objects(b"\xff\xff", 10, 100, 100).0.is_empty());
    }
}
