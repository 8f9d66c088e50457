//! The PDF standard security handler (ISO 32000-2 §7.6.4): a document encrypted with an empty
//! user password (an "owner password only" file: printing or copying restricted, opened by any
//! reader without asking) is decrypted, as ClamAV's `pdf.c` decrypts it, so its streams are
//! scanned; one with a user password is reported. Revisions 2 to 4 (RC4 of 40 to 128 bits,
//! AES-128) and 5 and 6 (AES-256).

use aes::cipher::{block_padding, BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit};
use md5::{Digest, Md5};
use rc4::{Rc4, StreamCipher};
use sha2::{Sha256, Sha384, Sha512};

use super::pdfdict::{self, Dict};

/// The padding string of Algorithm 2: the empty password padded.
const PAD: [u8; 32] = [
    0x28, 0xbf, 0x4e, 0x5e, 0x4e, 0x75, 0x8a, 0x41, 0x64, 0x00, 0x4e, 0x56, 0xff, 0xfa, 0x01, 0x08,
    0x2e, 0x2e, 0x00, 0xb6, 0xd0, 0x68, 0x3e, 0x80, 0x2f, 0x0c, 0xa9, 0xfe, 0x64, 0x53, 0x69, 0x7a,
];

/// How a document's streams are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cipher {
    /// Not at all (`/StmF /Identity`).
    Identity,
    /// RC4 with a per-object key.
    Rc4,
    /// AES-128-CBC with a per-object key.
    Aes128,
    /// AES-256-CBC with the file key.
    Aes256,
}

/// What the document's encryption means for reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Not encrypted.
    None,
    /// Encrypted with an empty user password: its streams decrypt.
    Open(Decryptor),
    /// Encrypted so that it cannot be read here; why.
    Locked(String),
}

/// The key and cipher of a document whose user password is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decryptor {
    /// The cipher of streams (`/StmF`).
    cipher: Cipher,
    /// The cipher of strings (`/StrF`; the same before `/V 4`).
    strings: Cipher,
    key: Vec<u8>,
    /// `/EncryptMetadata false`: metadata streams are stored in the clear.
    clear_metadata: bool,
}

impl Decryptor {
    /// Decrypts the data of object `num` generation `gen`'s stream (`None` when it does not
    /// decrypt: a cut AES block).
    pub fn stream(&self, num: u32, gen: u16, data: &[u8]) -> Option<Vec<u8>> {
        self.apply(self.cipher, num, gen, data)
    }

    /// Decrypts a string of object `num` generation `gen`.
    pub fn string(&self, num: u32, gen: u16, data: &[u8]) -> Option<Vec<u8>> {
        self.apply(self.strings, num, gen, data)
    }

    fn apply(&self, cipher: Cipher, num: u32, gen: u16, data: &[u8]) -> Option<Vec<u8>> {
        match cipher {
            Cipher::Identity => Some(data.to_vec()),
            Cipher::Rc4 => Some(rc4(&self.object_key(num, gen, false), data)),
            Cipher::Aes128 => aes_cbc::<aes::Aes128>(&self.object_key(num, gen, true), data),
            Cipher::Aes256 => aes_cbc::<aes::Aes256>(&self.key, data),
        }
    }

    /// Whether a stream with this dictionary is stored in the clear (cross-reference streams,
    /// and metadata when the document says so).
    pub fn leaves_clear(&self, dict: &[u8]) -> bool {
        let has = |n: &[u8]| memchr::memmem::find(dict, n).is_some();
        has(b"/XRef") || self.clear_metadata && has(b"/Metadata")
    }

    /// Algorithm 1: the file key, the object and generation numbers, and for AES `sAlT`.
    fn object_key(&self, num: u32, gen: u16, aes: bool) -> Vec<u8> {
        let mut h = Md5::new();
        h.update(&self.key);
        h.update(&num.to_le_bytes()[..3]);
        h.update(gen.to_le_bytes());
        if aes {
            h.update(b"sAlT");
        }
        let n = (self.key.len() + 5).min(16);
        h.finalize()[..n].to_vec()
    }
}

