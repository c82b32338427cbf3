//! Keeps `docs/language.md` and `docs/diagnostics.md` true.
//!
//! # Fenced blocks the test understands
//!
//! The info string of a fence (the text after the opening three backticks) is
//! split on whitespace. The first word selects the kind of block:
//!
//! ```text
//! omni [strict|lenient] [error CODE | warning CODE | info CODE]... [OPTION]...
//!     A complete policy. It is compiled with the profile given (strict when
//!     none is), and every `error|warning|info CODE` pair must appear among
//!     its diagnostics with exactly that code and severity. When no `error`
//!     pair is given the policy must compile without any error.
//!     OPTION is one of
//!       disable=lambdas|match|regex|time|else   turn a feature flag off
//!       disable=module:NAME                     drop a stdlib module from the allow-list
//!       max-block-depth=N, max-expr-depth=N     lower a nesting limit
//!
//! json context                 The request context of the policy block just above.
//! json decision-excerpt [trace]
//!     Evaluates the policy block above (it must compile) with the context
//!     block above (or `{}`), now = 2026-01-01T00:00:00Z, the default limits,
//!     and the trace when `trace` is given; the excerpt must match the decision.
//! json eval-error              `{"code": "..."}`: the evaluation (or reading the
//!     context) must fail with that error code.
//! ```
//!
//! Blocks with any other info string (`text`, `json`, `console`, `ebnf`, empty)
//! are prose and not checked, but an unknown word after `omni` or `json
//! context|decision-excerpt|eval-error` is a test failure, so a typo in a tag
//! cannot silently turn a test off. A `json context|decision-excerpt|eval-error`
//! block must follow a policy block with only prose (or its context block) in
//! between.
//!
//! # How an excerpt matches a decision
//!
//! * an object matches when every key of the excerpt is in the decision and
//!   its value matches (keys the excerpt leaves out are ignored);
//! * an array matches an array of the **same length** whose elements match
//!   one by one with these same rules (so `{"actions": [{"name": "A"}]}` says
//!   "exactly one action, named A");
//! * numbers match when they are equal as `f64`; other scalars when equal.
//!
//! Every failure names the markdown file and the line of the block.

use omni::{
    compile, evaluate, CheckOptions, Code, Context, ContextLimits, EvalOptions, Profile, Severity,
};
use serde_json::Value as Json;
use std::path::PathBuf;

const NOW: &str = "2026-01-01T00:00:00Z";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// One fenced block: its info string, body and the line of its opening fence.
#[derive(Debug, Clone)]
struct Block {
    info: String,
    body: String,
    line: usize,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        let t = l.trim_start();
        let Some(info) = t.strip_prefix("```") else {
            continue;
        };
        let fence_indent = l.len() - t.len();
        let mut body = String::new();
        let mut closed = false;
        for (_, l2) in lines.by_ref() {
            if l2.trim() == "```" {
                closed = true;
                break;
            }
            // Blocks inside list items are indented; strip the fence's indent.
            let strip = l2.len() - l2.trim_start().len();
            body.push_str(&l2[strip.min(fence_indent)..]);
            body.push('\n');
        }
        assert!(closed, "line {}: fenced block is never closed", i + 1);
        out.push(Block {
            info: info.trim().to_string(),
            body,
            line: i + 1,
        });
    }
    out
}

/// What an `omni …` info string asks for.
#[derive(Debug, Clone)]
struct PolicySpec {
    opts: CheckOptions,
    expect: Vec<(Severity, String)>,
}

fn parse_policy_info(info: &str, at: &str) -> Option<PolicySpec> {
    let mut words = info.split_whitespace();
    if words.next() != Some("omni") {
        return None;
    }
    let mut opts = CheckOptions::default();
    let mut expect = Vec::new();
    while let Some(w) = words.next() {
        match w {
            "strict" => opts.profile = Profile::Strict,
            "lenient" => opts.profile = Profile::Lenient,
            "error" | "warning" | "info" => {
                let code = words
                    .next()
                    .unwrap_or_else(|| panic!("{at}: `{w}` needs a code"));
                assert!(
                    Code::from_str_code(code).is_some(),
                    "{at}: `{code}` is not a diagnostic code"
                );
                let sev = match w {
                    "error" => Severity::Error,
                    "warning" => Severity::Warning,
                    _ => Severity::Info,
                };
                expect.push((sev, code.to_string()));
            }
            _ => {
                if let Some(flag) = w.strip_prefix("disable=") {
                    let f = &mut opts.features;
                    match flag {
                        "lambdas" => f.lambdas = false,
                        "match" => f.match_expr = false,
                        "regex" => f.regex = false,
                        "time" => f.time = false,
                        "else" => f.else_branch = false,
                        _ => match flag.strip_prefix("module:") {
                            Some(m) => f.modules.retain(|x| x != m),
                            None => panic!("{at}: unknown feature `{flag}`"),
                        },
                    }
                } else if let Some(n) = w.strip_prefix("max-block-depth=") {
                    opts.nesting.block_depth = n.parse().expect("a number");
                } else if let Some(n) = w.strip_prefix("max-expr-depth=") {
                    opts.nesting.expr_depth = n.parse().expect("a number");
                } else {
                    panic!("{at}: unknown word `{w}` in the info string `{info}`");
                }
            }
        }
    }
    Some(PolicySpec { opts, expect })
}

