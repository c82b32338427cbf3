//! The HTTP API's types (SERVICE.md §2): the strict request schema, the
//! response shapes, and [`ApiError`] — the one place where every failure is
//! mapped to a status, an error code and a user-facing message. Messages
//! never carry paths, pids, Rust type names or panic text.

use crate::pool::{JobReply, JobResult};
use crate::restart::RestartReason;
use hyper::StatusCode;
use omni_worker::protocol::{ErrorCode, Failure, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

/// `POST /api/validate` body. Unknown fields are rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub struct ValidateRequest<'a> {
    pub code: String,
    /// A JSON object, or a string holding one; kept as raw bytes (no tree).
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
    /// RFC 3339; default: the time of receipt.
    #[serde(default)]
    pub now: Option<String>,
    #[serde(default)]
    pub options: Option<ValidateOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a JSON object"
)]
pub struct ValidateOptions {
    pub strict: Option<bool>,
    pub trace: Option<bool>,
    /// Lowers the deadline; never raises it.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimingsJson {
    pub queue_us: u64,
    pub parse_us: u64,
    pub check_us: u64,
    pub eval_us: u64,
    pub total_us: u64,
}

/// The 200 answer; the worker's JSON is embedded as is. (The body is
/// written field by field in this order by [`validate_body`]; the type
/// documents the shape and keeps the test of that writer honest.)
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateResponse<'a> {
    pub request_id: &'a str,
    pub ok: bool,
    pub policy_id: &'a str,
    pub errors: Vec<&'a RawValue>,
    pub warnings: Vec<&'a RawValue>,
    pub rules: &'a RawValue,
    pub actions: &'a RawValue,
    pub decision: Option<&'a RawValue>,
    pub timings: TimingsJson,
    pub engine: &'a str,
}

#[derive(Deserialize)]
struct SeverityPeek<'a> {
    #[serde(borrow)]
    severity: std::borrow::Cow<'a, str>,
}

