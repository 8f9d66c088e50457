//! Vectors from `notes/transformations.md` (ModSecurity 2 column where the engines differ).

use super::Transform;

fn t(name: &str, input: &[u8]) -> (Vec<u8>, bool) {
    let tf = Transform::from_name(name).unwrap_or_else(|| panic!("{name}"));
    let mut out = Vec::new();
    let changed = tf.apply(input, &mut out);
    (out, changed)
}

fn check(name: &str, cases: &[(&[u8], &[u8])]) {
    for (input, want) in cases {
        let (got, _) = t(name, input);
        assert_eq!(
            got,
            want.to_vec(),
            "{name}({:?}) = {:?}, want {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want)
        );
    }
}

#[test]
fn url_decode_uni() {
    check(
        "urlDecodeUni",
        &[
            (b"%41%4g%4", b"A%4g%4"),
            (b"%%41", b"%A"),
            (b"a+b%2B", b"a b+"),
            (b"%u004", b"%u004"),
            (b"%u00zz41", b"%u00zz41"),
            (b"%uFF01%uff5e%uFF5F%uFF00", b"!~_\x00"),
            (b"%u2019", b"'"),
            (b"%u00a0", b" "),
            (b"%u0130", b"I"),
            (b"%u3002", b"."),
            (b"%uff61", b"."),
            (b"%u1f600", b"`0"),
            (b"%u4E2D", b"-"),
            (b"%u%41", b"%uA"),
        ],
    );
    assert!(!t("urlDecodeUni", b"abc").1);
    assert!(t("urlDecodeUni", b"a+b").1);
    check("urlDecode", &[(b"%u0041%41+", b"%u0041A ")]);
}

#[test]
fn case_and_nulls() {
    check("lowercase", &[(b"ABC\xc4x", b"abc\xc4x")]);
    assert!(!t("lowercase", b"abc").1);
    check("uppercase", &[(b"abc", b"ABC")]);
    check("removeNulls", &[(b"a\0b\0", b"ab")]);
    check("replaceNulls", &[(b"a\0b", b"a b")]);
}

#[test]
fn html_entity_decode_v2() {
    check(
        "htmlEntityDecode",
        &[
            (
                b"&lt;&LT;&Lt;&lt&ltx;&lte;&amp;&quot;&nbsp;&NBSP;&gt",
                b"<<<<&ltx;&lte;&\"\xa0\xa0>",
            ),
            (b"&#60;&#060;&#x3c;&#X3C;&#x3C", b"<<<<<"),
            (b"&#321;&#1234;&#x4141;&#x0003c;&#0000060;", b"A\xd2A<<"),
            (b"&#;&#x;&#xg;&#&", b"&#;&#x;&#xg;&#&"),
            (b"&foo;&apos;&colon;", b"&foo;&apos;&colon;"),
            (b"&#256;&#99999999999999999999;", b"\x00\xff"),
            (b"&#9", b"\t"),
            (b"&", b"&"),
        ],
    );
}

#[test]
fn js_decode() {
    check(
        "jsDecode",
        &[
            (b"\\x41\\X41\\u0041\\U0041\\uFF1C\\u4e3c", b"AX41AU0041<<"),
            (b"\\101\\1010\\400\\0", b"AA0 0\x00"),
            (b"\\q\\'\\\"\\\\", b"q'\"\\"),
            (b"\\", b"\\"),
            (b"\\u00", b"u00"),
            (b"\\x4", b"x4"),
            (b"\\12x", b"\nx"),
        ],
    );
}

#[test]
fn utf8_to_unicode() {
    check(
        "utf8toUnicode",
        &[
            (b"a\xc3\xa9", b"a%u00e9"),
            (b"\xe4\xb8\xad", b"%u4e2d"),
            (b"\xf0\x9f\x98\x80", b"%u1f600"),
            (b"\xc3", b""),
            (b"\xc3A", b"A"),
            (b"\x80", b"\x80"),
            (b"\xff", b"\xff"),
            (b"\xc0\x80", b"%u0000\xc0"),
            (b"\xed\xa0\x80", b"%ud800\xed"),
            (b"\xf5\x80\x80\x80", b"\xf5%u140000"),
            (b"a\x00b", b"ab"),
            (b"ab\x00", b"ab\x00"),
        ],
    );
    assert!(!t("utf8toUnicode", b"abc").1);
}

