//! Issue 15, items 2–6: `+` on quantity and timestamp strings, a leading
//! byte-order mark, dimensions through `+`/`-`, warnings keyed by cause (and
//! unchanged by `omni fmt`), and the messages a beginner meets.

use crate::common::*;
use omni::{compile, CheckOptions, Context, ContextLimits};

fn codes(src: &str) -> Vec<&'static str> {
    compile(src, &CheckOptions::default())
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect()
}

fn messages(src: &str) -> Vec<String> {
    compile(src, &CheckOptions::default())
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{} {} | {}",
                d.code.as_str(),
                d.message,
                d.hint.clone().unwrap_or_default()
            )
        })
        .collect()
}

// ----- item 2: `+` on quantity strings and timestamp strings ---------------

#[test]
fn plus_adds_quantity_strings_of_one_dimension() {
    let rules = "- IF Used + New > Quota THEN OverQuota\n- IF Used + New == 11GB THEN Eleven";
    let d = run(
        &policy(rules),
        r#"{"Used": "6GB", "New": "5GB", "Quota": "100GB"}"#,
    );
    assert_eq!(d.action_strings(), ["Eleven"]);
    assert_eq!(outcome(&d, "R1"), "not_fired");
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    // Different units of one dimension convert; the left unit is kept.
    let d = run(
        &policy("- IF Used + New == 1.5GB THEN Ok(Used + New)"),
        r#"{"Used": "1GB", "New": "500MB"}"#,
    );
    assert_eq!(d.action_strings(), ["Ok(1.5GB)"]);
}

#[test]
fn plus_adds_a_duration_to_a_timestamp_string() {
    let rules = "- IF Deadline + Grace < now() THEN Late ELSE InTime\n- IF Deadline + \"72h\" == time(\"2026-01-03T00:00:00Z\") THEN Exact";
    let d = run(
        &policy(rules),
        r#"{"Deadline": "2025-12-31T00:00:00Z", "Grace": "72h"}"#,
    );
    assert_eq!(d.action_strings(), ["InTime", "Exact"]);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    // The duration first works too.
    let d = run(
        &policy("- IF Grace + Deadline > now() THEN Later"),
        r#"{"Deadline": "2025-12-31T00:00:00Z", "Grace": "72h"}"#,
    );
    assert_eq!(d.action_strings(), ["Later"]);
}

#[test]
fn plus_joins_only_text_that_is_not_a_quantity() {
    let rules = "- IF First + \" \" + Last == \"Ada Lovelace\" THEN Hello\n- IF A + B == \"56\" THEN Digits\n- IF Deadline + \" UTC\" == \"2025-12-31 UTC\" THEN Joined";
    let d = run(
        &policy(rules),
        r#"{"First": "Ada", "Last": "Lovelace", "A": "5", "B": "6", "Deadline": "2025-12-31"}"#,
    );
    assert_eq!(d.action_strings(), ["Hello", "Digits", "Joined"]);
}

#[test]
fn plus_on_a_quantity_string_and_other_text_is_unknown_with_a_warning() {
    for ctx in [
        r#"{"A": "6GB", "B": "hello"}"#,
        r#"{"A": "hello", "B": "6GB"}"#,
        r#"{"A": "6GB", "B": "5s"}"#,
        r#"{"A": "2025-12-31T00:00:00Z", "B": "5GB"}"#,
    ] {
        let d = run(&policy("- IF A + B == \"x\" THEN Joined"), ctx);
        assert!(d.actions.is_empty(), "{ctx}");
        assert_eq!(outcome(&d, "R1"), "unknown", "{ctx}");
        assert_eq!(d.warnings.len(), 1, "{ctx}: {:?}", d.warnings);
        assert!(
            d.warnings[0].message.starts_with("cannot add `A`"),
            "{ctx}: {}",
            d.warnings[0].message
        );
    }
}

// ----- item 3: a leading byte-order mark ------------------------------------

