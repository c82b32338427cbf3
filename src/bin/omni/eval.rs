//! `omni eval`: evaluate a policy against a JSON context and print the
//! decision.

use crate::check::options;
use crate::input::{display_name, read_input};
use omni::diagnostics::render_human;
use omni::{Context, ContextLimits, EvalOptions, DEFAULT_MAX_POLICY_BYTES};
use std::io::Write;
use std::path::Path;

/// `omni eval`: exit 0 with the decision, 1 when the policy has errors, 2 on
/// input errors, 3 when the evaluation hits a limit (the error as JSON).
pub fn run(
    policy: &Path,
    context: Option<&Path>,
    now: Option<&str>,
    lenient: bool,
    trace: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let limit_error = |out: &mut dyn Write, code: &str, message: String| {
        let doc = serde_json::json!({ "error": { "code": code, "message": message } });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
        3
    };
    let name = display_name(policy);
    let bytes = match read_input(policy) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 2;
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        let _ = writeln!(err, "error: {name} is not UTF-8 text");
        return 2;
    };
    if text.len() > DEFAULT_MAX_POLICY_BYTES {
        return limit_error(
            out,
            "policy_too_large",
            format!(
                "the policy is {} bytes; the limit is {DEFAULT_MAX_POLICY_BYTES}",
                text.len()
            ),
        );
    }
    let now = match now {
        Some(s) => {
            match omni::timefmt::parse_rfc3339(s) {
                Some(t) => t,
                None => {
                    let _ = writeln!(err, "error: --now `{s}` is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)");
                    return 2;
                }
            }
        }
        None => omni::timefmt::now(),
    };
    let ctx = match context {
        None => Context::empty(),
        Some(p) => {
            let bytes = match read_input(p) {
                Ok(b) => b,
                Err(e) => {
                    let _ = writeln!(err, "error: {e}");
                    return 2;
                }
            };
            match Context::from_json(&bytes, &ContextLimits::default()) {
                Ok(c) => c,
                Err(e) if e.code() == "invalid_context" => {
                    let _ = writeln!(err, "error: {}: {e}", display_name(p));
                    return 2;
                }
                Err(e) => return limit_error(out, e.code(), e.to_string()),
            }
        }
    };
    let compiled = omni::compile(&text, &options(lenient));
    let Some(policy) = compiled.policy else {
        let _ = write!(
            err,
            "{}",
            render_human(&name, &text, &compiled.diagnostics, false)
        );
        return 1;
    };
    if !compiled.diagnostics.is_empty() {
        let _ = write!(
            err,
            "{}",
            render_human(&name, &text, &compiled.diagnostics, false)
        );
    }
    let opts = EvalOptions {
        trace,
        ..EvalOptions::default()
    };
    match omni::evaluate(&policy, &ctx, now, &opts) {
        Ok(d) => {
            let _ = write!(out, "{}", d.to_json_pretty());
            0
        }
        Err(e) => limit_error(out, e.code(), e.to_string()),
    }
}
