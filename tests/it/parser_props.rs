//! Property tests of the front end: it never panics, never overflows the
//! stack, and every reported span lies inside the input.

use crate::common::shared::shared_dir;
use omni::span::LineIndex;
use omni::{compile, CheckOptions};
use proptest::prelude::*;

fn corpus() -> Vec<String> {
    let mut out = Vec::new();
    let dirs = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/compat/omnilang-v1"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
    ];
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(d) {
            let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths {
                if p.extension().is_some_and(|e| e == "omni") {
                    if let Ok(s) = std::fs::read_to_string(&p) {
                        out.push(s);
                    }
                }
            }
        }
    }
    assert!(out.len() >= 10, "the policy corpus is missing");
    out
}

/// Compiles under both profiles and checks every span.
fn check_spans(src: &str) {
    let index = LineIndex::new(src);
    for opts in [CheckOptions::default(), CheckOptions::lenient()] {
        let c = compile(src, &opts);
        for d in &c.diagnostics {
            let (s, e) = (d.span.start as usize, d.span.end as usize);
            assert!(
                s <= e && e <= src.len(),
                "span {s}..{e} outside 0..{}: {}",
                src.len(),
                d.message
            );
            assert!(
                src.is_char_boundary(s) && src.is_char_boundary(e),
                "span not on a char boundary"
            );
            let (line, col) = index.line_col(src, s);
            assert_eq!(
                (d.span.line, d.span.column),
                (line, col),
                "line/column disagree with the byte offset: {}",
                d.message
            );
            assert!(d.span.line as usize <= index.line_count());
        }
        if let Some(p) = &c.policy {
            omni::ast::walk_rules(&p.rules, &mut |r, _| {
                assert!(r.span.end as usize <= src.len());
            });
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Insert(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..80).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "{",
                "}",
                "(",
                ")",
                "[",
                "]",
                "\"",
                "-",
                "\n",
                "IF ",
                "THEN ",
                "FOR x IN ",
                "WHILE ",
                "|x| ",
                "match ",
                "=>",
                "::",
                "$",
                "20%",
                "2 m",
                "RULE:",
                "\\u{",
                "NOT "
            ])
            .prop_map(str::to_string)
        )
            .prop_map(|(i, s)| Mutation::Insert(i, s)),
    ]
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut b = src.as_bytes().to_vec();
    for m in muts {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, x) => {
                let i = i % b.len();
                b[i] ^= x | 1;
            }
            Mutation::Delete(i, n) => {
                let i = i % b.len();
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Duplicate(i, n) => {
                let i = i % b.len();
                let end = (i + n).min(b.len());
                let chunk: Vec<u8> = b[i..end].to_vec();
                b.splice(i..i, chunk);
            }
            Mutation::Insert(i, s) => {
                let i = i % (b.len() + 1);
                b.splice(i..i, s.bytes());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        check_spans(&s);
    }

    #[test]
    fn arbitrary_rule_like_text_never_panics(body in "[-A-Za-z0-9_ .,:%$\"(){}\\[\\]|=<>!+*/\n]{0,300}") {
        check_spans(&format!("INTENT: x\nACTOR:\n- Primary: a\nCONTEXT:\n- Domain: d\nRULE:\n{body}\n"));
    }

    #[test]
    fn mutated_policies_never_panic(idx in any::<usize>(), muts in prop::collection::vec(mutation(), 1..8)) {
        let corpus = corpus();
        let src = &corpus[idx % corpus.len()];
        check_spans(&apply(src, &muts));
    }
}

fn wrap(rule: &str) -> String {
    format!("INTENT: deep\nACTOR:\n- Primary: a\nCONTEXT:\n- Domain: d\nRULE:\n{rule}\nCONSTRAINT:\n- Legal: l\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n")
}

/// 10,000-deep nesting of every recursive form is a diagnostic, not a crash.
#[test]
fn ten_thousand_deep_nesting_is_a_diagnostic() {
    const N: usize = 10_000;
    let forms = vec![
        wrap(&format!("- IF {}x{} THEN A", "(".repeat(N), ")".repeat(N))),
        wrap(&format!(
            "- IF x IN {}1{} THEN A",
            "[".repeat(N),
            "]".repeat(N)
        )),
        wrap(&format!("- IF {}x THEN A", "NOT ".repeat(N))),
        wrap(&format!("- IF {}x > 0 THEN A", "- ".repeat(N))),
        wrap(&format!(
            "- IF {}x{} THEN A",
            "abs(".repeat(N),
            ")".repeat(N)
        )),
        wrap(&format!(
            "- IF {} 1 THEN A",
            "match x { _ => ".repeat(N) + &"}".repeat(N)
        )),
        wrap(&format!("- IF any(xs, {}true) THEN A", "|x| ".repeat(N))),
        wrap(&format!("{}{}", "- WHILE x {\n".repeat(N), "}\n".repeat(N))),
        wrap(&format!(
            "{}{}",
            "- FOR d IN ds {\n".repeat(N),
            "}\n".repeat(N)
        )),
        wrap(&"{".repeat(N)),
        wrap(&"(".repeat(N)),
    ];
    for (i, src) in forms.iter().enumerate() {
        let c = compile(src, &CheckOptions::default());
        assert!(c.has_errors(), "form {i} should be rejected");
        check_spans(src);
    }
    // The specific code for nesting.
    let c = compile(&forms[0], &CheckOptions::default());
    assert!(c
        .diagnostics
        .iter()
        .any(|d| d.code == omni::Code::NestingTooDeep));
    let c = compile(&forms[7], &CheckOptions::default());
    assert!(c
        .diagnostics
        .iter()
        .any(|d| d.code == omni::Code::NestingTooDeep));
}

/// Nesting just inside the limits parses, checks and evaluates.
#[test]
fn nesting_at_the_limit_evaluates() {
    let expr = format!("{}x{}", "(".repeat(120), ")".repeat(120));
    let src = wrap(&format!("- IF {expr} > 1 THEN A"));
    let c = compile(&src, &CheckOptions::default());
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let blocks = format!(
        "{}- IF x > 1 THEN A\n{}",
        "- WHILE x > 0 {\n".repeat(31),
        "}\n".repeat(31)
    );
    let c = compile(&wrap(&blocks), &CheckOptions::default());
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let policy = c.policy.expect("compiles");
    let ctx =
        omni::Context::from_json(br#"{"x": 2}"#, &omni::ContextLimits::default()).expect("ctx");
    let d = omni::evaluate(
        &policy,
        &ctx,
        omni::Timestamp(0),
        &omni::EvalOptions::default(),
    )
    .expect("evaluates");
    assert_eq!(d.action_strings(), ["A"]);
    let too_deep = format!(
        "{}- IF x > 1 THEN A\n{}",
        "- WHILE x > 0 {\n".repeat(33),
        "}\n".repeat(33)
    );
    assert!(compile(&wrap(&too_deep), &CheckOptions::default()).has_errors());
}

#[test]
fn every_corpus_policy_survives_every_single_byte_deletion_nearby_braces() {
    // Deterministic sweep over structural characters of one real policy.
    let Some(dir) = shared_dir(
        "compat/omnilang-v1",
        "every_corpus_policy_survives_every_single_byte_deletion_nearby_braces",
    ) else {
        return;
    };
    let src =
        std::fs::read_to_string(dir.join("edge_units_nested.omni")).expect("compat corpus present");
    for (i, ch) in src.char_indices() {
        if "{}()[]\"-:\n".contains(ch) {
            let mut s = src.clone();
            s.replace_range(i..i + ch.len_utf8(), "");
            check_spans(&s);
        }
    }
}
