//! Test harness: starts the real `omnid` on 127.0.0.1 with a temporary
//! configuration, talks HTTP/1.1 to it over real sockets, and checks every
//! response it receives against the OpenAPI document the server serves and
//! against the rule that error bodies leak nothing (paths, pids, Rust types,
//! panic text).
#![allow(dead_code)]

pub mod postgres;

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const GOOD_POLICY: &str = "INTENT: demo\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\n\
RULE:\n- IF Battery < 20% THEN ReturnToHome\nCONSTRAINT:\n- Technical: none\n\
IMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: example\n";

/// Three nested loops over `Xs`: n³ iterations (n = 150 takes about a
/// second in a debug build; with default fuel it runs out of budget).
pub const SLOW_POLICY: &str = "INTENT: slow\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\n\
RULE:\n- FOR a IN Xs {\n  - FOR b IN Xs {\n    - FOR c IN Xs {\n      - IF a + b + c < 0 THEN Never\n    }\n  }\n}\n\
CONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: example\n";

/// A variant of the slow policy with a different id (for quarantine tests).
pub fn slow_policy_variant(tag: &str) -> String {
    SLOW_POLICY.replace("INTENT: slow", &format!("INTENT: slow {tag}"))
}

pub fn good_body() -> Value {
    serde_json::json!({ "code": GOOD_POLICY, "context": { "Battery": 15 } })
}

pub fn slow_body(n: usize) -> Value {
    let xs: Vec<usize> = (0..n).collect();
    serde_json::json!({ "code": SLOW_POLICY, "context": { "Xs": xs } })
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("omnid-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn omnid() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_omnid"));
    // Tests are deterministic: no OMNID_* from the caller's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("OMNID_") {
            c.env_remove(k);
        }
    }
    // Never the built-in store path (relative: it would be a file in the
    // repository). Servers get a file in their own directory
    // (`Server::start_exe`); this is for an omnid that is not expected to
    // open its store at all.
    c.env(
        "OMNID_STORE_PATH",
        std::env::temp_dir().join(format!("omnid-test-unused-store-{}.db", std::process::id())),
    );
    c
}

/// The sandbox setting for test servers: on, unless OMNI_TEST_SANDBOX=off
/// (for machines where the workers cannot confine themselves).
pub fn sandbox_setting() -> String {
    match std::env::var("OMNI_TEST_SANDBOX").as_deref() {
        Ok("off") => "off".into(),
        _ => "on".into(),
    }
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub config_path: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    openapi: Value,
    exited: Option<ExitStatus>,
}

impl Server {
    /// Starts omnid with `extra` appended to a base configuration
    /// (`listen = 127.0.0.1:0`, 2 workers, rate limiting off).
    pub fn start(extra: &str) -> Server {
        Self::start_full(&format!(
            "version = 1\nlisten = \"127.0.0.1:0\"\nsandbox = \"{}\"\n{}\n",
            sandbox_setting(),
            with_defaults(extra)
        ))
    }

    /// Starts omnid with exactly this configuration text.
    pub fn start_full(config: &str) -> Server {
        let dir = TempDir::new("srv");
        let config_path = dir.path("omnid.toml");
        std::fs::write(&config_path, config).unwrap();
        Self::start_in(dir, config_path)
    }

    pub fn start_in(dir: TempDir, config_path: PathBuf) -> Server {
        Self::start_in_env(dir, config_path, &[])
    }

    pub fn start_in_env(dir: TempDir, config_path: PathBuf, env: &[(&str, &str)]) -> Server {
        Self::start_exe(omnid(), dir, config_path, env)
    }

    /// Starts `cmd` (an omnid binary) with the configuration file.
    pub fn start_exe(
        mut cmd: Command,
        dir: TempDir,
        config_path: PathBuf,
        env: &[(&str, &str)],
    ) -> Server {
        // Each server its own store, in its own directory (unless the test
        // names one).
        if !env.iter().any(|(k, _)| *k == "OMNID_STORE_PATH") {
            cmd.env("OMNID_STORE_PATH", dir.path("policies.db"));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start omnid");
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let l2 = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on ") {
                    let rest = &line[i + "listening on ".len()..];
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    if let (Some(t), Ok(a)) = (tx.as_ref(), addr.parse()) {
                        let _ = t.send(a);
                        tx = None;
                    }
                }
                l2.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "omnid did not start; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let mut s = Server {
            child,
            addr,
            dir,
            config_path,
            logs,
            openapi: Value::Null,
            exited: None,
        };
        let doc = s.get_raw("/api/openapi.json");
        assert_eq!(doc.status, 200);
        s.openapi = doc.json();
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn openapi(&self) -> &Value {
        &self.openapi
    }

