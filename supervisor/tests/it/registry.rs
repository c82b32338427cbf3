//! Stored policies through the real omnid (`/api/v1/policies…`): storing
//! after a full check, versions, `If-Match`, activation and rollback, soft
//! delete, the change history, evaluation by name (against `/api/validate`
//! with the text), tenants kept apart on every verb, quotas, and the fleet:
//! two replicas on one PostgreSQL, PostgreSQL stopped under load, and
//! omnid killed during a thousand concurrent stores on SQLite.

use crate::common::policies::*;
use crate::common::postgres::PgCluster;
use crate::common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `f` every 10 ms until it holds or `within` passes; how long it took.
fn until(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn store_get_list_history_activate_rollback_delete_with_if_match() {
    let srv = Server::start("");
    let api = Policies::anonymous(&srv);
    let v1 = policy_text("door v1", 10);
    let v2 = policy_text("door v2", 20);
    let v3 = policy_text("door v3", 30);

    // A new revision: 201, active, its ETag and where its text is.
    let r = api.put("door.main", &v1);
    assert_eq!(r.status, 201, "{}", r.text());
    let b = r.json();
    assert_eq!(
        (
            &b["name"],
            &b["revision"],
            &b["activeRevision"],
            &b["created"]
        ),
        (&json!("door.main"), &json!(1), &json!(1), &json!(true))
    );
    assert_eq!(b["policyId"], sha256_id(&v1));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(
        r.header("location"),
        Some("/api/v1/policies/door.main/revisions/1")
    );
    // The same text again: the existing revision, 200, created: false.
    let r = api.put("door.main", &v1);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (&r.json()["revision"], &r.json()["created"]),
        (&json!(1), &json!(false))
    );
    assert_eq!(api.put("door.main", &v2).json()["revision"], 2);
    // Stored, not activated.
    let r = api.put_with("door.main", &v3, "?activate=false", None);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        (&r.json()["revision"], &r.json()["activeRevision"]),
        (&json!(3), &json!(2))
    );
    // If-Match on a put: stale is 412, nothing stored.
    let r = api.put_with("door.main", &policy_text("door v4", 40), "", Some("\"1\""));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (412, "precondition_failed")
    );

    let r = api.get("door.main");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("\"2\""));
    let d = r.json();
    assert_eq!(d["activeRevision"], 2);
    assert_eq!(
        d["servedRevision"], 2,
        "a write through this replica is served at once"
    );
    assert_eq!(d["latestRevision"], 3);
    let revs = d["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 3);
    for (i, (rev, text)) in revs.iter().zip([&v1, &v2, &v3]).enumerate() {
        assert_eq!(rev["revision"], i as u64 + 1);
        assert_eq!(rev["policyId"], sha256_id(text));
        assert_eq!(rev["bytes"], text.len() as u64);
        assert_eq!(rev["createdBy"], "anonymous");
        assert!(rev["createdAt"].as_str().unwrap().ends_with('Z'));
    }
    let r = srv.request("HEAD", "/api/v1/policies/door.main", &[], None);
    assert_eq!((r.status, r.header("etag")), (200, Some("\"2\"")));
    let l = api.list().json();
    assert_eq!(l["policies"].as_array().unwrap().len(), 1);
    let p = &l["policies"][0];
    assert_eq!(
        (
            &p["name"],
            &p["activeRevision"],
            &p["latestRevision"],
            &p["revisions"]
        ),
        (&json!("door.main"), &json!(2), &json!(3), &json!(3))
    );

    // A revision's text, exactly as stored.
    let r = api.revision("door.main", 1);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), v1);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(r.header("omni-policy-id"), Some(sha256_id(&v1).as_str()));
    let r = api.revision("door.main", 9);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "revision_not_found")
    );

    // Activate: If-Match required (428), must be current (412).
    let r = api.activate("door.main", 3, None);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (428, "precondition_required")
    );
    let r = api.activate("door.main", 3, Some("\"1\""));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (412, "precondition_failed")
    );
    assert_eq!(api.evaluated_revision("door.main"), 2, "nothing changed");
    let r = api.activate("door.main", 7, Some("\"2\""));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "revision_not_found")
    );
    let r = api.activate("door.main", 3, Some("\"2\""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({ "name": "door.main", "activeRevision": 3, "previousRevision": 2 })
    );
    assert_eq!(r.header("etag"), Some("\"3\""));
    assert_eq!(api.evaluated_revision("door.main"), 3);
    assert_eq!(served_metric(&srv, "default", "door.main"), Some(3));

    // Rollback walks back: 3 → 2 → 1, then nothing (409).
    let r = api.rollback("door.main", None);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (428, "precondition_required")
    );
    let r = api.rollback("door.main", Some("\"2\""));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (412, "precondition_failed")
    );
    let r = api.rollback("door.main", Some("\"3\""));
    assert_eq!(
        r.json(),
        json!({ "name": "door.main", "activeRevision": 2, "previousRevision": 3 })
    );
    assert_eq!(api.evaluated_revision("door.main"), 2);
    let r = api.rollback("door.main", Some(&etag(2)));
    assert_eq!(r.json()["activeRevision"], 1);
    let r = api.rollback("door.main", Some(&etag(1)));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "nothing_to_roll_back")
    );
    assert_eq!(api.evaluated_revision("door.main"), 1);

    // Evaluate a revision other than the active one.
    let r = api.evaluate(
        "door.main",
        &json!({ "context": { "Battery": 25 }, "revision": 3 }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["policy"],
        json!({ "name": "door.main", "revision": 3 })
    );
    assert_eq!(r.json()["actions"], json!(["ReturnToHome"]), "25 < 30");
    let r = api.evaluate("door.main", &json!({ "context": { "Battery": 25 } }));
    assert_eq!(r.json()["actions"], json!([]), "revision 1: 25 is not < 10");
    let r = api.evaluate("door.main", &json!({ "context": {}, "revision": 8 }));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "revision_not_found")
    );

    // The history: who, what, from which revision to which.
    let h = api.history("door.main").json();
    let changes = h["changes"].as_array().unwrap();
    let actions: Vec<&str> = changes
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["store", "store", "store", "activate", "rollback", "rollback"]
    );
    let moves: Vec<(Value, Value)> = changes
        .iter()
        .map(|c| (c["fromRevision"].clone(), c["toRevision"].clone()))
        .collect();
    assert_eq!(moves[0], (Value::Null, json!(1)));
    assert_eq!(moves[3], (json!(2), json!(3)));
    assert_eq!(moves[5], (json!(2), json!(1)));
    for c in changes {
        assert_eq!(c["actor"], "anonymous");
        assert_eq!(c["tenant"], "default");
    }
    let seqs: Vec<i64> = changes.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Delete: If-Match required and current; soft (the history stays).
    let r = api.delete("door.main", None);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (428, "precondition_required")
    );
    let r = api.delete("door.main", Some("\"2\""));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (412, "precondition_failed")
    );
    let r = api.delete("door.main", Some("\"1\""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({ "name": "door.main", "deleted": true, "previousRevision": 1 })
    );
    for r in [
        api.get("door.main"),
        api.evaluate("door.main", &json!({ "context": {} })),
        api.revision("door.main", 1),
    ] {
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "policy_not_found")
        );
    }
    assert_eq!(api.list().json()["policies"], json!([]));
    let h = api.history("door.main").json();
    assert_eq!(
        h["changes"].as_array().unwrap().last().unwrap()["action"],
        "delete"
    );
    assert_eq!(
        served_metric(&srv, "default", "door.main"),
        None,
        "its series went"
    );
    // A put revives the name; numbers are never reused.
    let r = api.put("door.main", &policy_text("door v4", 40));
    assert_eq!(
        (r.status, &r.json()["revision"]),
        (201, &json!(4)),
        "{}",
        r.text()
    );
    assert_eq!(api.evaluated_revision("door.main"), 4);

    // Names: 400, in the caller's terms.
    for bad in [".hidden", "a%2Fb", &"x".repeat(129)] {
        let r = api.get(bad);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "invalid_policy_name"),
            "{bad}"
        );
        let r = api.put(bad, &v1);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "invalid_policy_name"),
            "{bad}"
        );
    }
    // Methods: 405 with what the resource takes.
    let r = srv.request("POST", "/api/v1/policies/door.main", &[], Some(b"x"));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, DELETE"));
    // Unknown under the prefix: 404 not_found.
    let r = srv.get("/api/v1/policies/door.main/nope");
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
}