/// Builds the 200 body from a worker's outcome without building a tree of
/// the decision: only each diagnostic's `severity` is looked at. The
/// worker's JSON is checked to be one well-formed value (the worker is not
/// trusted) and copied into the body as it is.
pub fn validate_body(
    request_id: &str,
    policy_id: &str,
    o: &Outcome,
    timings: TimingsJson,
    engine: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut errors: Vec<&RawValue> = Vec::new();
    let mut warnings: Vec<&RawValue> = Vec::new();
    // Most policies have no diagnostics at all.
    if o.diagnostics_json != "[]" {
        let diags: Vec<&RawValue> =
            serde_json::from_str(&o.diagnostics_json).map_err(|_| ApiError::Internal)?;
        for d in diags {
            let peek: SeverityPeek =
                serde_json::from_str(d.get()).map_err(|_| ApiError::Internal)?;
            if peek.severity == "error" {
                errors.push(d);
            } else {
                warnings.push(d);
            }
        }
    }
    if !json_check::is_one_value_str(&o.rules_json)
        || !json_check::is_one_value_str(&o.actions_json)
    {
        return Err(ApiError::Internal);
    }
    if let Some(d) = &o.decision_json {
        if !json_check::is_one_value_str(d) {
            return Err(ApiError::Internal);
        }
    }
    let ok = !o.has_errors && errors.is_empty();
    // The fields of `ValidateResponse`, in order, written as serde_json
    // writes them (compact).
    let raw_len =
        o.rules_json.len() + o.actions_json.len() + o.decision_json.as_ref().map_or(4, String::len);
    let mut out = Vec::with_capacity(raw_len + o.diagnostics_json.len() + 512);
    let put = |out: &mut Vec<u8>, v: &dyn erased::Ser| v.write(out);
    out.extend_from_slice(b"{\"requestId\":");
    put(&mut out, &request_id)?;
    out.extend_from_slice(b",\"ok\":");
    out.extend_from_slice(if ok { b"true" } else { b"false" });
    out.extend_from_slice(b",\"policyId\":");
    put(&mut out, &policy_id)?;
    out.extend_from_slice(b",\"errors\":");
    put(&mut out, &errors)?;
    out.extend_from_slice(b",\"warnings\":");
    put(&mut out, &warnings)?;
    out.extend_from_slice(b",\"rules\":");
    out.extend_from_slice(o.rules_json.as_bytes());
    out.extend_from_slice(b",\"actions\":");
    out.extend_from_slice(o.actions_json.as_bytes());
    out.extend_from_slice(b",\"decision\":");
    match &o.decision_json {
        Some(d) => out.extend_from_slice(d.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"timings\":");
    put(&mut out, &timings)?;
    out.extend_from_slice(b",\"engine\":");
    put(&mut out, &engine)?;
    out.push(b'}');
    Ok(out)
}

/// Serializes one piece of the body with serde_json.
mod erased {
    use super::ApiError;

    pub trait Ser {
        fn write(&self, out: &mut Vec<u8>) -> Result<(), ApiError>;
    }

    impl<T: serde::Serialize> Ser for T {
        fn write(&self, out: &mut Vec<u8>) -> Result<(), ApiError> {
            serde_json::to_writer(out, self).map_err(|_| ApiError::Internal)
        }
    }
}

/// A strict check that bytes are exactly one JSON value (RFC 8259, as
/// `serde_json`'s `RawValue` accepts it: UTF-8, any nesting depth, nothing
/// after the value but whitespace), without building anything. Used on the
/// JSON a worker returns, which the response embeds as it is.
pub mod json_check {
    /// Bytes that are exactly one JSON value, UTF-8 included (tests only:
    /// the worker's JSON arrives as decoded, hence valid, `String`s).
    #[cfg(test)]
    pub fn is_one_value(b: &[u8]) -> bool {
        std::str::from_utf8(b).is_ok() && check(b)
    }

    /// Text that is exactly one JSON value.
    pub fn is_one_value_str(s: &str) -> bool {
        check(s.as_bytes())
    }

    fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
            i += 1;
        }
        i
    }

    /// Iterative, with the open containers on a stack (`true`: an object).
    fn check(b: &[u8]) -> bool {
        let mut stack: Vec<bool> = Vec::new();
        let mut i = skip_ws(b, 0);
        'value: loop {
            // A value starts at `i`.
            match b.get(i) {
                Some(b'{') => {
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                    } else {
                        stack.push(true);
                        if !key(b, &mut i) {
                            return false;
                        }
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        stack.push(false);
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    if !string(b, &mut i) {
                        return false;
                    }
                }
                Some(b't') => {
                    if !literal(b, &mut i, b"true") {
                        return false;
                    }
                }
                Some(b'f') => {
                    if !literal(b, &mut i, b"false") {
                        return false;
                    }
                }
                Some(b'n') => {
                    if !literal(b, &mut i, b"null") {
                        return false;
                    }
                }
                Some(b'-' | b'0'..=b'9') => {
                    if !number(b, &mut i) {
                        return false;
                    }
                }
                _ => return false,
            }
            // After a value: close containers or go on to the next element.
            loop {
                i = skip_ws(b, i);
                let Some(&object) = stack.last() else {
                    return i == b.len();
                };
                match (b.get(i), object) {
                    (Some(b','), true) => {
                        i = skip_ws(b, i + 1);
                        if !key(b, &mut i) {
                            return false;
                        }
                        continue 'value;
                    }
                    (Some(b','), false) => {
                        i = skip_ws(b, i + 1);
                        continue 'value;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        i += 1;
                        stack.pop();
                    }
                    _ => return false,
                }
            }
        }
    }

    /// `"key" :` and the whitespace after it.
    fn key(b: &[u8], i: &mut usize) -> bool {
        if b.get(*i) != Some(&b'"') || !string(b, i) {
            return false;
        }
        *i = skip_ws(b, *i);
        if b.get(*i) != Some(&b':') {
            return false;
        }
        *i = skip_ws(b, *i + 1);
        true
    }

    fn literal(b: &[u8], i: &mut usize, word: &[u8]) -> bool {
        if b.get(*i..*i + word.len()) == Some(word) {
            *i += word.len();
            true
        } else {
            false
        }
    }

    /// From the opening quote to after the closing one.
    fn string(b: &[u8], i: &mut usize) -> bool {
        let mut j = *i + 1;
        loop {
            // Plain bytes: the library's scan stops at `"`, `\\` or a control byte.
            j = omni::value::scan_plain(b, j);
            match b.get(j) {
                None => return false,
                Some(b'"') => {
                    *i = j + 1;
                    return true;
                }
                Some(b'\\') => match b.get(j + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                    Some(b'u') => {
                        let hex = b.get(j + 2..j + 6);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return false;
                        }
                        j += 6;
                    }
                    _ => return false,
                },
                Some(&c) if c < 0x20 => return false,
                Some(_) => j += 1,
            }
        }
    }

    fn digits(b: &[u8], i: &mut usize) -> bool {
        let s = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > s
    }

    fn number(b: &[u8], i: &mut usize) -> bool {
        if b.get(*i) == Some(&b'-') {
            *i += 1;
        }
        match b.get(*i) {
            Some(b'0') => *i += 1,
            Some(b'1'..=b'9') => {
                digits(b, i);
            }
            _ => return false,
        }
        if b.get(*i) == Some(&b'.') {
            *i += 1;
            if !digits(b, i) {
                return false;
            }
        }
        if matches!(b.get(*i), Some(b'e' | b'E')) {
            *i += 1;
            if matches!(b.get(*i), Some(b'+' | b'-')) {
                *i += 1;
            }
            if !digits(b, i) {
                return false;
            }
        }
        true
    }

    #[cfg(test)]
    mod tests {
        use super::{is_one_value, is_one_value_str};

        #[test]
        fn agrees_with_serde_json() {
            let docs = [
                "{}",
                "[]",
                "null",
                "true",
                "0",
                "-0.5e+3",
                "\"\"",
                " [1, {\"a\": [null]}] ",
                "{\"a\":\"\\u00e9\\n\\\"x\"}",
                "\"\u{e9}\u{1F600}\"",
                "[1,]",
                "{\"a\" 1}",
                "01",
                "1.",
                "-",
                "[1] 2",
                "\"a\u{1}\"",
                "\"\\x\"",
                "\"\\u12\"",
                "nul",
                "{",
                "[[",
                "\"abc",
                "{\"a\":1,}",
                "{1:2}",
                "[1 2]",
                "",
            ];
            for d in docs {
                let serde = serde_json::from_str::<&serde_json::value::RawValue>(d).is_ok();
                assert_eq!(is_one_value(d.as_bytes()), serde, "{d:?}");
                assert_eq!(is_one_value_str(d), serde, "{d:?}");
            }
            let deep = format!("{}{}", "[{\"a\":".repeat(5000), "}]".repeat(5000));
            let unbalanced = format!("{}{}", "[".repeat(5000), "]".repeat(4999));
            for d in [&deep, &unbalanced] {
                let serde = serde_json::from_str::<&serde_json::value::RawValue>(d).is_ok();
                assert_eq!(is_one_value(d.as_bytes()), serde, "depth {}", d.len() / 2);
            }
            assert!(!is_one_value(b"\"\xff\""));
            // Every one-byte change and deletion of a document agrees too.
            let doc = r#"{"a": [1, -2.5e3, true, null, "x\"\\u00e9y"], "b": {"c": false, "d": []}, "e": 0}"#;
            let subs = b" {}[],:\"\\-+.0159eEtfnux\x01";
            for at in 0..doc.len() {
                let mut variants: Vec<Vec<u8>> = subs
                    .iter()
                    .map(|&c| {
                        let mut v = doc.as_bytes().to_vec();
                        v[at] = c;
                        v
                    })
                    .collect();
                let mut del = doc.as_bytes().to_vec();
                del.remove(at);
                variants.push(del);
                for v in variants {
                    let Ok(text) = std::str::from_utf8(&v) else {
                        continue;
                    };
                    let serde = serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok();
                    assert_eq!(is_one_value(&v), serde, "{text}");
                    assert_eq!(is_one_value_str(text), serde, "{text}");
                }
            }
        }
    }
}

