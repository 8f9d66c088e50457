//! Vectors from ModSecurity v2's tests/regression/misc/00-multipart-parser.t (bodies rewritten
//! here by hand, CRLF as its test harness sends them) and CRS's 920121 and 922 tests.

use super::*;

const CT: &[u8] = b"multipart/form-data; boundary=0000";

/// `\n` becomes CRLF, as `normalize_raw_request_data` does.
fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

fn run(ct: &[u8], body: &[u8]) -> (Multipart, ArgList) {
    run_with(ct, body, &Limits::default())
}

fn run_with(ct: &[u8], body: &[u8], limits: &Limits) -> (Multipart, ArgList) {
    let mut args = ArgList::new(limits.max_args);
    let out = multipart(ct, body, limits, &mut args);
    (out, args)
}

fn arg_pairs(args: &ArgList) -> Vec<(String, String)> {
    args.args()
        .iter()
        .map(|a| {
            (
                String::from_utf8_lossy(&a.name).into(),
                String::from_utf8_lossy(&a.value).into(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const NORMAL: &str = "--0000
Content-Disposition: form-data; name=\"name\"

Brian Rectanus
--0000
Content-Disposition: form-data; name=\"email\"

brian.rectanus@breach.com
--0000
Content-Disposition: form-data; name=\"image\"; filename=\"image.jpg\"
Content-Type: image/jpeg

BINARYDATA
--0000--
";

#[test]
fn normal_body() {
    let (out, args) = run(CT, &crlf(NORMAL));
    assert_eq!(out.error, None);
    assert!(!out.flags.strict_error());
    assert!(!out.flags.unmatched_boundary);
    assert!(out.flags.crlf_line && !out.flags.lf_line);
    assert_eq!(
        arg_pairs(&args),
        pairs(&[
            ("name", "Brian Rectanus"),
            ("email", "brian.rectanus@breach.com")
        ])
    );
    assert!(args.args().iter().all(|a| a.origin == ArgOrigin::Body));
    let files: Vec<_> = out.files().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0.name, b"image");
    assert_eq!(files[0].1.filename, b"image.jpg");
    assert_eq!(files[0].1.size, 10);
    assert_eq!(
        files[0].1.content_type.as_deref(),
        Some(b"image/jpeg".as_slice())
    );
    assert_eq!(out.files_combined_size(), 10);
    assert_eq!(out.last_name.as_deref(), Some(b"image".as_slice()));
    assert_eq!(out.last_filename.as_deref(), Some(b"image.jpg".as_slice()));
}

#[test]
fn part_headers_are_recorded_per_part_name() {
    let (out, _) = run(CT, &crlf(NORMAL));
    let image: Vec<&[u8]> = out
        .part_headers()
        .filter(|(n, _)| *n == b"image")
        .map(|(_, l)| l)
        .collect();
    assert_eq!(
        image,
        vec![
            b"Content-Disposition: form-data; name=\"image\"; filename=\"image.jpg\"".as_slice(),
            b"Content-Type: image/jpeg"
        ]
    );
    assert_eq!(out.part_headers().count(), 4);
}

#[test]
fn final_boundary_without_line_end_is_accepted() {
    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000\nContent-Disposition: form-data; name=\"b\"\n\n2\n--0000--");
    let (out, args) = run(CT, &body);
    assert_eq!(out.error, None);
    assert!(!out.flags.strict_error());
    assert_eq!(arg_pairs(&args), pairs(&[("a", "1"), ("b", "2")]));
}

#[test]
fn boundaries_containing_the_word_boundary() {
    for b in [
        "------------------------------------------------boundary",
        "--------0xKhTmLbOuNdArY",
    ] {
        let ct = format!("multipart/form-data; boundary={b}");
        let body = crlf(&format!(
            "--{b}\nContent-Disposition: form-data; name=\"a\"\n\n1\n--{b}--\n"
        ));
        let (out, args) = run(ct.as_bytes(), &body);
        assert_eq!(out.error, None, "{b}");
        assert_eq!(arg_pairs(&args), pairs(&[("a", "1")]));
    }
}

#[test]
fn data_starting_with_dashes() {
    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\n--test\n--0000\nContent-Disposition: form-data; name=\"b\"\n\n--\n--0000--\n");
    let (out, args) = run(CT, &body);
    assert_eq!(out.error, None);
    assert_eq!(arg_pairs(&args), pairs(&[("a", "--test"), ("b", "--")]));
    // "--test" looks like a boundary line without being ours.
    assert!(out.flags.unmatched_boundary);
}

#[test]
fn missing_final_boundary_is_an_error_without_arguments() {
    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000\nContent-Disposition: form-data; name=\"b\"\n\n2\n");
    let (out, args) = run(CT, &body);
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: Final boundary missing.")
    );
    assert!(args.is_empty());
    assert_eq!(out.parts.len(), 1);
    // v2 sets no strict flag for this one.
    assert!(!out.flags.error);
}

