//! `omni policy …` as a client: the real binary against a small HTTP/1.1
//! server in the test (127.0.0.1, port 0) that answers as the `/api/v1`
//! contract says (docs/api.md) and records each request, so the paths,
//! headers (`Authorization`, `If-Match`), bodies, outputs and exit codes are
//! checked over real sockets. The end-to-end run against omnid itself is in
//! the supervisor's tests.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const OMNI: &str = env!("CARGO_BIN_EXE_omni");

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

type Handler = dyn Fn(&Seen) -> Answer + Send + Sync;

/// The canned server; stops (and joins its thread) when dropped.
struct Canned {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Canned {
    fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    match read_request(&conn) {
                        Some(req) => {
                            let answer = handler(&req);
                            seen.lock().expect("lock").push(req);
                            write_answer(conn, answer);
                        }
                        // As an HTTP server does with bytes that are not HTTP.
                        None => write_answer(conn, json(400, "")),
                    }
                }
            })
        };
        Canned {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn clear(&self) {
        self.seen.lock().expect("lock").clear();
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(conn: &TcpStream) -> Option<Seen> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let mut r = BufReader::new(conn);
    // A request starts with its method; anything else (a TLS hello) is not
    // waited on.
    if !r.fill_buf().ok()?.first()?.is_ascii_uppercase() {
        return None;
    }
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn write_answer(mut conn: TcpStream, (status, headers, body): Answer) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    let has_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_type {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body.as_bytes());
}

fn json(status: u16, body: &str) -> Answer {
    (status, vec![], body.to_string())
}

fn api_error(status: u16, code: &str, message: &str) -> Answer {
    json(
        status,
        &format!(r#"{{"requestId":"r1","error":{{"code":"{code}","message":"{message}"}}}}"#),
    )
}

/// Runs `omni` with only the environment given (no OMNI_* or proxy
/// variables of the test's own environment leak in).
fn omni(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(OMNI);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("omni runs");
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

const POLICY: &str = "INTENT: t\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: d\nRULE:\n- IF Battery < 20% THEN ReturnToHome\nCONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n";

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("omni-policy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

fn temp_file(name: &str, text: &str) -> String {
    let p = temp_dir().join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

const DETAIL_2: &str = r#"{"name":"fleet","activeRevision":2,"servedRevision":2,"latestRevision":3,"revisions":[
  {"revision":1,"policyId":"sha256:1111111111111111aaaa","bytes":200,"createdAt":"2026-01-01T00:00:00Z","createdBy":"ci"},
  {"revision":2,"policyId":"sha256:2222222222222222bbbb","bytes":210,"createdAt":"2026-01-02T00:00:00Z","createdBy":"ci"},
  {"revision":3,"policyId":"sha256:3333333333333333cccc","bytes":230,"createdAt":"2026-01-03T00:00:00Z","createdBy":"ops"}]}"#;

#[test]
fn push_sends_the_text_with_the_token_and_reports_the_revision() {
    let server = Canned::start(|r| match (r.method.as_str(), r.target.as_str()) {
        ("PUT", "/api/v1/policies/fleet") => json(
            201,
            r#"{"name":"fleet","revision":3,"policyId":"sha256:abcdef0123456789ffff","activeRevision":3,"created":true,"warnings":[]}"#,
        ),
        ("PUT", "/api/v1/policies/fleet?activate=false") => json(
            200,
            r#"{"name":"fleet","revision":2,"policyId":"sha256:abcdef0123456789ffff","activeRevision":1,"created":false,"warnings":[]}"#,
        ),
        _ => api_error(404, "not_found", "no such endpoint"),
    });
    let file = temp_file("push.omni", POLICY);
    let token = temp_file("token", "  tok-123\n");
    let (code, out, err) = omni(
        &[
            "policy",
            "push",
            "fleet",
            &file,
            "--server",
            &server.addr,
            "--token-file",
            &token,
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "fleet: created revision 3 (sha256:abcdef012345); active revision: 3\n"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].body, POLICY);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer tok-123"));
    assert_eq!(
        reqs[0].header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reqs[0].header("if-match"), None);

    // From standard input, server and token from the environment,
    // --no-activate and --if-match.
    server.clear();
    let (code, out, err) = omni(
        &[
            "policy",
            "push",
            "fleet",
            "-",
            "--no-activate",
            "--if-match",
            "1",
        ],
        &[("OMNI_SERVER", &server.addr), ("OMNI_TOKEN", "env-tok")],
        Some(POLICY),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "fleet: unchanged, this text is revision 2 (sha256:abcdef012345); active revision: 1\n"
    );
    let reqs = server.requests();
    assert_eq!(reqs[0].target, "/api/v1/policies/fleet?activate=false");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer env-tok"));
    assert_eq!(reqs[0].header("if-match"), Some("\"1\""));

    // --format json passes the server's answer through.
    let (code, out, _) = omni(
        &["policy", "push", "fleet", &file, "--format", "json"],
        &[("OMNI_SERVER", &server.addr)],
        None,
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["revision"], 3);
    assert_eq!(v["created"], true);
}

#[test]
fn a_rejected_push_prints_the_diagnostics_like_check() {
    let bad = POLICY.replace("< 20%", "<");
    let bad_for_server = bad.clone();
    let server = Canned::start(move |_| {
        // The diagnostics omni's own checker gives, in the API's shape.
        let c = omni::compile(&bad_for_server, &omni::CheckOptions::default());
        let diags: Vec<_> = c
            .diagnostics
            .iter()
            .map(|d| d.to_json(&bad_for_server, &c.line_index))
            .collect();
        let body = serde_json::json!({
            "requestId": "r",
            "error": {"code": "policy_invalid", "message": "the policy has errors"},
            "diagnostics": diags,
        });
        json(422, &body.to_string())
    });
    let file = temp_file("bad.omni", &bad);
    let (code, out, err) = omni(
        &["policy", "push", "fleet", &file, "--server", &server.addr],
        &[],
        None,
    );
    assert_eq!(code, 1, "{out}{err}");
    let (_, check_out, _) = omni(&["check", &file], &[], None);
    // The same drawing as `omni check`, then a line saying nothing was stored.
    let drawn = check_out
        .lines()
        .take_while(|l| !l.starts_with(&format!("{file}: FAILED")))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(drawn.contains("error[E0101]"), "{check_out}");
    assert!(out.starts_with(&drawn), "push:\n{out}\ncheck:\n{check_out}");
    assert!(
        out.ends_with(&format!(
            "{file}: FAILED (1 errors, 0 warnings); fleet was not stored\n"
        )),
        "{out}"
    );
    assert!(err.contains("nothing was stored"), "{err}");
}

#[test]
fn activate_sends_the_current_revision_as_if_match() {
    let server = Canned::start(|r| match (r.method.as_str(), r.target.as_str()) {
        ("GET", "/api/v1/policies/fleet") => {
            (200, vec![("ETag", "\"2\"".into())], DETAIL_2.to_string())
        }
        ("POST", "/api/v1/policies/fleet/activate") => json(
            200,
            r#"{"name":"fleet","activeRevision":3,"previousRevision":2}"#,
        ),
        ("POST", "/api/v1/policies/fleet/rollback") => json(
            200,
            r#"{"name":"fleet","activeRevision":1,"previousRevision":2}"#,
        ),
        ("DELETE", "/api/v1/policies/fleet") => json(
            200,
            r#"{"name":"fleet","deleted":true,"previousRevision":2}"#,
        ),
        _ => api_error(404, "not_found", "no such endpoint"),
    });
    let env = [("OMNI_SERVER", server.addr.as_str()), ("OMNI_TOKEN", "t")];
    let (code, out, err) = omni(&["policy", "activate", "fleet", "3"], &env, None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "fleet: active revision 3 (was 2)\n");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].target.as_str()),
        ("GET", "/api/v1/policies/fleet")
    );
    assert_eq!(reqs[1].header("if-match"), Some("\"2\""));
    assert_eq!(reqs[1].header("authorization"), Some("Bearer t"));
    let body: serde_json::Value = serde_json::from_str(&reqs[1].body).expect("json body");
    assert_eq!(body, serde_json::json!({"revision": 3}));

    // With --if-match the revision is the user's and nothing is asked first.
    server.clear();
    let (code, out, _) = omni(
        &["policy", "rollback", "fleet", "--if-match", "2"],
        &env,
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(out, "fleet: rolled back to revision 1 (was 2)\n");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].target, "/api/v1/policies/fleet/rollback");
    assert_eq!(reqs[0].header("if-match"), Some("\"2\""));

    server.clear();
    let (code, out, _) = omni(&["policy", "delete", "fleet"], &env, None);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "fleet: deleted (active revision was 2); its revisions and history are kept\n"
    );
    let reqs = server.requests();
    assert_eq!(reqs[1].method, "DELETE");
    assert_eq!(reqs[1].header("if-match"), Some("\"2\""));
}

