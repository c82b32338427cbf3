//! Guard rails of `docs/api.md#limits-tenants-auth` against the real server: rate limits (429 +
//! Retry-After), the bounded queue and the in-flight cap (503 overloaded),
//! bearer-token auth mapped to tenants (401/403) and per-tenant limits.

use crate::common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const SLOW_CONFIG: &str = "[worker]\ntimeout_ms = 10000\n[limits]\nfuel = 2000000000\n";

#[test]
fn over_the_rate_gets_429_with_retry_after() {
    let srv = Server::start("[rate_limit]\nenabled = true\nrate = 1\nburst = 3\n");
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let r = srv.validate(&good_body());
        statuses.push(r.status);
        if r.status == 429 {
            limited = Some(r);
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let r = limited.unwrap();
    assert_eq!(r.error_code(), "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let unit = if retry == 1 { "second" } else { "seconds" };
    assert_eq!(
        r.json()["error"]["message"],
        format!("too many requests; retry after {retry} {unit}")
    );
    // Probes and metrics are not rate limited.
    for _ in 0..5 {
        assert_eq!(srv.get("/api/health").status, 200);
    }
    assert!(srv.metrics_json()["rateLimited"].as_u64().unwrap() >= 1);
    // After Retry-After the caller gets in again.
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(srv.validate(&good_body()).status, 200);
}

/// Sends `n` requests as fast as it can from one address, over 4 keep-alive
/// connections, and returns their statuses.
fn flood(addr: std::net::SocketAddr, n: usize, headers: &[(&str, &str)]) -> Vec<u16> {
    let body = serde_json::to_vec(&good_body()).unwrap();
    let mut headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    headers.push(("Content-Type".into(), "application/json".into()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let body = body.clone();
            let headers = headers.clone();
            std::thread::spawn(move || {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let mut c = Conn::open(addr);
                (0..n / 4)
                    .map(|_| {
                        c.request("POST", "/api/validate", &h, Some(&body))
                            .unwrap()
                            .status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// The built-in defaults let one client through: a person's benchmark, or
/// one application server (a tenant, when auth is on), is not throttled.
#[test]
fn one_client_sending_1000_requests_at_once_gets_no_429_under_the_defaults() {
    // Nothing but the address and the sandbox setting: every other value,
    // rate_limit included, is the built-in default.
    let srv = Server::start_full(&format!(
        "version = 1\nlisten = \"127.0.0.1:0\"\nsandbox = \"{}\"\n",
        sandbox_setting()
    ));
    let statuses = flood(srv.addr, 1000, &[]);
    assert_eq!(statuses.len(), 1000);
    assert!(!statuses.contains(&429), "anonymous client throttled");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(srv.metrics_json()["rateLimited"], 0);

    // The same with auth on: the bucket is the tenant's, with the same default.
    let dir = TempDir::new("auth-defaults");
    let tokens = dir.path("tokens");
    std::fs::write(&tokens, token_line("app", "app-token")).unwrap();
    let path = dir.path("omnid.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\nlisten = \"127.0.0.1:0\"\nsandbox = \"{}\"\n[auth]\nenabled = true\ntokens_file = \"{}\"\n",
            sandbox_setting(),
            tokens.display()
        ),
    )
    .unwrap();
    let srv = Server::start_in(dir, path);
    let statuses = flood(srv.addr, 1000, &[("Authorization", "Bearer app-token")]);
    assert!(!statuses.contains(&429), "tenant throttled");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[test]
fn rate_limit_is_per_client_behind_a_trusted_proxy() {
    let srv = Server::start(
        "[rate_limit]\nenabled = true\nrate = 0.5\nburst = 1\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let a = [("X-Forwarded-For", "203.0.113.1")];
    let b = [("X-Forwarded-For", "203.0.113.2")];
    assert_eq!(srv.validate_with(&good_body(), &a).status, 200);
    assert_eq!(srv.validate_with(&good_body(), &a).status, 429);
    assert_eq!(srv.validate_with(&good_body(), &b).status, 200);
}

#[test]
fn full_queue_gets_503_overloaded_at_once() {
    let srv = Server::start(&format!("workers = 1\n{SLOW_CONFIG}[pool]\nqueue = 1\n"));
    let addr = srv.addr;
    let slow = |n: usize| validate_in_thread(addr, &slow_body(n));
    // One running, one queued.
    let first = slow(120);
    assert!(srv.wait_ready_where(Duration::from_secs(5), |v| v["workers"]["busy"] == 1));
    let second = slow(20);
    assert!(srv.wait_ready_where(Duration::from_secs(5), |v| v["queueDepth"] == 1));
    let t = Instant::now();
    let r = srv.validate(&good_body());
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "not refused at once"
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "overloaded");
    assert!(r.header("retry-after").is_some());
    let r1 = first.join().unwrap();
    let r2 = second.join().unwrap();
    assert_eq!(r1.status, 200, "{}", r1.text());
    assert_eq!(r2.status, 200, "{}", r2.text());
    // And it recovers.
    assert_eq!(srv.validate(&good_body()).status, 200);
    assert!(
        srv.metrics_json()["rejected"]["overloaded"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn inflight_cap_gets_503_overloaded() {
    let srv = Server::start(&format!(
        "workers = 2\n{SLOW_CONFIG}[pool]\nmax_inflight = 1\n"
    ));
    let addr = srv.addr;
    let first = validate_in_thread(addr, &slow_body(100));
    assert!(srv.wait_ready_where(Duration::from_secs(5), |v| v["inflight"] == 1));
    let r = srv.validate(&good_body());
    assert_eq!((r.status, r.error_code().as_str()), (503, "overloaded"));
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(srv.validate(&good_body()).status, 200);
}

#[test]
fn auth_maps_tokens_to_tenants_with_their_own_limits() {
    let dir = TempDir::new("auth");
    let tokens = dir.path("tokens");
    let file = format!(
        "# tenant sha256(token)\n{}{}{}",
        token_line("acme", "acme-token-1"),
        token_line("small", "small-token-2"),
        token_line("banned", "banned-token-3"),
    );
    assert!(!file.contains("acme-token-1"), "the file holds hashes only");
    std::fs::write(&tokens, file).unwrap();
    let cfg = format!(
        "version = 1\nlisten = \"127.0.0.1:0\"\nworkers = 2\nsandbox = \"{}\"\n\
         [worker]\ntimeout_ms = 5000\n\
         [rate_limit]\nenabled = true\nrate = 100\nburst = 100\n\
         [auth]\nenabled = true\ntokens_file = \"{}\"\n\
         [tenants.small]\nmax_code_bytes = 100\nrate = 0.5\nburst = 2\n\
         [tenants.banned]\nenabled = false\n",
        sandbox_setting(),
        tokens.display()
    );
    let path = dir.path("omnid.toml");
    std::fs::write(&path, cfg).unwrap();
    let srv = Server::start_in(dir, path);

    let r = srv.validate(&good_body());
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = srv.validate_with(&good_body(), &[("Authorization", "Bearer wrong")]);
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
    let r = srv.validate_with(&good_body(), &[("Authorization", "Basic YWNtZTp4")]);
    assert_eq!(r.status, 401);
    let r = srv.validate_with(&good_body(), &[("Authorization", "Bearer banned-token-3")]);
    assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));

    let acme = [("Authorization", "Bearer acme-token-1")];
    let small = [("Authorization", "Bearer small-token-2")];
    let r = srv.validate_with(&good_body(), &acme);
    assert_eq!(r.status, 200, "{}", r.text());
    // The small tenant's lower limits apply to it only.
    let r = srv.validate_with(&good_body(), &small);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "policy_too_large")
    );
    let tiny = json!({ "code": "INTENT: x\n" });
    assert_eq!(srv.validate_with(&tiny, &small).status, 200);
    let r = srv.validate_with(&tiny, &small);
    assert_eq!((r.status, r.error_code().as_str()), (429, "rate_limited"));
    // ...while acme is not limited by small's bucket.
    assert_eq!(srv.validate_with(&good_body(), &acme).status, 200);

    // Tenants are in the logs, tokens never.
    std::thread::sleep(Duration::from_millis(100));
    let logs = srv.logs().join("\n");
    assert!(logs.contains("\"tenant\":\"acme\""));
    assert!(!logs.contains("acme-token-1"));
    // Probes stay open for the orchestrator.
    assert_eq!(srv.get("/api/readiness").status, 200);
}

/// A policy of about `bytes` bytes that checks clean: many small rules.
fn policy_of_size(bytes: usize) -> String {
    let mut rules = String::new();
    let mut i = 0;
    while rules.len() < bytes {
        rules.push_str(&format!("- IF Battery < {}% THEN Action{i}\n", i % 100));
        i += 1;
    }
    format!(
        "INTENT: big\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\nRULE:\n{rules}\
         CONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: example\n"
    )
}

#[test]
fn a_configured_policy_limit_above_the_default_is_the_one_enforced() {
    // The operator's repro: the limits come from the environment, the
    // policy is larger than the language's default of 100 KiB.
    let dir = TempDir::new("limits");
    let config_path = dir.path("omnid.toml");
    std::fs::write(
        &config_path,
        format!(
            "version = 1\nlisten = \"127.0.0.1:0\"\nsandbox = \"{}\"\nworkers = 1\n\
             [rate_limit]\nenabled = false\n[worker]\ntimeout_ms = 20000\n",
            sandbox_setting()
        ),
    )
    .unwrap();
    let srv = Server::start_in_env(
        dir,
        config_path,
        &[
            ("OMNID_LIMITS_MAX_CODE_BYTES", "400000"),
            ("OMNID_LIMITS_MAX_BODY_BYTES", "1000000"),
        ],
    );
    let code = policy_of_size(139 * 1024);
    assert!(code.len() > omni::DEFAULT_MAX_POLICY_BYTES);
    let r = srv.validate(&json!({ "code": code, "context": { "Battery": 5 } }));
    assert_eq!(r.status, 200, "{}", r.text());
    let actions = r.json()["actions"].as_array().unwrap().len();
    assert!(actions > 1000, "{actions} actions fired");

    // Over the configured limit: 413 naming that limit, not the default.
    let code = policy_of_size(410_000);
    let r = srv.validate(&json!({ "code": code }));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code(), "policy_too_large");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("400000"), "{msg}");
    assert!(!msg.contains("102400"), "{msg}");
}