#[test]
fn header_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "--0000\n\n1\n--0000--\n",
            "Multipart: Part missing Content-Disposition header.",
        ),
        (
            "--0000\nContent-Disposition: form-data name=\"a\"\n\n1\n--0000--\n",
            "Multipart: Invalid Content-Disposition header (-2): form-data name=\"a\".",
        ),
        (
            "--0000\nContent-Disposition: form-data;\n\n1\n--0000--\n",
            "Multipart: Content-Disposition header missing name field.",
        ),
        (
            "--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000\n:\n--0000--\n",
            "Multipart: Invalid part header (header name missing).",
        ),
        (
            "--0000\nContent-Disposition: attachment\n\n1\n--0000--\n",
            "Multipart: Invalid Content-Disposition header (-1): attachment.",
        ),
        (
            "--0000\nX: 1\nx: 2\n\n1\n--0000--\n",
            "Multipart: Duplicate part header: x.",
        ),
        (
            "--0000\nNo colon here\n\n--0000--\n",
            "Multipart: Invalid part header (colon missing): No colon here\\x0d\\x0a.",
        ),
        (
            "--0000\nBad Name: v\n\n--0000--\n",
            "Multipart: Invalid part header (contains invalid character).",
        ),
    ];
    for (body, msg) in cases {
        let (out, args) = run(CT, &crlf(body));
        assert_eq!(
            out.error.as_deref(),
            Some(format!("Multipart parsing error: {msg}").as_str()),
            "{body:?}"
        );
        assert!(out.flags.error && out.flags.strict_error(), "{body:?}");
        assert!(args.is_empty());
    }
}

#[test]
fn folding_before_any_header_is_an_error() {
    let (out, _) = run(CT, &crlf("--0000\n folded\n\n--0000--\n"));
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: Invalid part header (folding error).")
    );
    assert!(out.flags.header_folding);
}

#[test]
fn header_folding_flags() {
    let fold = |prefix: &str| {
        crlf(&format!(
            "--0000\nContent-Disposition: form-data;\n{prefix}name=\"b\"\n\n2\n--0000--\n"
        ))
    };
    for (prefix, invalid) in [
        (" ", false),
        ("\t\t", false),
        ("\t \t", false),
        ("\u{b}", true),
        (" \u{b}\t", true),
    ] {
        let (out, args) = run(CT, &fold(prefix));
        assert_eq!(out.error, None, "{prefix:?}");
        assert!(out.flags.header_folding && out.flags.strict_error());
        assert_eq!(out.flags.invalid_header_folding, invalid, "{prefix:?}");
        assert_eq!(arg_pairs(&args), pairs(&[("b", "2")]));
        // The folded header is recorded as one line.
        let lines: Vec<_> = out.part_headers().map(|(_, l)| l.to_vec()).collect();
        assert_eq!(
            lines,
            vec![b"Content-Disposition: form-data; name=\"b\"".to_vec()]
        );
    }
}

#[test]
fn data_after_the_final_boundary() {
    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000--\n--0000\nContent-Disposition: form-data; name=\"b\"\n\n2\n--0000--\n");
    let (out, args) = run(CT, &body);
    assert!(out.flags.data_after && out.flags.strict_error());
    assert_eq!(out.error, None);
    assert_eq!(arg_pairs(&args), pairs(&[("a", "1")]));
}

#[test]
fn data_before_the_first_boundary() {
    let body =
        crlf("preamble\n--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000--\n");
    let (out, args) = run(CT, &body);
    assert!(out.flags.data_before && out.flags.strict_error());
    assert_eq!(arg_pairs(&args), pairs(&[("a", "1")]));
}