#[test]
fn a_stale_if_match_says_who_won() {
    let gets = Arc::new(AtomicUsize::new(0));
    let g = gets.clone();
    let server = Canned::start(move |r| match (r.method.as_str(), r.target.as_str()) {
        ("GET", "/api/v1/policies/fleet") => {
            // The first look sees 2; by the time of the 412 another operator made it 4.
            let active = if g.fetch_add(1, Ordering::SeqCst) == 0 {
                2
            } else {
                4
            };
            json(
                200,
                &format!(
                    r#"{{"name":"fleet","activeRevision":{active},"servedRevision":{active},"latestRevision":4,"revisions":[]}}"#
                ),
            )
        }
        ("POST", _) => api_error(
            412,
            "precondition_failed",
            "the active revision is not the one in If-Match",
        ),
        _ => api_error(404, "not_found", "no such endpoint"),
    });
    let env = [("OMNI_SERVER", server.addr.as_str())];
    let (code, out, err) = omni(&["policy", "activate", "fleet", "3"], &env, None);
    assert_eq!(code, 5, "{out}{err}");
    assert_eq!(
        err,
        "error: someone else changed fleet (active is now 4); re-run to retry\n"
    );
    assert!(out.is_empty());
    let (code, _, err) = omni(&["policy", "rollback", "fleet"], &env, None);
    assert_eq!(code, 5);
    assert!(
        err.contains("someone else changed fleet (active is now 4)"),
        "{err}"
    );
}

