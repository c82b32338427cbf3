//! The playground: one self-contained page at `GET /` (HTML, a stylesheet,
//! a script and a handful of the project's example policies, all embedded
//! in the binary) for trying policies against `POST /api/validate` in a
//! browser. It makes no request to any other origin, and its
//! Content-Security-Policy forbids it to. `playground = false` in the
//! configuration turns every path of it into 404.

use crate::body::Body;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use std::sync::OnceLock;

const INDEX_HTML: &str = include_str!("playground/index.html");
const APP_JS: &str = include_str!("playground/app.js");
const STYLE_CSS: &str = include_str!("playground/style.css");

/// Only this origin, and only the page's own script, stylesheet and the
/// validate endpoint; no inline code, no frames, no forms, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// The examples the page offers: `(name, policy, context)`, from
/// `examples/` at build time.
const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "drone_fleet",
        include_str!("../../examples/drone_fleet.omni"),
        include_str!("../../examples/drone_fleet.context.json"),
    ),
    (
        "access_control",
        include_str!("../../examples/access_control.omni"),
        include_str!("../../examples/access_control.context.json"),
    ),
    (
        "hospital_icu",
        include_str!("../../examples/hospital_icu.omni"),
        include_str!("../../examples/hospital_icu.context.json"),
    ),
    (
        "payments_aml",
        include_str!("../../examples/payments_aml.omni"),
        include_str!("../../examples/payments_aml.context.json"),
    ),
    (
        "smart_grid",
        include_str!("../../examples/smart_grid.omni"),
        include_str!("../../examples/smart_grid.context.json"),
    ),
    (
        "cold_chain",
        include_str!("../../examples/cold_chain.omni"),
        include_str!("../../examples/cold_chain.context.json"),
    ),
    (
        "legacy_forms",
        include_str!("../../examples/legacy_forms.omni"),
        include_str!("../../examples/legacy_forms.context.json"),
    ),
];

/// The `now` the examples' golden decisions use unless a policy says
/// otherwise (examples/README.md).
const EXAMPLE_NOW: &str = "2026-01-01T00:00:00Z";

/// One file of the playground.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Index,
    Script,
    Style,
    Examples,
}

impl Asset {
    /// Every path the playground serves.
    pub const PATHS: [(&'static str, Asset); 4] = [
        ("/", Asset::Index),
        ("/playground/app.js", Asset::Script),
        ("/playground/style.css", Asset::Style),
        ("/playground/examples.json", Asset::Examples),
    ];

    pub fn from_path(path: &str) -> Option<Asset> {
        Self::PATHS
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, a)| *a)
    }

    fn content(self) -> (&'static str, Bytes) {
        match self {
            Asset::Index => (
                "text/html; charset=utf-8",
                Bytes::from_static(INDEX_HTML.as_bytes()),
            ),
            Asset::Script => (
                "text/javascript; charset=utf-8",
                Bytes::from_static(APP_JS.as_bytes()),
            ),
            Asset::Style => (
                "text/css; charset=utf-8",
                Bytes::from_static(STYLE_CSS.as_bytes()),
            ),
            Asset::Examples => ("application/json", examples_json()),
        }
    }
}

/// The examples as JSON: `[{name, title, code, context, now, strict}]`,
/// with the directives of examples/README.md (`// now:`,
/// `// profile: lenient`) applied.
fn examples_json() -> Bytes {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    JSON.get_or_init(|| {
        let list: Vec<serde_json::Value> = EXAMPLES
            .iter()
            .map(|(name, code, context)| {
                let directive = |key: &str| {
                    code.lines()
                        .take_while(|l| l.trim_start().starts_with("//") || l.trim().is_empty())
                        .filter_map(|l| l.trim_start().strip_prefix("//"))
                        .filter_map(|l| l.trim().strip_prefix(key))
                        .map(|v| v.trim().to_string())
                        .next()
                };
                let words = name.replace('_', " ");
                let mut chars = words.chars();
                let title: String = chars
                    .next()
                    .map(|c| c.to_ascii_uppercase())
                    .into_iter()
                    .chain(chars)
                    .collect();
                serde_json::json!({
                    "name": name,
                    "title": title,
                    "code": code,
                    "context": context,
                    "now": directive("now:").unwrap_or_else(|| EXAMPLE_NOW.to_string()),
                    "strict": directive("profile:").as_deref() != Some("lenient"),
                })
            })
            .collect();
        Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
    })
    .clone()
}