#[test]
fn single_quotes_in_content_disposition() {
    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000\nContent-Disposition: form-data; name=';filename=\"dummy';name=b;\"\n\n2\n--0000--\n");
    let (out, args) = run(CT, &body);
    assert!(out.flags.invalid_quoting && out.flags.strict_error());
    assert!(out
        .error
        .as_deref()
        .is_some_and(|e| e.contains("Invalid Content-Disposition header (-14)")));
    assert!(args.is_empty());

    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a'b\"\n\n1\n--0000\nContent-Disposition: form-data; name=\"aaa\"; filename=\"d'ummy\"\n\n2\n--0000--\n");
    let (out, args) = run(CT, &body);
    assert!(!out.flags.invalid_quoting);
    assert_eq!(arg_pairs(&args), pairs(&[("a'b", "1")]));
    assert_eq!(
        out.files().next().map(|(_, f)| f.filename.clone()),
        Some(b"d'ummy".to_vec())
    );

    let (out, _) = run(
        CT,
        &crlf("--0000\nContent-Disposition: form-data; name=a'b\n\n1\n--0000--\n"),
    );
    assert!(out.flags.invalid_quoting);
    assert_eq!(out.error, None);
}

#[test]
fn escapes_in_quoted_values_crs_920121() {
    let ct = b"multipart/form-data; boundary=--------397236876";
    let body = |cd: &str| {
        crlf(&format!("----------397236876\nContent-Disposition: form-data; {cd}\nContent-Type: text/plain\n\nSome-file-test-here\n----------397236876--\n"))
    };
    let cases: &[(&str, &[u8], &[u8])] = &[
        (
            "name=\"fileRap\"; filename=\"te;st.txt\"",
            b"fileRap",
            b"te;st.txt",
        ),
        (
            "name=\"fileRap\"; filename=\"te\\\"st.txt\"",
            b"fileRap",
            b"te\"st.txt",
        ),
        (
            "name=\"cv.pdf\"; filename=\"1.j\\s\\p\"",
            b"cv.pdf",
            b"1.j\\s\\p",
        ),
        (
            "name=\"cv.p\\d\\f\"; filename=\"cv.pdf\"",
            b"cv.p\\d\\f",
            b"cv.pdf",
        ),
        ("name=\"a\\\\b\"; filename=\"x\"", b"a\\b", b"x"),
    ];
    for (cd, name, filename) in cases {
        let (out, _) = run(ct, &body(cd));
        assert_eq!(out.error, None, "{cd}");
        let (part, file) = out.files().next().expect("a file part");
        assert_eq!(part.name, *name, "{cd}");
        assert_eq!(file.filename, *filename, "{cd}");
        assert_eq!(file.size, 19);
    }
}

#[test]
fn content_type_boundary_rules() {
    let body = crlf(NORMAL);
    let cases: &[(&str, Option<&str>)] = &[
        (
            "multipart/form-data, boundary=0000",
            Some("Multipart: Invalid boundary in C-T (malformed)."),
        ),
        (
            "multipart/form-data; bOundAry=0000",
            Some("Multipart: Invalid boundary in C-T (case sensitivity)."),
        ),
        (
            "multipart/form-data; boundary123=0000",
            Some("Multipart: Invalid boundary in C-T (parameter name)."),
        ),
        (
            "multipart/form-data; boundary=\"0000\"; boundary=1111",
            Some("Multipart: Multiple boundary parameters in C-T."),
        ),
        (
            "multipart/form-data; boundary=0000, boundary=1111",
            Some("Multipart: Multiple boundary parameters in C-T."),
        ),
        (
            "multipart/form-data; boundary=\"0000 \"",
            Some("Multipart: Invalid boundary in C-T (characters)."),
        ),
        (
            "multipart/form-data; boundary=\"00\\\"00\"",
            Some("Multipart: Invalid boundary in C-T (characters)."),
        ),
        (
            "multipart/form-data; boundary=\"00\"\"00\"",
            Some("Multipart: Invalid boundary in C-T (characters)."),
        ),
        (
            "multipart/form-data; boundary=0000; charset=utf-8",
            Some("Multipart: Invalid boundary in C-T (characters)."),
        ),
        (
            "multipart/form-data; boundary=\"0000",
            Some("Multipart: Invalid boundary in C-T (quote)."),
        ),
        (
            "multipart/form-data; boundary=0000\"",
            Some("Multipart: Invalid boundary in C-T (quote)."),
        ),
        (
            "multipart/form-data; boundary=",
            Some("Multipart: Invalid boundary in C-T (empty)."),
        ),
        (
            "multipart/form-data; boundary=x-boundary=y",
            Some("Multipart: Multiple boundary parameters in C-T."),
        ),
        (
            "multipart/form-data",
            Some("Multipart: Boundary not found in C-T."),
        ),
        (
            "multipart/mixed; boundary=0000",
            Some("Multipart: Invalid MIME type."),
        ),
        (
            "multipart/form-data; ; boundary=0000",
            Some("Multipart: Invalid boundary in C-T (malformed)."),
        ),
        ("MULTIPART/FORM-DATA; boundary=0000", None),
        ("multipart/form-data; boundary=0000 ", None),
    ];
    for (ct, expected) in cases {
        let (out, args) = run(ct.as_bytes(), &body);
        assert_eq!(out.error.as_deref(), *expected, "{ct}");
        if expected.is_some() {
            assert!(out.flags.error && out.flags.strict_error(), "{ct}");
            assert!(args.is_empty() && out.parts.is_empty());
        } else {
            assert!(!out.flags.strict_error(), "{ct}");
            assert_eq!(args.len(), 2);
        }
    }
    let long = format!("multipart/form-data; boundary={}", "a".repeat(1000));
    assert_eq!(
        run(long.as_bytes(), &body).0.error.as_deref(),
        Some("Multipart: Invalid boundary in C-T (length).")
    );
}

