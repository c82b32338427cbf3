//! The `omni` command line: `omni check`, `omni eval`, `omni fmt` and
//! `omni test`.
//!
//! Exit codes: 0 success; 1 the policy has errors; 2 usage or input errors
//! (unreadable file, context that is not a JSON object, bad `--now`);
//! 3 the evaluation hit a limit.

use crate::diagnostics::{render_human, Severity};
use crate::options::{CheckOptions, EvalOptions, DEFAULT_MAX_POLICY_BYTES};
use crate::value::{Context, ContextLimits};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "omni", version, about = "Check and evaluate Omni policies")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check policies; report every diagnostic.
    Check {
        /// Policy files; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Conformance problems are warnings instead of errors.
        #[arg(long)]
        lenient: bool,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Evaluate a policy against a JSON context and print the decision.
    Eval {
        /// The policy file; `-` reads standard input.
        policy: PathBuf,
        /// The context (a JSON object); `-` reads standard input. Default `{}`.
        #[arg(long)]
        context: Option<PathBuf>,
        /// The evaluation's `now` (RFC 3339). Default: the current time.
        #[arg(long)]
        now: Option<String>,
        #[arg(long)]
        lenient: bool,
        /// Include each condition's values, sub-expression by sub-expression.
        #[arg(long)]
        trace: bool,
    },
    /// Print policies in the canonical layout, check it, or rewrite the files.
    Fmt {
        /// Policy files; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a diff for each file that is not formatted, and exit 1.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Rewrite the files in place.
        #[arg(long)]
        write: bool,
        /// Refuse policies with conformance problems (the default is lenient).
        #[arg(long)]
        strict: bool,
        /// Rewrite legacy forms: `=` to `==`, two-line IF to one line, FOR without braces to braces.
        #[arg(long)]
        upgrade: bool,
    },
    /// Run policy unit tests: `*.omni.test.toml` files under PATHs (default: `.`).
    Test {
        /// Test files, policies (their `.omni.test.toml`) or directories.
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
}

fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

/// Runs the CLI with the given output streams; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match cli.command {
        Command::Check {
            files,
            lenient,
            format,
        } => check(&files, lenient, format, out, err),
        Command::Eval {
            policy,
            context,
            now,
            lenient,
            trace,
        } => eval(
            &policy,
            context.as_deref(),
            now.as_deref(),
            lenient,
            trace,
            out,
            err,
        ),
        Command::Fmt {
            files,
            check,
            write,
            strict,
            upgrade,
        } => {
            let mode = match (check, write) {
                (true, _) => crate::fmt::Mode::Check,
                (_, true) => crate::fmt::Mode::Write,
                _ => crate::fmt::Mode::Print,
            };
            let opts = crate::fmt::FmtOptions {
                profile: if strict {
                    crate::options::Profile::Strict
                } else {
                    crate::options::Profile::Lenient
                },
                upgrade,
            };
            crate::fmt::run_cli(&files, mode, &opts, out, err)
        }
        Command::Test { paths, format } => {
            crate::policy_test::run_cli(&paths, format == Format::Json, out, err)
        }
    }
}

fn options(lenient: bool) -> CheckOptions {
    if lenient {
        CheckOptions::lenient()
    } else {
        CheckOptions::default()
    }
}

fn check(
    files: &[PathBuf],
    lenient: bool,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let opts = options(lenient);
    let mut code = 0;
    let mut reports = Vec::new();
    let color = false;
    for f in files {
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
        if text.len() > DEFAULT_MAX_POLICY_BYTES {
            let _ = writeln!(
                err,
                "error[policy_too_large]: {name} is {} bytes; the limit is {DEFAULT_MAX_POLICY_BYTES}",
                text.len()
            );
            code = 1;
            continue;
        }
        let compiled = crate::compile(&text, &opts);
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
                    "policyId": crate::policy::policy_id(text.as_bytes()),
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

fn eval(
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
            match crate::timefmt::parse_rfc3339(s) {
                Some(t) => t,
                None => {
                    let _ = writeln!(err, "error: --now `{s}` is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)");
                    return 2;
                }
            }
        }
        None => crate::timefmt::now(),
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
                Err(e) => return limit_error(out, e.code().as_str(), e.to_string()),
            }
        }
    };
    let compiled = crate::compile(&text, &options(lenient));
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
    match crate::evaluate(&policy, &ctx, now, &opts) {
        Ok(d) => {
            let _ = write!(out, "{}", d.to_json_pretty());
            0
        }
        Err(e) => limit_error(out, e.code().as_str(), e.to_string()),
    }
}