#[test]
fn an_invalid_policy_is_422_with_its_diagnostics_and_nothing_is_stored() {
    let srv = Server::start("[limits]\nmax_code_bytes = 4000\n");
    let api = Policies::anonymous(&srv);
    let r = api.put("broken", "INTENT: x\nRULE:\n- IF THEN\n");
    assert_eq!(r.status, 422, "{}", r.text());
    let b = r.json();
    assert_eq!(b["error"]["code"], "policy_invalid");
    let diags = b["diagnostics"].as_array().unwrap();
    assert!(!diags.is_empty());
    assert!(diags.iter().any(|d| d["severity"] == "error"));
    for d in diags {
        assert!(
            d["code"].is_string() && d["line"].is_u64() && d["message"].is_string(),
            "{d}"
        );
    }
    // The same diagnostics /api/validate gives.
    let v = srv
        .validate(&json!({ "code": "INTENT: x\nRULE:\n- IF THEN\n" }))
        .json();
    assert_eq!(
        v["errors"].as_array().unwrap().len(),
        diags.iter().filter(|d| d["severity"] == "error").count()
    );
    // Nothing stored.
    let r = api.get("broken");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "policy_not_found")
    );
    assert_eq!(api.list().json()["policies"], json!([]));
    let r = api.history("broken");
    assert_eq!(r.status, 404);
    // Too large: 413 before any check; not UTF-8: 400.
    let big = format!("{}\n# {}\n", GOOD_POLICY, "x".repeat(5000));
    let r = api.put("big", &big);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "policy_too_large")
    );
    let r = srv.request(
        "PUT",
        "/api/v1/policies/bytes",
        &[("Content-Type", "application/octet-stream")],
        Some(&[0xff, 0xfe, b'I']),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    assert_eq!(api.list().json()["policies"], json!([]));
    // Warnings come back with a stored policy.
    let r = api.put("ok", GOOD_POLICY);
    assert_eq!(r.status, 201);
    assert!(r.json()["warnings"].is_array());
}