#[test]
fn content_type_flags() {
    let body = crlf(NORMAL);
    let (out, args) = run(b"multipart/form-data boundary=0000", &body);
    assert!(out.flags.missing_semicolon && out.flags.strict_error());
    assert_eq!((out.error, args.len()), (None, 2));

    let (out, args) = run(b"multipart/form-data; boundary =0000", &body);
    assert!(out.flags.boundary_whitespace && out.flags.strict_error());
    assert_eq!((out.error, args.len()), (None, 2));

    let (out, args) = run(b"multipart/form-data; boundary=\"0000\"", &body);
    assert!(out.flags.boundary_quoted && out.flags.strict_error());
    assert_eq!((out.error, args.len()), (None, 2));

    // " 0000" is the boundary: the body's "--0000" lines are not it.
    let (out, _) = run(b"multipart/form-data; boundary= 0000", &body);
    assert!(out.flags.boundary_whitespace && out.flags.unmatched_boundary);
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: No boundaries found in payload.")
    );

    let quoted = crlf(&NORMAL.replace("--0000", "-- 0000"));
    let (out, args) = run(b"multipart/form-data; boundary=\" 0000\"", &quoted);
    assert!(out.flags.boundary_quoted);
    assert_eq!((out.error, args.len()), (None, 2));

    let (out, _) = run(b"multipart/form-data; boundary=0000 1111", &body);
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: No boundaries found in payload.")
    );
    assert!(out.flags.unmatched_boundary);
}

#[test]
fn quoted_or_spaced_boundary_lines_in_the_body_are_errors() {
    let body = crlf(&NORMAL.replace("--0000", "--\"0000\""));
    let (out, _) = run(b"multipart/form-data; boundary=\"0000\"", &body);
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: Invalid boundary (quotes).")
    );
    let body = crlf(&NORMAL.replace("--0000", "-- 0000"));
    let (out, _) = run(CT, &body);
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: Invalid boundary (whitespace).")
    );
    let (out, _) = run(CT, &crlf("--0000x\n"));
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: Invalid boundary: --0000x\\x0d\\x0a")
    );
}

#[test]
fn line_endings() {
    let (out, args) = run(CT, NORMAL.as_bytes());
    assert!(out.flags.lf_line && !out.flags.crlf_line && out.flags.strict_error());
    assert!(!out.flags.crlf_lf_lines());
    assert_eq!(args.len(), 2);
    assert_eq!(args.args()[0].value, b"Brian Rectanus");

    // One bare LF before a boundary, CRLF elsewhere.
    let mut body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\n1");
    body.extend_from_slice(b"\n--0000--\r\n");
    let (out, args) = run(CT, &body);
    assert!(out.flags.lf_line && out.flags.crlf_line && out.flags.crlf_lf_lines());
    assert_eq!(args.args()[0].value, b"1");
}

#[test]
fn invalid_part_when_a_boundary_comes_where_data_should() {
    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\n--0000\nContent-Disposition: form-data; name=\"b\"\n\n2\n--0000--\n");
    let (out, _) = run(CT, &body);
    assert!(out.flags.invalid_part && out.flags.strict_error());
    // The boundary line became the value of a; b's headers became data too.
    assert_eq!(out.parts.len(), 1);
    assert_eq!(
        out.parts[0].value,
        b"--0000\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2".to_vec()
    );
    // An empty value sent as browsers send it is fine.
    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\n\n--0000--\n");
    let (out, args) = run(CT, &body);
    assert!(!out.flags.invalid_part);
    assert_eq!(arg_pairs(&args), pairs(&[("a", "")]));
}