/// Every way a request can fail that is not about the policy itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidContext(String),
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("this token is not allowed to use the service")]
    Forbidden,
    #[error("the request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("the policy is larger than the limit of {0} bytes")]
    PolicyTooLarge(usize),
    #[error("the context is larger than the limit of {0} bytes")]
    ContextTooLarge(usize),
    #[error("{0}")]
    ContextTooLargeMsg(String),
    #[error("{0}")]
    ContextTooDeep(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the evaluation ran past its deadline of {0} ms")]
    Timeout(u64),
    #[error("{0}")]
    BudgetExceeded(String),
    #[error("the evaluation ran out of memory")]
    MemoryLimit,
    #[error("{0}")]
    ValueTooLarge(String),
    #[error("this policy repeatedly stopped workers and is refused for {} more", crate::limits::seconds(.0))]
    PolicyQuarantined(u64),
    #[error("too many requests; retry after {}", crate::limits::seconds(.0))]
    RateLimited(u64),
    #[error("the evaluation stopped unexpectedly")]
    WorkerCrashed,
    #[error("an internal error occurred")]
    Internal,
    #[error("the service is at capacity; retry shortly")]
    Overloaded,
    #[error("no worker is available yet")]
    NotReady,
    #[error("the service is shutting down")]
    Draining,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed for this endpoint")]
    MethodNotAllowed,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidJson(_) | InvalidRequest(_) | InvalidContext(_) => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BodyTooLarge(_)
            | PolicyTooLarge(_)
            | ContextTooLarge(_)
            | ContextTooLargeMsg(_)
            | ContextTooDeep(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Timeout(_) | BudgetExceeded(_) | MemoryLimit | ValueTooLarge(_)
            | PolicyQuarantined(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            WorkerCrashed | Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Overloaded | NotReady | Draining => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidJson(_) => "invalid_json",
            InvalidRequest(_) => "invalid_request",
            InvalidContext(_) => "invalid_context",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            BodyTooLarge(_) => "body_too_large",
            PolicyTooLarge(_) => "policy_too_large",
            ContextTooLarge(_) | ContextTooLargeMsg(_) => "context_too_large",
            ContextTooDeep(_) => "context_too_deep",
            UnsupportedMediaType => "unsupported_media_type",
            Timeout(_) => "timeout",
            BudgetExceeded(_) => "budget_exceeded",
            MemoryLimit => "memory_limit",
            ValueTooLarge(_) => "value_too_large",
            PolicyQuarantined(_) => "policy_quarantined",
            RateLimited(_) => "rate_limited",
            WorkerCrashed => "worker_crashed",
            Internal => "internal",
            Overloaded => "overloaded",
            NotReady => "not_ready",
            Draining => "draining",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
        }
    }

    /// Seconds for the `Retry-After` header, where one applies.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(s) => Some(*s),
            ApiError::Overloaded | ApiError::NotReady | ApiError::Draining => Some(1),
            ApiError::PolicyQuarantined(s) => Some((*s).max(1)),
            _ => None,
        }
    }

    /// The user-facing message: bounded in length and free of control
    /// characters, whatever the text came from.
    pub fn message(&self) -> String {
        let m = self.to_string();
        let mut out: String = m.chars().filter(|c| !c.is_control()).take(300).collect();
        if out.len() < m.len() && m.chars().count() > 300 {
            out.push('…');
        }
        out
    }

    /// A failure the worker answered with.
    pub fn from_failure(f: &Failure) -> ApiError {
        let msg = f.message.clone();
        match f.code {
            ErrorCode::BudgetExceeded => ApiError::BudgetExceeded(msg),
            ErrorCode::ValueTooLarge => ApiError::ValueTooLarge(msg),
            ErrorCode::InvalidContext => ApiError::InvalidContext(msg),
            ErrorCode::ContextTooLarge => ApiError::ContextTooLargeMsg(msg),
            ErrorCode::ContextTooDeep => ApiError::ContextTooDeep(msg),
            ErrorCode::PolicyTooLarge => ApiError::PolicyTooLarge(omni::DEFAULT_MAX_POLICY_BYTES),
            // Internal (and anything new) gets the generic message.
            _ => ApiError::Internal,
        }
    }

    /// A request whose evaluation killed its worker.
    pub fn from_restart(reason: RestartReason, deadline: Duration) -> ApiError {
        match reason {
            RestartReason::Timeout | RestartReason::CpuLimit => {
                ApiError::Timeout(deadline.as_millis() as u64)
            }
            RestartReason::MemoryLimit => ApiError::MemoryLimit,
            RestartReason::SeccompViolation | RestartReason::Crash | RestartReason::Recycled => {
                ApiError::WorkerCrashed
            }
        }
    }

    /// Maps a pool reply that is not a success.
    pub fn from_job(r: &JobReply, deadline: Duration) -> Option<ApiError> {
        match &r.result {
            JobResult::Done(_) => None,
            JobResult::Failed(f) => Some(ApiError::from_failure(f)),
            JobResult::Killed(reason) => Some(ApiError::from_restart(*reason, deadline)),
            JobResult::Quarantined(left) => Some(ApiError::PolicyQuarantined(left.as_secs())),
            JobResult::Expired => Some(ApiError::Overloaded),
            JobResult::Unavailable => Some(ApiError::NotReady),
        }
    }

    /// A request body that did not deserialize: syntax → `invalid_json`,
    /// anything else → `invalid_request` naming the field.
    pub fn from_json(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
        use serde_json::error::Category;
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::InvalidJson(format!(
                "{} at line {} column {}",
                syntax_kind(&inner),
                inner.line(),
                inner.column()
            )),
            Category::Data => {
                let detail = data_message(&inner);
                let field = if path == "." || path.is_empty() || detail.starts_with("unknown field")
                {
                    String::new()
                } else {
                    format!("field `{path}`: ")
                };
                ApiError::InvalidRequest(format!("{field}{detail}"))
            }
        }
    }
}

