//! `omni test`: the examples' unit tests pass, a wrong expectation fails
//! with a message that names the case and both action lists, the JSON report
//! parses, and coverage lists the rules no case fired.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn omni(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the omni binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("policy_test_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

const POLICY: &str = "INTENT: Keep the store cold
ACTOR:
- Primary: Facilities
CONTEXT:
- Domain: Retail
RULE:
- IF Temperature > 8C THEN StartCooling
- IF Door == \"open\" THEN CloseDoor
CONSTRAINT:
- Technical: none
IMPACT:
- Benefit: fresh food
TRACE:
- Evidence: tests
";

#[test]
fn the_examples_tests_pass() {
    let o = omni(&["test", "examples/"], root());
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "omni test examples/ failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = out
        .lines()
        .find_map(|l| l.strip_suffix(" passed, 0 failed"))
        .unwrap_or_else(|| panic!("no summary line:\n{out}"));
    let passed: usize = summary.parse().expect("a count");
    assert!(
        passed >= 18 * 3,
        "only {passed} cases for 18 examples:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == format!("{passed} passed, 0 failed")),
        "no plain `N passed, 0 failed` line:\n{out}"
    );
    // Every example has its test file.
    for entry in std::fs::read_dir(root().join("examples")).expect("examples/") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "omni") {
            let t = PathBuf::from(format!("{}.test.toml", p.display()));
            assert!(t.is_file(), "{} has no {}", p.display(), t.display());
            let stem = p.file_stem().and_then(|s| s.to_str()).expect("name");
            assert!(
                out.contains(&format!("test {stem}::golden ... ok")),
                "{stem} has no passing golden case:\n{out}"
            );
        }
    }
}

#[test]
fn a_wrong_expectation_fails_and_names_the_case_and_the_actions() {
    let dir = scratch("broken");
    std::fs::write(dir.join("store.omni"), POLICY).expect("write");
    std::fs::write(
        dir.join("store.omni.test.toml"),
        r#"
[[cases]]
name = "warm_store"
context = { Temperature = "10C", Door = "closed" }
fires = ["StartCooling"]

[[cases]]
name = "expects_the_wrong_action"
context = { Temperature = "10C", Door = "closed" }
fires = ["CloseDoor"]
"#,
    )
    .expect("write");
    let o = omni(&["test"], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("test store::warm_store ... ok"), "{out}");
    assert!(
        out.contains("test store::expects_the_wrong_action ... FAILED"),
        "{out}"
    );
    let message = out
        .split("---- store::expects_the_wrong_action")
        .nth(1)
        .unwrap_or_else(|| panic!("no failure section for the case:\n{out}"));
    assert!(
        message.contains("expected `CloseDoor` to fire"),
        "the message names the expected action:\n{out}"
    );
    assert!(
        message.contains("the actions were: StartCooling"),
        "the message names the actual actions:\n{out}"
    );
    // One summary, the plain line, and only once.
    assert!(!out.contains("test result:"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("passed"))
            .collect::<Vec<_>>(),
        ["1 passed, 1 failed"],
        "{out}"
    );
    assert!(out.ends_with("\n1 passed, 1 failed\n"), "{out}");
}

