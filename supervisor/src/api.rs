//! The HTTP API's types (`docs/api.md#endpoints`): the strict request schema, the
//! response shapes, and [`ApiError`] — the one place where every failure is
//! mapped to a status, an error code and a user-facing message. Messages
//! never carry paths, pids, Rust type names or panic text.

use crate::pool::{JobReply, JobResult};
use crate::restart::RestartReason;
use hyper::StatusCode;
use omni::json::check as json_check;
use omni_worker::protocol::{ErrorCode, Evaluated, Failure};
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

/// `POST /api/v1/policies/{name}/evaluate` body: `/api/validate`'s without
/// the policy, which is the stored one (its active revision, or `revision`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub struct EvaluateRequest<'a> {
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
    #[serde(default)]
    pub now: Option<String>,
    #[serde(default)]
    pub revision: Option<u64>,
    #[serde(default)]
    pub options: Option<ValidateOptions>,
}

/// `POST /api/v1/policies/{name}/activate` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub struct ActivateRequest {
    pub revision: u64,
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

/// A worker's diagnostics (a JSON array) split into errors and the rest
/// (warnings and notes), each kept as the worker wrote it; only its
/// `severity` is looked at. Not an array of objects: the worker is not
/// trusted, and this is an internal error.
pub fn split_diagnostics(json: &str) -> Result<(Vec<&RawValue>, Vec<&RawValue>), ApiError> {
    let mut errors: Vec<&RawValue> = Vec::new();
    let mut warnings: Vec<&RawValue> = Vec::new();
    // Most policies have no diagnostics at all.
    if json != "[]" {
        let diags: Vec<&RawValue> = serde_json::from_str(json).map_err(|_| ApiError::Internal)?;
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
    Ok((errors, warnings))
}

/// Builds the 200 body from a worker's outcome without building a tree of
/// the decision: only each diagnostic's `severity` is looked at. The
/// worker's JSON is checked to be one well-formed value (the worker is not
/// trusted) and copied into the body as it is.
pub fn validate_body(
    request_id: &str,
    policy_id: &str,
    o: &Evaluated,
    timings: TimingsJson,
    engine: &str,
) -> Result<Vec<u8>, ApiError> {
    let (errors, warnings) = split_diagnostics(&o.diagnostics_json)?;
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
    /// Client-certificate authentication failed (auth.mode mtls/both).
    #[error("{0}")]
    Certificate(CertProblem),
    #[error("the request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("the policy is larger than the limit of {0} bytes")]
    PolicyTooLarge(usize),
    #[error("the context is larger than the limit of {0} bytes")]
    ContextTooLarge(usize),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the evaluation ran past its deadline of {0} ms")]
    Timeout(u64),
    #[error("the evaluation ran out of memory")]
    MemoryLimit,
    /// The worker refused the policy or the context, or the evaluation hit a
    /// limit of the language: the engine's code and its own words.
    #[error("{message}")]
    Engine { code: ErrorCode, message: String },
    #[error("this policy repeatedly stopped workers and is refused for {} more", crate::limits::seconds(.0))]
    PolicyQuarantined(u64),
    #[error("too many requests; retry after {}", crate::limits::seconds(.0))]
    RateLimited(u64),
    #[error("your requests stopped too many workers recently; retry after {0} seconds")]
    TenantBackoff(u64),
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
    #[error("policy names are 1-128 characters of letters, digits, `.`, `_` and `-`, not starting with `.`")]
    InvalidPolicyName,
    #[error("no policy named `{0}`")]
    PolicyNotFound(String),
    #[error("no active policy named `{0}`")]
    NoActiveRevision(String),
    #[error("the policy `{0}` has no revision {1}")]
    RevisionNotFound(String, u64),
    /// The text sent to be stored has errors: the diagnostics go in the body
    /// (`diagnostics_body`), beside the error.
    #[error("the policy has errors and was not stored")]
    PolicyInvalid { diagnostics_json: String },
    #[error("the tenant already has the most policies its quota allows ({0})")]
    PolicyQuotaExceeded(u64),
    #[error("the policy already has the most revisions the quota allows ({0})")]
    RevisionQuotaExceeded(u64),
    #[error(
        "storing this text would take the tenant's stored policies over its quota of {0} bytes"
    )]
    StorageQuotaExceeded(u64),
    #[error("the policy has no earlier active revision to roll back to")]
    NothingToRollBack,
    #[error("{0}")]
    PreconditionFailed(String),
    #[error(
        "this change needs an If-Match header naming the active revision, e.g. If-Match: \"3\""
    )]
    PreconditionRequired,
    #[error("the policy store is unavailable; stored policies already loaded are still evaluated")]
    StoreUnavailable,
}