#[test]
fn a_bom_before_the_policy_is_ignored_and_positions_stay_right() {
    let plain = policy("- IF 2m > 5s THEN Stop");
    let with_bom = format!("\u{feff}{plain}");
    assert_eq!(codes(&with_bom), codes(&plain));
    assert_eq!(codes(&with_bom), ["E0301"]);
    let a = compile(&plain, &CheckOptions::default());
    let b = compile(&with_bom, &CheckOptions::default());
    let (da, db) = (&a.diagnostics[0], &b.diagnostics[0]);
    assert_eq!(
        (da.span.line, da.span.column),
        (db.span.line, db.span.column)
    );
    assert_eq!(
        db.span.start,
        da.span.start + 3,
        "byte offsets are into the text"
    );
    // A diagnostic on the first line: the mark is not a column.
    let head = "\u{feff}hello\nINTENT: x\n";
    let c = compile(head, &CheckOptions::lenient());
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "W0405")
        .expect("W0405");
    let j = d.to_json(head, &c.line_index);
    assert_eq!((j.line, j.column, j.end_line, j.end_column), (1, 1, 1, 6));
    // A clean policy with a mark is clean in the strict profile.
    let clean = format!("\u{feff}{}", policy("- IF Speed > 5kmh THEN Stop"));
    let c = compile(&clean, &CheckOptions::default());
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    assert!(c.policy.is_some());
}

#[test]
fn a_bom_before_a_context_is_ignored() {
    let ctx = Context::from_json(b"\xEF\xBB\xBF{\"A\": 1}", &ContextLimits::default())
        .expect("a context with a byte-order mark");
    assert!(ctx.get("A").is_some());
    // Error positions count from after the mark.
    let err = Context::from_json(b"\xEF\xBB\xBF{\"A\": 1", &ContextLimits::default())
        .map(|_| ())
        .expect_err("unterminated");
    assert!(err.to_string().contains("line 1 column 7"), "{err}");
}

// ----- item 4: dimensions through `+` and `-` ------------------------------

#[test]
fn plus_and_minus_carry_the_dimension_of_their_quantity_operand() {
    for rule in [
        "- IF Distance + 2m > 5s THEN X",
        "- IF 2m + Distance > 5s THEN X",
        "- IF Distance - 2m > 5s THEN X",
        "- IF 2m - Distance > 5s THEN X",
        "- IF 5s < Distance + 2m THEN X",
        "- IF Distance + 2m + Other > 5kg THEN X",
        "- IF 2h - Elapsed > 5m THEN X",
    ] {
        assert_eq!(codes(&policy(rule)), ["E0301"], "{rule}");
    }
    // Same dimension, and a duration next to what may be a timestamp, stay clean.
    for rule in [
        "- IF Distance + 2m > 5m THEN X",
        "- IF Deadline + 2h > now() THEN X",
        "- IF Deadline - 2h > now() THEN X",
        "- IF Elapsed + 2h > 5h THEN X",
    ] {
        assert!(codes(&policy(rule)).is_empty(), "{rule}");
    }
}

// ----- item 6: messages -----------------------------------------------------