/// Compiles a policy block and checks its expectations; returns the policy
/// when it compiled.
fn check_policy(
    file: &str,
    b: &Block,
    spec: &PolicySpec,
) -> Result<Option<std::sync::Arc<omni::CompiledPolicy>>, String> {
    let compiled = compile(&b.body, &spec.opts);
    let found: Vec<String> = compiled
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{} {:?} {}:{} {}",
                d.code.as_str(),
                d.severity,
                d.span.line,
                d.span.column,
                d.message
            )
        })
        .collect();
    let at = format!("{file}:{}", b.line);
    for (sev, code) in &spec.expect {
        let hit = compiled
            .diagnostics
            .iter()
            .any(|d| d.code.as_str() == code && d.severity == *sev);
        if !hit {
            return Err(format!(
                "{at}: expected {sev:?} {code}, got {found:#?}\n--- policy ---\n{}",
                b.body
            ));
        }
    }
    let expects_error = spec.expect.iter().any(|(s, _)| *s == Severity::Error);
    if !expects_error && compiled.has_errors() {
        return Err(format!(
            "{at}: the policy must compile without errors, got {found:#?}\n--- policy ---\n{}",
            b.body
        ));
    }
    Ok(compiled.policy)
}

/// The subset match documented at the top of this file; `Err` names the path.
fn excerpt_matches(want: &Json, got: &Json, path: &str) -> Result<(), String> {
    match (want, got) {
        (Json::Object(w), Json::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => excerpt_matches(wv, gv, &p)?,
                    None => return Err(format!("{p}: missing in the decision")),
                }
            }
            Ok(())
        }
        (Json::Array(w), Json::Array(g)) => {
            if w.len() != g.len() {
                return Err(format!(
                    "{path}: {} elements expected, the decision has {}: {}",
                    w.len(),
                    g.len(),
                    serde_json::to_string(got).unwrap_or_default()
                ));
            }
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                excerpt_matches(wv, gv, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Json::Number(a), Json::Number(b)) if a.as_f64() == b.as_f64() => Ok(()),
        (a, b) if a == b => Ok(()),
        _ => Err(format!(
            "{path}: expected {}, the decision has {}",
            serde_json::to_string(want).unwrap_or_default(),
            serde_json::to_string(got).unwrap_or_default()
        )),
    }
}