#[test]
fn show_list_history_and_json_pass_through() {
    let server = Canned::start(|r| match (r.method.as_str(), r.target.as_str()) {
        ("GET", "/api/v1/policies") => json(
            200,
            r#"{"policies":[{"name":"fleet","activeRevision":2,"latestRevision":3,"revisions":3,"updatedAt":"2026-01-03T00:00:00Z"}]}"#,
        ),
        ("GET", "/api/v1/policies/fleet") => json(200, DETAIL_2),
        ("GET", "/api/v1/policies/fleet/history") => json(
            200,
            r#"{"changes":[{"seq":1,"at":"2026-01-01T00:00:00Z","tenant":"acme","actor":"ci","action":"store","fromRevision":null,"toRevision":1}]}"#,
        ),
        ("GET", "/api/v1/policies/fleet/revisions/2") => (
            200,
            vec![("Content-Type", "text/plain; charset=utf-8".into())],
            POLICY.to_string(),
        ),
        ("GET", "/api/v1/policies/nope") => {
            api_error(404, "policy_not_found", "no policy named nope")
        }
        _ => api_error(404, "not_found", "no such endpoint"),
    });
    let env = [("OMNI_SERVER", server.addr.as_str())];
    let (code, out, _) = omni(&["policy", "list"], &env, None);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "NAME   ACTIVE  LATEST  REVISIONS  UPDATED\nfleet       2       3          3  2026-01-03T00:00:00Z\n"
    );
    let (code, out, _) = omni(&["policy", "show", "fleet"], &env, None);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(
            "policy fleet\nactive revision: 2\nserved revision: 2\nlatest revision: 3\n\n\
             REV  POLICY ID            BYTES  CREATED               BY\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(" *2  sha256:222222222222    210  2026-01-02T00:00:00Z  ci\n"),
        "{out}"
    );
    let (code, out, _) = omni(&["policy", "show", "fleet", "--format", "json"], &env, None);
    assert_eq!(code, 0);
    assert_eq!(out.trim_end(), DETAIL_2);
    let (code, out, _) = omni(&["policy", "show", "fleet", "--revision", "2"], &env, None);
    assert_eq!(code, 0);
    assert_eq!(out, POLICY);
    let (code, out, _) = omni(&["policy", "history", "fleet"], &env, None);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "SEQ  AT                    ACTION  FROM  TO  BY\n  1  2026-01-01T00:00:00Z  store      -   1  ci\n"
    );
    let (code, out, _) = omni(
        &["policy", "history", "fleet", "--format", "json"],
        &env,
        None,
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["changes"][0]["actor"], "ci");

    let (code, out, err) = omni(&["policy", "show", "nope"], &env, None);
    assert_eq!((code, out.as_str()), (4, ""));
    assert_eq!(err, "error: policy nope not found\n");
    let (code, _, err) = omni(&["policy", "show", "fleet", "--revision", "9"], &env, None);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("has no policy API"), "{err}");
}

