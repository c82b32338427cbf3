//! `omni check`: parse and check policies and report every diagnostic,
//! for people or as JSON.

use crate::input::{display_name, read_input};
use crate::limits::{policy_too_large, PolicyArgs};
use crate::Format;
use omni::diagnostics::{render_human, Severity};
use omni::CheckOptions;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Policy files; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Conformance problems are warnings instead of errors.
    #[arg(long)]
    lenient: bool,
    /// How to print the diagnostics.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    #[command(flatten)]
    policy_limits: PolicyArgs,
}

/// The check options of `--lenient`.
pub fn options(lenient: bool) -> CheckOptions {
    if lenient {
        CheckOptions::lenient()
    } else {
        CheckOptions::default()
    }
}

/// `omni check`: exit 0 when every file checks, 1 when one has errors, 2
/// when one cannot be read.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let format = args.format;
    let max_policy_bytes = args.policy_limits.max_policy_bytes;
    let opts = options(args.lenient);
    let mut code = 0;
    let mut reports = Vec::new();
    let color = false;
    for f in &args.files {
        let name = display_name(f);
        let bytes = match read_input(f) {
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
            let _ = writeln!(
                err,
                "{}",
                policy_too_large(&name, text.len(), max_policy_bytes)
            );
            code = 1;
            continue;
        }
        let compiled = omni::compile(&text, &opts);
        if compiled.has_errors() {
            code = 1;
        }
        match format {
            Format::Human => {
                let rendered = render_human(&name, &text, &compiled.diagnostics, color);
                let _ = write!(out, "{rendered}");
                let errors = compiled
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .count();
                let warnings = compiled
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Warning)
                    .count();
                let status = if errors == 0 { "ok" } else { "FAILED" };
                let _ = writeln!(
                    out,
                    "{name}: {status} ({errors} errors, {warnings} warnings)"
                );
            }
            Format::Json => {
                let (errors, warnings): (Vec<_>, Vec<_>) = compiled
                    .diagnostics
                    .iter()
                    .map(|d| d.to_json(&text, &compiled.line_index))
                    .partition(|d| d.severity == Severity::Error);
                reports.push(serde_json::json!({
                    "file": name,
                    "ok": errors.is_empty(),
                    "policyId": omni::policy::policy_id(text.as_bytes()),
                    "errors": errors,
                    "warnings": warnings,
                }));
            }
        }
    }
    if format == Format::Json {
        let doc = serde_json::json!({ "files": reports });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    code
}
