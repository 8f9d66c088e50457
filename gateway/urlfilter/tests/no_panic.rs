//! Canonicalization never panics, stays bounded and is idempotent on its own output.

use proptest::prelude::*;
use sekisho_urlfilter::canonicalize;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn any_input(s in ".{0,300}") {
        let c = canonicalize(&s);
        prop_assert!(c.path.starts_with('/'));
        prop_assert!(c.url().len() <= sekisho_urlfilter::canonical::MAX_URL * 3 + 64);
    }

    #[test]
    fn url_like_input_is_idempotent(
        host in "[a-zA-Z0-9.%-]{1,30}",
        path in "[a-zA-Z0-9/.%~_-]{0,40}",
        query in proptest::option::of("[a-z0-9=&%/]{0,20}"),
    ) {
        let s = match &query {
            Some(q) => format!("http://{host}/{path}?{q}"),
            None => format!("http://{host}/{path}"),
        };
        let once = canonicalize(&s).url();
        prop_assert_eq!(canonicalize(&once).url(), once.clone(), "{}", s);
    }
}

mod lists {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;
    use sekisho_urlfilter::{canonicalize, Action, UrlFilter, UrlFilterConfig};
    use std::sync::OnceLock;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sekisho-urlprop-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn filter() -> &'static UrlFilter {
        static F: OnceLock<UrlFilter> = OnceLock::new();
        F.get_or_init(|| {
            let d = dir("fixed");
            std::fs::write(
                d.join("l"),
                "amex.com\nco.uk\n10.0.0.1\nexample.org/a/b\n[::1]\nbücher.example\n",
            )
            .unwrap();
            let cfg: UrlFilterConfig = toml::from_str(&format!(
                "[[list]]\nname = \"l\"\npath = {:?}\n[[policy]]\nname = \"p\"\nblock = [\"l\"]\n",
                d.join("l").display().to_string()
            ))
            .unwrap();
            UrlFilter::load(&cfg).unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any request URL or host is judged without panicking.
        #[test]
        fn any_url_is_judged(s in ".{0,400}") {
            let f = filter();
            let _ = f.decide_url(0, &canonicalize(&s));
            let _ = f.decide_host(0, &s);
            let _ = f.splice_match(&s);
        }

        /// A subdomain of a listed domain matches; a name that only ends with it does not.
        #[test]
        fn suffix_matching_respects_label_boundaries(
            sub in "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,3}",
            glue in "[a-z0-9-]{1,6}",
        ) {
            let f = filter();
            let sub_url = format!("http://{sub}.amex.com/x");
            let glued = format!("http://{glue}amex.com/x");
            prop_assert_eq!(f.decide_url(0, &canonicalize(&sub_url)).action, Action::Block);
            prop_assert_eq!(f.decide_url(0, &canonicalize(&glued)).action, Action::Allow);
        }

        /// Arbitrary list files load: bad lines are reported, never a panic.
        #[test]
        fn any_list_file_loads(lines in proptest::collection::vec(".{0,80}", 0..40)) {
            let d = dir("any");
            let p = d.join(format!("l{}", lines.len()));
            std::fs::write(&p, lines.join("\n")).unwrap();
            let cfg: UrlFilterConfig = toml::from_str(&format!(
                "[[list]]\nname = \"l\"\npath = {:?}\n",
                p.display().to_string()
            ))
            .unwrap();
            let f = UrlFilter::load(&cfg).unwrap();
            let (_, n) = f.db().errors();
            prop_assert!(n <= lines.len());
        }
    }
}