#[test]
fn diff_fetches_both_revisions() {
    let v2 = POLICY.replace(
        "- IF Battery < 20% THEN ReturnToHome",
        "- IF Battery < 20% THEN Land\n- IF Wind > 15 THEN Hold",
    );
    let server = Canned::start(move |r| match r.target.as_str() {
        "/api/v1/policies/fleet/revisions/1" => (
            200,
            vec![("Content-Type", "text/plain; charset=utf-8".into())],
            POLICY.to_string(),
        ),
        "/api/v1/policies/fleet/revisions/2" => (
            200,
            vec![("Content-Type", "text/plain; charset=utf-8".into())],
            v2.clone(),
        ),
        "/api/v1/policies/fleet" => json(200, DETAIL_2),
        "/api/v1/policies/fleet/revisions/7" => {
            api_error(404, "revision_not_found", "no revision 7")
        }
        _ => api_error(404, "not_found", "no such endpoint"),
    });
    let env = [("OMNI_SERVER", server.addr.as_str())];
    let (code, out, err) = omni(&["policy", "diff", "fleet", "1", "active"], &env, None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("--- fleet@1\n+++ fleet@2\n@@ "), "{out}");
    assert!(
        out.contains("-- IF Battery < 20% THEN ReturnToHome\n+- IF Battery < 20% THEN Land\n+- IF Wind > 15 THEN Hold\n"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "rules: 1 added, 0 removed, 1 changed\n  \
             changed  R1: IF Battery < 20% THEN ReturnToHome\n       \
             to  R1: IF Battery < 20% THEN Land\n  \
             added    R2: IF Wind > 15 THEN Hold\n"
        ),
        "{out}"
    );
    let targets: Vec<String> = server.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/api/v1/policies/fleet",
            "/api/v1/policies/fleet/revisions/1",
            "/api/v1/policies/fleet/revisions/2"
        ]
    );
    let (code, _, err) = omni(&["policy", "diff", "fleet", "1", "7"], &env, None);
    assert_eq!(code, 4);
    assert_eq!(err, "error: policy fleet has no revision 7\n");
}

#[test]
fn refusals_and_outages_in_the_users_terms() {
    let server = Canned::start(|r| match (r.method.as_str(), r.header("authorization")) {
        (_, None) => (
            401,
            vec![("WWW-Authenticate", "Bearer".into())],
            r#"{"error":{"code":"unauthorized","message":"a bearer token is required"}}"#.into(),
        ),
        (_, Some("Bearer wrong")) => (
            401,
            vec![("WWW-Authenticate", "Bearer".into())],
            r#"{"error":{"code":"unauthorized","message":"unknown token"}}"#.into(),
        ),
        ("PUT", _) => api_error(
            503,
            "store_unavailable",
            "the policy store is unavailable; stored policies already loaded are still evaluated",
        ),
        _ => api_error(
            409,
            "policy_quota_exceeded",
            "the tenant has 100 policies; the limit is 100",
        ),
    });
    let file = temp_file("outage.omni", POLICY);
    let env = [("OMNI_SERVER", server.addr.as_str())];
    let (code, _, err) = omni(&["policy", "list"], &env, None);
    assert_eq!(code, 4);
    assert_eq!(
        err,
        format!(
            "error: omnid at {} needs a token: pass --token-file FILE or set OMNI_TOKEN\n",
            server.addr
        )
    );
    let (code, _, err) = omni(&["policy", "list", "--token", "wrong"], &env, None);
    assert_eq!(code, 4);
    assert_eq!(err, "error: the server refused the token\n");
    let (code, _, err) = omni(
        &["policy", "push", "fleet", &file, "--token", "ok"],
        &env,
        None,
    );
    assert_eq!(code, 6);
    assert_eq!(err, "error: omnid cannot do this now: the policy store is unavailable; stored policies already loaded are still evaluated\n");
    let (code, _, err) = omni(&["policy", "list", "--token", "ok"], &env, None);
    assert_eq!(code, 4);
    assert_eq!(
        err,
        "error: the tenant has 100 policies; the limit is 100\n"
    );

    // Nothing listening.
    let addr = server.addr.clone();
    drop(server);
    let (code, _, err) = omni(&["policy", "list", "--server", &addr], &[], None);
    assert_eq!(code, 6);
    assert_eq!(
        err,
        format!(
            "error: cannot reach omnid at {addr}: connection refused (is omnid running there?)\n"
        )
    );
    // Local input problems are usage errors.
    let (code, _, err) = omni(
        &[
            "policy",
            "push",
            "fleet",
            "/nonexistent/p.omni",
            "--server",
            &addr,
        ],
        &[],
        None,
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "error: cannot read /nonexistent/p.omni: no such file\n"
    );
}

