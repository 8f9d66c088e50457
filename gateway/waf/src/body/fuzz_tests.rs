//! Randomized totality checks (no proptest): inputs spliced from the grammar's interesting
//! pieces and random bytes go through every processor, which must return (never panic), keep
//! to its limits, and agree with itself on a second run.

use super::*;

/// A small xorshift generator: reproducible without dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    /// Up to `pieces` fragments from `alphabet`, with random bytes mixed in.
    fn input(&mut self, alphabet: &[&[u8]], pieces: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..self.below(pieces) {
            if self.below(8) == 0 {
                out.push(u8::try_from(self.next() & 0xff).unwrap_or(0));
            } else {
                out.extend_from_slice(alphabet[self.below(alphabet.len())]);
            }
        }
        out
    }
}

const ROUNDS: usize = 3000;

#[test]
fn urlencoded_is_total() {
    let alphabet: &[&[u8]] = &[
        b"a", b"=", b"&", b";", b"%", b"%4", b"%41", b"+", b"\0", b"%zz",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..ROUNDS {
        let input = rng.input(alphabet, 40);
        let mut args = ArgList::new(8);
        let out = urlencoded(&input, b'&', ArgOrigin::Body, &mut args);
        assert!(args.len() <= 8);
        assert_eq!(out.dropped > 0, args.limit_exceeded());
        let total: usize = args
            .args()
            .iter()
            .map(|a| a.name.len() + a.value.len())
            .sum();
        assert!(total <= input.len());
    }
}

#[test]
fn multipart_is_total() {
    let alphabet: &[&[u8]] = &[
        b"--b",
        b"--b--",
        b"\r\n",
        b"\n",
        b"\r",
        b"Content-Disposition: ",
        b"form-data",
        b"; ",
        b"name=",
        b"filename=",
        b"\"x\"",
        b"'y'",
        b"\\",
        b"Content-Type: a/b",
        b" ",
        b"\t",
        b":",
        b"\0",
        b"--",
    ];
    let types: &[&[u8]] = &[
        b"multipart/form-data; boundary=b",
        b"multipart/form-data; boundary=\"b\"",
        b"multipart/form-data boundary = b",
        b"multipart/form-data; boundary=\"b",
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let limits = Limits {
        max_args: 5,
        extract_files: true,
        upload_file_limit: 1,
        ..Limits::default()
    };
    for _ in 0..ROUNDS {
        let body = rng.input(alphabet, 60);
        let ct = types[rng.below(types.len())];
        let mut args = ArgList::new(limits.max_args);
        let out = multipart(ct, &body, &limits, &mut args);
        assert!(args.len() <= 5);
        if out.flags.error {
            assert!(out.error.is_some() && out.flags.strict_error());
        }
        let again = multipart(ct, &body, &limits, &mut ArgList::new(5));
        assert_eq!(out, again);
        assert!(out.files_combined_size() <= body.len() as u64);
    }
}

#[test]
fn json_is_total() {
    let alphabet: &[&[u8]] = &[
        b"{", b"}", b"[", b"]", b":", b",", b"\"k\"", b"\"a.b\"", b"\"\\u", b"d800", b"\\", b"\"",
        b"1", b"-", b".5", b"e", b"true", b"nul", b" ", b"\xc3", b"\xa9",
    ];
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let limits = Limits {
        max_args: 10,
        json_max_depth: 4,
        json_max_name_bytes: 200,
        ..Limits::default()
    };
    for _ in 0..ROUNDS {
        let body = rng.input(alphabet, 50);
        let mut args = ArgList::new(limits.max_args);
        let err = json(&body, &limits, &mut args);
        assert!(args.len() <= 10);
        let names: usize = args.args().iter().map(|a| a.name.len()).sum();
        assert!(names <= 200);
        assert_eq!(err, json(&body, &limits, &mut ArgList::new(10)));
    }
}

#[test]
fn xml_is_total() {
    let alphabet: &[&[u8]] = &[
        b"<a",
        b">",
        b"</a>",
        b"/>",
        b" b=\"",
        b"\"",
        b"'",
        b"&",
        b"&amp;",
        b"&#",
        b"x41",
        b";",
        b"&e;",
        b"<![CDATA[",
        b"]]>",
        b"<!--",
        b"-->",
        b"<?xml version='1.0'?>",
        b"<!DOCTYPE a [<!ENTITY e \"&e;&e;\">]>",
        b"text",
        b"\r\n",
        b"\xef\xbb\xbf",
        b"\0",
    ];
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let limits = Limits {
        xml_max_depth: 3,
        xml_max_expansion: 100,
        ..Limits::default()
    };
    for _ in 0..ROUNDS {
        let body = rng.input(alphabet, 40);
        let out = xml(&body, &limits);
        assert_eq!(out.error.is_some(), out.detail.is_some());
        if let Some(doc) = &out.doc {
            assert!(doc.root_text.len() <= 100 + 6 * body.len() + body.len());
        }
        assert_eq!(out, xml(&body, &limits));
    }
}
