//! `omni fmt`: print policies in the canonical layout, check that they are
//! in it, or rewrite them.

use crate::diff::unified_diff;
use crate::limits::{policy_too_large, PolicyArgs};
use omni::diagnostics::render_human;
use omni::fmt::{format_policy, FmtError, FmtOptions};
use omni::Profile;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
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
    #[command(flatten)]
    policy_limits: PolicyArgs,
}

/// What `omni fmt` does with the formatted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Print it to standard output.
    Print,
    /// Print a diff for each file that is not formatted; exit 1 if any.
    Check,
    /// Rewrite each file that is not formatted.
    Write,
}

/// `omni fmt`: exit 0 when all is well, 1 when a file has errors (or, with
/// `--check`, is not formatted), 2 on I/O errors.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mode = match (args.check, args.write) {
        (true, _) => Mode::Check,
        (_, true) => Mode::Write,
        _ => Mode::Print,
    };
    let opts = &FmtOptions {
        profile: if args.strict {
            Profile::Strict
        } else {
            Profile::Lenient
        },
        upgrade: args.upgrade,
    };
    let files = &args.files;
    let max_policy_bytes = args.policy_limits.max_policy_bytes;
    use std::io::Read;
    let mut code = 0;
    let mut unformatted = 0;
    for path in files {
        let stdin = path.as_os_str() == "-";
        let name = if stdin {
            "<stdin>".to_string()
        } else {
            path.display().to_string()
        };
        if stdin && mode == Mode::Write {
            let _ = writeln!(err, "error: --write needs files, not standard input");
            code = 2;
            continue;
        }
        let bytes = if stdin {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map(|_| buf)
                .map_err(|e| e.to_string())
        } else {
            std::fs::read(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            })
        };
        let text = match bytes.map(String::from_utf8) {
            Ok(Ok(t)) => t,
            Ok(Err(_)) => {
                let _ = writeln!(err, "error: {name} is not UTF-8 text");
                code = 2;
                continue;
            }
            Err(e) => {
                let _ = writeln!(err, "error: cannot read {name}: {e}");
                code = 2;
                continue;
            }
        };
        if text.len() > max_policy_bytes {
            let _ = writeln!(
                err,
                "{}",
                policy_too_large(&name, text.len(), max_policy_bytes)
            );
            code = code.max(1);
            continue;
        }
        let formatted = match format_policy(&text, opts) {
            Ok(f) => f,
            Err(FmtError::Invalid(c)) => {
                let errors: Vec<_> = c.errors().cloned().collect();
                let _ = write!(err, "{}", render_human(&name, &text, &errors, false));
                let _ = writeln!(err, "{name}: not formatted ({} errors)", errors.len());
                code = code.max(1);
                continue;
            }
            Err(e @ FmtError::Changed(_)) => {
                let _ = writeln!(err, "{name}: {e}");
                code = code.max(1);
                continue;
            }
        };
        match mode {
            Mode::Print => {
                let _ = write!(out, "{formatted}");
            }
            Mode::Check => {
                if formatted != text {
                    unformatted += 1;
                    let _ = write!(
                        out,
                        "{}",
                        unified_diff(&text, &formatted, &name, &format!("{name} (formatted)"))
                    );
                }
            }
            Mode::Write => {
                if formatted != text {
                    if let Err(e) = std::fs::write(path, &formatted) {
                        let _ = writeln!(err, "error: cannot write {name}: {e}");
                        code = 2;
                        continue;
                    }
                    let _ = writeln!(out, "formatted {name}");
                }
            }
        }
    }
    if mode == Mode::Check && unformatted > 0 {
        let _ = writeln!(
            err,
            "{unformatted} of {} file(s) are not formatted; run `omni fmt --write` on them",
            files.len()
        );
        code = code.max(1);
    }
    code
}