/// Evaluate-by-name answers exactly what `/api/validate` answers with the
/// text (same decision, same rules and actions), plus the policy's name and
/// revision; the check done when storing compiled it, so the first
/// evaluation is a cache hit.
#[test]
fn evaluate_by_name_answers_like_validate_with_the_text() {
    let srv = Server::start("workers = 1\n");
    let api = Policies::anonymous(&srv);
    let text = policy_text("same", 20);
    assert_eq!(api.put("p", &text).status, 201);
    // One worker: the one that checked the text when it was stored.
    let cache = || {
        let c = srv.metrics_json()["cache"].clone();
        (c["hits"].as_u64().unwrap(), c["misses"].as_u64().unwrap())
    };
    let before = cache();
    assert_eq!(api.evaluated_revision("p"), 1);
    assert_eq!(
        cache(),
        (before.0 + 1, before.1),
        "the first evaluation by name used the policy compiled when it was stored"
    );
    let now = "2026-03-01T12:00:00Z";
    for (ctx, trace) in [
        (json!({ "Battery": 15 }), false),
        (json!({ "Battery": 55 }), true),
    ] {
        let options = json!({ "trace": trace });
        let by_name = api.evaluate(
            "p",
            &json!({ "context": ctx, "now": now, "options": options }),
        );
        assert_eq!(by_name.status, 200, "{}", by_name.text());
        let with_text =
            srv.validate(&json!({ "code": text, "context": ctx, "now": now, "options": options }));
        assert_eq!(with_text.status, 200);
        let (a, b) = (by_name.json(), with_text.json());
        for key in [
            "ok", "policyId", "errors", "warnings", "rules", "actions", "decision", "engine",
        ] {
            assert_eq!(a[key], b[key], "{key} differs");
        }
        assert_eq!(a["policy"], json!({ "name": "p", "revision": 1 }));
        assert!(b.get("policy").is_none(), "/api/validate is unchanged");
        // The same fields otherwise.
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.retain(|k| k != "policy");
            k
        };
        assert_eq!(keys(&a), keys(&b));
    }
    // The log line names the stored policy and revision.
    let found = until(Duration::from_secs(2), || {
        srv.logs()
            .iter()
            .any(|l| l.contains("\"policy\":\"p\"") && l.contains("\"revision\":1"))
    });
    assert!(found.is_some(), "no evaluate log line with the policy");
    // The evaluate body is strict like /api/validate's.
    let r = api.evaluate("p", &json!({ "context": {}, "code": "x" }));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    let r = srv.request(
        "POST",
        "/api/v1/policies/p/evaluate",
        &[("Content-Type", "text/plain")],
        Some(b"{}"),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (415, "unsupported_media_type")
    );
    let r = api.evaluate("nope", &json!({ "context": {} }));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "policy_not_found")
    );
}

