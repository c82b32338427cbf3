//! Load-testing tools for `omnid` (issue 7): a bounded HTTP/1.1 load
//! generator on a `hyper` client ([`loadgen`]), the fixed-JSON `hyper`
//! server that gives the HTTP floor of the machine ([`floor`]), and the
//! request bodies of the scenarios ([`workload`]). The binaries `loadgen`,
//! `floor` and `loadtest` (the driver that writes `bench/results/`) are thin
//! wrappers around these modules.

pub mod floor;
pub mod inprocess;
pub mod loadgen;
pub mod procs;
pub mod server;
pub mod workload;

/// Where the standard workload lives (`../shared/bench/` beside the repository).
pub const SHARED_BENCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/bench");

/// For a test that needs the standard workload: whether it is there. When
/// it is not (a fresh clone), the test skips with the same one-line note as
/// the root crate's tests, unless `OMNI_REQUIRE_SHARED=1` (CI) makes that a
/// failure.
pub fn standard_workload_present(test: &str) -> bool {
    if std::path::Path::new(SHARED_BENCH).is_dir() {
        return true;
    }
    let required = std::env::var("OMNI_REQUIRE_SHARED").as_deref() == Ok("1");
    assert!(
        !required,
        "OMNI_REQUIRE_SHARED=1 but ../shared/bench is absent (needed by {test})"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped (no ../shared): {test}: ../shared/bench is absent; OMNI_REQUIRE_SHARED=1 makes this a failure"
    );
    false
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg`.
pub fn load_average() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|x| x.parse().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}
