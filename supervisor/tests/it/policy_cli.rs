//! `omni policy …` end to end: the real `omni` binary against a real omnid
//! (auth on, its own SQLite store): push, evaluate by name through the API,
//! diff, activate, rollback, show, history, delete, and the refusals a user
//! meets (a policy with errors, a stale `If-Match`, a wrong token).

use crate::common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace's `omni` binary beside omnid. It belongs to another
/// package, which cargo does not build for this crate's tests, so it is
/// built (or found up to date) here, once, with the same profile.
fn omni_cli() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_omnid"))
            .parent()
            .expect("omnid's directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build", "--quiet", "--locked", "-p", "omni", "--bin", "omni",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p omni --bin omni failed");
        let bin = dir.join("omni");
        assert!(bin.exists(), "no omni binary at {}", bin.display());
        bin
    })
}

/// Runs `omni ARGS` with the server and token in its environment only.
fn omni(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(omni_cli());
    cmd.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("omni runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn policy(rule: &str) -> String {
    format!(
        "INTENT: Bring drones home\nACTOR:\n- Primary: FleetController\nCONTEXT:\n- Domain: Logistics\n\
         RULE:\n{rule}\nCONSTRAINT:\n- Technical: Decide within 1 ms\nIMPACT:\n- Benefit: Fewer lost drones\n\
         TRACE:\n- Evidence: fleet incident review\n"
    )
}

/// Evaluates the stored policy through the API; the fired actions' names
/// and the revision that answered.
fn evaluate(server: &Server, token: &str, name: &str) -> (Vec<String>, u64) {
    let body = json!({"context": {"Battery": 15, "Wind": 20}, "now": "2026-01-01T00:00:00Z"});
    let r = server.request(
        "POST",
        &format!("/api/v1/policies/{name}/evaluate"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {token}")),
        ],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    // `actions`: the fired actions as text, e.g. `["ReturnToHome"]`.
    let actions = v["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (actions, v["policy"]["revision"].as_u64().unwrap_or(0))
}

#[test]
fn push_evaluate_diff_activate_rollback() {
    let dir = TempDir::new("policy-cli");
    let tokens = dir.path("tokens");
    let line = token_line("acme", "acme-token");
    // The token's name (third column) is what the history records.
    std::fs::write(&tokens, format!("{} deployer\n", line.trim_end())).unwrap();
    let cfg = format!(
        "version = 1\nlisten = \"127.0.0.1:0\"\nworkers = 2\nsandbox = \"{}\"\n\
         [worker]\ntimeout_ms = 5000\n[rate_limit]\nenabled = false\n\
         [auth]\nenabled = true\ntokens_file = \"{}\"\n",
        sandbox_setting(),
        tokens.display()
    );
    let cfg_path = dir.path("omnid.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let server = Server::start_in(dir, cfg_path);
    let url = format!("http://{}", server.addr);
    let token_file = server.dir.path("cli-token");
    std::fs::write(&token_file, "acme-token\n").unwrap();
    let tf = token_file.display().to_string();
    let env = [
        ("OMNI_SERVER", url.as_str()),
        ("OMNI_TOKEN_FILE", tf.as_str()),
    ];

    let v1 = server.dir.path("v1.omni");
    std::fs::write(&v1, policy("- IF Battery < 20% THEN ReturnToHome")).unwrap();
    let v2 = server.dir.path("v2.omni");
    std::fs::write(
        &v2,
        policy("- IF Battery < 20% THEN Land\n- IF Wind > 15 THEN Hold"),
    )
    .unwrap();
    let (v1s, v2s) = (v1.display().to_string(), v2.display().to_string());

    // push → revision 1, active, evaluated by name.
    let (code, out, err) = omni(&["policy", "push", "fleet", &v1s], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("fleet: created revision 1 (sha256:")
            && out.ends_with("; active revision: 1\n"),
        "{out}"
    );
    assert_eq!(
        evaluate(&server, "acme-token", "fleet"),
        (vec!["ReturnToHome".to_string()], 1)
    );
    // The same text again creates nothing.
    let (code, out, _) = omni(&["policy", "push", "fleet", &v1s], &env);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("fleet: unchanged, this text is revision 1 "),
        "{out}"
    );

    // push v2 → revision 2 serves at once on this replica.
    let (code, out, err) = omni(&["policy", "push", "fleet", &v2s], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created revision 2"), "{out}");
    assert_eq!(
        evaluate(&server, "acme-token", "fleet"),
        (vec!["Land".to_string(), "Hold".to_string()], 2)
    );

    // diff: the text and the rules.
    let (code, out, err) = omni(&["policy", "diff", "fleet", "1", "latest"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("--- fleet@1\n+++ fleet@2\n"), "{out}");
    assert!(
        out.ends_with(
            "rules: 1 added, 0 removed, 1 changed\n  changed  R1: IF Battery < 20% THEN ReturnToHome\n       to  R1: IF Battery < 20% THEN Land\n  added    R2: IF Wind > 15 THEN Hold\n"
        ),
        "{out}"
    );

    // activate 1 (If-Match from the server's answer), then roll back to 2.
    let (code, out, err) = omni(&["policy", "activate", "fleet", "1"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "fleet: active revision 1 (was 2)\n");
    assert_eq!(
        evaluate(&server, "acme-token", "fleet"),
        (vec!["ReturnToHome".to_string()], 1)
    );
    let (code, out, err) = omni(&["policy", "rollback", "fleet"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "fleet: rolled back to revision 2 (was 1)\n");
    assert_eq!(evaluate(&server, "acme-token", "fleet").1, 2);

    // A stale --if-match: nothing changes, the user is told who won.
    let (code, out, err) = omni(
        &["policy", "activate", "fleet", "1", "--if-match", "1"],
        &env,
    );
    assert_eq!((code, out.as_str()), (5, ""), "{err}");
    assert_eq!(
        err,
        "error: someone else changed fleet (active is now 2); re-run to retry\n"
    );
    assert_eq!(evaluate(&server, "acme-token", "fleet").1, 2);

    // show and history, human and JSON.
    let (code, out, _) = omni(&["policy", "show", "fleet"], &env);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(
            "policy fleet\nactive revision: 2\nserved revision: 2\nlatest revision: 2\n"
        ),
        "{out}"
    );
    assert!(out.contains(" deployer\n"), "{out}");
    let (code, out, _) = omni(&["policy", "show", "fleet", "--format", "json"], &env);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("show json");
    assert_eq!(v["activeRevision"], 2);
    assert_eq!(v["revisions"].as_array().map(Vec::len), Some(2));
    let (code, out, _) = omni(&["policy", "show", "fleet", "--revision", "1"], &env);
    assert_eq!(code, 0);
    assert_eq!(out, std::fs::read_to_string(&v1).unwrap());
    let (code, out, _) = omni(&["policy", "history", "fleet", "--format", "json"], &env);
    assert_eq!(code, 0);
    let h: Value = serde_json::from_str(&out).expect("history json");
    let actions: Vec<&str> = h["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["action"].as_str())
        .collect();
    assert_eq!(actions, ["store", "store", "activate", "rollback"], "{out}");
    assert!(
        !out.contains("acme-token"),
        "the history must not hold the token"
    );
    let (code, out, _) = omni(&["policy", "list"], &env);
    assert_eq!(code, 0);
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("fleet ")),
        "{out}"
    );

    // A policy with errors: the diagnostics as `omni check` draws them.
    let bad = server.dir.path("bad.omni");
    std::fs::write(&bad, policy("- IF Battery < THEN Land")).unwrap();
    let bads = bad.display().to_string();
    let (code, out, err) = omni(&["policy", "push", "fleet", &bads], &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("error[E"), "{out}");
    assert!(out.contains(&format!("{bads}: FAILED (")), "{out}");
    assert_eq!(evaluate(&server, "acme-token", "fleet").1, 2);

    // The wrong token, no token.
    let wrong = [("OMNI_SERVER", url.as_str()), ("OMNI_TOKEN", "not-a-token")];
    let (code, _, err) = omni(&["policy", "list"], &wrong);
    assert_eq!(
        (code, err.as_str()),
        (4, "error: the server refused the token\n")
    );
    let (code, _, err) = omni(&["policy", "list", "--server", &url], &[]);
    assert_eq!(code, 4);
    assert!(err.contains("needs a token"), "{err}");

    // delete: gone for show and evaluate, the history kept for a revive.
    let (code, out, err) = omni(&["policy", "delete", "fleet"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "fleet: deleted (active revision was 2); its revisions and history are kept\n"
    );
    let (code, _, err) = omni(&["policy", "show", "fleet"], &env);
    assert_eq!((code, err.as_str()), (4, "error: policy fleet not found\n"));
    let (code, out, _) = omni(&["policy", "push", "fleet", &v1s], &env);
    assert_eq!(code, 0);
    assert!(out.contains("revision 1"), "{out}");
}
