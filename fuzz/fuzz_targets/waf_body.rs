//! The WAF's request body processors and transformations on any bytes: the first byte picks
//! the processor (urlencoded, multipart, JSON, XML) or a transformation; none panics, each
//! bounded by the input, and processors are deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_waf::body::{self, ArgList, ArgOrigin, Limits};
use sekisho_waf::transform::Transform;

const TRANSFORMS: &[&str] = &[
    "urlDecodeUni",
    "jsDecode",
    "htmlEntityDecode",
    "utf8toUnicode",
    "cssDecode",
    "cmdLine",
    "normalizePath",
    "normalizePathWin",
    "escapeSeqDecode",
    "base64Decode",
    "base64DecodeExt",
    "hexDecode",
    "removeComments",
    "replaceComments",
    "removeCommentsChar",
    "compressWhitespace",
    "removeWhitespace",
    "sqlHexDecode",
];

fn parse(kind: u8, data: &[u8]) -> (usize, Option<String>) {
    let limits = Limits::default();
    let mut args = ArgList::new(limits.max_args);
    let err = match kind % 4 {
        0 => {
            body::urlencoded(data, b'&', ArgOrigin::Body, &mut args);
            None
        }
        1 => {
            let ct = b"multipart/form-data; boundary=xyz";
            body::multipart(ct, data, &limits, &mut args).error
        }
        2 => body::json(data, &limits, &mut args),
        _ => body::xml(data, &limits).error,
    };
    (args.len(), err)
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    if kind < 128 {
        assert_eq!(parse(kind, rest), parse(kind, rest), "not deterministic");
    } else {
        let name = TRANSFORMS[usize::from(kind) % TRANSFORMS.len()];
        let t = Transform::from_name(name).expect("known");
        let mut out = Vec::new();
        t.apply(rest, &mut out);
        // Decoders never grow a value by more than the %u expansion of utf8toUnicode (7 bytes
        // out for each 2-byte sequence) and the one byte removeComments may add.
        assert!(
            out.len() <= rest.len() * 4 + 1,
            "{name} grew {} to {}",
            rest.len(),
            out.len()
        );
    }
});