#[test]
fn css_decode() {
    check(
        "cssDecode",
        &[
            (b"\\ff1c", b"<"),
            (b"\\0ff1c", b"<"),
            (b"\\00ff1c", b"<"),
            (b"\\1234", b"4"),
            (b"\\1003c", b"<"),
            (b"\\e9", b"\xe9"),
            (b"\\abcdefg", b"\xefg"),
            (b"\\1234567", b"V7"),
            (b"\\41 b", b"Ab"),
            (b"\\g\\\\", b"g\\"),
            (b"a\\\nb", b"ab"),
            (b"a\\", b"a"),
            (b"\\a", b"\x0a"),
        ],
    );
    assert!(!t("cssDecode", b"\\g").1);
}

#[test]
fn cmd_line() {
    check(
        "cmdLine",
        &[
            (b"C^OMMAND /C DIR", b"command/c dir"),
            (b"cat  /etc/passwd", b"cat/etc/passwd"),
            (b"a ;(b", b"a(b"),
            (b"x \t\ny", b"x y"),
            (b"a\"b'c\\d", b"abcd"),
            (b"ab\0cd", b"ab"),
        ],
    );
}

#[test]
fn whitespace() {
    check(
        "removeWhitespace",
        &[
            (b"a \t\n\x0b\x0c\r\xa0b", b"ab"),
            (b"a\xc2\xa9b", b"a\xc2\xa9b"),
        ],
    );
    check(
        "compressWhitespace",
        &[
            (b"a  \t b", b"a b"),
            (b"a\xa0b", b"a b"),
            (b"a\xc2\xa0b", b"a\xc2 b"),
            (b" a ", b" a "),
        ],
    );
    assert!(!t("compressWhitespace", b"a\tb").1);
    check("trim", &[(b" \t a b \n", b"a b"), (b"\xa0a\0", b"\xa0a\0")]);
    check("trimLeft", &[(b"  a ", b"a ")]);
    check("trimRight", &[(b"  a ", b"  a")]);
}

#[test]
fn comments() {
    check(
        "replaceComments",
        &[
            (b"Before/* x */After", b"Before After"),
            (b"a/*b", b"a "),
            (b"/*a*/", b" "),
            (b"a*/b", b"a*/b"),
        ],
    );
    check(
        "removeComments",
        &[
            (b"a/*b*/c", b"ac"),
            (b"a/*b*/", b"a\x00"),
            (b"/* TestCase */", b"\x00"),
            (b"a/*b", b"a "),
            (b"a--b", b"a"),
            (b"a#b", b"a"),
            (b"/*x*//*y*/", b"/*y*/"),
            (b"a-->b", b"a"),
            (b"a<!--x-->bc", b"abc"),
        ],
    );
    check(
        "removeCommentsChar",
        &[
            (b"/* x */", b" x "),
            (b"a-->b", b"ab"),
            (b"a<!--b#c--d", b"abcd"),
        ],
    );
}

