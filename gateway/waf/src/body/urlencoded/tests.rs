use super::*;
use crate::body::{ArgList, ArgOrigin};

fn parse(input: &[u8]) -> (Vec<(String, String)>, Urlencoded) {
    let mut args = ArgList::new(1000);
    let out = urlencoded(input, b'&', ArgOrigin::Body, &mut args);
    let pairs = args
        .args()
        .iter()
        .map(|a| {
            (
                String::from_utf8_lossy(&a.name).into_owned(),
                String::from_utf8_lossy(&a.value).into_owned(),
            )
        })
        .collect();
    (pairs, out)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn names_and_values_split_at_first_equals() {
    let (got, out) = parse(b"a=1&b=2=3&c");
    assert_eq!(got, pairs(&[("a", "1"), ("b", "2=3"), ("c", "")]));
    assert_eq!(out, Urlencoded::default());
}

#[test]
fn empty_names_and_separators_are_kept_as_v2_keeps_them() {
    // parse_arguments adds an argument for every separator met while reading a name.
    assert_eq!(parse(b"&").0, pairs(&[("", "")]));
    assert_eq!(parse(b"a&&b").0, pairs(&[("a", ""), ("", ""), ("b", "")]));
    assert_eq!(parse(b"=").0, pairs(&[("", "")]));
    assert_eq!(parse(b"=x").0, pairs(&[("", "x")]));
    assert_eq!(parse(b"a=").0, pairs(&[("a", "")]));
    // A trailing separator after a value adds nothing.
    assert_eq!(parse(b"a=1&").0, pairs(&[("a", "1")]));
    assert_eq!(parse(b"").0, pairs(&[]));
}

#[test]
fn semicolon_is_not_a_separator_by_default() {
    assert_eq!(parse(b"a=1;b=2").0, pairs(&[("a", "1;b=2")]));
    let mut args = ArgList::new(10);
    urlencoded(b"a=1;b=2", b';', ArgOrigin::Body, &mut args);
    assert_eq!(args.len(), 2);
    assert_eq!(args.args()[1].name, b"b");
}

#[test]
fn decoding_is_nonstrict_and_counts_invalid_escapes() {
    let (got, out) = parse(b"a%20b=c+d%2");
    assert_eq!(got, pairs(&[("a b", "c d%2")]));
    assert_eq!(out.invalid_escapes, 1);
    let (got, out) = parse(b"x=%zz%4g%41%");
    assert_eq!(got, pairs(&[("x", "%zz%4gA%")]));
    assert_eq!(out.invalid_escapes, 3);
    // %26 and %3d are decoded after splitting, so they do not split.
    assert_eq!(parse(b"k%3d=v%26w").0, pairs(&[("k=", "v&w")]));
    // Decoded bytes may be anything, NUL included.
    let mut args = ArgList::new(10);
    urlencoded(b"n=%00%ff", b'&', ArgOrigin::Body, &mut args);
    assert_eq!(args.args()[0].value, vec![0u8, 0xff]);
}

#[test]
fn urldecode_vectors() {
    assert_eq!(urldecode_nonstrict(b"%41%42+%2"), (b"AB %2".to_vec(), 1));
    assert_eq!(urldecode_nonstrict(b"%%41"), (b"%A".to_vec(), 1));
    assert_eq!(urldecode_nonstrict(b"%4"), (b"%4".to_vec(), 1));
    assert_eq!(urldecode_nonstrict(b"100%"), (b"100%".to_vec(), 1));
    assert_eq!(urldecode_nonstrict(b"%c3%A9"), (vec![0xc3, 0xa9], 0));
}

#[test]
fn query_string_stops_at_nul() {
    let mut args = ArgList::new(10);
    query_string(b"a=1\0&b=2", b'&', &mut args);
    assert_eq!(args.len(), 1);
    assert_eq!(args.args()[0].value, b"1");
    assert_eq!(args.args()[0].origin, ArgOrigin::QueryString);
}

#[test]
fn the_limit_is_shared_and_extra_arguments_are_dropped() {
    let mut args = ArgList::new(3);
    query_string(b"a=1&b=2", b'&', &mut args);
    let out = urlencoded(b"c=3&d=4&e=5", b'&', ArgOrigin::Body, &mut args);
    assert_eq!(out.dropped, 2);
    assert!(args.limit_exceeded());
    let names: Vec<&[u8]> = args.args().iter().map(|a| a.name.as_slice()).collect();
    assert_eq!(names, vec![b"a".as_slice(), b"b", b"c"]);
    assert_eq!(args.of_origin(ArgOrigin::Body).count(), 1);
}

#[test]
fn ten_thousand_arguments_are_bounded_by_the_limit() {
    let body: Vec<u8> = (0..10_000)
        .flat_map(|i| format!("p{i}=v&").into_bytes())
        .collect();
    let mut args = ArgList::new(1000);
    let out = urlencoded(&body, b'&', ArgOrigin::Body, &mut args);
    assert_eq!(args.len(), 1000);
    assert_eq!(out.dropped, 9000);
    assert_eq!(args.args()[999].name, b"p999");
}

#[test]
fn one_mebibyte_value_is_kept_whole() {
    let mut body = b"big=".to_vec();
    body.extend(std::iter::repeat_n(b'%', 1 << 20));
    let (got, out) = parse(&body);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.len(), 1 << 20);
    assert_eq!(out.invalid_escapes, 1 << 20);
}