/// Runs every checked block of a markdown file; returns how many policy
/// blocks and evaluations were tested, and every failure.
fn run_file(file: &str, text: &str) -> (usize, usize, Vec<String>) {
    let now = omni::timefmt::parse_rfc3339(NOW).expect("valid now");
    let mut failures = Vec::new();
    let (mut policies, mut evals) = (0, 0);
    // The last policy block (its body, whether it compiled) and its context.
    let mut current: Option<(Block, Option<std::sync::Arc<omni::CompiledPolicy>>)> = None;
    let mut context: Option<Block> = None;
    for b in blocks(text) {
        let at = format!("{file}:{}", b.line);
        let mut words = b.info.split_whitespace();
        let first = words.next().unwrap_or("");
        if first == "omni" {
            let spec = parse_policy_info(&b.info, &at).expect("an omni block");
            policies += 1;
            context = None;
            match check_policy(file, &b, &spec) {
                Ok(p) => current = Some((b.clone(), p)),
                Err(e) => {
                    failures.push(e);
                    current = None;
                }
            }
            continue;
        }
        if first.starts_with("omni") {
            failures.push(format!("{at}: unknown block kind `{}`", b.info));
            continue;
        }
        if first != "json" {
            continue;
        }
        let kind = words.next().unwrap_or("");
        let rest: Vec<&str> = words.collect();
        if kind.is_empty() {
            continue; // an illustration, not a test
        }
        let trace = match (kind, rest.as_slice()) {
            ("context" | "eval-error" | "decision-excerpt", []) => false,
            ("decision-excerpt", ["trace"]) => true,
            _ => {
                failures.push(format!("{at}: unknown block kind `{}`", b.info));
                continue;
            }
        };
        if let Err(e) = serde_json::from_str::<Json>(&b.body) {
            failures.push(format!("{at}: the block is not JSON: {e}"));
            continue;
        }
        let Some((policy_block, policy)) = current.clone() else {
            failures.push(format!(
                "{at}: a `json {kind}` block must follow a policy block that compiled"
            ));
            continue;
        };
        if kind == "context" {
            context = Some(b);
            continue;
        }
        let Some(policy) = policy else {
            failures.push(format!(
                "{at}: the policy at line {} does not compile, so it cannot be evaluated",
                policy_block.line
            ));
            continue;
        };
        evals += 1;
        let ctx_text = context.as_ref().map_or("{}", |c| c.body.as_str());
        let want: Json = serde_json::from_str(&b.body).unwrap_or(Json::Null);
        let ctx = Context::from_json(ctx_text.as_bytes(), &ContextLimits::default());
        let opts = EvalOptions {
            trace,
            ..EvalOptions::default()
        };
        let result: Result<Json, String> = match ctx {
            Err(e) => Err(e.code().to_string()),
            Ok(ctx) => match evaluate(&policy, &ctx, now, &opts) {
                Ok(d) => Ok(serde_json::to_value(&d).expect("a decision serializes")),
                Err(e) => Err(e.code().to_string()),
            },
        };
        match (kind, result) {
            ("decision-excerpt", Ok(got)) => {
                if let Err(e) = excerpt_matches(&want, &got, "decision") {
                    failures.push(format!(
                        "{at}: {e}\n--- full decision ---\n{}",
                        serde_json::to_string_pretty(&got).unwrap_or_default()
                    ));
                }
            }
            ("decision-excerpt", Err(code)) => {
                failures.push(format!("{at}: the evaluation failed with {code}"));
            }
            (_, Ok(_)) => failures.push(format!("{at}: the evaluation was expected to fail")),
            (_, Err(code)) => {
                let got = serde_json::json!({ "code": code });
                if let Err(e) = excerpt_matches(&want, &got, "error") {
                    failures.push(format!("{at}: {e}"));
                }
            }
        }
    }
    (policies, evals, failures)
}

fn report(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} documentation example(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn language_guide_examples_hold() {
    let text = read("docs/language.md");
    let (policies, evals, failures) = run_file("docs/language.md", &text);
    report(&failures);
    assert!(
        policies >= 25,
        "docs/language.md has only {policies} tested policy blocks; at least 25 are expected"
    );
    assert!(
        evals >= 15,
        "docs/language.md has only {evals} evaluated examples; at least 15 are expected"
    );
}

#[test]
fn language_guide_lists_every_stdlib_function_and_unit() {
    let text = read("docs/language.md");
    let start = text
        .find("## Standard library")
        .expect("a `## Standard library` section");
    let end = text[start + 1..]
        .find("\n## ")
        .map_or(text.len(), |i| start + 1 + i);
    let section = &text[start..end];
    for f in omni::stdlib::FUNCTIONS {
        assert!(
            section.contains(&format!("`{}(", f.name)),
            "the standard library section does not document `{}`",
            f.name
        );
    }
    for s in omni::units::all_suffixes() {
        assert!(
            text.contains(&format!("`{s}`")),
            "docs/language.md does not list the unit `{s}`"
        );
    }
}

/// `## CODE title` headings of docs/diagnostics.md, with their bodies.
fn diagnostic_sections(text: &str) -> Vec<(String, String, usize, String)> {
    let mut out: Vec<(String, String, usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(h) = line.strip_prefix("## ") {
            let (code, title) = h.split_once(' ').unwrap_or((h, ""));
            out.push((code.to_string(), title.to_string(), i + 1, String::new()));
        } else if let Some(last) = out.last_mut() {
            last.3.push_str(line);
            last.3.push('\n');
        }
    }
    out
}

fn looks_like_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5 && matches!(b[0], b'E' | b'W' | b'I') && b[1..].iter().all(u8::is_ascii_digit)
}

#[test]
fn diagnostics_catalogue_has_one_entry_per_code() {
    let text = read("docs/diagnostics.md");
    let sections = diagnostic_sections(&text);
    let mut problems = Vec::new();
    for (code, title, line, _) in &sections {
        if looks_like_code(code) && Code::from_str_code(code).is_none() {
            problems.push(format!(
                "docs/diagnostics.md:{line}: `{code}` is not a code of Code::ALL"
            ));
        }
        if let Some(c) = Code::from_str_code(code) {
            if title != c.title() {
                problems.push(format!(
                    "docs/diagnostics.md:{line}: the title of {code} must be `{}`, not `{title}`",
                    c.title()
                ));
            }
        }
    }
    for c in Code::ALL {
        let n = sections.iter().filter(|s| s.0 == c.as_str()).count();
        if n != 1 {
            problems.push(format!(
                "docs/diagnostics.md has {n} `## {} {}` headings; exactly one is expected",
                c.as_str(),
                c.title()
            ));
        }
    }
    report(&problems);
}

