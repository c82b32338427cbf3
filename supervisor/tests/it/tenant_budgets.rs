//! Tenant isolation in the pool, against the real `omnid` with auth on and
//! two tenants: a tenant whose policies keep killing workers is stopped by
//! quarantine on the policy's canonical form and by its own failure budget,
//! while the other tenant's requests keep succeeding and the pool never
//! goes into its global back-off.

use crate::common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const MALLORY: (&str, &str) = ("Authorization", "Bearer mallory-token-1");
const ALICE: (&str, &str) = ("Authorization", "Bearer alice-token-2");

/// A deadline bomb: the slow policy, changed by `shape` only in layout or
/// comments, killed at a 40 ms deadline.
fn bomb(code: String) -> serde_json::Value {
    let xs: Vec<u32> = (0..150).collect();
    json!({ "code": code, "context": { "Xs": xs }, "options": { "timeoutMs": 40 } })
}

/// The i-th copy of the slow policy that differs only in whitespace or a
/// comment.
fn reformatted(i: usize) -> String {
    match i % 4 {
        0 => format!("{SLOW_POLICY}{}", " ".repeat(i + 1)),
        1 => SLOW_POLICY.replacen("RULE:\n", &format!("RULE:\n# take {i}\n"), 1),
        2 => SLOW_POLICY.replace("a + b + c", &format!("a +{}b + c", " ".repeat(i))),
        _ => format!("// copy {i}\n{}", SLOW_POLICY.replace('\n', "\n\n")),
    }
}

#[test]
fn a_tenant_killing_workers_is_stopped_and_the_other_tenant_is_not_affected() {
    let dir = TempDir::new("isolation");
    let tokens = dir.path("tokens");
    std::fs::write(
        &tokens,
        format!(
            "{}{}",
            token_line("mallory", "mallory-token-1"),
            token_line("alice", "alice-token-2")
        ),
    )
    .unwrap();
    // A low pool-wide restart intensity: before the deaths were charged to
    // tenants, a handful of kills put the whole pool into back-off. The
    // tenant failure budget is the default: 5 deaths in 60 s, then 60 s of
    // `tenant_backoff`.
    let srv = Server::start(&format!(
        "[worker]\ntimeout_ms = 10000\n[limits]\nfuel = 2000000000\n\
         [auth]\nenabled = true\ntokens_file = \"{}\"\n\
         [pool]\nrestart_intensity = 3\nrestart_period_s = 30\nquarantine_threshold = 3\n",
        tokens.display()
    ));
    assert_eq!(srv.validate_with(&good_body(), &[ALICE]).status, 200);

    let done = AtomicBool::new(false);
    let (mallory, alice, readiness) = std::thread::scope(|s| {
        // Alice: trivial requests throughout.
        let alice = s.spawn(|| {
            let mut out = Vec::new();
            while !done.load(Ordering::Acquire) {
                out.push(srv.validate_with(&good_body(), &[ALICE]));
                std::thread::sleep(Duration::from_millis(10));
            }
            out
        });
        // Readiness throughout: never the global back-off.
        let readiness = s.spawn(|| {
            let mut statuses = Vec::new();
            while !done.load(Ordering::Acquire) {
                let r = srv.get("/api/readiness");
                statuses.push(r.json()["status"].as_str().unwrap_or("").to_string());
                std::thread::sleep(Duration::from_millis(20));
            }
            statuses
        });
        // Mallory: the same deadline bomb, reformatted every time...
        let mut codes = Vec::new();
        for i in 0..8 {
            let r = srv.validate_with(&bomb(reformatted(i)), &[MALLORY]);
            if matches!(r.status, 422 | 429) && r.error_code() != "timeout" {
                assert!(r.header("retry-after").is_some(), "{}", r.text());
            }
            codes.push((r.status, r.error_code()));
        }
        // ...then bombs that differ in substance (a new INTENT each time),
        // which only the tenant's failure budget stops.
        for i in 0..6 {
            let r = srv.validate_with(&bomb(slow_policy_variant(&i.to_string())), &[MALLORY]);
            codes.push((r.status, r.error_code()));
        }
        done.store(true, Ordering::Release);
        (codes, alice.join().unwrap(), readiness.join().unwrap())
    });
    eprintln!("mallory: {mallory:?}");

    // The reformatted copies are one policy: quarantined after 3 kills.
    let first_refusal = mallory
        .iter()
        .position(|(_, c)| c == "policy_quarantined" || c == "tenant_backoff");
    assert!(
        first_refusal.is_some_and(|i| i <= 3),
        "mallory was not stopped within 4 requests: {mallory:?}"
    );
    assert!(
        mallory[..8]
            .iter()
            .skip(3)
            .all(|(s, c)| (*s, c.as_str()) == (422, "policy_quarantined")),
        "{mallory:?}"
    );
    // Different policies: at most the rest of the budget (5 deaths in all),
    // then the tenant backs off.
    let (st, code) = mallory.last().unwrap();
    assert_eq!((*st, code.as_str()), (429, "tenant_backoff"), "{mallory:?}");
    assert_eq!(srv.restarts("timeout"), 5, "{mallory:?}");
    // Back-off is for all of mallory's requests, and for mallory only.
    let r = srv.validate_with(&good_body(), &[MALLORY]);
    assert_eq!((r.status, r.error_code().as_str()), (429, "tenant_backoff"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(srv.validate_with(&good_body(), &[ALICE]).status, 200);

    // Alice: every request succeeded.
    assert!(alice.len() >= 5, "alice sent {}", alice.len());
    let failed: Vec<_> = alice
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| (r.status, r.error_code()))
        .collect();
    assert!(
        failed.is_empty(),
        "alice: {failed:?} of {} failed",
        alice.len()
    );
    // The pool never went into its global back-off.
    assert!(
        !readiness.iter().any(|s| s == "crash_loop"),
        "{readiness:?}"
    );
    assert!(!srv.logs().join("\n").contains("crash loop"));
    assert!(srv.wait_ready_where(Duration::from_secs(2), |v| v["status"] == "ready"));
}

/// Without auth, the failure budget and quarantine belong to the client's
/// address; another policy of the same client is still served until the
/// budget is spent.
#[test]
fn quarantine_of_a_reformatted_policy_does_not_refuse_other_policies() {
    let srv = Server::start(
        "[worker]\ntimeout_ms = 10000\n[limits]\nfuel = 2000000000\n\
         [pool]\nquarantine_threshold = 2\n",
    );
    let codes: Vec<String> = (0..4)
        .map(|i| srv.validate(&bomb(reformatted(i))).error_code())
        .collect();
    assert_eq!(
        codes,
        [
            "timeout",
            "timeout",
            "policy_quarantined",
            "policy_quarantined"
        ]
    );
    assert_eq!(srv.validate(&good_body()).status, 200);
    let other =
        srv.validate(&json!({ "code": slow_policy_variant("other"), "context": { "Xs": [1, 2] } }));
    assert_eq!(other.status, 200, "{}", other.text());
}
