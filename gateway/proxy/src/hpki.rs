//! Healthcare certificates (ISO 17090-2, as HPKI issues them): the subjectDirectoryAttributes
//! extension and its hcRole attribute, read and written.
//!
//! ```text
//! subjectDirectoryAttributes (2.5.29.9) ::= SEQUENCE SIZE (1..MAX) OF Attribute
//! Attribute ::= SEQUENCE { type OBJECT IDENTIFIER, values SET OF AttributeValue }
//! hcRole: type 1.0.17090.0.1, each value an HCActorData ::= SET OF HCActor
//! HCActor ::= SEQUENCE { codedData [0] CodedData OPTIONAL,
//!                        regionalHCActor [1] SEQUENCE OF DirectoryString OPTIONAL }
//! CodedData ::= SET { codingSchemeReference [0] OBJECT IDENTIFIER,
//!                     codeDataValue [1] NumericString OPTIONAL,
//!                     codeDataFreeText [2] DirectoryString }
//! ```
//!
//! HPKI tags explicitly and writes the profession as codeDataFreeText ("Medical Doctor") under
//! the coding scheme 1.2.392.100495.1.6.1.1. The reader also takes implicit tags and an HCActor
//! written directly as an attribute value (without its SET), as some issuers do; anything else
//! out of place is refused with the reason.

use x509_parser::der_parser::asn1_rs::{Any, Class, FromDer, Oid, Tag};

/// The subjectDirectoryAttributes extension.
pub const SDA_OID: &str = "2.5.29.9";
/// ISO 17090's healthcare actor attribute (hcRole).
pub const HC_ACTOR_OID: &str = "1.0.17090.0.1";
/// HPKI's coding schemes for roles: national qualifications ("Medical Doctor", "Pharmacist" …)
/// and facility-manager roles ("Director of Hospital" …).
pub const HPKI_SCHEMES: &[&str] = &["1.2.392.100495.1.6.1.1", "1.2.392.100495.1.6.1.2"];
/// Elements read from one extension at most (a certificate is small; this bounds the work).
const MAX_ELEMENTS: usize = 256;

/// One hcRole entry (an HCActor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HcRole {
    /// codingSchemeReference (dotted), when codedData is present.
    pub scheme: Option<String>,
    /// codeDataFreeText, else codeDataValue.
    pub value: Option<String>,
    /// regionalHCActor strings.
    pub regional: Vec<String>,
}

/// One attribute of subjectDirectoryAttributes.
#[derive(Debug)]
pub struct Attribute<'a> {
    /// The attribute type (dotted).
    pub oid: String,
    /// Its values, undecoded.
    pub values: Vec<Any<'a>>,
}

fn any(i: &[u8]) -> Result<(&[u8], Any<'_>), String> {
    Any::from_der(i).map_err(|e| format!("not DER: {e}"))
}

/// The elements inside a constructed value (all of `data`, nothing left over).
fn elements(mut data: &[u8]) -> Result<Vec<Any<'_>>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if out.len() == MAX_ELEMENTS {
            return Err(format!("more than {MAX_ELEMENTS} elements"));
        }
        let (rest, a) = any(data)?;
        out.push(a);
        data = rest;
    }
    Ok(out)
}

/// The single element of `data`.
fn single(data: &[u8]) -> Result<Any<'_>, String> {
    let (rest, a) = any(data)?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the value", rest.len()));
    }
    Ok(a)
}

fn universal(a: &Any<'_>, tag: Tag, what: &str) -> Result<(), String> {
    if a.class() != Class::Universal || a.tag() != tag {
        return Err(format!(
            "{what}: expected {tag}, found {:?} tag {}",
            a.class(),
            a.tag().0
        ));
    }
    Ok(())
}

fn oid_text(a: &Any<'_>) -> Result<String, String> {
    // X.690: each subidentifier in the fewest bytes (no leading 0x80), the last byte ends one.
    let d = a.data;
    let leading_pad = d
        .iter()
        .enumerate()
        .any(|(i, b)| *b == 0x80 && (i == 0 || d[i - 1] & 0x80 == 0));
    if d.is_empty() || d[d.len() - 1] & 0x80 != 0 || leading_pad || d.len() > 64 {
        return Err("malformed OBJECT IDENTIFIER".into());
    }
    Ok(Oid::new(std::borrow::Cow::Borrowed(d)).to_id_string())
}