#[test]
fn diagnostics_examples_produce_their_codes() {
    let text = read("docs/diagnostics.md");
    let (_, _, failures) = run_file("docs/diagnostics.md", &text);
    report(&failures);
    // Every entry shows its code with a checked example.
    let mut missing = Vec::new();
    for (code, _, line, body) in diagnostic_sections(&text) {
        if Code::from_str_code(&code).is_none() {
            continue;
        }
        let tagged = blocks(&body).iter().any(|b| {
            b.info.starts_with("omni") && b.info.split_whitespace().any(|w| w == code.as_str())
        });
        if !tagged {
            missing.push(format!(
                "docs/diagnostics.md:{line}: the {code} entry has no ```omni block tagged {code}"
            ));
        }
    }
    report(&missing);
}

/// String literals that follow `pat` in a source file: `self.cause("missing"`.
fn codes_after(src: &str, pat: &str) -> Vec<String> {
    src.match_indices(pat)
        .filter_map(|(i, _)| {
            let rest = &src[i + pat.len()..];
            let end = rest.find('"')?;
            let code = &rest[..end];
            (!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .then(|| code.to_string())
        })
        .collect()
}

/// Every `.rs` file under these directories, concatenated in name order.
fn read_rs_in(dirs: &[&str]) -> String {
    let mut out = String::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        files.sort();
        for f in files {
            out.push_str(
                &std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("cannot read {f:?}: {e}")),
            );
        }
    }
    out
}

#[test]
fn runtime_and_error_codes_are_documented() {
    let doc = read("docs/diagnostics.md");
    // The evaluator, and the stdlib (which records causes through `cx`).
    let eval = read_rs_in(&["src/eval", "src/stdlib"]);
    let mut codes = codes_after(&eval, "self.cause(\"");
    codes.extend(codes_after(&eval, "cx.cause(\""));
    codes.extend(codes_after(&eval, "self.warn(r, \""));
    // The codes an evaluation or a context can fail with (typed now: one
    // value of each variant).
    use omni::ContextError;
    use omni::{EvalError, ValueKind};
    for e in [
        EvalError::BudgetExceeded(1),
        EvalError::TooManyIterations(1),
        EvalError::ValueTooLarge(ValueKind::List, 1),
    ] {
        codes.push(e.code().as_str().to_string());
    }
    for e in [
        ContextError::InvalidJson(String::new()),
        ContextError::NotAnObject("a list"),
        ContextError::TooLarge(1),
        ContextError::TooDeep(1),
        ContextError::TooManyItems(1),
    ] {
        codes.push(e.code().as_str().to_string());
    }
    codes.push("policy_too_large".into());
    codes.sort();
    codes.dedup();
    for must in [
        "missing",
        "type_mismatch",
        "not_a_list",
        "budget_exceeded",
        "context_too_deep",
    ] {
        assert!(
            codes.iter().any(|c| c == must),
            "the scan of src/eval/ and src/stdlib/ and the typed error codes no longer find `{must}`"
        );
    }
    let undocumented: Vec<&String> = codes
        .iter()
        .filter(|c| !doc.contains(&format!("`{c}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/diagnostics.md does not document the runtime codes {undocumented:?}"
    );
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every `docs/NAME.md#anchor` that a source comment cites names a heading
/// that exists, so the map in the code stays true.
#[test]
fn doc_links_in_source_comments_name_real_headings() {
    let mut sources = Vec::new();
    let mut dirs = vec![
        root().join("src"),
        root().join("worker/src"),
        root().join("supervisor/src"),
    ];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                sources.push(p);
            }
        }
    }
    let mut checked = 0;
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("docs/") {
            let rest = &text[i + 5..];
            let Some(md) = rest.find(".md#") else {
                continue;
            };
            let name = &rest[..md];
            if !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
                continue;
            }
            let frag: String = rest[md + 4..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            let doc = read(&format!("docs/{name}.md"));
            let found = doc
                .lines()
                .filter_map(|l| l.strip_prefix('#'))
                .any(|h| anchor(h.trim_start_matches('#')) == frag);
            assert!(
                found,
                "{}: docs/{name}.md#{frag} names no heading",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} links found");
}
