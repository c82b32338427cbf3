//! The `omni` command line: `omni check`, `omni eval`, `omni fmt`,
//! `omni test` and `omni policy …` (policies stored in a running omnid).
//! This file declares the arguments and dispatches; each command lives in a
//! file (or, for `policy`, a folder) of its own.
//!
//! Exit codes: 0 success; 1 the policy has errors; 2 usage or input errors
//! (unreadable file, context that is not a JSON object, bad `--now`);
//! 3 the evaluation hit a limit. `omni policy` adds 4 (the server refused),
//! 5 (someone else changed the policy first) and 6 (omnid unreachable or
//! unavailable); see `policy/mod.rs`.

mod check;
mod diff;
mod eval;
mod fmt;
mod input;
mod limits;
mod policy;
mod test;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;

#[derive(Parser, Debug)]
#[command(name = "omni", version, about = "Check and evaluate Omni policies")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Text for people.
    Human,
    /// One JSON document, for tools.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check policies; report every diagnostic.
    Check(check::Args),
    /// Evaluate a policy against a JSON context and print the decision.
    Eval(eval::Args),
    /// Print policies in the canonical layout, check it, or rewrite the files.
    Fmt(fmt::Args),
    /// Run policy unit tests: `*.omni.test.toml` files under PATHs (default: `.`).
    Test(test::Args),
    /// Manage the policies stored in a running omnid: push, list, show,
    /// activate, rollback, diff, history, delete.
    Policy(policy::Args),
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
        Command::Check(args) => check::run(&args, out, err),
        Command::Eval(args) => eval::run(&args, out, err),
        Command::Fmt(args) => fmt::run(&args, out, err),
        Command::Test(args) => test::run(&args, out, err),
        Command::Policy(args) => policy::run(&args, out, err),
    }
}