/// The document's security: its `/Encrypt` dictionary (`encrypt`, the dictionary's bytes)
/// and the first element of its `/ID`.
pub fn security(encrypt: &[u8], id0: &[u8]) -> Security {
    let d = Dict::parse(encrypt);
    if d.name(b"/Filter").is_some_and(|f| f != b"Standard") {
        return Security::Locked("encrypted PDF (a security handler other than Standard)".into());
    }
    let v = d.int(b"/V").unwrap_or(0);
    let r = d.int(b"/R").unwrap_or(0);
    let (Some(o), Some(u)) = (d.string(b"/O"), d.string(b"/U")) else {
        return Security::Locked("encrypted PDF (no /O or /U)".into());
    };
    let clear_metadata = d.name(b"/EncryptMetadata").is_some_and(|b| b == b"false");
    let opened = match r {
        2..=4 => rc4_family(&d, v, r, &o, &u, id0, clear_metadata),
        5 | 6 => aes256(&d, r, &u),
        _ => return Security::Locked(format!("encrypted PDF (revision {r})")),
    };
    match opened {
        Some(((cipher, strings), key)) => Security::Open(Decryptor {
            cipher,
            strings,
            key,
            clear_metadata,
        }),
        None => Security::Locked("encrypted PDF (a user password is set)".into()),
    }
}

/// Revisions 2 to 4: the key from the empty password (Algorithm 2), checked against `/U`
/// (Algorithms 4 and 5).
fn rc4_family(
    d: &Dict<'_>,
    v: i64,
    r: i64,
    o: &[u8],
    u: &[u8],
    id0: &[u8],
    clear_metadata: bool,
) -> Option<((Cipher, Cipher), Vec<u8>)> {
    let bits = if r == 2 {
        40
    } else {
        d.int(b"/Length").unwrap_or(40)
    };
    let n = usize::try_from(bits / 8).ok()?.clamp(5, 16);
    let p = d.int(b"/P").unwrap_or(0) as i32;
    let mut h = Md5::new();
    h.update(PAD);
    h.update(o);
    h.update(p.to_le_bytes());
    h.update(id0);
    if r >= 4 && clear_metadata {
        h.update([0xff; 4]);
    }
    let mut key = h.finalize()[..n].to_vec();
    if r >= 3 {
        for _ in 0..50 {
            key = Md5::digest(&key)[..n].to_vec();
        }
    }
    let check = if r == 2 {
        rc4(&key, &PAD)
    } else {
        let mut h = Md5::new();
        h.update(PAD);
        h.update(id0);
        let mut x = rc4(&key, &h.finalize());
        for i in 1..=19u8 {
            let k: Vec<u8> = key.iter().map(|b| b ^ i).collect();
            x = rc4(&k, &x);
        }
        x
    };
    let want = if r == 2 { 32 } else { 16 };
    if u.get(..want)? != check.get(..want)? {
        return None;
    }
    let ciphers = if v == 4 {
        (crypt_filter(d, b"/StmF")?, crypt_filter(d, b"/StrF")?)
    } else {
        (Cipher::Rc4, Cipher::Rc4)
    };
    Some((ciphers, key))
}

/// The crypt filter `/StmF` or `/StrF` names (`/V 4`): its `/CFM`.
fn crypt_filter(d: &Dict<'_>, which: &[u8]) -> Option<Cipher> {
    let stmf = d.name(which).unwrap_or(b"Identity");
    if stmf == b"Identity" {
        return Some(Cipher::Identity);
    }
    let filters = Dict::parse(d.raw(b"/CF")?);
    let mut key = b"/".to_vec();
    key.extend_from_slice(stmf);
    let filter = Dict::parse(filters.raw(&key)?);
    match filter.name(b"/CFM").unwrap_or(b"None") {
        b"V2" => Some(Cipher::Rc4),
        b"AESV2" => Some(Cipher::Aes128),
        b"None" => Some(Cipher::Identity),
        _ => None,
    }
}

