//! `omni test`: policy unit tests.

/// Placeholder.
pub fn run_cli(
    _paths: &[std::path::PathBuf],
    _json: bool,
    _out: &mut dyn std::io::Write,
    _err: &mut dyn std::io::Write,
) -> i32 {
    0
}
