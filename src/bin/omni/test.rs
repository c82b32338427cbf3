//! `omni test`: run the policy unit tests (`*.omni.test.toml`) and print
//! the report, for people or as JSON.

use crate::limits::{ContextArgs, EvalArgs, PolicyArgs};
use crate::Format;
use omni::policy_test::{discover, render_human, run_files, RunLimits, SUFFIX};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Test files, policies (their `.omni.test.toml`) or directories.
    paths: Vec<PathBuf>,
    /// How to print the report.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    #[command(flatten)]
    policy_limits: PolicyArgs,
    #[command(flatten)]
    context_limits: ContextArgs,
    // A case's own `fuel` replaces `--fuel`.
    #[command(flatten)]
    eval_limits: EvalArgs,
}

/// `omni test`: exit 0 when every case passes, 1 when one fails, 2 when a
/// path is not there.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let files = match discover(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 2;
        }
    };
    if files.is_empty() {
        let _ = writeln!(err, "note: no `*{SUFFIX}` files found");
    }
    let limits = RunLimits {
        max_policy_bytes: args.policy_limits.max_policy_bytes,
        context: args.context_limits.limits(),
        eval: args.eval_limits.limits(),
    };
    let report = run_files(&files, &limits);
    if args.format == Format::Json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let _ = write!(out, "{}", render_human(&report));
    }
    if report.failed > 0 {
        1
    } else {
        0
    }
}
