//! The one place that decides what a test does when `../shared` (the legacy
//! corpus and the benchmark workload, beside the checkout in CI) is absent,
//! as it is on a fresh clone: skip with a one-line note, or fail when
//! `OMNI_REQUIRE_SHARED=1` (set by `.ci/run`) says the corpus must be there.

use std::io::Write;
use std::path::PathBuf;

/// What a user greps for to count the skips: `cargo test … 2>&1 | grep -c '^skipped (no ../shared)'`.
pub const SKIP_PREFIX: &str = "skipped (no ../shared)";

/// `../shared/<sub>` when it exists. When it does not, `test` names what is
/// skipped: the note goes straight to the process's stderr, past libtest's
/// output capture (which only sees `eprintln!`), so a passing run shows it.
pub fn shared_dir(sub: &str, test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")).join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var("OMNI_REQUIRE_SHARED").as_deref() == Ok("1");
    assert!(
        !required,
        "OMNI_REQUIRE_SHARED=1 but ../shared/{sub} is absent (needed by {test})"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{SKIP_PREFIX}: {test}: ../shared/{sub} is absent; OMNI_REQUIRE_SHARED=1 makes this a failure"
    );
    None
}
