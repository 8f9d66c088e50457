//! URL canonicalization per Google Safe Browsing's "URLs and Hashing" rules, plus IDN hosts to
//! punycode:
//!
//! 1. drop tab, CR and LF; trim surrounding whitespace; drop the fragment;
//! 2. percent-unescape repeatedly until nothing changes (bounded), then re-escape every byte
//!    `<= 0x20`, `>= 0x7f`, `#` and `%`;
//! 3. host: drop user info and port, lower-case, strip leading/trailing dots, collapse runs of
//!    dots, IPv4 in decimal/octal/hex/short forms to a dotted quad, IPv6 literals normalised,
//!    non-ASCII names to punycode;
//! 4. path: resolve `/./` and `/../`, collapse `//`; an empty path is `/`; the query is kept.
//!
//! Inputs and hosts are bounded: anything past [`MAX_URL`] bytes is cut before work starts.

use std::net::{IpAddr, Ipv6Addr};

use percent_encoding::{percent_decode, percent_encode, AsciiSet, CONTROLS};

/// The longest URL looked at; longer input is cut.
pub const MAX_URL: usize = 16 * 1024;
/// Host names longer than this are not names (RFC 1035): they are kept escaped, never parsed.
pub const MAX_HOST: usize = 255;

/// Bytes re-escaped after unescaping: controls, space, `#`, `%` (non-ASCII is always escaped).
const ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'#').add(b'%');

/// A canonical URL and its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canonical {
    /// Lower-case scheme (`http` when the input had none).
    pub scheme: String,
    /// Canonical host: a name, a dotted quad or a bracketed IPv6 literal.
    pub host: String,
    /// The host as an IP address, when it is one.
    pub ip: Option<IpAddr>,
    /// Canonical path, starting with `/`.
    pub path: String,
    /// The query (without `?`), when there was a `?`.
    pub query: Option<String>,
}

impl Canonical {
    /// `scheme://host/path[?query]`.
    pub fn url(&self) -> String {
        match &self.query {
            Some(q) => format!("{}://{}{}?{}", self.scheme, self.host, self.path, q),
            None => format!("{}://{}{}", self.scheme, self.host, self.path),
        }
    }
}

/// Percent-unescapes until no `%XX` is left (the spec's "repeatedly"), in one pass: a decoded
/// byte can only complete an escape that ends where it lands, so the end of the output is
/// checked again after every decode. Escapes never overlap (`%` is not a hex digit), so this is
/// the same fixed point as decoding whole rounds until nothing changes, however deep `%25`
/// nests, in linear time.
fn unescape_fully(s: Vec<u8>) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    for b in s {
        out.push(b);
        while let [.., b'%', h, l] = out[..] {
            let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                break;
            };
            out.truncate(out.len() - 3);
            out.push(h << 4 | l);
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn escape(b: &[u8]) -> String {
    percent_encode(b, ESCAPE).to_string()
}

/// Canonicalizes `input` (never fails: what cannot be parsed is kept, escaped).
pub fn canonicalize(input: &str) -> Canonical {
    let mut raw: Vec<u8> = input
        .as_bytes()
        .iter()
        .take(MAX_URL)
        .copied()
        .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n'))
        .collect();
    // Trim surrounding whitespace (and control bytes).
    while raw.last().is_some_and(|b| *b <= b' ') {
        raw.pop();
    }
    let lead = raw.iter().take_while(|b| **b <= b' ').count();
    raw.drain(..lead);
    if let Some(i) = raw.iter().position(|b| *b == b'#') {
        raw.truncate(i);
    }
    // Printable ASCII without `%`: unescaping changes nothing and neither does re-escaping.
    let escaped = if raw.iter().all(|b| (0x21..=0x7e).contains(b) && *b != b'%') {
        String::from_utf8(raw).unwrap_or_default()
    } else {
        escape(&unescape_fully(raw))
    };
    // Scheme.
    let (scheme, rest) = match escaped.find("://") {
        Some(i)
            if i > 0
                && escaped[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            (escaped[..i].to_ascii_lowercase(), &escaped[i + 3..])
        }
        _ => ("http".to_string(), escaped.as_str()),
    };
    // Browsers (WHATWG URL) read `\` as `/` before the query in special schemes: judge the
    // host and path they will request.
    let slashed;
    let rest = if rest.contains('\\')
        && matches!(scheme.as_str(), "http" | "https" | "ws" | "wss" | "ftp")
    {
        let q = rest.find('?').unwrap_or(rest.len());
        slashed = format!("{}{}", rest[..q].replace('\\', "/"), &rest[q..]);
        slashed.as_str()
    } else {
        rest
    };
    let (authority, path_query) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path_query, None),
    };
    let (host, ip) = canonical_host(authority);
    Canonical {
        scheme,
        host,
        ip,
        path: canonical_path(path),
        query,
    }
}