    /// One request on a fresh connection (`Connection: close`), checked
    /// against the OpenAPI document and the error-body rules.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let r = raw_request(self.addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        check_response(&self.openapi, method, path, &r);
        r
    }

    fn get_raw(&self, path: &str) -> Resp {
        raw_request(self.addr, "GET", path, &[], None).unwrap()
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    pub fn validate(&self, body: &Value) -> Resp {
        self.validate_with(body, &[])
    }

    pub fn validate_with(&self, body: &Value, headers: &[(&str, &str)]) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        self.request("POST", "/api/validate", &h, Some(&b))
    }

    pub fn metrics_json(&self) -> Value {
        self.get("/api/metrics").json()
    }

    pub fn restarts(&self, reason: &str) -> u64 {
        self.metrics_json()["workerRestarts"][reason]
            .as_u64()
            .unwrap_or(0)
    }

    /// Worker processes: omnid's children.
    pub fn workers(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits for omnid to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st);
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Polls readiness until `pred` holds on its body (or the timeout passes).
    pub fn wait_ready_where(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(r) = raw_request(self.addr, "GET", "/api/readiness", &[], None) {
                if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
                    if pred(&v) {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Fills in test defaults unless the caller's configuration sets them.
fn with_defaults(extra: &str) -> String {
    let mut out = String::new();
    if !extra.contains("workers =") {
        out.push_str("workers = 2\n");
    }
    out.push_str(extra);
    out.push('\n');
    if !extra.contains("[rate_limit]") {
        out.push_str("[rate_limit]\nenabled = false\n");
    }
    // A debug build on a busy 2-core CI machine: give ordinary requests
    // room unless the test is about deadlines.
    if !extra.contains("[worker]") {
        out.push_str("[worker]\ntimeout_ms = 5000\n");
    }
    out
}

/// Pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // fields[0] = state, fields[1] = ppid.
        if fields.get(1).and_then(|s| s.parse::<u32>().ok()) == Some(pid) && fields[0] != "Z" {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// CPU ticks (utime + stime) a process has used.
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let u: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0);
    let s: u64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    u + s
}

/// POSTs a JSON body to /api/validate on a connection of its own.
pub fn post_validate(addr: SocketAddr, body: &[u8]) -> std::io::Result<Resp> {
    raw_request(
        addr,
        "POST",
        "/api/validate",
        &[("Content-Type", "application/json")],
        Some(body),
    )
}

/// POSTs `body` to /api/validate from a new thread; join for the answer.
pub fn validate_in_thread(addr: SocketAddr, body: &Value) -> std::thread::JoinHandle<Resp> {
    let body = serde_json::to_vec(body).unwrap();
    std::thread::spawn(move || post_validate(addr, &body).expect("request"))
}

pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write_request(&mut s, addr, method, path, headers, body, true)?;
    if method == "HEAD" {
        return read_head(&mut s);
    }
    read_response(&mut s)
}

/// A response to HEAD: headers only, whatever Content-Length says.
fn read_head(s: &mut TcpStream) -> std::io::Result<Resp> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = HashMap::new();
    for l in head.split("\r\n").skip(1) {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok(Resp {
        status,
        headers,
        body: Vec::new(),
    })
}

pub fn write_request(
    s: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    close: bool,
) -> std::io::Result<()> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if close {
        req.push_str("Connection: close\r\n");
    }
    let mut has_len = false;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding") {
            has_len = true;
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !has_len {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    s.write_all(&bytes)
}

/// Reads one response (Content-Length bodies; hyper sends them for full bodies).
pub fn read_response(s: &mut TcpStream) -> std::io::Result<Resp> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A keep-alive connection.
pub struct Conn {
    pub stream: TcpStream,
    addr: SocketAddr,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn { stream, addr }
    }
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Resp> {
        write_request(
            &mut self.stream,
            self.addr,
            method,
            path,
            headers,
            body,
            false,
        )?;
        read_response(&mut self.stream)
    }
}