/// Auth on, two tenants: tenant A gets 404 `policy_not_found` for B's
/// policy on every verb, never sees it listed, and its own policy of the
/// same name is another policy. The history records the token's name.
#[test]
fn a_tenant_never_reads_evaluates_changes_or_lists_another_tenants_policies() {
    let dir = TempDir::new("reg-tenants");
    let tokens = dir.path("tokens");
    let named_b = format!("{} deploy-bot", token_line("beta", "token-b").trim_end());
    std::fs::write(
        &tokens,
        format!("{}{named_b}\n", token_line("acme", "token-a")),
    )
    .unwrap();
    let srv = Server::start(&format!(
        "[auth]\nenabled = true\ntokens_file = \"{}\"\n",
        tokens.display()
    ));
    let a = Policies::with_token(&srv, "token-a");
    let b = Policies::with_token(&srv, "token-b");
    let text = policy_text("beta's", 20);
    assert_eq!(b.put("secret", &text).status, 201);
    assert_eq!(b.put("secret", &policy_text("beta's 2", 30)).status, 201);
    assert_eq!(b.put("other", &policy_text("beta other", 30)).status, 201);
    // No token: 401 on the API too.
    let r = Policies::anonymous(&srv).list();
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));

    let not_found = |what: &str, r: Resp| {
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "policy_not_found"),
            "{what}: {}",
            r.text()
        );
        assert!(!r.text().contains("beta"), "{what} names the other tenant");
    };
    not_found("get", a.get("secret"));
    not_found("history", a.history("secret"));
    not_found("revision text", a.revision("secret", 1));
    not_found(
        "evaluate",
        a.evaluate("secret", &json!({ "context": { "Battery": 1 } })),
    );
    not_found(
        "evaluate a revision",
        a.evaluate("secret", &json!({ "context": {}, "revision": 1 })),
    );
    not_found("activate", a.activate("secret", 1, Some(&etag(2))));
    not_found("rollback", a.rollback("secret", Some(&etag(2))));
    not_found("delete", a.delete("secret", Some(&etag(2))));
    assert_eq!(a.list().json()["policies"], json!([]));
    // B's policy is untouched by all that.
    let d = b.get("secret").json();
    assert_eq!(
        (d["activeRevision"].clone(), d["latestRevision"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(b.list().json()["policies"].as_array().unwrap().len(), 2);
    // A's own `secret` is another policy: revision 1 of A's.
    let r = a.put("secret", &text);
    assert_eq!((r.status, &r.json()["revision"]), (201, &json!(1)));
    assert_eq!(a.evaluated_revision("secret"), 1);
    assert_eq!(b.evaluated_revision("secret"), 2);
    let names: Vec<Value> = a.list().json()["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("secret")]);
    // Who changed it: the token's name, or `token-` and its hash's first 8
    // hex digits when unnamed; never the token.
    let h = b.history("secret").json();
    for c in h["changes"].as_array().unwrap() {
        assert_eq!(
            (c["tenant"].clone(), c["actor"].clone()),
            (json!("beta"), json!("deploy-bot"))
        );
    }
    let h = a.history("secret").text();
    let hash_a = token_line("acme", "token-a");
    let prefix = &hash_a.split_whitespace().nth(1).unwrap()[..8];
    assert!(h.contains(&format!("\"actor\":\"token-{prefix}\"")), "{h}");
    assert!(
        !h.contains("token-a\""),
        "the token itself is never recorded"
    );
    assert_eq!(served_metric(&srv, "beta", "secret"), Some(2));
    assert_eq!(served_metric(&srv, "acme", "secret"), Some(1));
}

#[test]
fn quotas_are_answered_with_their_codes() {
    let srv = Server::start(
        "[store]\nmax_policies_per_tenant = 2\nmax_revisions_per_policy = 2\nmax_bytes_per_tenant = 600\n",
    );
    let api = Policies::anonymous(&srv);
    let t = |tag: &str| policy_text(tag, 20);
    assert_eq!(api.put("a", &t("a1")).status, 201);
    assert_eq!(api.put("a", &t("a2")).status, 201);
    let r = api.put("a", &t("a3"));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "revision_quota_exceeded"),
        "{}",
        r.text()
    );
    // The same text again needs no room.
    assert_eq!(api.put("a", &t("a1")).status, 200);
    assert_eq!(api.put("b", &t("b1")).status, 201);
    let r = api.put("c", &t("c1"));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "policy_quota_exceeded"),
        "{}",
        r.text()
    );
    // Four texts of ~190 bytes would be over 600.
    let r = api.put("b", &t("b2"));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "storage_quota_exceeded"),
        "{}",
        r.text()
    );
    for r in [api.get("c"), api.revision("a", 3)] {
        assert_eq!(r.status, 404, "nothing stored: {}", r.text());
    }
    assert_eq!(api.get("b").json()["latestRevision"], 1);
}

