//! The playground at `GET /`: its files and security headers (served when
//! `playground = true`, 404 when false), and the page itself driven in
//! headless Chromium through chromedriver: load an example and see its
//! actions, break a line and see the error marked on it, fix it and see the
//! mark go.
//!
//! The browser test needs `chromium` and `chromedriver` (Debian packages
//! `chromium chromium-driver`). Without them it prints a note and passes,
//! unless `OMNI_REQUIRE_BROWSER=1`, which makes their absence a failure.
//! `OMNI_CHROMIUM=/path/to/chrome` picks the browser binary. Screenshots go
//! to `target/playground.png` (the example after the fix) and
//! `target/playground-error.png` (the error marked on its line).

use crate::common::*;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CSP_DIRECTIVES: &[&str] = &[
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
];

const ASSETS: &[(&str, &str)] = &[
    ("/", "text/html"),
    ("/playground/app.js", "text/javascript"),
    ("/playground/style.css", "text/css"),
    ("/playground/examples.json", "application/json"),
];

/// Every `src="…"` / `href="…"` / `action="…"` value in `text`.
fn referenced_urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"", "action=\""] {
        for (i, _) in text.match_indices(attr) {
            let v = &text[i + attr.len()..];
            out.push(v[..v.find('"').unwrap_or(v.len())].to_string());
        }
    }
    out
}

#[test]
fn playground_is_served_with_strict_headers_and_404_when_disabled() {
    let srv = Server::start("");
    for (path, ct) in ASSETS {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        assert!(
            r.header("content-type").unwrap_or("").starts_with(ct),
            "GET {path}: content type {:?}",
            r.header("content-type")
        );
        let csp = r.header("content-security-policy").unwrap_or("");
        for d in CSP_DIRECTIVES {
            assert!(csp.contains(d), "GET {path}: CSP {csp:?} lacks {d:?}");
        }
        assert!(!csp.contains("unsafe-"), "GET {path}: CSP {csp:?}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        // The page's own files request nothing from another origin: no
        // absolute URL at all, and every reference is a path on this one.
        if *ct != "application/json" {
            let text = r.text().to_ascii_lowercase();
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "GET {path} contains an absolute URL"
            );
            for u in referenced_urls(&text) {
                assert!(
                    (u.starts_with('/') && !u.starts_with("//")) || u.starts_with('#'),
                    "GET {path} references {u:?}"
                );
            }
        }
    }
    let page = srv.get("/").text();
    assert!(page.contains("<script src=\"/playground/app.js\""));
    assert!(page.contains("<label for=\"policy\">"));
    assert!(page.contains("<label for=\"context\">"));
    let examples = srv.get("/playground/examples.json").json();
    let list = examples.as_array().unwrap();
    assert!(list.len() >= 5, "{} examples", list.len());
    for e in list {
        let name = e["name"].as_str().unwrap();
        let on_disk = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(format!("{name}.omni"));
        assert_eq!(
            e["code"].as_str().unwrap(),
            std::fs::read_to_string(on_disk).unwrap(),
            "{name}"
        );
    }
    let r = srv.request("HEAD", "/", &[], None);
    assert_eq!(r.status, 200);
    let r = srv.request("POST", "/", &[], Some(b"{}"));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let m = srv.metrics_json();
    assert!(m["requests"]["playground"]["200"].as_u64().unwrap() >= 4);
    drop(srv);

    // Off in the file, or from the environment: every path is 404.
    let off = Server::start("playground = false");
    let dir = TempDir::new("playground-env");
    let config = dir.path("omnid.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\nlisten = \"127.0.0.1:0\"\nsandbox = \"{}\"\nworkers = 1\n[rate_limit]\nenabled = false\n",
            sandbox_setting()
        ),
    )
    .unwrap();
    let env_off = Server::start_in_env(dir, config, &[("OMNID_PLAYGROUND", "false")]);
    for srv in [&off, &env_off] {
        for (path, _) in ASSETS {
            let r = srv.get(path);
            assert_eq!(
                (r.status, r.error_code().as_str()),
                (404, "not_found"),
                "GET {path}"
            );
            assert!(r.header("content-security-policy").is_none());
        }
        let r = srv.request("POST", "/", &[], Some(b"{}"));
        assert_eq!(r.status, 404);
        assert_eq!(srv.get("/api/health").status, 200);
    }
}