/// The attributes of a subjectDirectoryAttributes extension value.
pub fn attributes(ext_value: &[u8]) -> Result<Vec<Attribute<'_>>, String> {
    let outer = single(ext_value)?;
    universal(&outer, Tag::Sequence, "subjectDirectoryAttributes")?;
    let mut out = Vec::new();
    for attr in elements(outer.data)? {
        universal(&attr, Tag::Sequence, "Attribute")?;
        let parts = elements(attr.data)?;
        let [ty, set] = parts.as_slice() else {
            return Err(format!(
                "Attribute: expected a type and a SET of values, found {} elements",
                parts.len()
            ));
        };
        universal(ty, Tag::Oid, "Attribute type")?;
        universal(set, Tag::Set, "Attribute values")?;
        out.push(Attribute {
            oid: oid_text(ty)?,
            values: elements(set.data)?,
        });
    }
    Ok(out)
}

/// The text of a DirectoryString or another character string.
pub fn string_value(a: &Any<'_>) -> Result<String, String> {
    if a.class() != Class::Universal {
        return Err(format!(
            "expected a character string, found {:?} tag {}",
            a.class(),
            a.tag().0
        ));
    }
    let utf8 = || {
        std::str::from_utf8(a.data)
            .map(str::to_string)
            .map_err(|_| format!("{} that is not valid text", a.tag()))
    };
    match a.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::VisibleString
        | Tag::NumericString
        | Tag::T61String => utf8(),
        Tag::BmpString => utf16(a.data),
        Tag::UniversalString => utf32(a.data),
        t => Err(format!("expected a character string, found {t}")),
    }
}

fn utf16(b: &[u8]) -> Result<String, String> {
    if b.len() % 2 != 0 {
        return Err("BMPString of odd length".into());
    }
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| "BMPString that is not valid UTF-16".into())
}

fn utf32(b: &[u8]) -> Result<String, String> {
    if b.len() % 4 != 0 {
        return Err("UniversalString whose length is not a multiple of 4".into());
    }
    b.chunks_exact(4)
        .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect::<Option<String>>()
        .ok_or_else(|| "UniversalString that is not valid text".into())
}

/// A context-tagged field's value: the inner element of an explicit tag, or the tag's own
/// content read as `implicit` (a universal tag) when the tag is implicit.
fn tagged<'a>(a: &Any<'a>, implicit: Tag) -> Result<Any<'a>, String> {
    if matches!(implicit, Tag::Set | Tag::Sequence) {
        // Explicit: [n] { SET { … } }; implicit: [n] { … } directly.
        match single(a.data) {
            Ok(inner) if inner.class() == Class::Universal && inner.tag() == implicit => {
                return Ok(inner)
            }
            _ => {}
        }
    } else if a.header.is_constructed() {
        // An explicit tag around a primitive value.
        return single(a.data);
    }
    Ok(Any::from_tag_and_data(implicit, a.data))
}

/// CodedData: its scheme and value.
fn coded_data(a: &Any<'_>) -> Result<(String, Option<String>), String> {
    universal(a, Tag::Set, "codedData")?;
    let (mut scheme, mut code, mut text) = (None, None, None);
    for f in elements(a.data)? {
        if f.class() != Class::ContextSpecific {
            return Err(format!(
                "codedData: unexpected {:?} tag {} (expected [0], [1] or [2])",
                f.class(),
                f.tag().0
            ));
        }
        match f.tag().0 {
            0 => {
                let o = tagged(&f, Tag::Oid)?;
                universal(&o, Tag::Oid, "codingSchemeReference")?;
                scheme = Some(oid_text(&o)?);
            }
            1 => code = Some(string_value(&tagged(&f, Tag::NumericString)?)?),
            2 => text = Some(string_value(&tagged(&f, Tag::Utf8String)?)?),
            // Later editions add version, meaning and other optional fields: skipped.
            3..=9 => {}
            n => return Err(format!("codedData: unexpected field [{n}]")),
        }
    }
    let scheme = scheme.ok_or("codedData without codingSchemeReference [0]")?;
    Ok((scheme, text.or(code)))
}