/// Revisions 5 and 6: `/U`'s validation salt checks the empty password, its key salt and
/// `/UE` give the file key.
fn aes256(d: &Dict<'_>, r: i64, u: &[u8]) -> Option<((Cipher, Cipher), Vec<u8>)> {
    let (hash, validation, key_salt) = (u.get(..32)?, u.get(32..40)?, u.get(40..48)?);
    if hash_r6(r, validation) != hash {
        return None;
    }
    let ue = d.string(b"/UE")?;
    let mut key = ue.get(..32)?.to_vec();
    let intermediate = hash_r6(r, key_salt);
    let zero = [0u8; 16];
    cbc::Decryptor::<aes::Aes256>::new_from_slices(&intermediate, &zero)
        .ok()?
        .decrypt_padded::<block_padding::NoPadding>(&mut key)
        .ok()?;
    Some(((Cipher::Aes256, Cipher::Aes256), key))
}

/// The hash of the empty password with `salt` (no user key: this is the user password):
/// SHA-256 for revision 5, Algorithm 2.B for revision 6.
fn hash_r6(r: i64, salt: &[u8]) -> Vec<u8> {
    let mut k = Sha256::digest(salt).to_vec();
    if r == 5 {
        return k;
    }
    let mut round = 0i64;
    let mut last = 0i64;
    while round < 64 || last > round - 32 {
        let mut e = k.repeat(64);
        let Ok(enc) = cbc::Encryptor::<aes::Aes128>::new_from_slices(&k[..16], &k[16..32]) else {
            break;
        };
        let n = e.len();
        if enc
            .encrypt_padded::<block_padding::NoPadding>(&mut e, n)
            .is_err()
        {
            break;
        }
        let sum: u32 = e[..16].iter().map(|&b| u32::from(b)).sum();
        k = match sum % 3 {
            0 => Sha256::digest(&e).to_vec(),
            1 => Sha384::digest(&e).to_vec(),
            _ => Sha512::digest(&e).to_vec(),
        };
        last = i64::from(e[n - 1]);
        round += 1;
    }
    k.truncate(32);
    k
}

fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if let Ok(mut c) = Rc4::new_from_slice(key) {
        c.apply_keystream(&mut out);
    }
    out
}

/// AES-CBC with the IV in the first block and PKCS#7 padding; a bad padding keeps every
/// decrypted byte (producers get it wrong); a cut last block is dropped.
fn aes_cbc<C>(key: &[u8], data: &[u8]) -> Option<Vec<u8>>
where
    C: aes::cipher::BlockCipherDecrypt + KeyInit,
    cbc::Decryptor<C>: KeyIvInit,
{
    let (iv, body) = (data.get(..16)?, &data[16..]);
    let mut buf = body[..body.len() - body.len() % 16].to_vec();
    cbc::Decryptor::<C>::new_from_slices(key, iv)
        .ok()?
        .decrypt_padded::<block_padding::NoPadding>(&mut buf)
        .ok()?;
    let pad = usize::from(buf.last().copied().unwrap_or(0));
    let padded = (1..=16).contains(&pad)
        && buf.len() >= pad
        && buf[buf.len() - pad..]
            .iter()
            .all(|&b| usize::from(b) == pad);
    let n = if padded { buf.len() - pad } else { buf.len() };
    buf.truncate(n);
    Some(buf)
}

