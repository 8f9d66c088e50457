//! Page templates and their texts, per language: English and Japanese bundled, an operator's
//! folder (`[policy] page_dir`) adding languages or replacing files, and the pick by
//! `Accept-Language`.

use std::collections::HashMap;
use std::path::Path;

/// The bundled page template (every bundled language uses it; `{{lang}}` sets the page's).
const TEMPLATE: &str = include_str!("../../pages/page.html");

/// The bundled languages: (tag, messages).
const BUNDLED: &[(&str, &str)] = &[
    ("en", include_str!("../../pages/en/messages.toml")),
    ("ja", include_str!("../../pages/ja/messages.toml")),
];

/// Placeholders every template must hold: a page that hides the event id or the reason is no
/// help to the help desk.
const REQUIRED: &[&str] = &["{{event_id}}", "{{reason}}", "{{title}}"];

/// One language: its page template and its texts (`title.blocked`, `reason.category`, …).
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The language tag (`en`, `ja`), the page's `lang`.
    pub lang: String,
    template: String,
    texts: HashMap<String, String>,
}

impl Catalogue {
    fn parse(lang: &str, template: String, messages: &str, origin: &str) -> Result<Self, String> {
        for p in REQUIRED {
            if !template.contains(p) {
                return Err(format!("{origin}: the page template has no {p}"));
            }
        }
        let table: toml::Table = messages
            .parse()
            .map_err(|e: toml::de::Error| format!("{origin}: {}", e.message()))?;
        let mut texts = HashMap::new();
        flatten("", &table, &mut texts, origin)?;
        Ok(Catalogue {
            lang: lang.to_string(),
            template,
            texts,
        })
    }

    /// The text for `key`, else English's (a partial translation still renders).
    pub fn text<'a>(&'a self, key: &str, english: &'a Catalogue) -> &'a str {
        self.texts
            .get(key)
            .or_else(|| english.texts.get(key))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The page template.
    pub fn template(&self) -> &str {
        &self.template
    }
}

fn flatten(
    prefix: &str,
    t: &toml::Table,
    out: &mut HashMap<String, String>,
    origin: &str,
) -> Result<(), String> {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(inner) => flatten(&key, inner, out, origin)?,
            _ => return Err(format!("{origin}: {key} must be a string")),
        }
    }
    Ok(())
}

/// Every language the gateway can show pages in.
#[derive(Debug, Clone)]
pub struct Pages {
    langs: Vec<Catalogue>,
    /// Index of the language used when the client asks for none we have.
    default: usize,
}

impl Default for Pages {
    fn default() -> Self {
        Pages::load(None, "en").expect("the bundled pages are valid")
    }
}

impl Pages {
    /// The bundled pages, then the operator's folder: `<dir>/<lang>/page.html` and
    /// `<dir>/<lang>/messages.toml`, each replacing the bundled file of that language or adding a
    /// language. `default_lang` must be one of them.
    pub fn load(dir: Option<&Path>, default_lang: &str) -> Result<Pages, String> {
        let mut files: Vec<(String, String, String, String)> = BUNDLED
            .iter()
            .map(|(l, m)| {
                (
                    l.to_string(),
                    TEMPLATE.to_string(),
                    m.to_string(),
                    format!("bundled {l} pages"),
                )
            })
            .collect();
        if let Some(dir) = dir {
            read_dir(dir, &mut files)?;
        }
        let mut langs = Vec::new();
        for (lang, template, messages, origin) in files {
            langs.push(Catalogue::parse(&lang, template, &messages, &origin)?);
        }
        let default = langs
            .iter()
            .position(|c| c.lang == default_lang)
            .ok_or_else(|| {
                let have: Vec<&str> = langs.iter().map(|c| c.lang.as_str()).collect();
                format!(
                    "page_language {default_lang:?} has no pages (have: {})",
                    have.join(", ")
                )
            })?;
        Ok(Pages { langs, default })
    }

    /// English, the fallback for texts a translation lacks.
    pub fn english(&self) -> &Catalogue {
        self.langs
            .iter()
            .find(|c| c.lang == "en")
            .unwrap_or(&self.langs[0])
    }