/// One HCActor.
fn hc_actor(a: &Any<'_>) -> Result<HcRole, String> {
    universal(a, Tag::Sequence, "HCActor")?;
    let mut role = HcRole::default();
    for f in elements(a.data)? {
        match (f.class(), f.tag().0) {
            (Class::ContextSpecific, 0) => {
                let (scheme, value) = coded_data(&tagged(&f, Tag::Set)?)?;
                role.scheme = Some(scheme);
                role.value = value;
            }
            (Class::ContextSpecific, 1) => {
                let seq = tagged(&f, Tag::Sequence)?;
                for s in elements(seq.data)? {
                    role.regional.push(string_value(&s)?);
                }
            }
            (c, t) => {
                return Err(format!(
                "HCActor: unexpected {c:?} tag {t} (expected [0] codedData or [1] regionalHCActor)"
            ))
            }
        }
    }
    Ok(role)
}

/// Every hcRole entry of a subjectDirectoryAttributes extension value (none when the attribute
/// is absent).
pub fn hc_roles(ext_value: &[u8]) -> Result<Vec<HcRole>, String> {
    let mut out = Vec::new();
    for attr in attributes(ext_value)? {
        if attr.oid != HC_ACTOR_OID {
            continue;
        }
        for v in &attr.values {
            if v.class() == Class::Universal && v.tag() == Tag::Sequence {
                out.push(hc_actor(v).map_err(|e| format!("hcRole: {e}"))?);
                continue;
            }
            universal(v, Tag::Set, "hcRole value (HCActorData)")?;
            for actor in elements(v.data)? {
                out.push(hc_actor(&actor).map_err(|e| format!("hcRole: {e}"))?);
            }
        }
    }
    Ok(out)
}

/// The string values of attribute `oid` in a subjectDirectoryAttributes extension value; an
/// attribute whose values are not strings is an error naming it.
pub fn string_attribute(ext_value: &[u8], oid: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for attr in attributes(ext_value)? {
        if attr.oid != oid {
            continue;
        }
        for v in &attr.values {
            out.push(
                string_value(v).map_err(|e| format!("attribute {oid}: {e}{}", hint_for(oid)))?,
            );
        }
    }
    Ok(out)
}

fn hint_for(oid: &str) -> &'static str {
    if oid == HC_ACTOR_OID {
        " (hcRole is structured: read it with hpki:role or hcrole:<scheme OID>)"
    } else {
        ""
    }
}

/// DER of one TLV (definite length).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// DER content of a dotted OID (at least two arcs).
fn oid_der(dotted: &str) -> Result<Vec<u8>, String> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|p| p.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{dotted:?}: not a dotted OID"))?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39) {
        return Err(format!("{dotted:?}: not a dotted OID"));
    }
    let mut out = Vec::new();
    let first = arcs[0] * 40 + arcs[1];
    for arc in std::iter::once(first).chain(arcs[2..].iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            groups.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        out.extend(groups.into_iter().rev());
    }
    Ok(out)
}

/// The DER value of a subjectDirectoryAttributes extension carrying one hcRole attribute with
/// one HCActor per role, laid out as HPKI certificates carry it (explicit tags, the role as
/// codeDataFreeText UTF8String under `scheme`).
pub fn encode_hc_roles(scheme: &str, roles: &[String]) -> Result<Vec<u8>, String> {
    let scheme = tlv(0x06, &oid_der(scheme)?);
    let mut actors = Vec::new();
    for r in roles {
        let mut coded = tlv(0xa0, &scheme);
        coded.extend(tlv(0xa2, &tlv(0x0c, r.as_bytes())));
        let actor = tlv(0x30, &tlv(0xa0, &tlv(0x31, &coded)));
        actors.push(actor);
    }
    // DER orders SET OF elements by their encodings.
    actors.sort();
    let values = tlv(0x31, &tlv(0x31, &actors.concat()));
    let attr = tlv(0x30, &[tlv(0x06, &oid_der(HC_ACTOR_OID)?), values].concat());
    Ok(tlv(0x30, &attr))
}