#[test]
fn file_limit_counts_only_extracted_files() {
    let body = crlf(
        "--0000
Content-Disposition: form-data; name=\"name\"

Brian Rectanus
--0000
Content-Disposition: form-data; name=\"image1\"; filename=\"image1.jpg\"
Content-Type: image/jpeg

BINARYDATA1
--0000
Content-Disposition: form-data; name=\"image2\"; filename=\"image2.jpg\"
Content-Type: image/jpeg

BINARYDATA2
--0000
Content-Disposition: form-data; name=\"image3\"; filename=\"image3.jpg\"
Content-Type: image/jpeg

BINARYDATA3
--0000
Content-Disposition: form-data; name=\"test\"

This is test data.
--0000--
",
    );
    let limits = Limits {
        upload_file_limit: 2,
        extract_files: true,
        ..Limits::default()
    };
    let (out, args) = run_with(CT, &body, &limits);
    assert!(out.flags.file_limit_exceeded && out.flags.strict_error());
    assert_eq!(out.error, None);
    assert_eq!(out.files().count(), 3);
    assert!(out.files().all(|(_, f)| f.size == 11));
    assert_eq!(out.files_combined_size(), 33);
    assert_eq!(
        arg_pairs(&args),
        pairs(&[("name", "Brian Rectanus"), ("test", "This is test data.")])
    );
    // Without extraction there is no count.
    let (out, _) = run_with(
        CT,
        &body,
        &Limits {
            upload_file_limit: 2,
            ..Limits::default()
        },
    );
    assert!(!out.flags.file_limit_exceeded);
}

#[test]
fn long_lines_span_buffers() {
    let value = "v".repeat(10_000);
    let body = crlf(&format!(
        "--0000\nContent-Disposition: form-data; name=\"a\"\n\n{value}\n--0000--\n"
    ));
    let (out, args) = run(CT, &body);
    assert_eq!(out.error, None);
    assert_eq!(args.args()[0].value.len(), 10_000);
    // A CR that would be the buffer's last byte waits for the next buffer.
    let value = "w".repeat(4095);
    let body = crlf(&format!(
        "--0000\nContent-Disposition: form-data; name=\"a\"\n\n{value}\n--0000--\n"
    ));
    let (out, args) = run(CT, &body);
    assert_eq!(out.error, None);
    assert_eq!(args.args()[0].value, value.as_bytes());
    // A header line may not fill the buffer.
    let header = format!("X-Long: {}", "h".repeat(5000));
    let (out, _) = run(CT, &crlf(&format!("--0000\n{header}\n\n--0000--\n")));
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: Part header line over 4096 bytes long")
    );
}

#[test]
fn nul_in_part_headers_is_an_error() {
    let (out, _) = run(
        CT,
        b"--0000\r\nContent-Disposition: form-data; name=\"a\0\"\r\n\r\n1\r\n--0000--\r\n",
    );
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: Nul byte in part headers.")
    );
}

#[test]
fn empty_body_is_no_error() {
    let (out, args) = run(CT, b"");
    assert_eq!(out.error, None);
    assert!(args.is_empty() && out.parts.is_empty());
}

#[test]
fn unmatched_boundary_inside_a_line() {
    let body = crlf("--0000\nContent-Disposition: form-data; name=\"a\"\n\nx --0000 y\n--0000--\n");
    let (out, args) = run(CT, &body);
    assert!(out.flags.unmatched_boundary);
    assert!(!out.flags.strict_error());
    assert_eq!(args.args()[0].value, b"x --0000 y");
}

#[test]
fn arguments_limit_sets_the_body_error() {
    let limits = Limits {
        max_args: 1,
        ..Limits::default()
    };
    let (out, args) = run_with(CT, &crlf(NORMAL), &limits);
    assert_eq!(out.error.as_deref(), Some(ARGUMENTS_LIMIT_MSG));
    assert_eq!(args.len(), 1);
}

#[test]
fn many_parts_and_broken_boundaries_stay_bounded() {
    let mut body = String::new();
    for i in 0..10_000 {
        body.push_str(&format!(
            "--0000\nContent-Disposition: form-data; name=\"p{i}\"\n\nv\n"
        ));
    }
    body.push_str("--0000--\n");
    let (out, args) = run(CT, &crlf(&body));
    assert_eq!(out.parts.len(), 10_000);
    assert_eq!(args.len(), 1000);
    assert_eq!(out.error.as_deref(), Some(ARGUMENTS_LIMIT_MSG));
    // A megabyte of lines that look like boundaries but are not.
    let junk = "--000\n".repeat(200_000);
    let (out, _) = run(CT, &crlf(&junk));
    assert!(out.flags.unmatched_boundary);
    assert_eq!(
        out.error.as_deref(),
        Some("Multipart parsing error: Multipart: No boundaries found in payload.")
    );
}