    /// The language for an `Accept-Language` header: the highest-weighted tag we have (by its
    /// primary subtag), else the default.
    pub fn pick(&self, accept_language: Option<&str>) -> &Catalogue {
        let mut best: Option<(f32, usize)> = None;
        for item in accept_language.unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 || tag.is_empty() {
                continue;
            }
            let primary = tag.split('-').next().unwrap_or("");
            let found = self
                .langs
                .iter()
                .position(|c| c.lang == tag)
                .or_else(|| self.langs.iter().position(|c| c.lang == primary));
            if let Some(i) = found {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, i));
                }
            }
        }
        &self.langs[best.map_or(self.default, |(_, i)| i)]
    }
}

/// Reads `<dir>/<lang>/{page.html,messages.toml}` over the bundled files.
fn read_dir(dir: &Path, files: &mut Vec<(String, String, String, String)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {}", dir.display(), crate::wire::os(&e)))?;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_ascii_lowercase))
        .collect();
    names.sort();
    for lang in names {
        let sub = dir.join(&lang);
        let read = |name: &str| -> Result<Option<String>, String> {
            let p = sub.join(name);
            match std::fs::read_to_string(&p) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {}", p.display(), crate::wire::os(&e))),
            }
        };
        let (template, messages) = (read("page.html")?, read("messages.toml")?);
        let origin = sub.display().to_string();
        match files.iter_mut().find(|f| f.0 == lang) {
            Some(f) => {
                if let Some(t) = template {
                    f.1 = t;
                }
                if let Some(m) = messages {
                    f.2 = m;
                }
                f.3 = origin;
            }
            None => {
                let en = &files[0];
                let t = template.unwrap_or_else(|| en.1.clone());
                let m = messages
                    .ok_or_else(|| format!("{origin}: a new language needs its messages.toml"))?;
                files.push((lang, t, m, origin));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn picks_by_accept_language_weight_and_primary_subtag() {
        let p = Pages::default();
        assert_eq!(p.pick(None).lang, "en");
        assert_eq!(p.pick(Some("ja-JP,ja;q=0.9,en;q=0.8")).lang, "ja");
        assert_eq!(p.pick(Some("en-US,en;q=0.9,ja;q=0.8")).lang, "en");
        assert_eq!(p.pick(Some("fr, ja;q=0.5")).lang, "ja");
        assert_eq!(p.pick(Some("fr")).lang, "en");
        assert_eq!(p.pick(Some("ja;q=0, en;q=0.1")).lang, "en");
        assert_eq!(p.pick(Some(";;,,q=")).lang, "en");
    }

    #[test]
    fn every_bundled_language_has_every_english_text() {
        let p = Pages::default();
        let en = p.english();
        for c in &p.langs {
            for k in en.texts.keys() {
                assert!(c.texts.contains_key(k), "{} lacks {k}", c.lang);
            }
        }
    }

    #[test]
    fn an_operator_folder_replaces_and_adds_and_is_checked() {
        let d = std::env::temp_dir().join(format!("sekisho-pages-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("en")).unwrap();
        std::fs::create_dir_all(d.join("de")).unwrap();
        std::fs::write(
            d.join("en/page.html"),
            "<p>{{title}} {{reason}} {{event_id}} CUSTOM</p>",
        )
        .unwrap();
        std::fs::write(
            d.join("de/messages.toml"),
            "[title]\nblocked = \"Gesperrt\"\n",
        )
        .unwrap();
        let p = Pages::load(Some(&d), "de").unwrap();
        assert!(p.english().template().contains("CUSTOM"));
        assert_eq!(p.pick(None).lang, "de");
        assert_eq!(p.pick(None).text("title.blocked", p.english()), "Gesperrt");
        assert_eq!(
            p.pick(None).text("title.warn", p.english()),
            "Warning",
            "English fills what a translation lacks"
        );
        std::fs::write(d.join("en/page.html"), "<p>{{title}} {{reason}}</p>").unwrap();
        let e = Pages::load(Some(&d), "en").unwrap_err();
        assert!(e.contains("{{event_id}}") && e.contains("en"), "{e}");
        assert!(Pages::load(None, "xx").unwrap_err().contains("en, ja"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
