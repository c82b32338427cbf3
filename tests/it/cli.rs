//! The `omni` binary: exit codes and outputs of `check` and `eval`.

use std::io::Write;
use std::process::{Command, Stdio};

const OMNI: &str = env!("CARGO_BIN_EXE_omni");

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(OMNI)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("omni runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = "INTENT: t\nACTOR:\n- Primary: a\nCONTEXT:\n- Domain: d\nRULE:\n- IF Battery < 20% THEN ReturnToHome\nCONSTRAINT:\n- Legal: l\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n";

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("omni-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn check_exit_codes() {
    let (code, out, _) = run(&["check", "examples/drone_fleet.omni"], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"));
    let bad = temp_file("bad.omni", &GOOD.replace("< 20%", "<"));
    let (code, out, _) = run(&["check", bad.to_str().expect("path")], None);
    assert_eq!(code, 1);
    assert!(out.contains("E0101") && out.contains("line 7"), "{out}");
    // Warnings only: still 0.
    let warn = temp_file(
        "warn.omni",
        &GOOD.replace("- IF Battery", "- WHILE x > 1 {\n}\n- IF Battery"),
    );
    let (code, out, _) = run(&["check", warn.to_str().expect("path")], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("W0502"));
    // Usage and I/O errors.
    assert_eq!(run(&["check", "/nonexistent/p.omni"], None).0, 2);
    assert_eq!(run(&["check"], None).0, 2);
    assert_eq!(run(&["check", "--format", "yaml", "x.omni"], None).0, 2);
}

#[test]
fn check_reads_stdin_and_prints_json() {
    let (code, out, _) = run(
        &["check", "--format", "json", "-"],
        Some(&GOOD.replace("THEN ReturnToHome", "")),
    );
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let e = &v["files"][0]["errors"][0];
    assert_eq!(e["code"], "E0101");
    assert_eq!(e["line"], 7);
    assert!(e["column"].as_u64().is_some() && e["endLine"].as_u64().is_some());
    assert_eq!(v["files"][0]["ok"], false);
}

#[test]
fn check_lenient_accepts_legacy_forms() {
    let legacy = GOOD.replace(
        "- IF Battery < 20% THEN ReturnToHome",
        "- IF Battery = 15\n- THEN ReturnToHome",
    );
    let p = temp_file("legacy.omni", &legacy);
    assert_eq!(run(&["check", p.to_str().expect("path")], None).0, 1);
    assert_eq!(
        run(&["check", "--lenient", p.to_str().expect("path")], None).0,
        0
    );
}

#[test]
fn eval_exit_codes() {
    let p = temp_file("good.omni", GOOD);
    let ps = p.to_str().expect("path");
    let (code, out, _) = run(
        &[
            "eval",
            ps,
            "--context",
            "-",
            "--now",
            "2026-01-01T00:00:00Z",
        ],
        Some(r#"{"Battery": 15}"#),
    );
    assert_eq!(code, 0);
    let d: serde_json::Value = serde_json::from_str(&out).expect("decision json");
    assert_eq!(d["actions"][0]["name"], "ReturnToHome");
    assert_eq!(d["now"], "2026-01-01T00:00:00Z");
    // The same inputs print the same bytes.
    let again = run(
        &[
            "eval",
            ps,
            "--context",
            "-",
            "--now",
            "2026-01-01T00:00:00Z",
        ],
        Some(r#"{"Battery": 15}"#),
    )
    .1;
    assert_eq!(out, again);
    // A policy with errors: diagnostics on stderr, exit 1.
    let bad = temp_file("bad2.omni", &GOOD.replace("20%", "20xyz"));
    let (code, out, err) = run(&["eval", bad.to_str().expect("path")], None);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("E0104"), "{err}");
    // Bad input: exit 2 with a clear message.
    let (code, _, err) = run(&["eval", ps, "--context", "-"], Some("[1, 2]"));
    assert_eq!(code, 2);
    assert!(err.contains("must be a JSON object"), "{err}");
    let (code, _, err) = run(&["eval", ps, "--context", "-"], Some("{\"a\": "));
    assert_eq!(code, 2);
    assert!(err.contains("not valid JSON"), "{err}");
    assert_eq!(run(&["eval", ps, "--now", "yesterday"], None).0, 2);
    assert_eq!(run(&["eval", "/nonexistent.omni"], None).0, 2);
    // A limit: exit 3 with an error object.
    let bomb = temp_file(
        "bomb.omni",
        &GOOD.replace(
            "- IF Battery < 20% THEN ReturnToHome",
            "- FOR a IN xs {\n    - FOR b IN xs {\n        - IF a == b THEN Same\n    }\n}",
        ),
    );
    let ctx: Vec<u32> = (0..3000).collect();
    let ctx = serde_json::json!({ "xs": ctx }).to_string();
    let (code, out, _) = run(
        &["eval", bomb.to_str().expect("path"), "--context", "-"],
        Some(&ctx),
    );
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).expect("error json");
    assert_eq!(v["error"]["code"], "budget_exceeded");
}

#[test]
fn eval_trace_shows_values() {
    let p = temp_file("trace.omni", GOOD);
    let (code, out, _) = run(
        &[
            "eval",
            p.to_str().expect("path"),
            "--context",
            "-",
            "--trace",
            "--now",
            "2026-01-01T00:00:00Z",
        ],
        Some(r#"{"Battery": 15}"#),
    );
    assert_eq!(code, 0);
    let d: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(d["trace"][0]["condition"]["expr"], "Battery < 20%");
    assert_eq!(d["trace"][0]["condition"]["children"][0]["value"], 15);
}

/// The policy with a FOR over `xs`, for the loop and fuel limits.
fn looping() -> std::path::PathBuf {
    temp_file(
        "loop.omni",
        &GOOD.replace(
            "- IF Battery < 20% THEN ReturnToHome",
            "- FOR x IN xs {\n    - IF x == 7 THEN Seven\n}",
        ),
    )
}

#[test]
fn eval_reads_large_contexts_and_takes_its_limits_as_flags() {
    let p = temp_file("large.omni", GOOD);
    let ps = p.to_str().expect("path");
    // 150,000 elements: over the service's 100 KB and 100,000 items.
    let readings: Vec<u32> = (0..150_000).collect();
    let big = serde_json::json!({ "Battery": 15, "xs": readings }).to_string();
    assert!(big.len() > 100 * 1024);
    let ctx = temp_file("large.json", &big);
    let cs = ctx.to_str().expect("path");
    let (code, out, err) = run(&["eval", ps, "--context", cs], None);
    assert_eq!(code, 0, "{out}{err}");
    let d: serde_json::Value = serde_json::from_str(&out).expect("decision json");
    assert_eq!(d["actions"][0]["name"], "ReturnToHome");
    // Each context limit is a flag; the error names the flag that raises it.
    for (flag, value, code_name) in [
        ("--max-context-bytes", "64KiB", "context_too_large"),
        ("--max-context-items", "1000", "context_too_large"),
        ("--max-context-depth", "1", "context_too_deep"),
    ] {
        let (code, out, err) = run(&["eval", ps, "--context", cs, flag, value], None);
        assert_eq!(code, 3, "{flag}: {out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("error json");
        assert_eq!(v["error"]["code"], code_name, "{flag}");
        assert!(err.contains(flag), "{flag}: {err}");
    }
    // A FOR over the 150,000 elements needs more loop iterations and fuel
    // than the language's defaults; the flags raise them.
    let lp = looping();
    let ls = lp.to_str().expect("path");
    let (code, out, err) = run(&["eval", ls, "--context", cs], None);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("budget_exceeded"), "{out}");
    assert!(err.contains("--max-loop-iterations"), "{err}");
    let (code, out, _) = run(
        &[
            "eval",
            ls,
            "--context",
            cs,
            "--max-loop-iterations",
            "200000",
            "--fuel",
            "100000000",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"Seven\""), "{out}");
    let (code, out, _) = run(&["eval", ps, "--context", cs, "--fuel", "1"], None);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("budget_exceeded"), "{out}");
    // Bad values are usage errors.
    assert_eq!(run(&["eval", ps, "--max-context-bytes", "lots"], None).0, 2);
    assert_eq!(run(&["eval", ps, "--max-context-depth", "500"], None).0, 2);
}

#[test]
fn the_policy_size_limit_is_a_flag() {
    // Over the service's 100 KB, under the command's 10 MiB default.
    let big = GOOD.replace(
        "RULE:\n",
        &format!("RULE:\n{}", "// padding\n".repeat(12_000)),
    );
    assert!(big.len() > 100 * 1024);
    let p = temp_file("big.omni", &big);
    let ps = p.to_str().expect("path");
    let (code, out, _) = run(&["check", ps], None);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(&["eval", ps, "--context", "-"], Some(r#"{"Battery": 15}"#));
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = run(&["check", "--max-policy-bytes", "1KiB", ps], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("policy_too_large") && err.contains("the limit is 1024"),
        "{err}"
    );
    let (code, out, err) = run(&["eval", "--max-policy-bytes", "1024", ps], None);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).expect("error json");
    assert_eq!(v["error"]["code"], "policy_too_large");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("the limit is 1024")),
        "{out}"
    );
    assert!(err.contains("--max-policy-bytes"), "{err}");
}

#[test]
fn every_flag_and_command_has_help() {
    for command in [&[][..], &["check"], &["eval"], &["fmt"], &["test"]] {
        let mut args = command.to_vec();
        // The short help: one line per entry.
        args.push("-h");
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 0, "{args:?}: {err}");
        // Every entry of Commands, Arguments and Options: a name, then text.
        let mut entries = 0;
        for line in out.lines() {
            let t = line.trim_start();
            let entry = line.starts_with("  ")
                && (t.starts_with('-')
                    || t.starts_with('<')
                    || t.starts_with('[')
                    || command.is_empty());
            if !entry {
                continue;
            }
            entries += 1;
            let has_text = t
                .split_once("  ")
                .is_some_and(|(_, text)| !text.trim().is_empty());
            assert!(has_text, "{args:?}: no help for `{t}`:\n{out}");
        }
        assert!(entries >= 2, "{args:?}:\n{out}");
    }
    let (_, out, _) = run(&["eval", "--help"], None);
    for flag in [
        "--lenient",
        "--max-policy-bytes",
        "--max-context-bytes",
        "--max-context-items",
        "--max-context-depth",
        "--fuel",
        "--max-loop-iterations",
    ] {
        assert!(out.contains(flag), "{flag}:\n{out}");
    }
}
