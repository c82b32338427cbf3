//! Golden tests for the policies in `examples/`.
//!
//! Every `examples/NAME.omni` is checked (strict profile unless its header
//! says otherwise), evaluated against `NAME.context.json`, and its decision is
//! compared byte for byte with `NAME.decision.json`. Run with
//! `UPDATE_GOLDEN=1 cargo test --test examples` to rewrite the goldens, then
//! review the diff before committing it.
//!
//! Directives, read from the comment lines before the first section header
//! (see `examples/README.md`):
//!
//! - `// profile: lenient` checks and evaluates the example with the lenient
//!   profile (the default is strict);
//! - `// now: 2026-01-05T21:40:00Z` sets the evaluation's `now` (the default
//!   is `2026-01-01T00:00:00Z`).

use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions, Severity};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How many examples the set holds; adding or removing one is a deliberate change.
const EXPECTED_EXAMPLES: usize = 18;
const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

struct Example {
    name: String,
    dir: PathBuf,
    source: String,
    lenient: bool,
    now: String,
}

impl Example {
    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", self.name))
    }

    fn options(&self) -> CheckOptions {
        if self.lenient {
            CheckOptions::lenient()
        } else {
            CheckOptions::default()
        }
    }
}

/// `UPDATE_GOLDEN=1`: rewrite the goldens instead of comparing with them.
fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn load_examples() -> Vec<Example> {
    let dir = examples_dir();
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {dir:?}: {e}"));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("omni") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name")
            .to_string();
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read examples/{name}.omni: {e}"));
        let (lenient, now) = directives(&name, &source);
        out.push(Example {
            name,
            dir: dir.clone(),
            source,
            lenient,
            now,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Reads `// profile: …` and `// now: …` from the comments that precede the
/// first section header.
fn directives(name: &str, source: &str) -> (bool, String) {
    let mut lenient = false;
    let mut now = DEFAULT_NOW.to_string();
    for line in source.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let Some(comment) = t.strip_prefix("//") else {
            break;
        };
        let comment = comment.trim();
        if let Some(p) = comment.strip_prefix("profile:") {
            lenient = match p.trim() {
                "lenient" => true,
                "strict" => false,
                other => panic!("examples/{name}.omni: unknown profile `{other}`"),
            };
        } else if let Some(n) = comment.strip_prefix("now:") {
            now = n.trim().to_string();
        }
    }
    (lenient, now)
}

/// Checks and evaluates one example; returns the decision as canonical JSON.
fn decide(ex: &Example) -> Result<String, String> {
    let compiled = compile(&ex.source, &ex.options());
    let policy = compiled.policy.clone().ok_or_else(|| {
        format!(
            "examples/{}.omni has errors:\n{}",
            ex.name,
            describe(&compiled.diagnostics, Some(Severity::Error))
        )
    })?;
    let ctx_path = ex.file(".context.json");
    let bytes = std::fs::read(&ctx_path)
        .map_err(|e| format!("cannot read examples/{}.context.json: {e}", ex.name))?;
    let ctx = Context::from_json(&bytes, &ContextLimits::default())
        .map_err(|e| format!("examples/{}.context.json: {e}", ex.name))?;
    let now = omni::timefmt::parse_rfc3339(&ex.now).ok_or_else(|| {
        format!(
            "examples/{}.omni: `now: {}` is not RFC 3339",
            ex.name, ex.now
        )
    })?;
    let decision = evaluate(&policy, &ctx, now, &EvalOptions::default())
        .map_err(|e| format!("examples/{}.omni: evaluation failed: {e}", ex.name))?;
    Ok(decision.to_json_pretty())
}

fn describe(diags: &[omni::Diagnostic], only: Option<Severity>) -> String {
    diags
        .iter()
        .filter(|d| only.is_none_or(|s| d.severity == s))
        .map(|d| {
            format!(
                "  {:?} {} line {}: {}",
                d.severity,
                d.code.as_str(),
                d.span.line,
                d.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(expected: &str, actual: &str) -> String {
    let mut e = expected.lines();
    let mut a = actual.lines();
    let mut line = 1;
    loop {
        match (e.next(), a.next()) {
            (None, None) => {
                return "the texts differ only in line endings or a trailing newline".into()
            }
            (x, y) if x == y => line += 1,
            (x, y) => {
                return format!(
                    "first difference at line {line}:\n    golden: {}\n    actual: {}",
                    x.unwrap_or("<end of file>"),
                    y.unwrap_or("<end of file>")
                )
            }
        }
    }
}

#[test]
fn the_set_has_exactly_eighteen_examples() {
    let examples = load_examples();
    let names: Vec<&str> = examples.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        examples.len(),
        EXPECTED_EXAMPLES,
        "examples/ should hold {EXPECTED_EXAMPLES} policies, found {}: {names:?}",
        examples.len()
    );
    for ex in &examples {
        for suffix in [".context.json", ".decision.json"] {
            let f = ex.file(suffix);
            let needed = suffix == ".context.json" || !updating();
            assert!(
                !needed || f.is_file(),
                "examples/{}.omni has no {}{suffix}",
                ex.name,
                ex.name
            );
        }
    }
    let lenient: Vec<&str> = examples
        .iter()
        .filter(|e| e.lenient)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        lenient.len(),
        1,
        "exactly one example shows the legacy forms under the lenient profile, found {lenient:?}"
    );
}

#[test]
fn examples_check_without_errors_and_strict_ones_without_warnings() {
    let mut failures = Vec::new();
    for ex in load_examples() {
        let compiled = compile(&ex.source, &ex.options());
        if compiled.has_errors() {
            failures.push(format!(
                "examples/{}.omni has errors:\n{}",
                ex.name,
                describe(&compiled.diagnostics, Some(Severity::Error))
            ));
            continue;
        }
        if !ex.lenient {
            if compiled
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Warning)
            {
                failures.push(format!(
                    "examples/{}.omni has warnings under the strict profile:\n{}",
                    ex.name,
                    describe(&compiled.diagnostics, Some(Severity::Warning))
                ));
            }
            continue;
        }
        // The lenient example exists to show the legacy forms: each must be
        // there, and the example must really need the lenient profile.
        let codes: BTreeSet<&str> = compiled
            .diagnostics
            .iter()
            .map(|d| d.code.as_str())
            .collect();
        for (code, form) in [
            ("W0406", "`=` in a condition"),
            ("W0407", "a FOR without braces"),
            ("W0408", "a two-line IF / THEN"),
            ("W0401", "a missing section"),
        ] {
            if !codes.contains(code) {
                failures.push(format!(
                    "examples/{}.omni should show {form} ({code})",
                    ex.name
                ));
            }
        }
        if !compile(&ex.source, &CheckOptions::default()).has_errors() {
            failures.push(format!(
                "examples/{}.omni passes the strict profile; drop `// profile: lenient`",
                ex.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn decisions_match_the_goldens() {
    let update = updating();
    let mut failures = Vec::new();
    for ex in load_examples() {
        let actual = match decide(&ex) {
            Ok(json) => json,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let golden_path = ex.file(".decision.json");
        if update {
            std::fs::write(&golden_path, &actual)
                .unwrap_or_else(|e| panic!("cannot write {golden_path:?}: {e}"));
            continue;
        }
        match std::fs::read_to_string(&golden_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "examples/{}.decision.json does not match the decision for examples/{}.omni; {}",
                ex.name,
                ex.name,
                first_difference(&expected, &actual)
            )),
            Err(e) => failures.push(format!(
                "cannot read examples/{}.decision.json: {e}",
                ex.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended, run `UPDATE_GOLDEN=1 cargo test --test examples` \
         and review the diff.",
        failures.join("\n\n")
    );
}

#[test]
fn goldens_fire_actions_and_cover_every_outcome() {
    let mut outcomes = BTreeSet::new();
    let mut warning_codes = BTreeSet::new();
    let (mut deduplicated, mut while_active, mut while_inactive, mut defaults) =
        (false, false, false, false);
    for ex in load_examples() {
        // The evaluator's decision, which `decisions_match_the_goldens`
        // holds equal to NAME.decision.json byte for byte.
        let text = decide(&ex).unwrap_or_else(|e| panic!("{e}"));
        let d: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the decision for examples/{}.omni: {e}", ex.name));
        let actions = d["actions"].as_array().expect("actions");
        assert!(
            !actions.is_empty(),
            "the decision for examples/{}.omni fires no action",
            ex.name
        );
        deduplicated |= actions.iter().any(|a| a["count"].as_u64() > Some(1));
        for r in d["rules"].as_array().expect("rules") {
            outcomes.insert(r["outcome"].as_str().expect("outcome").to_string());
            match r["active"].as_bool() {
                Some(true) => while_active = true,
                Some(false) => while_inactive = true,
                None => {}
            }
        }
        for w in d["warnings"].as_array().expect("warnings") {
            warning_codes.insert(w["code"].as_str().expect("code").to_string());
        }
        defaults |= !d["defaults"].as_array().expect("defaults").is_empty();
    }
    for o in ["fired", "not_fired", "unknown", "else_fired"] {
        assert!(
            outcomes.contains(o),
            "no example has a rule with outcome `{o}`"
        );
    }
    assert!(
        warning_codes.contains("missing"),
        "no example shows a missing value"
    );
    assert!(deduplicated, "no example fires the same action twice");
    assert!(while_active, "no example has a WHILE whose condition holds");
    assert!(
        while_inactive,
        "no example has a WHILE whose condition is false"
    );
    assert!(defaults, "no example uses a policy CONTEXT default");
}

// ----- coverage of the language -------------------------------------------------

/// Every unit suffix of `docs/language.md#units`, by dimension.
const UNITS: &[(&str, &[&str])] = &[
    ("ratio", &["%", "pct", "ppm"]),
    ("length", &["mm", "cm", "m", "km", "in", "ft", "mi"]),
    ("duration", &["ns", "us", "ms", "s", "min", "h", "d", "w"]),
    ("temperature", &["C", "F", "K"]),
    ("speed", &["mps", "kmh", "kph", "mph", "kn"]),
    ("mass", &["mg", "g", "kg", "t", "lb"]),
    ("pressure", &["Pa", "kPa", "MPa", "bar", "psi"]),
    ("voltage", &["mV", "V", "kV"]),
    ("current", &["mA", "A"]),
    ("power", &["W", "kW", "MW"]),
    ("energy", &["J", "Wh", "kWh", "MWh"]),
    ("frequency", &["Hz", "kHz", "MHz", "GHz"]),
    (
        "data",
        &["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"],
    ),
];

/// Every stdlib function of `docs/language.md#standard-library`, legacy ones included.
const FUNCTIONS: &[&str] = &[
    "abs",
    "min",
    "max",
    "sum",
    "avg",
    "round",
    "floor",
    "ceil",
    "sqrt",
    "pow",
    "clamp",
    "len",
    "lower",
    "upper",
    "trim",
    "contains",
    "starts_with",
    "ends_with",
    "split",
    "matches",
    "count",
    "any",
    "all",
    "map",
    "filter",
    "reduce",
    "first",
    "last",
    "distinct",
    "sort",
    "now",
    "time",
    "since",
    "between",
    "date_part",
    "now_unix_millis",
    "duration_between_ms",
    "has",
    "keys",
    "get",
];

/// The text of the CONTEXT and RULE sections (where Omni literals and
/// expressions live), without comment lines and with string literals blanked.
fn code_text(source: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for line in source.lines() {
        let t = line.trim_start();
        if t.starts_with("//") || t.starts_with('#') {
            continue;
        }
        if let Some((head, _)) = t.split_once(':') {
            let is_header = !head.is_empty()
                && !t.starts_with('-')
                && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !t[head.len()..].starts_with("::");
            if is_header {
                let h = head.to_ascii_uppercase();
                in_code = h == "RULE" || h == "CONTEXT";
                continue;
            }
        }
        if in_code {
            out.push_str(&blank_strings(line));
            out.push('\n');
        }
    }
    out
}

fn blank_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_str = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
                out.push('"');
                continue;
            }
            out.push(' ');
        } else {
            if c == '"' {
                in_str = true;
            }
            out.push(c);
        }
    }
    out
}

/// Unit suffixes written directly after a number literal: `20%`, `2.5kg`.
fn unit_suffixes(code: &str) -> BTreeSet<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_'));
        if !starts_number {
            i += 1;
            continue;
        }
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
            i += 1;
        }
        let start = i;
        if i < chars.len() && chars[i] == '%' {
            i += 1;
        } else {
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
        }
        if i > start {
            found.insert(chars[start..i].iter().collect());
        }
    }
    found
}

fn words(code: &str) -> BTreeSet<String> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn examples_together_cover_every_construct_unit_and_function() {
    let examples = load_examples();
    let code: String = examples.iter().map(|e| code_text(&e.source)).collect();
    let upper_words: BTreeSet<String> = words(&code)
        .into_iter()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let mut missing = Vec::new();

    let suffixes = unit_suffixes(&code);
    for (dimension, units) in UNITS {
        for u in *units {
            if !suffixes.contains(*u) {
                missing.push(format!("the {dimension} unit `{u}`"));
            }
        }
    }
    let currencies: Vec<&String> = suffixes
        .iter()
        .filter(|s| s.len() == 3 && s.chars().all(|c| c.is_ascii_uppercase()))
        .collect();
    if currencies.len() < 4 {
        missing.push(format!(
            "at least four currency codes (found {currencies:?})"
        ));
    }

    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    for f in FUNCTIONS {
        let call = format!("{f}(");
        let called = code.match_indices(&call).any(|(i, _)| {
            i == 0 || {
                let prev = code.as_bytes()[i - 1];
                !(prev.is_ascii_alphanumeric() || prev == b'_')
            }
        });
        if !called {
            missing.push(format!("a call of `{f}`"));
        }
    }
    if !compact.contains("std::") {
        missing.push("a qualified call such as `std::math::avg`".into());
    }

    for kw in [
        "IF", "THEN", "ELSE", "FOR", "WHILE", "IN", "NOT", "AND", "OR", "MATCH", "TRUE", "FALSE",
        "NULL",
    ] {
        if !upper_words.contains(kw) {
            missing.push(format!("the keyword {kw}"));
        }
    }
    let checks: &[(&str, bool)] = &[
        ("NOT IN", code.to_ascii_uppercase().contains(" NOT IN ")),
        ("a one-parameter lambda `|x| …`", has_lambda(&code, 1)),
        ("a two-parameter lambda `|acc, x| …`", has_lambda(&code, 2)),
        (
            "a match arm with alternatives `a | b =>`",
            has_match_alternatives(&code),
        ),
        ("a wildcard match arm `_ =>`", compact.contains("_=>")),
        ("`$[\"…\"]` on the context root", compact.contains("$[")),
        ("`$.Name` on the context root", compact.contains("$.")),
        ("an index such as `a[0]`", has_index(&compact)),
        (
            "a block `{ … }`",
            compact.contains('{') && compact.contains('}'),
        ),
        ("the comparison `==`", compact.contains("==")),
        ("the comparison `!=`", compact.contains("!=")),
        ("the comparison `<=`", compact.contains("<=")),
        ("the comparison `>=`", compact.contains(">=")),
        ("the comparison `<`", code.contains(" < ")),
        ("the comparison `>`", code.contains(" > ")),
        ("addition", code.contains(" + ")),
        ("subtraction", code.contains(" - ")),
        ("multiplication", code.contains(" * ")),
        ("division", code.contains(" / ")),
        ("a unary minus", has_unary_minus(&code)),
        (
            "an action with a bare string argument (`Notify \"x\"`)",
            has_bare_string_action(&code),
        ),
    ];
    for (what, ok) in checks {
        if !ok {
            missing.push((*what).to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "the examples no longer cover:\n  {}",
        missing.join("\n  ")
    );
}

/// `|x|` or `|acc, x|`: a lambda's parameter list with `params` names.
fn has_lambda(code: &str, params: usize) -> bool {
    code.lines().any(|line| {
        let bars: Vec<usize> = line.match_indices('|').map(|(i, _)| i).collect();
        bars.windows(2).any(|w| {
            let names: Vec<&str> = line[w[0] + 1..w[1]].split(',').map(str::trim).collect();
            names.len() == params
                && names.iter().all(|n| {
                    n.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        })
    })
}

/// `"a" | "b" =>` inside a match.
fn has_match_alternatives(code: &str) -> bool {
    code.lines().any(|l| {
        let u = l.to_ascii_uppercase();
        u.contains("MATCH") && l.contains("\" | \"") && l.contains("=>")
    })
}

fn has_index(compact: &str) -> bool {
    let b = compact.as_bytes();
    b.windows(3).any(|w| {
        (w[0].is_ascii_alphanumeric() || w[0] == b'_') && w[1] == b'[' && w[2].is_ascii_digit()
    })
}

/// A `-` that negates: after an operator, `(` or `,`, not between operands.
fn has_unary_minus(code: &str) -> bool {
    code.lines().any(|l| {
        let t = l.trim_start().trim_start_matches('-').trim_start();
        let b = t.as_bytes();
        (1..b.len()).any(|i| {
            b[i] == b'-'
                && b.get(i + 1).is_some_and(|c| c.is_ascii_alphanumeric())
                && t[..i]
                    .trim_end()
                    .ends_with(['<', '>', '=', '(', ',', '+', '*', '/'])
        })
    })
}

/// `THEN … Name "text"`: an action whose argument is a bare string.
fn has_bare_string_action(code: &str) -> bool {
    code.lines().any(|l| {
        let Some(i) = l.find("THEN") else {
            return false;
        };
        let b = &l.as_bytes()[i..];
        (2..b.len()).any(|j| b[j] == b'"' && b[j - 1] == b' ' && b[j - 2].is_ascii_alphanumeric())
    })
}
