//! `omni eval`: evaluate a policy against a JSON context and print the
//! decision.

use crate::check::options;
use crate::input::{display_name, read_input};
use crate::limits::{flag_for, ContextArgs, EvalArgs, PolicyArgs};
use omni::diagnostics::render_human;
use omni::{Context, ErrorCode, EvalOptions};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy file; `-` reads standard input.
    policy: PathBuf,
    /// The context (a JSON object); `-` reads standard input. Default `{}`.
    #[arg(long)]
    context: Option<PathBuf>,
    /// The evaluation's `now` (RFC 3339). Default: the current time.
    #[arg(long)]
    now: Option<String>,
    /// Check with the lenient profile: conformance problems are warnings.
    #[arg(long)]
    lenient: bool,
    /// Include each condition's values, sub-expression by sub-expression.
    #[arg(long)]
    trace: bool,
    #[command(flatten)]
    policy_limits: PolicyArgs,
    #[command(flatten)]
    context_limits: ContextArgs,
    #[command(flatten)]
    eval_limits: EvalArgs,
}

/// `omni eval`: exit 0 with the decision, 1 when the policy has errors, 2 on
/// input errors, 3 when the evaluation hits a limit (the error as JSON on
/// standard output, and the flag that raises the limit on standard error).
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let policy = &args.policy;
    let max_policy_bytes = args.policy_limits.max_policy_bytes;
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
    if text.len() > max_policy_bytes {
        return limit_error(
            out,
            err,
            ErrorCode::PolicyTooLarge,
            format!(
                "the policy is {} bytes; the limit is {max_policy_bytes}",
                text.len()
            ),
        );
    }
    let now = match &args.now {
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
    let ctx = match &args.context {
        None => Context::empty(),
        Some(p) => {
            let bytes = match read_input(p) {
                Ok(b) => b,
                Err(e) => {
                    let _ = writeln!(err, "error: {e}");
                    return 2;
                }
            };
            match Context::from_json(&bytes, &args.context_limits.limits()) {
                Ok(c) => c,
                Err(e) if e.code() == ErrorCode::InvalidContext => {
                    let _ = writeln!(err, "error: {}: {e}", display_name(p));
                    return 2;
                }
                Err(e) => return limit_error(out, err, e.code(), e.to_string()),
            }
        }
    };
    let compiled = omni::compile(&text, &options(args.lenient));
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
        limits: args.eval_limits.limits(),
        trace: args.trace,
    };
    match omni::evaluate(&policy, &ctx, now, &opts) {
        Ok(d) => {
            let _ = write!(out, "{}", d.to_json_pretty());
            0
        }
        Err(e) => limit_error(out, err, e.code(), e.to_string()),
    }
}

/// A limit was hit: the error as JSON (as the service answers it), exit 3.
fn limit_error(out: &mut dyn Write, err: &mut dyn Write, code: ErrorCode, message: String) -> i32 {
    let doc = serde_json::json!({ "error": { "code": code.as_str(), "message": message } });
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    );
    if let Some(flag) = flag_for(code) {
        let _ = writeln!(err, "note: {flag} raises the limit");
    }
    3
}
