//! IPS transformations over hostile buffers: a chain picked by the first bytes (every step,
//! the decompressors and base64 modes included) run on the rest. Never panics; a
//! decompressor's output stays within its `max-size`. The same bytes as a request target go
//! through `http.uri`'s normalisation, which never grows a path.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sekisho_ips::transform::{run_chain, Transform};

fn steps() -> &'static [(Transform, Option<usize>)] {
    static STEPS: OnceLock<Vec<(Transform, Option<usize>)>> = OnceLock::new();
    STEPS.get_or_init(|| {
        let parse = |kw: &str, val: Option<&str>| {
            Transform::parse(kw, val)
                .expect("a transformation")
                .expect("valid options")
        };
        vec![
            (parse("dotprefix", None), None),
            (parse("to_lowercase", None), None),
            (parse("to_uppercase", None), None),
            (parse("strip_whitespace", None), None),
            (parse("compress_whitespace", None), None),
            (parse("strip_pseudo_headers", None), None),
            (parse("header_lowercase", None), None),
            (parse("url_decode", None), None),
            (parse("xor", Some("\"0d0ac8ff\"")), None),
            (parse("pcrexform", Some("\"=([^&]*)\"")), None),
            (parse("pcrexform", Some("\"(?<=k)(.+?)(?=z)\"")), None),
            (parse("from_base64", None), None),
            (parse("from_base64", Some("mode rfc2045, offset 1")), None),
            (parse("from_base64", Some("mode strict, bytes 12")), None),
            (parse("gunzip", Some("max-size 4kb")), Some(4096)),
            (parse("zlib_deflate", None), Some(1024)),
            (parse("to_md5", None), None),
            (parse("to_sha1", None), None),
            (parse("to_sha256", None), None),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 4) + 1;
    if rest.len() < n {
        return;
    }
    let (picks, input) = rest.split_at(n);
    let all = steps();
    let chain: Vec<Transform> = picks
        .iter()
        .map(|&p| all[usize::from(p) % all.len()].0.clone())
        .collect();
    if let Some(n) = sekisho_ips::uri::normalized(input) {
        assert!(n.len() <= input.len() + 2, "normalised URI grew");
    }
    let mut out = Vec::new();
    run_chain(&chain, input, &mut out);
    // Each step alone: the decompressors stay within max-size.
    for &p in picks {
        let (t, cap) = &all[usize::from(p) % all.len()];
        run_chain(std::slice::from_ref(t), input, &mut out);
        if let Some(cap) = cap {
            assert!(out.len() <= *cap, "{} gave {} bytes", t.name(), out.len());
        }
    }
});