#[test]
fn json_output_parses() {
    let o = omni(
        &[
            "test",
            "examples/drone_fleet.omni.test.toml",
            "--format",
            "json",
        ],
        root(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let cases = v["cases"].as_array().expect("cases");
    assert!(cases.len() >= 3);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["passed"].as_u64(), Some(cases.len() as u64));
    let golden = cases
        .iter()
        .find(|c| c["name"] == "drone_fleet::golden")
        .expect("the golden case");
    assert_eq!(golden["ok"], true);
    assert!(golden["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .any(|a| a == "ReturnToHome(lead aircraft)"));
    assert_eq!(v["coverage"][0]["policy"], "examples/drone_fleet.omni");
}

#[test]
fn coverage_lists_the_rules_no_case_fired() {
    let dir = scratch("coverage");
    std::fs::write(dir.join("store.omni"), POLICY).expect("write");
    std::fs::write(
        dir.join("store.omni.test.toml"),
        r#"
[[cases]]
name = "warm"
context = { Temperature = "10C" }
fires = ["StartCooling"]
not_fires = ["CloseDoor"]
"#,
    )
    .expect("write");
    let o = omni(&["test", "."], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("1 of 2 rules fired; never fired: R2 (line 8)"),
        "{out}"
    );
    let o = omni(&["test", "--format", "json"], &dir);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let unfired = &v["coverage"][0]["unfired"];
    assert_eq!(unfired[0]["id"], "R2");
    assert_eq!(unfired[0]["line"], 8);
    assert_eq!(unfired.as_array().map(Vec::len), Some(1));
}

#[test]
fn outcomes_errors_and_typos_are_checked() {
    let dir = scratch("outcomes");
    std::fs::write(dir.join("store.omni"), POLICY).expect("write");
    std::fs::write(
        dir.join("store.omni.test.toml"),
        r#"
[[cases]]
name = "outcome_by_line_and_id"
context = { Temperature = 5 }
outcomes = { "7" = "not_fired", R2 = "unknown" }
warnings = ["missing"]

[[cases]]
name = "budget"
context = { Temperature = 5 }
fuel = 3
error = "budget_exceeded"

[[cases]]
name = "typo_in_a_key"
context = { Temperature = 5 }
fire = ["StartCooling"]
"#,
    )
    .expect("write");
    let o = omni(&["test", "store.omni"], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    // A typo fails its case, naming the key and the valid ones; no case runs
    // with a key ignored, and the other cases of the file still run.
    assert!(out.contains("unknown field `fire`"), "{out}");
    assert!(
        out.contains("test store::typo_in_a_key ... FAILED"),
        "{out}"
    );
    let message = out
        .split("---- store::typo_in_a_key")
        .nth(1)
        .unwrap_or_else(|| panic!("no failure section for the case:\n{out}"));
    assert!(message.contains("unknown field `fire`"), "{out}");
    assert!(message.contains("`fires`"), "the valid keys:\n{out}");
    assert!(message.contains("`not_fires`"), "the valid keys:\n{out}");
    assert!(
        out.contains("test store::outcome_by_line_and_id ... ok"),
        "{out}"
    );
    assert!(out.contains("test store::budget ... ok"), "{out}");
    assert!(out.contains("\n2 passed, 1 failed\n"), "{out}");
    let fixed = std::fs::read_to_string(dir.join("store.omni.test.toml"))
        .expect("read")
        .replace("fire = [", "fires = [");
    std::fs::write(dir.join("store.omni.test.toml"), fixed).expect("write");
    let o = omni(&["test", "store.omni"], &dir);
    let out = stdout(&o);
    assert!(
        out.contains("test store::outcome_by_line_and_id ... ok"),
        "{out}"
    );
    assert!(out.contains("test store::budget ... ok"), "{out}");
    assert!(
        out.contains("test store::typo_in_a_key ... FAILED"),
        "{out}"
    );
    assert!(
        out.contains("expected `StartCooling` to fire, but it did not; the actions were: (none)"),
        "{out}"
    );
}

#[test]
fn a_missing_path_is_a_usage_error() {
    let o = omni(&["test", "no/such/dir"], root());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such file or directory"));
}

#[test]
fn a_case_without_a_name_that_has_an_unknown_key_is_named_by_its_position() {
    let dir = scratch("unnamed_typo");
    std::fs::write(dir.join("store.omni"), POLICY).expect("write");
    std::fs::write(
        dir.join("store.omni.test.toml"),
        r#"
[[cases]]
name = "warm"
context = { Temperature = "10C" }
fires = ["StartCooling"]

[[cases]]
context = { Temperature = "10C" }
fires = ["StartCooling"]
fuell = 10
"#,
    )
    .expect("write");
    let o = omni(&["test"], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("test store::warm ... ok"), "{out}");
    assert!(out.contains("test store::#2 ... FAILED"), "{out}");
    assert!(out.contains("unknown field `fuell`"), "{out}");
}

#[test]
fn limits_are_flags() {
    let dir = scratch("limits");
    std::fs::write(dir.join("store.omni"), POLICY).expect("write");
    // A context over the language's 100 KB default runs with the command's.
    let readings: Vec<String> = (0..150_000).map(|i| i.to_string()).collect();
    std::fs::write(
        dir.join("big.json"),
        format!(
            "{{\"Temperature\": 10, \"Readings\": [{}]}}",
            readings.join(",")
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("store.omni.test.toml"),
        r#"
[[cases]]
name = "big_context"
context_file = "big.json"
fires = ["StartCooling"]
"#,
    )
    .expect("write");
    let o = omni(&["test"], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let o = omni(&["test", "--max-context-bytes", "64KiB"], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("context_too_large"), "{out}");
    let o = omni(&["test", "--fuel", "2"], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("budget_exceeded"), "{out}");
    let o = omni(&["test", "--max-policy-bytes", "100"], &dir);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("the limit is 100"), "{out}");
}