fn canonical_host(authority: &str) -> (String, Option<IpAddr>) {
    // User info and port.
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        let inner = v6.split(']').next().unwrap_or("");
        if let Ok(a) = inner.parse::<Ipv6Addr>() {
            if let Some(v4) = a.to_ipv4_mapped() {
                return (v4.to_string(), Some(IpAddr::V4(v4)));
            }
            return (format!("[{a}]"), Some(IpAddr::V6(a)));
        }
    }
    // The host ends at the first `:` outside brackets (WHATWG URL's host state; what follows is
    // the port, valid or not), then dots are normalised. Both steps are idempotent, so the
    // result is canonical on a second pass too (`%3A.` unescapes to `:.`).
    let out = tidy_dots(lower_keep_escapes(hostport.split(':').next().unwrap_or("")));
    if out.len() > MAX_HOST {
        return (out, None);
    }
    if let Some(v4) = parse_ipv4(&out) {
        return (v4.to_string(), Some(IpAddr::V4(v4)));
    }
    // Non-ASCII names (escaped as %XX by now) to punycode, when they are valid UTF-8 names.
    if out.contains('%') {
        let bytes: Vec<u8> = percent_decode(out.as_bytes()).collect();
        if let Ok(name) = std::str::from_utf8(&bytes) {
            if !name.is_ascii() && name.chars().all(|c| !c.is_control() && c != ' ') {
                // Only a name made of host characters: anything else (a `%` that was not an
                // escape, say) stays escaped, so the result is canonical again.
                if let Ok(ascii) = idna::domain_to_ascii(name) {
                    if !ascii.is_empty()
                        && ascii
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                    {
                        // IDNA drops ignorable characters (a label can end up empty) and
                        // maps full-width digits: the result may be an address.
                        let ascii = tidy_dots(ascii);
                        if let Some(v4) = parse_ipv4(&ascii) {
                            return (v4.to_string(), Some(IpAddr::V4(v4)));
                        }
                        return (ascii, None);
                    }
                }
            }
        }
    }
    (out, None)
}

/// Without leading, trailing or repeated dots (idempotent).
fn tidy_dots(h: String) -> String {
    if h.starts_with('.') || h.ends_with('.') || h.contains("..") {
        h.split('.')
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    } else {
        h
    }
}

/// Lower-cases letters but keeps `%XX` escapes upper-case.
fn lower_keep_escapes(h: &str) -> String {
    let b = h.as_bytes();
    let mut out = String::with_capacity(h.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            out.push('%');
            out.push(b[i + 1].to_ascii_uppercase() as char);
            out.push(b[i + 2].to_ascii_uppercase() as char);
            i += 3;
        } else {
            out.push(b[i].to_ascii_lowercase() as char);
            i += 1;
        }
    }
    out
}

pub use sekisho_core::host::parse_ipv4;