/// serde_json's message without its " at line … column …" suffix.
fn data_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let base = match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    // Structs name their expectation ("a JSON object") through `expecting`;
    // primitives would say `u64` or `bool`, so say it in JSON terms.
    let mut m = base;
    for (rust, json) in [
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        m = m.replace(rust, json);
    }
    m.chars().take(200).collect()
}

fn syntax_kind(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The error body `{requestId, error: {code, message}}`.
pub fn error_body(request_id: &str, err: &ApiError) -> Vec<u8> {
    let v = serde_json::json!({
        "requestId": request_id,
        "error": { "code": err.code(), "message": err.message() },
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(), ApiError> {
        let de = &mut serde_json::Deserializer::from_str(body);
        let r: Result<ValidateRequest, _> = serde_path_to_error::deserialize(de);
        r.map(|_| ()).map_err(ApiError::from_json)
    }

    #[test]
    fn request_errors_name_the_field() {
        let e = parse(r#"{"code": "x", "bogus": 1}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert!(e.message().contains("bogus"), "{}", e.message());
        let e = parse(r#"{"code": "x", "options": {"timeoutMs": "fast"}}"#).unwrap_err();
        assert!(e.message().contains("options.timeoutMs"), "{}", e.message());
        assert!(!e.message().contains("u64"), "{}", e.message());
        let e = parse(r#"{"code": "x", "options": {"trace": 1}}"#).unwrap_err();
        assert!(e.message().contains("true or false"), "{}", e.message());
        let e = parse(r#"{"code": "x", "options": 7}"#).unwrap_err();
        assert!(e.message().contains("a JSON object"), "{}", e.message());
        let e = parse(r#"{"code": 5}"#).unwrap_err();
        assert!(e.message().contains("code"), "{}", e.message());
        let e = parse(r#"{"context": {}}"#).unwrap_err();
        assert!(e.message().contains("code"), "{}", e.message());
        let e = parse(r#"[1]"#).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert!(!e.message().contains("ValidateRequest"), "{}", e.message());
        let e = parse(r#"{"code": "x""#).unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        assert!(
            parse(r#"{"code": "x", "context": {"a": 1}, "options": {"strict": false}}"#).is_ok()
        );
    }

    #[test]
    fn validate_body_is_what_serde_json_writes() {
        let diag_e = r#"{"code":"E0101","severity":"error","message":"x \"q\"","line":3}"#;
        let diag_w = r#"{"code":"W0001","severity":"warning","message":"é"}"#;
        for (diags, decision) in [
            (
                "[]".to_string(),
                Some(r#"{"actions":[{"name":"A","args":["d\u00e9"]}],"x":1.5}"#),
            ),
            (format!("[{diag_e},{diag_w}]"), None),
            (format!("[{diag_w}]"), Some("null")),
        ] {
            let o = Outcome {
                id: 1,
                policy_id: "sha256:ab".into(),
                cache_hit: true,
                diagnostics_json: diags.clone(),
                has_errors: false,
                rules_json: r#"[{"id":"R1","line":12,"condition":"a < \"b\"","action":"X"}]"#
                    .into(),
                actions_json: r#"["X","Quote\"d\n"]"#.into(),
                decision_json: decision.map(str::to_string),
                timings: Default::default(),
            };
            let t = || TimingsJson {
                queue_us: 1,
                parse_us: 2,
                check_us: 3,
                eval_us: 4,
                total_us: 5,
            };
            let got = validate_body("req-1", "sha256:ab", &o, t(), "omni 0.1.0").unwrap();
            let all: Vec<&RawValue> = serde_json::from_str(&diags).unwrap();
            let (errors, warnings): (Vec<&RawValue>, Vec<&RawValue>) =
                all.into_iter().partition(|d| d.get().contains("\"error\""));
            let want = serde_json::to_vec(&ValidateResponse {
                request_id: "req-1",
                ok: errors.is_empty(),
                policy_id: "sha256:ab",
                errors,
                warnings,
                rules: serde_json::from_str(&o.rules_json).unwrap(),
                actions: serde_json::from_str(&o.actions_json).unwrap(),
                decision: o
                    .decision_json
                    .as_deref()
                    .map(|d| serde_json::from_str(d).unwrap()),
                timings: t(),
                engine: "omni 0.1.0",
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
        // Worker JSON that is not one value is an internal error.
        let refused = |o: &Outcome| {
            let t = TimingsJson {
                queue_us: 0,
                parse_us: 0,
                check_us: 0,
                eval_us: 0,
                total_us: 0,
            };
            validate_body("r", "p", o, t, "e").unwrap_err() == ApiError::Internal
        };
        let mut o = Outcome {
            id: 1,
            policy_id: String::new(),
            cache_hit: false,
            diagnostics_json: "[]".into(),
            has_errors: false,
            rules_json: "[]".into(),
            actions_json: "[]".into(),
            decision_json: Some("{\"a\":1} {".into()),
            timings: Default::default(),
        };
        assert!(refused(&o), "decision");
        o.decision_json = None;
        o.actions_json = "[\"A\"],\"ok\":true".into();
        assert!(refused(&o), "actions");
        o.actions_json = "[]".into();
        o.rules_json = "[1,".into();
        assert!(refused(&o), "rules");
    }

    #[test]
    fn every_error_has_a_status_and_code() {
        let all = [
            ApiError::InvalidJson(String::new()),
            ApiError::Unauthorized,
            ApiError::BodyTooLarge(1),
            ApiError::UnsupportedMediaType,
            ApiError::Timeout(5),
            ApiError::RateLimited(1),
            ApiError::WorkerCrashed,
            ApiError::Overloaded,
        ];
        for e in all {
            assert!(e.status().as_u16() >= 400);
            assert!(!e.code().is_empty());
        }
        assert_eq!(ApiError::RateLimited(3).retry_after(), Some(3));
    }
}