/// The encryption dictionary a document names and the first element of its `/ID`, found
/// outside stream data (`outside`: whether a position is).
pub fn parts(pdf: &[u8], outside: impl Fn(usize) -> bool) -> Option<(Vec<u8>, Vec<u8>)> {
    let at = memchr::memmem::find_iter(pdf, b"/Encrypt")
        .filter(|&a| outside(a))
        .last()?;
    let value = &pdf[at + 8..];
    let dict = match pdfdict::reference(value) {
        Some((num, gen)) => pdfdict::object(pdf, num, gen)?.to_vec(),
        None => pdfdict::dict_at(value)?.to_vec(),
    };
    let id0 = memchr::memmem::find_iter(pdf, b"/ID")
        .filter(|&a| outside(a))
        .last()
        .and_then(|a| pdfdict::first_string(&pdf[a + 3..]))
        .unwrap_or_default();
    Some((dict, id0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_2b_and_the_rc4_check_are_stable() {
        // Revision 6's hash of the empty password is deterministic and 32 bytes long.
        let a = hash_r6(6, b"saltsalt");
        assert_eq!(a.len(), 32);
        assert_eq!(a, hash_r6(6, b"saltsalt"));
        assert_ne!(a, hash_r6(6, b"saltsalu"));
        assert_eq!(hash_r6(5, b"x"), Sha256::digest(b"x").to_vec());
        // RC4 is its own inverse.
        assert_eq!(rc4(b"key", &rc4(b"key", b"plain text")), b"plain text");
    }

    #[test]
    fn aes_blocks_decrypt_with_or_without_good_padding() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        let mut buf = b"sixteen byte msg, and more".to_vec();
        let n = buf.len();
        buf.resize(32, 0);
        let ct = cbc::Encryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .unwrap()
            .encrypt_padded::<block_padding::Pkcs7>(&mut buf, n)
            .unwrap()
            .to_vec();
        let mut data = iv.to_vec();
        data.extend(&ct);
        let plain = aes_cbc::<aes::Aes128>(&key, &data).unwrap();
        assert_eq!(plain, b"sixteen byte msg, and more");
        assert!(aes_cbc::<aes::Aes128>(&key, &iv[..8]).is_none(), "no IV");
        data.push(1);
        assert_eq!(
            aes_cbc::<aes::Aes128>(&key, &data).unwrap(),
            plain,
            "cut block dropped"
        );
    }

    /// A revision 4 dictionary whose `/U` matches the empty password (computed here the way
    /// a writer computes it), streams in AES-128 and strings in the clear.
    #[test]
    fn strings_follow_strf_and_streams_stmf() {
        let (o, id) = ([0x11u8; 32], b"0123456789abcdef");
        let mut h = Md5::new();
        h.update(PAD);
        h.update(o);
        h.update((-4i32).to_le_bytes());
        h.update(id);
        let mut key = h.finalize()[..16].to_vec();
        for _ in 0..50 {
            key = Md5::digest(&key)[..16].to_vec();
        }
        let mut h = Md5::new();
        h.update(PAD);
        h.update(id);
        let mut u = rc4(&key, &h.finalize());
        for i in 1..=19u8 {
            let k: Vec<u8> = key.iter().map(|b| b ^ i).collect();
            u = rc4(&k, &u);
        }
        u.resize(32, 0);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let dict = format!(
            "<< /Filter /Standard /V 4 /R 4 /Length 128 /P -4 /O <{}> /U <{}> /CF << /StdCF << /CFM /AESV2 >> >> /StmF /StdCF /StrF /Identity >>",
            hex(&o),
            hex(&u)
        );
        let Security::Open(d) = security(dict.as_bytes(), id) else {
            panic!("the empty password opens it");
        };
        assert_eq!(d.string(1, 0, b"in the clear").unwrap(), b"in the clear");
        assert_eq!(d.stream(1, 0, b"short"), None, "AES needs its IV block");
        let wrong = dict.replace("/P -4", "/P -8");
        assert!(matches!(
            security(wrong.as_bytes(), id),
            Security::Locked(_)
        ));
    }

    #[test]
    fn a_user_password_or_another_handler_locks_the_document() {
        let d = b"<< /Filter /Standard /V 2 /R 3 /Length 128 /P -4 /O <00> /U <00> >>";
        assert!(matches!(security(d, b"id"), Security::Locked(_)));
        let d = b"<< /Filter /Adobe.PubSec /V 4 /R 4 >>";
        assert!(matches!(security(d, b"id"), Security::Locked(_)));
        let d = b"<< /Filter /Standard /V 5 /R 6 /O <00> /U <00> >>";
        assert!(matches!(security(d, b"id"), Security::Locked(_)));
    }
}