fn canonical_path(path: &str) -> String {
    if path.starts_with('/')
        && !path.contains("//")
        && !path.contains("/./")
        && !path.contains("/../")
        && !path.ends_with("/.")
        && !path.ends_with("/..")
    {
        return path.to_string();
    }
    let mut segs: Vec<&str> = Vec::new();
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(&segs.join("/"));
    if trailing && !segs.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonicalization table of Safe Browsing's "URLs and Hashing" document.
    #[test]
    fn safe_browsing_table() {
        let cases = [
            ("http://host/%25%32%35", "http://host/%25"),
            ("http://host/%25%32%35%25%32%35", "http://host/%25%25"),
            ("http://host/%2525252525252525", "http://host/%25"),
            ("http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
            ("http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
            ("http://www.google.com/", "http://www.google.com/"),
            (
                "http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
                "http://168.188.99.26/.secure/www.ebay.com/",
            ),
            (
                "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
                "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
            ),
            (
                "http://host%23.com/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B",
                "http://host%23.com/~a!b@c%23d$e%25f^00&11*22(33)44_55+",
            ),
            ("http://3279880203/blah", "http://195.127.0.11/blah"),
            ("http://www.google.com/blah/..", "http://www.google.com/"),
            ("www.google.com/", "http://www.google.com/"),
            ("www.google.com", "http://www.google.com/"),
            ("http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
            ("http://www.GOOgle.com/", "http://www.google.com/"),
            ("http://www.google.com.../", "http://www.google.com/"),
            ("http://www.google.com/foo\tbar\rbaz\n2", "http://www.google.com/foobarbaz2"),
            ("http://www.google.com/q?", "http://www.google.com/q?"),
            ("http://www.google.com/q?r?", "http://www.google.com/q?r?"),
            ("http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
            ("http://evil.com/foo#bar#baz", "http://evil.com/foo"),
            ("http://evil.com/foo;", "http://evil.com/foo;"),
            ("http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
            ("http://\u{1}\u{80}.com/", "http://%01%C2%80.com/"),
            ("http://notrailingslash.com", "http://notrailingslash.com/"),
            ("http://www.gotaport.com:1234/", "http://www.gotaport.com/"),
            ("  http://www.google.com/  ", "http://www.google.com/"),
            ("http:// leadingspace.com/", "http://%20leadingspace.com/"),
            ("http://%20leadingspace.com/", "http://%20leadingspace.com/"),
            ("%20leadingspace.com/", "http://%20leadingspace.com/"),
            ("https://www.securesite.com/", "https://www.securesite.com/"),
            ("http://host.com/ab%23cd", "http://host.com/ab%23cd"),
            ("http://host.com//twoslashes?more//slashes", "http://host.com/twoslashes?more//slashes"),
        ];
        for (input, want) in cases {
            assert_eq!(canonicalize(input).url(), want, "{input:?}");
        }
    }

    #[test]
    fn deeply_nested_escapes_reach_the_fixed_point() {
        // Found by the url_canon fuzz target: escapes nested deeper than the old 16 rounds of
        // decoding left a host that a second canonicalization decoded further.
        let input = "%%3%%%%%%%3%3%%%%%%%3%%%%33333333333%%%333333333331%%\0/";
        let once = canonicalize(input);
        assert_eq!(canonicalize(&once.url()), once, "{}", once.url());
        // Twenty levels of %25 decode all the way down (the old 16 rounds stopped short).
        let deep = format!("%{}41", "25".repeat(20));
        assert_eq!(unescape_fully(deep.into_bytes()), b"A");
        assert_eq!(unescape_fully(b"%%33".to_vec()), b"%3");
        assert_eq!(unescape_fully(b"%4%41".to_vec()), b"J");
        assert_eq!(unescape_fully(b"%zz%2".to_vec()), b"%zz%2");
    }

    #[test]
    fn ip_forms_idn_userinfo_and_v6() {
        let c = |s: &str| canonicalize(s).url();
        assert_eq!(c("http://0x7f.1/"), "http://127.0.0.1/");
        assert_eq!(c("http://0177.0.0.01/x"), "http://127.0.0.1/x");
        assert_eq!(c("http://10.1/"), "http://10.0.0.1/");
        assert_eq!(c("http://192.168.257/"), "http://192.168.1.1/");
        assert_eq!(c("http://1.2.3.4.5/"), "http://1.2.3.4.5/");
        assert_eq!(c("http://256.1.1.1/"), "http://256.1.1.1/");
        assert_eq!(
            c("http://user:pw@Example.COM:8080/a/./b/../c"),
            "http://example.com/a/c"
        );
        assert_eq!(c("http://bücher.example/"), "http://xn--bcher-kva.example/");
        assert_eq!(
            c("http://evil.com\\@good.com/x"),
            "http://evil.com/@good.com/x"
        );
        assert_eq!(c("http://h.com\\a\\b?q=\\"), "http://h.com/a/b?q=\\");
        assert_eq!(c("http://ＥＸＡＭＰＬＥ.com/"), "http://example.com/");
        // Found by the idempotence proptest: a literal `%` next to a non-ASCII name.
        assert_eq!(c("http://%cA%8a%-/"), "http://%CA%8A%25-/");
        assert_eq!(c(&c("http://%cA%8a%-/")), "http://%CA%8A%25-/");
        assert_eq!(c("http://%3A./"), "http:///");
        assert_eq!(c("http://host.com.:80/"), "http://host.com/");
        assert_eq!(
            c("http://evil.com%2F@good.com/"),
            "http://evil.com/@good.com/"
        );
        assert_eq!(c("http://[::FFFF:7f00:1]/"), "http://127.0.0.1/");
        assert_eq!(c("http://[2001:DB8::1]:443/p"), "http://[2001:db8::1]/p");
        // Found by the url_canon fuzz target: colons and dots, each pass cutting one more `:`.
        assert_eq!(c("::::.:."), "http:///");
        assert_eq!(c(&c("::::.:.")), "http:///");
        assert_eq!(c("http://a.com:80:81/"), "http://a.com/");
        assert_eq!(c("http://a.com:x/"), "http://a.com/");
        // IDNA ignores U+034F: its label vanishes and leaves a leading dot.
        assert_eq!(c("http://\u{34f}.\u{466}/"), "http://xn--t2a/");
        let wide = canonicalize("http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/");
        assert_eq!(
            (wide.host.as_str(), wide.ip),
            ("127.0.0.1", Some([127, 0, 0, 1].into()))
        );
        assert_eq!(
            canonicalize("http://3279880203/").ip,
            Some("195.127.0.11".parse().unwrap())
        );
    }

    #[test]
    fn huge_inputs_are_bounded() {
        let long = format!(
            "http://{}.com/{}",
            "a".repeat(100_000),
            "b/".repeat(100_000)
        );
        let c = canonicalize(&long);
        assert!(c.url().len() <= MAX_URL + 16);
        let nested = format!("http://h/{}", "%25".repeat(5000));
        assert!(canonicalize(&nested).url().len() < 20_000);
    }
}
