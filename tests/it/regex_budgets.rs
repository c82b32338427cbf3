//! Regex budgets (issue 14, item 3): a policy's patterns cannot make a
//! check slow (pattern count, pattern bytes and compile work are limited),
//! and `matches` is charged by what its search may cost, so fuel bounds the
//! CPU a pattern takes. Asserts on outcomes and fuel, never on wall time
//! (the timings are in `docs/security.md#regex-budgets`).

use crate::common::*;
use omni::{compile, CheckOptions, Code, EvalError, EvalOptions, RegexLimits};

/// A policy of `n` rules `IF matches(Name, "<pattern i>") THEN Land`.
fn pattern_policy(n: usize, pattern: impl Fn(usize) -> String) -> String {
    let rules: String = (0..n)
        .map(|i| format!("- IF matches(Name, \"{}\") THEN Land\n", pattern(i)))
        .collect();
    policy(&rules)
}

/// The E0308 messages of a check.
fn regex_errors(src: &str, opts: &CheckOptions) -> Vec<String> {
    let c = compile(src, opts);
    assert!(c.policy.is_none(), "the policy must be refused");
    c.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .inspect(|d| assert_eq!(d.code, Code::InvalidRegex, "{}", d.message))
        .map(|d| d.message.clone())
        .collect()
}

/// The issue's policy: ~95 KB of ~2,400 copies of `\w{60}x`. It took over
/// 30 s to check (each copy compiled up to the size limit and failed); now
/// the first copy is measured, found over the check budget without being
/// compiled, and nothing after it is compiled.
#[test]
fn many_literal_patterns_are_refused_at_once() {
    let src = pattern_policy(2400, |_| r"\\w{60}x".to_string());
    assert!((90_000..100_000).contains(&src.len()), "{}", src.len());
    let errors = regex_errors(&src, &CheckOptions::default());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("the pattern is too large"), "{errors:?}");
}

/// Cheap patterns, but more of them than a policy may have.
#[test]
fn patterns_are_counted() {
    let src = pattern_policy(300, |i| format!("^a{i}$"));
    let errors = regex_errors(&src, &CheckOptions::default());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("more than 256 regular expressions"),
        "{errors:?}"
    );
    assert!(compile(
        &pattern_policy(256, |i| format!("^a{i}$")),
        &CheckOptions::default()
    )
    .policy
    .is_some());
}

/// The same policy with distinct patterns and the count and byte limits
/// lifted: the compile budget still stops it after a few patterns.
#[test]
fn distinct_patterns_are_refused_by_the_compile_budget() {
    let src = pattern_policy(2300, |i| format!(r"\\w{{60}}x{i}"));
    let opts = CheckOptions {
        regex: RegexLimits {
            max_patterns: usize::MAX,
            max_pattern_bytes: usize::MAX,
            ..RegexLimits::default()
        },
        ..CheckOptions::default()
    };
    let errors = regex_errors(&src, &opts);
    assert!(
        errors.iter().any(|m| m.contains("check budget")),
        "{errors:?}"
    );
    assert!(errors.len() <= 3, "{} errors", errors.len());
}

/// Patterns that each compile, but too many of them to compile in budget.
#[test]
fn costly_patterns_are_refused_by_the_compile_budget() {
    let src = pattern_policy(200, |i| format!(r"^\\w{{5}}-{i}$"));
    let errors = regex_errors(&src, &CheckOptions::default());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("check budget"), "{errors:?}");
    // Within budget: the same kind of pattern, a few times.
    let src = pattern_policy(5, |i| format!(r"^\\w{{5}}-{i}$"));
    assert!(compile(&src, &CheckOptions::default()).policy.is_some());
}

#[test]
fn pattern_bytes_are_limited() {
    let src = pattern_policy(40, |i| format!("{i}{}", "a".repeat(500)));
    let errors = regex_errors(&src, &CheckOptions::default());
    assert!(
        errors.iter().any(|m| m.contains("16384 bytes in total")),
        "{errors:?}"
    );
    let src = pattern_policy(1, |_| "a".repeat(600));
    let errors = regex_errors(&src, &CheckOptions::default());
    assert!(errors[0].contains("longer than 512 bytes"), "{errors:?}");
}

/// ~100 KB of Cyrillic and CJK words as a context.
fn non_ascii_context() -> (String, usize) {
    let words = ["привет", "мир", "漢字", "かな", "данные"];
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 99_000 {
        text.push_str(words[i % words.len()]);
        text.push(' ');
        i += 1;
    }
    let len = text.len();
    (serde_json::json!({ "Text": text }).to_string(), len)
}

/// A Unicode `\b` over non-ASCII text runs on the slow engine (~100–400 ns
/// a byte): it took 0.66–2 s within the default fuel when a call cost
/// `len/32 + 1`. Now a search is charged per byte by the pattern's size, so
/// the same evaluation ends with `budget_exceeded` before the second call.
#[test]
fn unicode_word_boundary_over_non_ascii_is_charged() {
    let (ctx, len) = non_ascii_context();
    let rules: String = (0..50)
        .map(|_| "- IF matches(Text, \"\\\\b\\\\w+q\\\\b\") THEN Flag\n".to_string())
        .collect();
    let src = policy_with_context(&rules, "- Domain: Text");
    match run_with(&src, &ctx, &EvalOptions::default()) {
        Err(EvalError::BudgetExceeded(_)) => {}
        other => panic!("expected budget_exceeded, got {other:?}"),
    }

    // One search of the issue's pattern fits in the default fuel, and is
    // charged 8 fuel a byte (2 for each of its 4 positions).
    let src = policy_with_context(
        "- IF matches(Text, \"\\\\b\\\\w+\\\\b\") THEN Flag\n",
        "- Domain: Text",
    );
    let d = run_with(&src, &ctx, &EvalOptions::default()).expect("one search fits");
    assert!(d.stats.steps >= 8 * len as u64, "{} steps", d.stats.steps);
    // Twice does not.
    let src = policy_with_context(
        "- IF matches(Text, \"\\\\b\\\\w+\\\\b\") THEN Flag\n- IF matches(Text, \"\\\\b\\\\w+\\\\b\") THEN Flag2\n",
        "- Domain: Text",
    );
    assert!(matches!(
        run_with(&src, &ctx, &EvalOptions::default()),
        Err(EvalError::BudgetExceeded(_))
    ));
}

/// A literal pattern runs on a substring search: it keeps the old base
/// charge of `len/32 + 1`.
#[test]
fn literal_patterns_keep_the_base_charge() {
    let (ctx, len) = non_ascii_context();
    let src = policy_with_context("- IF matches(Text, \"zzz\") THEN Flag\n", "- Domain: Text");
    let d = run_with(&src, &ctx, &EvalOptions::default()).expect("evaluates");
    assert!(d.stats.steps < len as u64 / 16, "{} steps", d.stats.steps);
}