/// The DER value of a certificatePolicies extension listing `oids` (no qualifiers).
pub fn encode_policies(oids: &[String]) -> Result<Vec<u8>, String> {
    let mut infos = Vec::new();
    for o in oids {
        infos.extend(tlv(0x30, &tlv(0x06, &oid_der(o)?)));
    }
    Ok(tlv(0x30, &infos))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DOCTOR: &str = "1.2.392.100495.1.6.1.1";

    fn values(ext: &[u8]) -> Vec<String> {
        hc_roles(ext)
            .unwrap()
            .into_iter()
            .filter_map(|r| r.value)
            .collect()
    }

    #[test]
    fn written_roles_read_back_in_the_hpki_layout() {
        let ext = encode_hc_roles(DOCTOR, &["Medical Doctor".into()]).unwrap();
        // SEQUENCE { SEQUENCE { OID 1.0.17090.0.1, SET { SET { HCActor } } } }, and the
        // HCActor byte for byte as HPKI writes it: SEQUENCE { [0] { SET { [0] { OID },
        // [2] { UTF8String } } } }.
        let oid = [0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01];
        assert_eq!(&ext[4..12], &oid);
        let mut actor = vec![0x30, 0x24, 0xa0, 0x22, 0x31, 0x20, 0xa0, 0x0c, 0x06, 0x0a];
        actor.extend([0x2a, 0x83, 0x08, 0x86, 0x91, 0x0f, 0x01, 0x06, 0x01, 0x01]);
        actor.extend([0xa2, 0x10, 0x0c, 0x0e]);
        actor.extend(b"Medical Doctor");
        assert!(ext.ends_with(&actor), "{ext:02x?}");
        assert_eq!(ext.len(), 2 + 2 + 8 + 2 + 2 + actor.len());
        let roles = hc_roles(&ext).unwrap();
        assert_eq!(
            roles,
            vec![HcRole {
                scheme: Some(DOCTOR.into()),
                value: Some("Medical Doctor".into()),
                regional: vec![]
            }]
        );
        let two = encode_hc_roles(
            DOCTOR,
            &["Medical Doctor".into(), "Director of Hospital".into()],
        )
        .unwrap();
        let mut v = values(&two);
        v.sort();
        assert_eq!(v, ["Director of Hospital", "Medical Doctor"]);
    }

    #[test]
    fn oids_encode_like_openssl() {
        assert_eq!(
            oid_der(DOCTOR).unwrap(),
            [0x2a, 0x83, 0x08, 0x86, 0x91, 0x0f, 0x01, 0x06, 0x01, 0x01]
        );
        assert_eq!(oid_der("2.5.29.9").unwrap(), [0x55, 0x1d, 0x09]);
        assert!(oid_der("1").is_err() && oid_der("1.x").is_err() && oid_der("3.1").is_err());
    }

    /// An HCActor with a numeric code, free text and a regionalHCActor, as a hand-built
    /// HCActorData (the layout of an HPKI library's test vectors).
    #[test]
    fn numeric_code_and_regional_entries() {
        let scheme = tlv(0x06, &oid_der(DOCTOR).unwrap());
        let coded = [
            tlv(0xa0, &scheme),
            tlv(0xa1, &tlv(0x12, b"123")),
            tlv(0xa2, &tlv(0x0c, b"Pharmacist")),
        ]
        .concat();
        let actor = tlv(
            0x30,
            &[
                tlv(0xa0, &tlv(0x31, &coded)),
                tlv(0xa1, &tlv(0x30, &tlv(0x0c, b"Tokyo"))),
            ]
            .concat(),
        );
        let attr = tlv(
            0x30,
            &[
                tlv(0x06, &oid_der(HC_ACTOR_OID).unwrap()),
                tlv(0x31, &tlv(0x31, &actor)),
            ]
            .concat(),
        );
        let ext = tlv(0x30, &attr);
        let r = hc_roles(&ext).unwrap();
        assert_eq!(r[0].value.as_deref(), Some("Pharmacist"));
        assert_eq!(r[0].regional, ["Tokyo"]);
        // Implicitly tagged codedData and an HCActor given directly as the value.
        let implicit = tlv(
            0x30,
            &tlv(
                0xa0,
                &[
                    tlv(0x80, &oid_der(DOCTOR).unwrap()),
                    tlv(0x82, "歯科医師".as_bytes()),
                ]
                .concat(),
            ),
        );
        let attr = tlv(
            0x30,
            &[
                tlv(0x06, &oid_der(HC_ACTOR_OID).unwrap()),
                tlv(0x31, &implicit),
            ]
            .concat(),
        );
        assert_eq!(values(&tlv(0x30, &attr)), ["歯科医師"]);
    }

    #[test]
    fn malformed_attributes_are_refused_with_a_reason() {
        let good = encode_hc_roles(DOCTOR, &["Dentist".into()]).unwrap();
        for cut in 1..good.len() {
            assert!(hc_roles(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(hc_roles(&trailing).unwrap_err().contains("after the value"));
        // A role value that is an INTEGER instead of a string.
        let scheme = tlv(0x06, &oid_der(DOCTOR).unwrap());
        let coded = [tlv(0xa0, &scheme), tlv(0xa2, &tlv(0x02, &[5]))].concat();
        let actor = tlv(0x30, &tlv(0xa0, &tlv(0x31, &coded)));
        let attr = tlv(
            0x30,
            &[
                tlv(0x06, &oid_der(HC_ACTOR_OID).unwrap()),
                tlv(0x31, &tlv(0x31, &actor)),
            ]
            .concat(),
        );
        let e = hc_roles(&tlv(0x30, &attr)).unwrap_err();
        assert!(e.contains("character string"), "{e}");
        // codedData without a scheme.
        let coded = tlv(0xa2, &tlv(0x0c, b"Nurse"));
        let actor = tlv(0x30, &tlv(0xa0, &tlv(0x31, &coded)));
        let attr = tlv(
            0x30,
            &[
                tlv(0x06, &oid_der(HC_ACTOR_OID).unwrap()),
                tlv(0x31, &tlv(0x31, &actor)),
            ]
            .concat(),
        );
        assert!(hc_roles(&tlv(0x30, &attr))
            .unwrap_err()
            .contains("codingSchemeReference"));
        // Not an extension of attributes at all.
        assert!(hc_roles(&tlv(0x04, b"xx")).is_err());
    }

    #[test]
    fn other_attributes_and_their_string_values() {
        let attr = |oid: &str, v: Vec<u8>| {
            tlv(
                0x30,
                &[tlv(0x06, &oid_der(oid).unwrap()), tlv(0x31, &v)].concat(),
            )
        };
        let ext = tlv(
            0x30,
            &[
                attr("1.3.6.1.5.5.7.9.3", tlv(0x13, b"F")),
                attr(
                    "1.3.6.1.5.5.7.9.4",
                    [tlv(0x13, b"JP"), tlv(0x1e, &[0x65, 0xe5])].concat(),
                ),
            ]
            .concat(),
        );
        assert_eq!(
            string_attribute(&ext, "1.3.6.1.5.5.7.9.4").unwrap(),
            ["JP", "日"]
        );
        assert!(string_attribute(&ext, "1.2.3").unwrap().is_empty());
        assert!(hc_roles(&ext).unwrap().is_empty());
        let roles = encode_hc_roles(DOCTOR, &["Nurse".into()]).unwrap();
        let e = string_attribute(&roles, HC_ACTOR_OID).unwrap_err();
        assert!(e.contains("hpki:role"), "{e}");
    }

    #[test]
    fn policies_encode() {
        let d = encode_policies(&["1.2.392.100495.1.5.1.1.1".into()]).unwrap();
        assert_eq!(d[0], 0x30);
        assert_eq!(d[2], 0x30);
    }
}