/// What is wrong with a caller's client certificate (or its absence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("a client certificate is required")]
    Missing,
    #[error("a valid bearer token or client certificate is required")]
    MissingEither,
    #[error("the client certificate is no longer accepted (revoked, or its CA is no longer trusted); connect again with a valid one")]
    NoLongerValid,
    #[error("the client certificate's identity belongs to no tenant of this service")]
    NoTenant,
    #[error("the client certificate's identities belong to more than one tenant")]
    Ambiguous,
    #[error("this client certificate's tenant is not allowed to use the service")]
    TenantDisabled,
}

impl CertProblem {
    /// 401 when the caller is not authenticated, 403 when it is but may not.
    fn code(self) -> ErrorCode {
        match self {
            CertProblem::Missing | CertProblem::MissingEither | CertProblem::NoLongerValid => {
                ErrorCode::Unauthorized
            }
            CertProblem::NoTenant | CertProblem::Ambiguous | CertProblem::TenantDisabled => {
                ErrorCode::Forbidden
            }
        }
    }
}

/// The one HTTP status of each error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        InvalidJson | InvalidRequest | InvalidContext => StatusCode::BAD_REQUEST,
        Unauthorized => StatusCode::UNAUTHORIZED,
        Forbidden => StatusCode::FORBIDDEN,
        NotFound | PolicyNotFound | RevisionNotFound => StatusCode::NOT_FOUND,
        InvalidPolicyName => StatusCode::BAD_REQUEST,
        PolicyQuotaExceeded | RevisionQuotaExceeded | StorageQuotaExceeded | NothingToRollBack => {
            StatusCode::CONFLICT
        }
        PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
        PolicyInvalid => StatusCode::UNPROCESSABLE_ENTITY,
        StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        BodyTooLarge | PolicyTooLarge | ContextTooLarge | ContextTooDeep => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Timeout | BudgetExceeded | MemoryLimit | ValueTooLarge | PolicyQuarantined => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        RateLimited | TenantBackoff => StatusCode::TOO_MANY_REQUESTS,
        WorkerCrashed | Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Overloaded | NotReady | Draining => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        status_of(self.code())
    }

    pub fn code(&self) -> ErrorCode {
        use ApiError::*;
        match self {
            InvalidJson(_) => ErrorCode::InvalidJson,
            InvalidRequest(_) => ErrorCode::InvalidRequest,
            InvalidContext(_) => ErrorCode::InvalidContext,
            Unauthorized => ErrorCode::Unauthorized,
            Forbidden => ErrorCode::Forbidden,
            Certificate(p) => p.code(),
            BodyTooLarge(_) => ErrorCode::BodyTooLarge,
            PolicyTooLarge(_) => ErrorCode::PolicyTooLarge,
            ContextTooLarge(_) => ErrorCode::ContextTooLarge,
            UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Timeout(_) => ErrorCode::Timeout,
            MemoryLimit => ErrorCode::MemoryLimit,
            Engine { code, .. } => *code,
            PolicyQuarantined(_) => ErrorCode::PolicyQuarantined,
            RateLimited(_) => ErrorCode::RateLimited,
            TenantBackoff(_) => ErrorCode::TenantBackoff,
            WorkerCrashed => ErrorCode::WorkerCrashed,
            Internal => ErrorCode::Internal,
            Overloaded => ErrorCode::Overloaded,
            NotReady => ErrorCode::NotReady,
            Draining => ErrorCode::Draining,
            NotFound => ErrorCode::NotFound,
            MethodNotAllowed => ErrorCode::MethodNotAllowed,
            InvalidPolicyName => ErrorCode::InvalidPolicyName,
            PolicyNotFound(_) | NoActiveRevision(_) => ErrorCode::PolicyNotFound,
            RevisionNotFound(..) => ErrorCode::RevisionNotFound,
            PolicyInvalid { .. } => ErrorCode::PolicyInvalid,
            PolicyQuotaExceeded(_) => ErrorCode::PolicyQuotaExceeded,
            RevisionQuotaExceeded(_) => ErrorCode::RevisionQuotaExceeded,
            StorageQuotaExceeded(_) => ErrorCode::StorageQuotaExceeded,
            NothingToRollBack => ErrorCode::NothingToRollBack,
            PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            PreconditionRequired => ErrorCode::PreconditionRequired,
            StoreUnavailable => ErrorCode::StoreUnavailable,
        }
    }

    /// Seconds for the `Retry-After` header, where one applies.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(s) => Some(*s),
            ApiError::Overloaded | ApiError::NotReady | ApiError::Draining => Some(1),
            ApiError::StoreUnavailable => Some(STORE_RETRY_AFTER_S),
            ApiError::PolicyQuarantined(s) | ApiError::TenantBackoff(s) => Some((*s).max(1)),
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

    /// A failure the worker answered with. Its message is the engine's own
    /// (user-facing, naming the limit the worker was sent); an internal
    /// failure gets the generic message.
    pub fn from_failure(f: &Failure) -> ApiError {
        match f.code {
            ErrorCode::Internal => ApiError::Internal,
            code => ApiError::Engine {
                code,
                message: f.message.clone(),
            },
        }
    }

    /// A request whose evaluation killed its worker.
    pub fn from_restart(reason: RestartReason, deadline: Duration) -> ApiError {
        match reason {
            RestartReason::Timeout | RestartReason::CpuLimit => {
                ApiError::Timeout(deadline.as_millis() as u64)
            }
            RestartReason::MemoryLimit => ApiError::MemoryLimit,
            // A stalled job is retried, never answered with its reason.
            RestartReason::SeccompViolation
            | RestartReason::Crash
            | RestartReason::Stalled
            | RestartReason::Recycled => ApiError::WorkerCrashed,
        }
    }

    /// Maps a pool reply that is not a success.
    pub fn from_job(r: &JobReply, deadline: Duration) -> Option<ApiError> {
        match &r.result {
            JobResult::Done(_) => None,
            JobResult::Failed(f) => Some(ApiError::from_failure(f)),
            JobResult::Killed(reason) => Some(ApiError::from_restart(*reason, deadline)),
            JobResult::Quarantined(left) => Some(ApiError::PolicyQuarantined(left.as_secs())),
            JobResult::TenantBackoff(left) => Some(ApiError::TenantBackoff(left.as_secs())),
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

/// `Retry-After` of `store_unavailable`: the store is polled about this
/// often while it is away.
const STORE_RETRY_AFTER_S: u64 = 2;

/// The error body `{requestId, error: {code, message}}`; a policy refused
/// for its errors also carries its `diagnostics` (the shape of
/// `/api/validate`'s, all severities, in order).
pub fn error_body(request_id: &str, err: &ApiError) -> Vec<u8> {
    let mut v = serde_json::json!({
        "requestId": request_id,
        "error": { "code": err.code().as_str(), "message": err.message() },
    });
    if let ApiError::PolicyInvalid { diagnostics_json } = err {
        // The worker is not trusted: only a well-formed array goes out.
        let diags = serde_json::from_str::<Vec<Box<RawValue>>>(diagnostics_json)
            .ok()
            .and_then(|d| serde_json::to_value(d).ok())
            .unwrap_or_else(|| serde_json::json!([]));
        v["diagnostics"] = diags;
    }
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
            let o = Evaluated {
                id: 1,
                policy_id: "sha256:ab".into(),
                cache_hit: true,
                kept: true,
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
        let refused = |o: &Evaluated| {
            let t = TimingsJson {
                queue_us: 0,
                parse_us: 0,
                check_us: 0,
                eval_us: 0,
                total_us: 0,
            };
            validate_body("r", "p", o, t, "e").unwrap_err() == ApiError::Internal
        };
        let mut o = Evaluated {
            id: 1,
            policy_id: String::new(),
            cache_hit: false,
            kept: false,
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
            assert!(!e.code().as_str().is_empty());
        }
        assert_eq!(ApiError::RateLimited(3).retry_after(), Some(3));
        let e = ApiError::TenantBackoff(7);
        assert_eq!(
            (e.status().as_u16(), e.code()),
            (429, ErrorCode::TenantBackoff)
        );
        assert_eq!(e.retry_after(), Some(7));
    }

    /// Every code of the one enum is in the errors table of `docs/api.md`
    /// with the status it is mapped to, and the table names no other code.
    #[test]
    fn every_code_is_documented_with_its_status() {
        let doc = include_str!("../../docs/api.md");
        let start = doc.find("### Errors").expect("an Errors section");
        let mut documented = std::collections::BTreeMap::new();
        for line in doc[start..]
            .lines()
            .filter(|l| l.starts_with("| 4") || l.starts_with("| 5"))
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status: u16 = cells[1].parse().expect("a status");
            for code in cells[2].split(',').map(|c| c.trim().trim_matches('`')) {
                let prev = documented.insert(code.to_string(), status);
                assert!(prev.is_none(), "`{code}` documented twice");
            }
        }
        for &code in ErrorCode::ALL {
            let status = status_of(code).as_u16();
            assert!(status >= 400, "{code}");
            assert_eq!(
                documented.remove(code.as_str()),
                Some(status),
                "`{code}` must be documented with status {status}"
            );
        }
        assert!(documented.is_empty(), "not codes: {documented:?}");
    }
}
