//! What `XML:/*` and `XML://@*` yield in ModSecurity v2 (libxml2's tree), on CRS's 944 vectors
//! and hostile documents.

use super::*;

fn parse(body: &str) -> XmlOutcome {
    xml(body.as_bytes(), &Limits::default())
}

fn ok(body: &str) -> Xml {
    let out = parse(body);
    assert_eq!(out.error, None, "{:?}", out.detail);
    out.doc.expect("a document")
}

fn attrs(doc: &Xml) -> Vec<String> {
    doc.attributes
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[test]
fn crs_944110_vectors() {
    let doc = ok(
        r#"<?xml version="1.0"?><xml><element attribute_name="java.lang.string" attribute2_name="Runtime">element_value</element></xml>"#,
    );
    assert_eq!(doc.root_text, b"element_value");
    assert_eq!(attrs(&doc), vec!["java.lang.string", "Runtime"]);
    let doc = ok(
        r#"<?xml version="1.0"?><xml><java.Runtime attribute_name="attribute_value">value</java.Runtime></xml>"#,
    );
    assert_eq!(doc.root_text, b"value");
    assert_eq!(attrs(&doc), vec!["attribute_value"]);
}

#[test]
fn root_text_is_all_descendant_text_and_cdata() {
    let doc = ok("<a>x<b>y<!-- no -->z</b><?pi no?><![CDATA[<c>&amp;]]>\n <d/>w</a>");
    assert_eq!(doc.root_text, b"xyz<c>&amp;\n w");
    let doc = ok("<?xml version=\"1.0\"?>\n<!-- before -->\n<r>1 &lt; 2 &amp;&#65;&#x42;&quot;&apos;&gt;</r>\n<!-- after -->\n");
    assert_eq!(doc.root_text, b"1 < 2 &AB\"'>");
}

#[test]
fn attributes_in_document_order_without_namespace_declarations() {
    let doc = ok(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:x"><soap:Body soap:encodingStyle="enc"><id type="string" n="a&amp;b&#10;c	d
e">12123</id></soap:Body></soap:Envelope>"#,
    );
    assert_eq!(attrs(&doc), vec!["enc", "string", "a&b\nc d e"]);
    assert_eq!(doc.root_text, b"12123");
}

#[test]
fn line_ends_are_normalized() {
    let doc = ok("<a>1\r\n2\r3</a>");
    assert_eq!(doc.root_text, b"1\n2\n3");
}

#[test]
fn encodings() {
    let doc = ok("\u{feff}<a>é</a>");
    assert_eq!(doc.root_text, "é".as_bytes());
    let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>\xe9</a>";
    let out = xml(latin1, &Limits::default());
    assert_eq!(out.doc.map(|d| d.root_text), Some("é".as_bytes().to_vec()));
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("<a>ü</a>".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let out = xml(&utf16, &Limits::default());
    assert_eq!(out.doc.map(|d| d.root_text), Some("ü".as_bytes().to_vec()));
    let out = xml(b"<a>\xff</a>", &Limits::default());
    assert_eq!(out.error.as_deref(), Some(XML_ERROR_MSG));
    let out = xml(
        b"<?xml version=\"1.0\" encoding=\"EBCDIC-US\"?><a/>",
        &Limits::default(),
    );
    assert_eq!(out.error.as_deref(), Some(XML_ERROR_MSG));
}

#[test]
fn malformed_documents_are_errors_with_partial_content() {
    let cases = [
        "   ",
        "<a>",
        "<a></b>",
        "<a/><b/>",
        "text<a/>",
        "<a/>text",
        "<a>&undefined;</a>",
        "<a>&#0;</a>",
        "<a>x & y</a>",
        "<a b='1' b='2'/>",
        "<a b='<'/>",
        "<a>]]></a>",
        "<a>\u{1}</a>",
        "<a/><?xml version='1.0'?>",
        "<a><!-- x -- y --></a>",
    ];
    for body in cases {
        let out = parse(body);
        assert_eq!(out.error.as_deref(), Some(XML_ERROR_MSG), "{body:?}");
        assert!(out.detail.is_some());
    }
    let out = parse("<soap:Envelop><q>payload</q></soap:Envelope>");
    assert_eq!(out.error.as_deref(), Some(XML_ERROR_MSG));
    assert_eq!(out.doc.map(|d| d.root_text), Some(b"payload".to_vec()));
    assert_eq!(parse(""), XmlOutcome::default());
}

#[test]
fn internal_entities_expand_and_external_ones_do_not_load() {
    let doc = ok(
        r#"<!DOCTYPE r [<!ENTITY x "<script>"><!ENTITY y "&x;!"><!ENTITY ext SYSTEM "file:///etc/passwd"><!ENTITY % pe "no">]><r a="&y;">&y;[&ext;]</r>"#,
    );
    assert_eq!(doc.root_text, b"<script>![]");
    assert_eq!(attrs(&doc), vec!["<script>!"]);
}

#[test]
fn billion_laughs_is_refused_within_bounded_work() {
    let mut dtd = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    dtd.push_str("]>");
    let out = parse(&format!("{dtd}<lolz>&lol9;</lolz>"));
    assert_eq!(out.error.as_deref(), Some(XML_ERROR_MSG));
    assert!(out
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("amplification")));
    // A few levels fit in the budget.
    let out = parse(&format!("{dtd}<lolz>&lol2;</lolz>"));
    assert_eq!(out.error, None);
    assert_eq!(out.doc.map(|d| d.root_text.len()), Some(300));
}

#[test]
fn entity_loops_are_errors() {
    let out = parse(r#"<!DOCTYPE r [<!ENTITY a "&b;"><!ENTITY b "&a;">]><r>&a;</r>"#);
    assert_eq!(out.error.as_deref(), Some(XML_ERROR_MSG));
    let out = parse(r#"<!DOCTYPE r [<!ENTITY a "x&a;">]><r>&a;</r>"#);
    assert_eq!(out.error.as_deref(), Some(XML_ERROR_MSG));
}

#[test]
fn depth_is_limited_like_libxml2() {
    let nest = |n: usize| format!("{}x{}", "<a>".repeat(n), "</a>".repeat(n));
    assert_eq!(parse(&nest(256)).error, None);
    let out = parse(&nest(257));
    assert_eq!(out.error.as_deref(), Some(XML_ERROR_MSG));
    let out = parse(&nest(100_000));
    assert!(out.detail.as_deref().is_some_and(|d| d.contains("depth")));
}

#[test]
fn large_text_and_many_attributes() {
    let big = format!("<a>{}</a>", "x".repeat(1 << 20));
    assert_eq!(ok(&big).root_text.len(), 1 << 20);
    let many: String = (0..10_000).map(|i| format!("<b v=\"{i}\"/>")).collect();
    let doc = ok(&format!("<a>{many}</a>"));
    assert_eq!(doc.attributes.len(), 10_000);
}