// ----- the browser test --------------------------------------------------

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

fn find_chromium() -> Option<PathBuf> {
    // An explicit browser binary (OMNI_CHROMIUM) is used or missing as given.
    if let Some(p) = std::env::var_os("OMNI_CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find_map(which)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join("target")
        })
}

/// chromedriver, killed (with the browser it started, if the session was
/// not closed) when the test ends.
struct Driver {
    child: Child,
    log: PathBuf,
}

impl Driver {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type R<T> = Result<T, String>;

fn fail<T>(what: impl std::fmt::Display) -> R<T> {
    Err(what.to_string())
}

async fn js(c: &Client, script: &str) -> R<Value> {
    c.execute(script, vec![])
        .await
        .map_err(|e| format!("script failed: {e}\n{script}"))
}

/// Polls `script` (a function body returning a value) until it returns
/// something other than null/false, and returns that.
async fn wait_js(c: &Client, what: &str, script: &str) -> R<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = js(c, script).await?;
        if !v.is_null() && v != Value::Bool(false) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            let state = js(
                c,
                "return document.getElementById('summary').textContent + ' | ' + \
                 [...document.querySelectorAll('#diagnostics li')].map(e => e.textContent).join(' / ');",
            )
            .await
            .unwrap_or_default();
            return fail(format!("timed out waiting for {what}; page says: {state}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's current result, as the test reads it.
const STATE: &str = "
const q = (s) => [...document.querySelectorAll(s)];
return {
  state: document.getElementById('summary').dataset.state,
  summary: document.getElementById('summary').textContent,
  actions: q('#actions li[data-name]').map(e => e.dataset.name),
  errorLines: q('#gutter .ln.error').map(e => Number(e.dataset.line)),
  warningLines: q('#gutter .ln.warning').map(e => Number(e.dataset.line)),
  highlighted: q('#backdrop .hl.error').map(e => Number(e.dataset.line)),
  diagnostics: q('#diagnostics .diag').map(e => ({
    line: Number(e.dataset.line || 0), text: e.textContent,
    severity: e.classList.contains('error') ? 'error' : 'other' })),
  rules: q('#rules tbody tr[data-rule]').length,
  outcomes: q('#rules .outcome').map(e => e.textContent),
  trace: q('#trace .entry').length,
  invalid: document.getElementById('policy').getAttribute('aria-invalid'),
};";

/// A script returning the page's state when `cond` (over `s`) holds, else null.
fn state_when(cond: &str) -> String {
    STATE.replace("return {", "const s = {") + &format!("\nreturn ({cond}) ? s : null;")
}

/// `cond` text: the page shows exactly these actions and no error.
fn shows_actions(names: &[String]) -> String {
    let list = serde_json::to_string(names).unwrap();
    format!(
        "s.state === 'ok' && JSON.stringify(s.actions) === {}",
        serde_json::to_string(&list).unwrap()
    )
}

/// The action names of an example's golden decision, in order.
fn golden_actions(name: &str) -> Vec<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(format!("{name}.decision.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

async fn select_example(c: &Client, name: &str) -> R<Value> {
    let select = c
        .find(Locator::Css("#example"))
        .await
        .map_err(|e| format!("#example: {e}"))?;
    select
        .select_by_value(name)
        .await
        .map_err(|e| format!("select {name}: {e}"))?;
    let want = golden_actions(name);
    wait_js(
        c,
        &format!("the actions of {name}: {want:?}"),
        &state_when(&shows_actions(&want)),
    )
    .await
}

async fn save_screenshot(c: &Client, name: &str) -> R<PathBuf> {
    let png = c
        .screenshot()
        .await
        .map_err(|e| format!("screenshot: {e}"))?;
    let dir = target_dir();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(name);
    std::fs::write(&path, png).map_err(|e| e.to_string())?;
    eprintln!("screenshot: {}", path.display());
    Ok(path)
}

async fn drive(c: &Client, addr: SocketAddr) -> R<()> {
    c.set_window_size(1366, 900)
        .await
        .map_err(|e| format!("window size: {e}"))?;
    let origin = format!("http://{addr}");
    c.goto(&format!("{origin}/"))
        .await
        .map_err(|e| format!("goto: {e}"))?;
    let title = c.title().await.map_err(|e| e.to_string())?;
    if title != "Omni playground" {
        return fail(format!("title {title:?}"));
    }
    // The script ran (CSP let it) and loaded the examples; the stylesheet
    // applied.
    wait_js(
        c,
        "the examples",
        "return document.getElementById('example').dataset.loaded === 'true' \
         && document.querySelectorAll('#example option').length > 5;",
    )
    .await?;
    let display = js(c, "return getComputedStyle(document.body).display;").await?;
    if display != "flex" {
        return fail(format!(
            "the stylesheet did not apply (body display {display})"
        ));
    }

    // Load an example: its actions are the golden decision's.
    let s = select_example(c, "hospital_icu").await?;
    eprintln!("hospital_icu: {}", s["summary"]);
    let s = select_example(c, "drone_fleet").await?;
    eprintln!("drone_fleet: {}", s["summary"]);
    if s["rules"].as_u64().unwrap_or(0) < 5
        || s["trace"].as_u64().unwrap_or(0) == 0
        || !s["outcomes"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "fired"))
    {
        return fail(format!("rules, outcomes or trace missing: {s}"));
    }
    let code = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/drone_fleet.omni"),
    )
    .map_err(|e| e.to_string())?;
    // The 1-based line of the first rule containing `text`.
    let line_of = |text: &str| {
        code.lines()
            .position(|l| l.contains(text))
            .map_or(0, |i| i + 1)
    };
    // drone_fleet's context lacks LinkQuality: a runtime warning on its rule's line.
    let warned = line_of("IF LinkQuality");
    if s["warningLines"] != json!([warned]) || s["errorLines"] != json!([]) {
        return fail(format!("expected one warning mark on line {warned}: {s}"));
    }

    // Break the first rule's line: type " )" at its end.
    let line = line_of("IF Battery");
    let line_text = code.lines().nth(line - 1).unwrap_or("");
    if !line_text.contains("IF Battery") {
        return fail(format!("line {line} of drone_fleet.omni is {line_text:?}"));
    }
    let end_of_line: usize = code
        .lines()
        .take(line)
        .map(|l| l.chars().count() + 1)
        .sum::<usize>()
        - 1;
    let policy = c
        .find(Locator::Css("#policy"))
        .await
        .map_err(|e| format!("#policy: {e}"))?;
    policy.click().await.map_err(|e| format!("click: {e}"))?;
    js(
        c,
        &format!(
            "const t = document.getElementById('policy'); t.focus(); t.setSelectionRange({end_of_line}, {end_of_line}); return true;"
        ),
    )
    .await?;
    policy
        .send_keys(" )")
        .await
        .map_err(|e| format!("typing: {e}"))?;
    let typed = js(c, "return document.getElementById('policy').value;").await?;
    let typed_line = typed
        .as_str()
        .and_then(|t| t.lines().nth(line - 1))
        .unwrap_or("");
    if typed_line != format!("{line_text} )") {
        return fail(format!(
            "typed into the wrong place: line {line} is {typed_line:?}"
        ));
    }
    let s = wait_js(c, "the error mark", &state_when("s.state === 'errors'")).await?;
    eprintln!("broken: {s}");
    let want = json!([line]);
    if s["errorLines"] != want || s["highlighted"] != want || s["invalid"] != "true" {
        return fail(format!("the error is not marked on line {line}: {s}"));
    }
    let first = &s["diagnostics"][0];
    let pos = format!("{line}:");
    if first["line"] != line
        || first["severity"] != "error"
        || !first["text"].as_str().unwrap_or("").starts_with(&pos)
        || s["actions"] != json!([])
    {
        return fail(format!("the diagnostic does not name line {line}: {s}"));
    }
    // Clicking the diagnostic puts the caret on it.
    c.find(Locator::Css("#diagnostics .diag.error"))
        .await
        .map_err(|e| format!("diagnostic: {e}"))?
        .click()
        .await
        .map_err(|e| format!("click diagnostic: {e}"))?;
    let caret = js(c, "return document.getElementById('cursor').textContent;").await?;
    if !caret.as_str().unwrap_or("").starts_with(&pos) {
        return fail(format!("the caret is at {caret}, not on line {line}"));
    }
    save_screenshot(c, "playground-error.png").await?;

    // Fix it: the mark clears and the actions come back.
    js(
        c,
        &format!(
            "const t = document.getElementById('policy'); t.focus(); t.setSelectionRange({e}, {e}); return true;",
            e = end_of_line + 2
        ),
    )
    .await?;
    let backspaces = format!("{}{}", Key::Backspace, Key::Backspace);
    policy
        .send_keys(&backspaces)
        .await
        .map_err(|e| format!("typing: {e}"))?;
    let want = golden_actions("drone_fleet");
    let s = wait_js(c, "the error to clear", &state_when(&shows_actions(&want))).await?;
    if s["errorLines"] != json!([]) || s["highlighted"] != json!([]) || !s["invalid"].is_null() {
        return fail(format!("the error mark did not clear: {s}"));
    }
    save_screenshot(c, "playground.png").await?;

    // Nothing was fetched from anywhere but this origin.
    let urls = js(
        c,
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);",
    )
    .await?;
    for u in urls.as_array().into_iter().flatten() {
        let u = u.as_str().unwrap_or("");
        if !u.starts_with(&format!("{origin}/")) {
            return fail(format!("the page requested {u}"));
        }
    }
    Ok(())
}

#[test]
fn playground_in_headless_chromium() {
    let required = std::env::var("OMNI_REQUIRE_BROWSER").as_deref() == Ok("1");
    let (chromium, chromedriver) = match (find_chromium(), which("chromedriver")) {
        (Some(b), Some(d)) => (b, d),
        (b, d) => {
            let missing: Vec<&str> = [("chromium", b.is_none()), ("chromedriver", d.is_none())]
                .into_iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| n)
                .collect();
            assert!(
                !required,
                "OMNI_REQUIRE_BROWSER=1 but {} not found (apt-get install chromium chromium-driver)",
                missing.join(" and ")
            );
            eprintln!(
                "note: {} not found; the browser test is skipped \
                 (apt-get install chromium chromium-driver; OMNI_REQUIRE_BROWSER=1 makes this a failure)",
                missing.join(" and ")
            );
            return;
        }
    };

    let srv = Server::start("");
    let tmp = TempDir::new("chromium");
    let port = free_port();
    let log = tmp.path("chromedriver.log");
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
    let driver = Driver { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}:\n{}",
            driver.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let profile = tmp.path("profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1366,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result: R<()> = rt.block_on(async {
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| format!("cannot start a browser session: {e}"))?;
        let r = drive(&client, srv.addr).await;
        if r.is_err() {
            let _ = save_screenshot(&client, "playground-failure.png").await;
        }
        let _ = client.close().await;
        r
    });
    if let Err(e) = result {
        panic!("{e}\nchromedriver log:\n{}", driver.log_tail());
    }
}
