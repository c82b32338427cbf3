//! Helpers shared by the integration tests of the language.
#![allow(dead_code)]

pub mod shared;

use omni::{
    compile, evaluate, CheckOptions, Context, ContextLimits, Decision, EvalError, EvalOptions,
};

pub const NOW: &str = "2026-01-01T00:00:00Z";

/// A complete policy around the given RULE lines.
pub fn policy(rules: &str) -> String {
    policy_with_context(rules, "- Domain: Test")
}

pub fn policy_with_context(rules: &str, context_items: &str) -> String {
    format!(
        "INTENT: test\nACTOR:\n- Primary: Ops\nCONTEXT:\n{context_items}\nRULE:\n{rules}\nCONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: tests\n"
    )
}

pub fn run_with(src: &str, ctx: &str, opts: &EvalOptions) -> Result<Decision, EvalError> {
    let c = compile(src, &CheckOptions::default());
    let errors: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| (d.code.as_str(), d.message.clone()))
        .collect();
    assert!(errors.is_empty(), "policy has errors: {errors:?}\n{src}");
    let p = c.policy.expect("compiled");
    let ctx = Context::from_json(ctx.as_bytes(), &ContextLimits::default()).expect("context");
    let now = omni::timefmt::parse_rfc3339(NOW).expect("now");
    evaluate(&p, &ctx, now, opts)
}

pub fn run(src: &str, ctx: &str) -> Decision {
    run_with(src, ctx, &EvalOptions::default()).expect("evaluates")
}

/// The fired actions as `Name(args)` strings.
pub fn fired(rules: &str, ctx: &str) -> Vec<String> {
    run(&policy(rules), ctx).action_strings()
}

pub fn outcome(d: &Decision, id: &str) -> String {
    let r = d.rules.iter().find(|r| &*r.id == id).expect("rule id");
    serde_json::to_value(r.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