/// SIGKILL of omnid while a thousand stores are in flight (SQLite): after
/// a restart on the same file, every acknowledged revision is there with
/// its exact text.
#[test]
fn sigkill_during_a_thousand_concurrent_stores_loses_nothing_acknowledged() {
    let store_dir = TempDir::new("reg-kill");
    let store = store_dir.path("policies.db");
    let store_env = store.to_str().unwrap().to_string();
    let config = "[http]\nmax_connections = 2048\nmax_connections_per_client = 1100\n\
                  [pool]\nqueue = 2048\ntenant_queue = 1100\n";
    let mut srv = start_with_env(config, &[("OMNID_STORE_PATH", &store_env)]);
    const N: usize = 1000;
    let acked: Arc<Mutex<Vec<(String, u64, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let addr = srv.addr;
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (acked, count, go) = (acked.clone(), count.clone(), go.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let name = format!("p{}", i % 25);
                    let text = policy_text(&format!("store {i}"), (i % 90) as u32 + 1);
                    while !go.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    if let Ok(r) = put_raw(addr, &name, &text) {
                        if r.status == 201 {
                            let n = r.json()["revision"].as_u64().unwrap();
                            acked.lock().unwrap().push((name, n, sha256_id(&text)));
                            count.fetch_add(1, Ordering::AcqRel);
                        } else {
                            assert!(r.status >= 500, "{}: {}", r.status, r.text());
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    go.store(true, Ordering::Release);
    // Killed mid-way: some acknowledged, more in flight.
    let seen = until(Duration::from_secs(120), || {
        count.load(Ordering::Acquire) >= 150
    });
    assert!(seen.is_some(), "stores are not being acknowledged");
    srv.child.kill().unwrap();
    srv.wait_exit(Duration::from_secs(10))
        .expect("omnid exits on SIGKILL");
    for h in handles {
        h.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= 150 && acked.len() < N,
        "{} acknowledged",
        acked.len()
    );
    drop(srv);

    let srv = start_with_env("", &[("OMNID_STORE_PATH", &store_env)]);
    let api = Policies::anonymous(&srv);
    for (name, n, id) in &acked {
        let r = api.revision(name, *n);
        assert_eq!(
            r.status,
            200,
            "{name} revision {n} was acknowledged: {}",
            r.text()
        );
        assert_eq!(&sha256_id(&r.text()), id, "{name} revision {n}");
        assert_eq!(r.header("omni-policy-id"), Some(id.as_str()));
    }
    // And the store is whole: numbers per policy are 1..=latest.
    for p in api.list().json()["policies"].as_array().unwrap() {
        assert_eq!(p["revisions"], p["latestRevision"], "{p}");
    }
}

/// Two omnid sharing one SQLite file follow each other by polling.
#[test]
fn a_replica_on_the_same_sqlite_file_serves_a_change_within_a_second() {
    let store_dir = TempDir::new("reg-sqlite2");
    let store = store_dir.path("policies.db");
    let env = [("OMNID_STORE_PATH", store.to_str().unwrap())];
    let one = start_with_env("", &env);
    let two = start_with_env("", &env);
    let (a, b) = (Policies::anonymous(&one), Policies::anonymous(&two));
    assert_eq!(a.put("p", &policy_text("r1", 10)).status, 201);
    let took = until(Duration::from_secs(5), || {
        b.get("p").json()["servedRevision"] == 1
    });
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "{took:?}");
    assert_eq!(a.put("p", &policy_text("r2", 20)).status, 201);
    let took = until(Duration::from_secs(5), || b.evaluated_revision("p") == 2);
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "{took:?}");
}

/// PostgreSQL for a test: the cluster and a database of the test's own.
fn postgres(db: &str) -> Option<(PgCluster, String)> {
    let pg = PgCluster::start()?;
    let url = pg.create_database(db);
    Some((pg, url))
}

/// Two replicas on one PostgreSQL: an activation or a rollback made on one
/// is evaluated by the other within a second.
#[test]
fn two_replicas_on_one_postgresql_serve_an_activation_or_rollback_within_a_second() {
    let Some((_pg, url)) = postgres("replicas") else {
        return;
    };
    let env = [("OMNID_STORE_URL", url.as_str())];
    let one = start_with_env("", &env);
    let two = start_with_env("", &env);
    let (a, b) = (Policies::anonymous(&one), Policies::anonymous(&two));
    assert_eq!(a.put("door", &policy_text("r1", 10)).status, 201);
    assert_eq!(
        a.put_with("door", &policy_text("r2", 20), "?activate=false", None)
            .status,
        201
    );
    let took = until(Duration::from_secs(5), || {
        b.get("door").json()["servedRevision"] == 1
    });
    assert!(took.is_some(), "replica two never served revision 1");

    let r = a.activate("door", 2, Some(&etag(1)));
    assert_eq!(r.status, 200, "{}", r.text());
    let took = until(Duration::from_secs(5), || b.evaluated_revision("door") == 2);
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "activation served by the other replica after {took:?}"
    );
    assert_eq!(b.get("door").json()["servedRevision"], 2);
    assert_eq!(served_metric(&two, "default", "door"), Some(2));

    // The other way round, and a rollback.
    let r = b.rollback("door", Some(&etag(2)));
    assert_eq!(r.status, 200, "{}", r.text());
    let took = until(Duration::from_secs(5), || a.evaluated_revision("door") == 1);
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "rollback served by the other replica after {took:?}"
    );
    // A stale If-Match from the other replica's view is refused.
    let r = a.activate("door", 2, Some(&etag(2)));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (412, "precondition_failed")
    );
    // A delete reaches the other replica too.
    assert_eq!(a.delete("door", Some(&etag(1))).status, 200);
    let took = until(Duration::from_secs(5), || {
        b.evaluate("door", &json!({ "context": {} })).status == 404
    });
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "{took:?}");
    assert_eq!(served_metric(&two, "default", "door"), None);
}