// ----- response checks ------------------------------------------------------

/// Words that must never appear in an error message.
const LEAKS: &[&str] = &[
    "panicked",
    "panic",
    "backtrace",
    "RUST_",
    "::",
    ".rs",
    "/work",
    "/tmp",
    "/home",
    "/root",
    "/usr",
    "/proc",
    "/target",
    "target/",
    "Option<",
    "Vec<",
    "Box<",
    "Arc<",
    "String",
    "serde",
    "u64",
    "usize",
    "i64",
    "u32",
    "ValidateRequest",
    "ValidateOptions",
    "RawValue",
    "struct ",
    "enum ",
    "Error(",
    "Some(",
    "None",
    "Ok(",
    "Err(",
    "stack",
];

/// Asserts that an error body has the documented shape and leaks nothing.
pub fn check_error_body(r: &Resp) {
    let v = r.json();
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error body without error.message: {}", r.text()));
    let code = v["error"]["code"].as_str().unwrap_or("");
    assert!(!code.is_empty(), "error body without code: {}", r.text());
    assert_eq!(
        v["requestId"].as_str(),
        r.header("x-request-id"),
        "requestId in body and header differ"
    );
    for leak in LEAKS {
        assert!(
            !msg.contains(leak),
            "error message contains {leak:?}: {msg}"
        );
    }
    for word in msg.split(|c: char| !c.is_ascii_alphanumeric()) {
        assert!(
            !word.eq_ignore_ascii_case("pid"),
            "error message mentions a pid: {msg}"
        );
    }
    assert!(msg.len() <= 400, "error message too long: {msg}");
}

/// Checks a response against the served OpenAPI document: the status is
/// documented for the operation, and the body satisfies its schema's
/// required properties and types. Error bodies are also checked for leaks.
pub fn check_response(doc: &Value, method: &str, path: &str, r: &Resp) {
    assert!(
        r.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "{method} {path}: no X-Request-Id"
    );
    let ct = r.header("content-type").unwrap_or("");
    if r.status >= 400 && ct.starts_with("application/json") {
        let is_error = serde_json::from_slice::<Value>(&r.body)
            .map(|v| v.get("error").is_some())
            .unwrap_or(false);
        // Readiness answers 503 with its status body; everything else with
        // the error shape.
        if is_error || !path.starts_with("/api/readiness") {
            check_error_body(r);
        }
    }
    if doc.is_null() {
        return;
    }
    let path_only = path.split('?').next().unwrap_or(path);
    let m = if method == "HEAD" {
        "get".to_string()
    } else {
        method.to_ascii_lowercase()
    };
    let Some(op) = doc_path(doc, path_only).and_then(|p| p.get(&m)) else {
        // Unknown path or method: 404/405 with the error shape.
        assert!(
            r.status == 404 || r.status == 405,
            "{method} {path}: undocumented operation answered {}",
            r.status
        );
        return;
    };
    let responses = &op["responses"];
    let status = r.status.to_string();
    let spec = responses.get(&status).unwrap_or_else(|| {
        panic!(
            "{method} {path}: status {status} is not documented (documented: {:?})",
            responses.as_object().map(|o| o.keys().collect::<Vec<_>>())
        )
    });
    if method == "HEAD" {
        return;
    }
    let content = &spec["content"];
    let Some(media) = content.as_object().and_then(|o| o.keys().next()) else {
        return;
    };
    assert!(
        ct.starts_with(media.as_str()),
        "{method} {path} {status}: content type {ct:?}, documented {media:?}"
    );
    if media == "application/json" {
        let schema = &content[media]["schema"];
        let body = r.json();
        if let Err(e) = validate_schema(doc, schema, &body, "$") {
            panic!("{method} {path} {status}: body does not match the schema: {e}\n{body}");
        }
        if r.status >= 400 {
            // The documented list of codes for this status.
            let desc = schema["description"].as_str().unwrap_or("");
            let code = body["error"]["code"].as_str().unwrap_or("");
            assert!(
                desc.contains(code),
                "{method} {path} {status}: code {code} not documented for this status ({desc})"
            );
        }
    }
}