/// The response for one asset, with its security headers.
pub fn response(asset: Asset) -> Response<Body> {
    let (content_type, body) = asset.content();
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for (p, a) in Asset::PATHS {
            assert_eq!(Asset::from_path(p), Some(a));
        }
        assert_eq!(Asset::from_path("/playground/"), None);
        assert_eq!(Asset::from_path("/index.html"), None);
    }

    /// The page loads nothing from another origin: no absolute or
    /// protocol-relative URL anywhere in its markup, style or script, and
    /// every `src`/`href` is a path on this origin or a fragment.
    #[test]
    fn assets_make_no_external_requests() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            let lower = text.to_ascii_lowercase();
            for needle in [
                "http://", "https://", "//cdn", "@import", "url(", "<iframe", "<object", "<embed",
            ] {
                assert!(!lower.contains(needle), "{name} contains {needle:?}");
            }
            for attr in ["src=\"", "href=\"", "action=\""] {
                for (i, _) in lower.match_indices(attr) {
                    let v = &lower[i + attr.len()..];
                    assert!(
                        (v.starts_with('/') && !v.starts_with("//")) || v.starts_with('#'),
                        "{name}: {attr}{} is not a same-origin path",
                        &v[..v.find('"').unwrap_or(v.len()).min(60)]
                    );
                }
            }
        }
        // No inline script or style: the CSP would refuse them.
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains(" style=\""));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(INDEX_HTML.contains("<script src=\"/playground/app.js\" defer></script>"));
        for (i, _) in INDEX_HTML.match_indices(" on") {
            let rest = &INDEX_HTML[i + 3..];
            let name_len = rest.bytes().take_while(|b| b.is_ascii_lowercase()).count();
            assert!(
                name_len == 0 || !rest[name_len..].starts_with('='),
                "inline event handler in index.html: {}",
                &rest[..name_len]
            );
        }
        assert!(!APP_JS.contains("eval("), "app.js calls eval");
        assert!(
            !APP_JS.contains("innerHTML"),
            "app.js writes HTML from strings"
        );
    }

    #[test]
    fn csp_is_strict() {
        let csp = CONTENT_SECURITY_POLICY;
        assert!(csp.starts_with("default-src 'none'"));
        for d in [
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(d), "{d}");
        }
        assert!(!csp.contains("unsafe"));
        assert!(!csp.contains('*'));
        let r = response(Asset::Index);
        assert_eq!(r.headers()["content-security-policy"], csp);
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }

    #[test]
    fn examples_carry_their_directives() {
        let v: serde_json::Value = serde_json::from_slice(&examples_json()).unwrap();
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), EXAMPLES.len());
        for e in list {
            let ctx = e["context"].as_str().unwrap();
            assert!(serde_json::from_str::<serde_json::Value>(ctx)
                .unwrap()
                .is_object());
            assert!(e["code"].as_str().unwrap().contains("RULE:"));
        }
        let by = |n: &str| list.iter().find(|e| e["name"] == n).unwrap().clone();
        assert_eq!(by("drone_fleet")["now"], EXAMPLE_NOW);
        assert_eq!(by("drone_fleet")["title"], "Drone fleet");
        assert_eq!(by("drone_fleet")["strict"], true);
        assert_eq!(by("legacy_forms")["strict"], false);
        assert_ne!(by("access_control")["now"], EXAMPLE_NOW);
    }
}
