//! The `omni` command line: `omni check`, `omni eval`, `omni fmt` and
//! `omni test`. This file declares the arguments and dispatches; each command
//! lives in a file of its own.
//!
//! Exit codes: 0 success; 1 the policy has errors; 2 usage or input errors
//! (unreadable file, context that is not a JSON object, bad `--now`);
//! 3 the evaluation hit a limit.

mod check;
mod diff;
mod eval;
mod fmt;
mod input;
mod test;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

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

fn main() {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = run(cli, &mut stdout.lock(), &mut stderr.lock());
    std::process::exit(code);
}

/// Runs the CLI with the given output streams; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match cli.command {
        Command::Check {
            files,
            lenient,
            format,
        } => check::run(&files, lenient, format, out, err),
        Command::Eval {
            policy,
            context,
            now,
            lenient,
            trace,
        } => eval::run(
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
                (true, _) => fmt::Mode::Check,
                (_, true) => fmt::Mode::Write,
                _ => fmt::Mode::Print,
            };
            let opts = omni::fmt::FmtOptions {
                profile: if strict {
                    omni::Profile::Strict
                } else {
                    omni::Profile::Lenient
                },
                upgrade,
            };
            fmt::run(&files, mode, &opts, out, err)
        }
        Command::Test { paths, format } => test::run(&paths, format == Format::Json, out, err),
    }
}