/// With PostgreSQL stopped: every write and read of the store is 503
/// `store_unavailable`, readiness says why (and stays 200: the replica
/// still evaluates), evaluations of loaded policies go on.
#[test]
fn a_stopped_postgresql_is_503_store_unavailable_and_readiness_says_why() {
    let Some((mut pg, url)) = postgres("outage") else {
        return;
    };
    let srv = start_with_env(
        "[store]\nconnect_timeout_ms = 500\n",
        &[("OMNID_STORE_URL", url.as_str())],
    );
    let api = Policies::anonymous(&srv);
    assert_eq!(api.put("p", &policy_text("p1", 20)).status, 201);
    assert_eq!(api.put("p", &policy_text("p2", 30)).status, 201);
    pg.stop();
    let down = srv.wait_ready_where(Duration::from_secs(10), |v| {
        v["status"] == "degraded" && v["reasons"] == json!(["store_unavailable"])
    });
    assert!(down, "readiness does not say the store is unavailable");
    let r = srv.get("/api/readiness");
    assert_eq!(r.status, 200, "still serving evaluations");
    assert_eq!(r.json()["store"]["available"], false);
    assert!(r.json()["store"]["unavailableSince"].is_string());
    let unavailable = |what: &str, r: Resp| {
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (503, "store_unavailable"),
            "{what}: {}",
            r.text()
        );
        assert!(r.header("retry-after").is_some(), "{what}");
    };
    unavailable("put", api.put("p", &policy_text("p3", 40)));
    unavailable("activate", api.activate("p", 1, Some(&etag(2))));
    unavailable("rollback", api.rollback("p", Some(&etag(2))));
    unavailable("delete", api.delete("p", Some(&etag(2))));
    unavailable("get", api.get("p"));
    unavailable("list", api.list());
    unavailable("history", api.history("p"));
    unavailable("revision", api.revision("p", 1));
    unavailable(
        "evaluate a revision not loaded",
        api.evaluate("p", &json!({ "context": {}, "revision": 1 })),
    );
    // What is loaded is still served, and /api/validate is not affected.
    assert_eq!(api.evaluated_revision("p"), 2);
    assert_eq!(srv.validate(&good_body()).status, 200);
    // The reason (which may name hosts) stays in the log.
    assert!(srv
        .logs()
        .iter()
        .any(|l| l.contains("policy store unavailable")));
    pg.start_again();
    let back = until(Duration::from_secs(20), || {
        api.put("p", &policy_text("p3", 40)).status == 201
    });
    assert!(
        back.is_some(),
        "writes do not succeed after PostgreSQL is back"
    );
    assert!(srv.wait_ready_where(Duration::from_secs(5), |v| v["status"] == "ready"));
    assert_eq!(api.evaluated_revision("p"), 3);
}