#[test]
fn normalize_path() {
    check(
        "normalizePath",
        &[
            (b"/foo/bar/..", b"/foo"),
            (b"/foo/bar/../", b"/foo/"),
            (b"/", b"/"),
            (b"/./", b"/"),
            (b"/../", b"/"),
            (b"/..", b""),
            (b"/.", b""),
            (b"/a/../..", b""),
            (b".", b""),
            (b"./", b""),
            (b"a/..", b""),
            (b"..", b".."),
            (b"../", b"../"),
            (b"../..", b"../.."),
            (b"dir/../../foo", b"../foo"),
            (b"a/b/foo../c", b"a/b/c"),
            (b"/x/.../y", b"/x/y"),
            (b"a/b/x..", b"a/b"),
            (b"a/.../..", b""),
            (b".../a", b".../a"),
            (b"..a/b", b"..a/b"),
            (b"/a/x./c", b"/a/x./c"),
            (b"/a//b///c", b"/a/b/c"),
            (
                b"/./.././../../../../../../../\0/../etc/./passwd",
                b"/etc/passwd",
            ),
        ],
    );
    check(
        "normalizePathWin",
        &[
            (b"C:\\Windows\\..\\boot.ini", b"C:/boot.ini"),
            (b"\\\\server\\share\\a", b"/server/share/a"),
            (b"file.txt.", b"file.txt."),
            (b"file.txt..", b""),
        ],
    );
    assert!(!t("normalizePath", b"/a/b").1);
}

#[test]
fn escape_seq_decode() {
    check(
        "escapeSeqDecode",
        &[
            (b"\\n\\t\\\\\\?\\'\\\"", b"\n\t\\?'\""),
            (b"\\x41\\X42\\xzz", b"ABxzz"),
            (b"\\666\\777\\400\\08", b"\xb6\xff\x00\x008"),
            (b"\\q\\u0041", b"qu0041"),
            (b"a\\", b"a\\"),
        ],
    );
}

#[test]
fn base64_apr() {
    check(
        "base64Decode",
        &[
            (b"QUJDOQ", b"ABC9"),
            (b"QUJD9", b"ABC"),
            (b"QU JD", b"A"),
            (b"QUJD RUY=", b"ABC"),
            (b"QUJD.RUY", b"ABC"),
            (b"QUJD\nRUY=", b"ABC"),
            (b"VGV\xc3zdA==", b"Te"),
            (b"VGVz\0dA==", b"Tes"),
            (b"=QUJD", b""),
            (b"VGVzdA==", b"Test"),
        ],
    );
}

#[test]
fn base64_ext() {
    check(
        "base64DecodeExt",
        &[
            (b"Q=", b""),
            (b"Q==", b""),
            (b"QQ==", b"A"),
            (b"QUJ", b"AB"),
            (b"QU", b"A"),
            (b"Q", b""),
            (b"QUJD9", b""),
            (b"QUJDOQ9", b"ABC9\x0f"),
            (b"QU JD.RU-Y", b"ABCEF"),
        ],
    );
}

#[test]
fn codecs_and_digests() {
    check(
        "hexDecode",
        &[(b"4142", b"AB"), (b"414", b"A"), (b"4g", b"P"), (b"", b"")],
    );
    check("hexEncode", &[(b"AB\xff", b"4142ff")]);
    check("length", &[(b"", b"0"), (b"abcd", b"4")]);
    check(
        "sqlHexDecode",
        &[
            (b"SELECT 0x61646d696e", b"SELECT admin"),
            (b"0x41424", b"AB4"),
        ],
    );
    check("urlEncode", &[(b"a b/c", b"a+b%2fc")]);
    let (sha, _) = t("sha1", b"");
    let (hex, _) = t("hexEncode", &sha);
    assert_eq!(hex, b"da39a3ee5e6b4b0d3255bfef95601890afd80709");
    let (md5, _) = t("md5", b"");
    assert_eq!(t("hexEncode", &md5).0, b"d41d8cd98f00b204e9800998ecf8427e");
}

#[test]
fn names_resolve_case_insensitively() {
    assert_eq!(
        Transform::from_name("base64decode"),
        Some(Transform::Base64Decode)
    );
    assert_eq!(
        Transform::from_name("normalisePath"),
        Some(Transform::NormalizePath)
    );
    assert_eq!(Transform::NormalizePath.name(), "normalizePath");
    assert_eq!(Transform::from_name("alert"), None);
    for name in crate::seclang::names::TRANSFORMATIONS {
        assert!(Transform::from_name(name).is_some(), "{name}");
    }
}
