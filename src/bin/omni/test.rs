//! `omni test`: run the policy unit tests (`*.omni.test.toml`) and print
//! the report, for people or as JSON.

use omni::policy_test::{discover, render_human, run_files, SUFFIX};
use std::io::Write;
use std::path::PathBuf;

/// `omni test`: exit 0 when every case passes, 1 when one fails, 2 when a
/// path is not there.
pub fn run(paths: &[PathBuf], json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let files = match discover(paths) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 2;
        }
    };
    if files.is_empty() {
        let _ = writeln!(err, "note: no `*{SUFFIX}` files found");
    }
    let report = run_files(&files);
    if json {
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