/// The document's path item for `path`: the path itself, or a template
/// (`/api/v1/policies/{name}`) whose `{…}` segments match any segment.
pub fn doc_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let paths = doc["paths"].as_object()?;
    if let Some(p) = paths.get(path) {
        return Some(p);
    }
    let segs: Vec<&str> = path.split('/').collect();
    paths.iter().find_map(|(template, item)| {
        let t: Vec<&str> = template.split('/').collect();
        let fits = t.len() == segs.len()
            && t.iter()
                .zip(&segs)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s);
        fits.then_some(item)
    })
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => {
            let mut v = doc;
            for part in r.trim_start_matches("#/").split('/') {
                v = &v[part];
            }
            assert!(!v.is_null(), "dangling $ref {r}");
            resolve(doc, v)
        }
        None => schema,
    }
}

/// A small JSON Schema (OpenAPI 3.0 subset) validator: $ref, allOf, oneOf,
/// type, nullable, required, properties, additionalProperties, items, enum.
pub fn validate_schema(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, schema);
    if let Some(all) = s.get("allOf").and_then(|a| a.as_array()) {
        for sub in all {
            validate_schema(doc, sub, v, at)?;
        }
    }
    if v.is_null() {
        if s.get("nullable").and_then(|n| n.as_bool()) == Some(true) || s.get("type").is_none() {
            return Ok(());
        }
        return Err(format!("{at}: null where the schema does not allow it"));
    }
    if let Some(one) = s.get("oneOf").and_then(|a| a.as_array()) {
        if !one
            .iter()
            .any(|sub| validate_schema(doc, sub, v, at).is_ok())
        {
            return Err(format!("{at}: matches none of oneOf"));
        }
    }
    if let Some(t) = s.get("type").and_then(|t| t.as_str()) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        if !ok {
            return Err(format!("{at}: expected {t}, got {v}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(|e| e.as_array()) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in enum {e:?}"));
        }
    }
    if let Some(obj) = v.as_object() {
        if let Some(req) = s.get("required").and_then(|r| r.as_array()) {
            for k in req.iter().filter_map(|k| k.as_str()) {
                if !obj.contains_key(k) {
                    return Err(format!("{at}: missing required property {k}"));
                }
            }
        }
        let props = s.get("properties").and_then(|p| p.as_object());
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate_schema(doc, ps, val, &format!("{at}.{k}"))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{at}: unexpected property {k}"))
                    }
                    Some(ap @ Value::Object(_)) => {
                        validate_schema(doc, ap, val, &format!("{at}.{k}"))?
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(arr), Some(items)) = (v.as_array(), s.get("items")) {
        for (i, item) in arr.iter().enumerate() {
            validate_schema(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Runs `n` good requests from `threads` threads while `during` runs;
/// returns the statuses of the good requests.
pub fn with_good_load<T>(
    srv: &Server,
    threads: usize,
    per_thread: usize,
    during: impl FnOnce() -> T,
) -> (T, Vec<Resp>) {
    let addr = srv.addr;
    let doc = srv.openapi().clone();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let doc = doc.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let body = serde_json::to_vec(&good_body()).unwrap();
                for _ in 0..per_thread {
                    let r = post_validate(addr, &body).expect("good request");
                    check_response(&doc, "POST", "/api/validate", &r);
                    out.push(r);
                    std::thread::sleep(Duration::from_millis(5));
                }
                out
            })
        })
        .collect();
    let t = during();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    (t, all)
}

pub fn assert_all_ok(resps: &[Resp]) {
    assert!(!resps.is_empty());
    for r in resps {
        assert_eq!(r.status, 200, "a good request failed: {}", r.text());
        let v = r.json();
        assert_eq!(v["ok"], true);
        assert_eq!(v["actions"], serde_json::json!(["ReturnToHome"]));
    }
}

/// A line of the tokens file for `tenant` holding `token`, made by omnid
/// itself (`--hash-token`).
pub fn token_line(tenant: &str, token: &str) -> String {
    let out = omnid()
        .args(["--hash-token", tenant])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{token}\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}