/// PostgreSQL stopped under load: evaluations of loaded policies keep
/// succeeding (100 %), writes are 503, readiness says why; after a restart
/// writes succeed and every acknowledged revision is there.
#[test]
fn postgresql_stopped_under_load_keeps_evaluations_and_loses_nothing_acknowledged() {
    let Some((mut pg, url)) = postgres("underload") else {
        return;
    };
    let srv = start_with_env(
        "[store]\nconnect_timeout_ms = 500\n",
        &[("OMNID_STORE_URL", url.as_str())],
    );
    let api = Policies::anonymous(&srv);
    let names = ["a", "b", "c"];
    for n in names {
        assert_eq!(api.put(n, &policy_text(n, 20)).status, 201);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let addr = srv.addr;
    // Evaluations: three threads, round robin over the loaded policies.
    let evals: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut results = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Acquire) {
                    let name = names[i % names.len()];
                    i += 1;
                    let r = evaluate_raw(addr, name, None).expect("evaluate");
                    results.push((r.status, r.text()));
                    std::thread::sleep(Duration::from_millis(2));
                }
                results
            })
        })
        .collect();
    // Writes: new revisions all along; 201 is acknowledged, 503 refused.
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut refused = 0;
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                i += 1;
                let name = ["a", "b", "c"][i % 3];
                let text = policy_text(&format!("{name} write {i}"), 20);
                let r = put_raw(addr, name, &text).expect("put");
                match r.status {
                    201 => acked.push((
                        name.to_string(),
                        r.json()["revision"].as_u64().unwrap(),
                        sha256_id(&text),
                    )),
                    503 => {
                        assert_eq!(r.error_code(), "store_unavailable", "{}", r.text());
                        refused += 1;
                    }
                    s => panic!("a write answered {s}: {}", r.text()),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (acked, refused)
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    pg.stop();
    let down = srv.wait_ready_where(Duration::from_secs(10), |v| {
        v["status"] == "degraded" && v["reasons"] == json!(["store_unavailable"])
    });
    assert!(down, "readiness does not say the store is unavailable");
    let r = api.put("a", &policy_text("during", 20));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "store_unavailable")
    );
    std::thread::sleep(Duration::from_millis(1500));
    pg.start_again();
    let back = until(Duration::from_secs(20), || {
        srv.get("/api/readiness").json()["status"] == "ready"
    });
    assert!(back.is_some(), "the store never came back");
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Release);
    let mut total = 0;
    for h in evals {
        for (status, body) in h.join().unwrap() {
            total += 1;
            assert_eq!(
                status, 200,
                "an evaluation failed during the outage: {body}"
            );
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["actions"], json!(["ReturnToHome"]));
        }
    }
    assert!(total > 50, "only {total} evaluations");
    let (acked, refused) = writer.join().unwrap();
    assert!(refused > 0, "no write was refused during the outage");
    assert!(!acked.is_empty());
    // After the restart: writes succeed, and every acknowledged revision is there.
    let r = api.put("a", &policy_text("after", 20));
    assert_eq!(r.status, 201, "{}", r.text());
    for (name, n, id) in &acked {
        let r = api.revision(name, *n);
        assert_eq!(r.status, 200, "{name} revision {n} was acknowledged");
        assert_eq!(&sha256_id(&r.text()), id);
    }
}