/// `openssl` (Debian's package) makes the CA, the certificate and a TLS
/// server for the `https://` tests; without it they skip with one line,
/// unless `OMNI_REQUIRE_OPENSSL=1` (set by `.ci/run`).
fn openssl() -> Option<&'static str> {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("openssl");
    }
    assert!(
        std::env::var("OMNI_REQUIRE_OPENSSL").as_deref() != Ok("1"),
        "OMNI_REQUIRE_OPENSSL=1 but openssl is not on PATH (apt-get install openssl)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipped: policy_cli https tests need openssl (apt-get install openssl; OMNI_REQUIRE_OPENSSL=1 makes this a failure)"
    );
    None
}

fn sh(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl s_server -WWW`: serves the files under its directory over TLS,
/// so `GET /api/v1/policies` answers with the file `api/v1/policies`.
struct TlsFiles {
    child: std::process::Child,
    port: u16,
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_file_server(dir: &std::path::Path) -> TlsFiles {
    let mut child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            "../srv.pem",
            "-key",
            "../srv.key",
            "-WWW",
        ])
        .current_dir(dir.join("www"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server runs");
    let stdout = child.stdout.take().expect("stdout");
    // It prints `ACCEPT 127.0.0.1:PORT` once it listens.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(p) = line.strip_prefix("ACCEPT 127.0.0.1:") {
                let _ = tx.send(p.trim().parse::<u16>().ok());
            }
        }
    });
    let port = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .ok()
        .flatten();
    let mut server = TlsFiles { child, port: 0 };
    server.port = port.expect("openssl s_server said where it listens");
    server
}

#[test]
fn https_with_a_private_ca() {
    let Some(_) = openssl() else { return };
    let dir = temp_dir().join("tls");
    std::fs::create_dir_all(dir.join("www/api/v1")).expect("dirs");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["openssl", "req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=omni test CA",
    ]);
    sh(&dir, &ca);
    let mut csr = vec!["openssl", "req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    sh(&dir, &csr);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    sh(
        &dir,
        &[
            "openssl",
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    let listing = r#"{"policies":[{"name":"over-tls","activeRevision":1,"latestRevision":1,"revisions":1,"updatedAt":"2026-01-01T00:00:00Z"}]}"#;
    std::fs::write(dir.join("www/api/v1/policies"), listing).expect("listing");
    let server = tls_file_server(&dir);
    let url = format!("https://localhost:{}", server.port);
    let ca_path = dir.join("ca.pem").display().to_string();

    let (code, out, err) = omni(
        &[
            "policy", "list", "--server", &url, "--cacert", &ca_path, "--format", "json",
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim_end(), listing);
    // The CA from the environment.
    let (code, out, err) = omni(
        &["policy", "list"],
        &[("OMNI_SERVER", &url), ("OMNI_CACERT", &ca_path)],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("over-tls"), "{out}");
    // Without the private CA the certificate is not trusted.
    let (code, _, err) = omni(&["policy", "list", "--server", &url], &[], None);
    assert_eq!(code, 6);
    assert_eq!(
        err,
        format!("error: the TLS connection to omnid at {url} failed: its certificate is not signed by a trusted CA (for a private CA, pass --cacert FILE)\n")
    );
    // The certificate names localhost, not 127.0.0.1.
    let by_ip = format!("https://127.0.0.1:{}", server.port);
    let (code, _, err) = omni(
        &["policy", "list", "--server", &by_ip, "--cacert", &ca_path],
        &[],
        None,
    );
    assert_eq!(code, 6);
    assert!(
        err.contains("its certificate is not valid for this host name"),
        "{err}"
    );
    drop(server);

    // https:// to a plain-HTTP server.
    let plain = Canned::start(|_| json(200, "{}"));
    let https = plain.addr.replace("http://", "https://");
    let (code, _, err) = omni(&["policy", "list", "--server", &https], &[], None);
    assert_eq!(code, 6);
    assert!(err.contains("it does not answer in TLS"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