#[test]
fn a_quantity_string_is_described_as_one() {
    let d = run(
        &policy("- IF zone.temperature > 5m THEN Hot"),
        r#"{"zone": {"temperature": "9.5C"}}"#,
    );
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(
        d.warnings[0].message,
        "cannot compare `zone.temperature` (a quantity string (`\"9.5C\"`, a temperature)) and `5m` (a length)"
    );
    // Plain text is still "a string".
    let d = run(&policy("- IF Name > 5m THEN Hot"), r#"{"Name": "bob"}"#);
    assert!(
        d.warnings[0].message.contains("(a string)"),
        "{}",
        d.warnings[0].message
    );
    let _ = messages; // used by the tests below
}

#[test]
fn a_misspelt_keyword_gets_a_suggestion_for_every_keyword() {
    // Each keyword, misspelt by one swap or one missing letter, where the
    // parser stops on it.
    let cases = [
        ("- IF A > 1 THN X", "THEN"),
        ("- IF A > 1 TEHN X", "THEN"),
        ("- IF A > 1 ADN B < 2 THEN X", "AND"),
        ("- IF A > 1 RO B < 2 THEN X", "OR"),
        ("- IF A > 1 THEN X ESLE Y", "ELSE"),
        ("- IF A > 1 THEN X ELS Y", "ELSE"),
        ("- FI A > 1 THEN X", "IF"),
        ("- FRO x IN A {\n    - IF x > 1 THEN X\n}", "FOR"),
        ("- WHIEL A > 1 {\n    - IF A > 1 THEN X\n}", "WHILE"),
        ("- IF A NI [1] THEN X", "IN"),
        ("- IF A NTO IN [1] THEN X", "NOT"),
        // `true`, `false` and `null` misspelt in a value are names; in a
        // match pattern only a literal may stand.
        ("- IF match A { TURE => 1, _ => 0 } == 1 THEN X", "TRUE"),
        ("- IF match A { FLASE => 1, _ => 0 } == 1 THEN X", "FALSE"),
        ("- IF match A { NUL => 1, _ => 0 } == 1 THEN X", "NULL"),
        ("- IF MACTH A { 1 => true, _ => false } THEN X", "MATCH"),
    ];
    for (rule, kw) in cases {
        let src = policy(rule);
        let c = compile(&src, &CheckOptions::default());
        let want = format!("did you mean {kw}?");
        assert!(
            c.diagnostics
                .iter()
                .any(|d| d.hint.as_deref().is_some_and(|h| h.starts_with(&want))),
            "{rule}: {:?}",
            messages(&src)
        );
    }
    // A word far from every keyword gets no keyword hint.
    let src = policy("- IF A > 1 Banana X");
    assert!(
        !messages(&src).iter().any(|m| m.contains("did you mean")),
        "{:?}",
        messages(&src)
    );
}

#[test]
fn a_non_ascii_name_is_one_error_with_a_hint() {
    let src = policy("- IF Größe > 1 THEN X");
    let m = messages(&src);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("E0109 `Größe` is not a valid name"),
        "{m:?}"
    );
    assert!(
        m[0].contains("ASCII") && m[0].contains(r#"`$["Größe"]`"#),
        "{m:?}"
    );
    // After a dot, the hint is the index form.
    let m = messages(&policy("- IF zone.größe > 1 THEN X"));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains(r#"`["größe"]`"#), "{m:?}");
    // The suggested form works.
    let d = run(
        &policy(r#"- IF $["Größe"] > 1 THEN Big"#),
        r#"{"Größe": 2}"#,
    );
    assert_eq!(d.action_strings(), ["Big"]);
}

#[test]
fn a_misspelt_rule_header_still_reports_the_errors_of_its_rules() {
    let src = "INTENT: x\nACTOR:\n- Primary: A\nCONTEXT:\n- Domain: D\nRULES:\n- IF 2m > 5s THEN X\n- IF A > 1 ADN B THEN Y\nCONSTRAINT: none\nIMPACT: none\nTRACE: none\n";
    let m = messages(src);
    assert_eq!(codes(src), ["E0201", "E0301", "E0101"], "{m:?}");
    assert!(m[0].contains("misspelt `RULE`"), "{m:?}");
    assert!(m[0].contains("did you mean `RULE:`?"), "{m:?}");
    // The lenient profile does not make it run.
    assert!(compile(src, &CheckOptions::lenient()).policy.is_none());
    // Other unknown sections are still skipped whole.
    let src = "INTENT: x\nACTOR:\n- Primary: A\nCONTEXT:\n- Domain: D\nRULE:\n- IF A > 1 THEN X\nNOTES:\n- IF 2m > 5s THEN X\nCONSTRAINT: none\nIMPACT: none\nTRACE: none\n";
    assert_eq!(codes(src), ["E0201"], "{:?}", messages(src));
}

// ----- item 5: warnings keyed by cause; `omni fmt` keeps them ---------------

#[test]
fn one_cause_spelt_two_ways_is_one_warning() {
    let rules =
        "- IF (O.q) > 3 THEN A\n- IF O.q > 3 THEN B\n- IF ((O).q) == \"x\" OR O . q < 1 THEN C";
    let d = run(&policy(rules), r#"{"O": {}}"#);
    let w: Vec<_> = d
        .warnings
        .iter()
        .map(|w| (w.code, &*w.rule, w.message.as_str()))
        .collect();
    assert_eq!(w, [("missing", "R1", "`O.q` is missing")]);
    // Different spellings of one mismatch, in one rule.
    let d = run(
        &policy("- IF a+b > 1 OR (a + b) > 1 THEN A"),
        r#"{"a": "x", "b": 1}"#,
    );
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].message.contains("`a`"), "{:?}", d.warnings);
}

mod fmt_keeps_warnings {
    use omni::fmt::{format_policy, FmtOptions};
    use omni::{
        compile, evaluate, CheckOptions, Code, Context, ContextLimits, EvalOptions, Profile,
    };
    use std::path::{Path, PathBuf};

    const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

    fn files(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .expect("directory")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
            .collect();
        v.sort();
        v
    }

    /// Every warning a policy produces: the checker's (not the conformance
    /// family, whose problems `fmt` repairs by design: order, layout) and
    /// each context's decision warnings. Positions are left out, since `fmt`
    /// moves lines; rule ids are kept.
    fn warnings(src: &str, profile: Profile, contexts: &[Context], upgrade: bool) -> Vec<String> {
        let opts = CheckOptions {
            profile,
            ..CheckOptions::default()
        };
        let c = compile(src, &opts);
        let mut out: Vec<String> = c
            .diagnostics
            .iter()
            .filter(|d| !d.is_error() && !d.code.is_conformance())
            // `--upgrade` rewrites the legacy forms, by design.
            .filter(|d| {
                !(upgrade && matches!(d.code, Code::LegacyBracelessFor | Code::LegacyTwoLineIf))
            })
            .map(|d| format!("check {} {}", d.code.as_str(), d.message))
            .collect();
        out.sort();
        let Some(p) = c.policy else {
            return out;
        };
        let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").expect("now");
        for (i, ctx) in contexts.iter().enumerate() {
            match evaluate(&p, ctx, now, &EvalOptions::default()) {
                Ok(d) => out.extend(
                    d.warnings
                        .iter()
                        .map(|w| format!("ctx{i} {} {} {}", w.rule, w.code, w.message)),
                ),
                Err(e) => out.push(format!("ctx{i} error {}", e.code())),
            }
        }
        out
    }

    fn same_after_fmt(path: &Path, profile: Profile, contexts: &[Context]) {
        let src = std::fs::read_to_string(path).expect("policy");
        for upgrade in [false, true] {
            let before = warnings(&src, profile, contexts, upgrade);
            let formatted = format_policy(&src, &FmtOptions { profile, upgrade })
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let after = warnings(&formatted, profile, contexts, upgrade);
            assert_eq!(
                before,
                after,
                "{} (upgrade: {upgrade}): fmt changed the warnings",
                path.display()
            );
        }
    }

    fn context(path: &Path) -> Context {
        let bytes = std::fs::read(path).expect("context");
        Context::from_json(&bytes, &ContextLimits::default()).expect("context parses")
    }

    #[test]
    fn for_every_example_policy() {
        let policies = files(EXAMPLES, |n| n.ends_with(".omni"));
        assert!(policies.len() >= 10);
        for p in &policies {
            let ctx = p.with_extension("context.json");
            let mut contexts = vec![Context::empty()];
            if ctx.exists() {
                contexts.push(context(&ctx));
            }
            // Lenient: `legacy_forms.omni` is an example of the lenient profile.
            same_after_fmt(p, Profile::Lenient, &contexts);
        }
    }

    #[test]
    fn for_every_compat_policy() {
        let Some(dir) = crate::common::shared::shared_dir(
            "compat/omnilang-v1",
            "language_fixes::fmt_keeps_warnings::for_every_compat_policy",
        ) else {
            return;
        };
        let compat = dir.to_str().expect("a UTF-8 path");
        let policies = files(compat, |n| n.ends_with(".omni"));
        assert!(policies.len() >= 20);
        let mut contexts = vec![Context::empty()];
        for c in files(compat, |n| {
            n.starts_with("context") || n.ends_with("_context.json")
        }) {
            contexts.push(context(&c));
        }
        for p in &policies {
            same_after_fmt(p, Profile::Lenient, &contexts);
        }
    }

    #[test]
    fn for_a_policy_whose_spelling_fmt_changes() {
        let src = "INTENT: x\nACTOR:\n- Primary: A\nCONTEXT:\n- Domain: D\nRULE:\n- IF (O.q) > 3 THEN A\n- IF O.q > 3 THEN B\n- IF xs[ 0 ]+1 > 1.50m and not (flag) THEN C\nCONSTRAINT: none\nIMPACT: none\nTRACE: none\n";
        let dir = std::env::temp_dir().join(format!("omni-fmt-warnings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("p.omni");
        std::fs::write(&path, src).expect("write");
        let ctx = Context::from_json(
            br#"{"O": {}, "xs": ["a"], "flag": false}"#,
            &ContextLimits::default(),
        )
        .expect("ctx");
        same_after_fmt(&path, Profile::Strict, &[Context::empty(), ctx]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_cli_ignores_a_bom_in_the_policy_and_the_context() {
    let dir = std::env::temp_dir().join(format!("omni-bom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let policy_path = dir.join("p.omni");
    let ctx_path = dir.join("c.json");
    let src = format!("\u{feff}{}", policy("- IF Battery < 20% THEN ReturnToHome"));
    std::fs::write(&policy_path, src).expect("write");
    std::fs::write(&ctx_path, b"\xEF\xBB\xBF{\"Battery\": 15}").expect("write");
    let omni = env!("CARGO_BIN_EXE_omni");
    let check = std::process::Command::new(omni)
        .arg("check")
        .arg(&policy_path)
        .output()
        .expect("omni check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let eval = std::process::Command::new(omni)
        .args(["eval", "--now", NOW, "--context"])
        .arg(&ctx_path)
        .arg(&policy_path)
        .output()
        .expect("omni eval");
    let out = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    assert!(out.contains("ReturnToHome"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
