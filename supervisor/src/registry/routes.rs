//! The HTTP API of stored policies, `/api/v1/policies…`
//! (`docs/api.md#stored-policies`): routing, and one handler per
//! operation. Every operation is admitted like `/api/validate` (draining,
//! auth, rate limit, in-flight cap: [`validate::admit`]); the tenant is the
//! token's (`default` with auth off), and another tenant's policy is
//! `policy_not_found`, never forbidden. A text to store is checked in full
//! by a worker (a check-only job through the pool, which keeps the compiled
//! policy) before the store sees it; an evaluation by name builds the same
//! work as `/api/validate` from the registry's entry, without hashing or
//! copying the text.

use super::{Registry, Served, ANONYMOUS_ACTOR, ANONYMOUS_TENANT};
use crate::api::{split_diagnostics, ActivateRequest, ApiError, EvaluateRequest};
use crate::app::App;
use crate::body::Body;
use crate::pool::JobResult;
use crate::store::{Actor, Change, QuotaKind, RevisionInfo, StoreError};
use crate::validate::{self, Admitted, BodyRule, ValidateInput, ValidateLog};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION};
use hyper::{Method, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Every path of the API starts with this.
pub const PREFIX: &str = "/api/v1/policies";

/// The resources under [`PREFIX`], by the shape of their path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `/api/v1/policies`
    Collection,
    /// `/api/v1/policies/{name}`
    Policy,
    /// `/api/v1/policies/{name}/history`
    History,
    /// `/api/v1/policies/{name}/revisions/{n}`
    Revision,
    /// `/api/v1/policies/{name}/activate`
    Activate,
    /// `/api/v1/policies/{name}/rollback`
    Rollback,
    /// `/api/v1/policies/{name}/evaluate`
    Evaluate,
}

/// One operation: a resource and a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    List,
    Get,
    Put,
    Delete,
    History,
    Revision,
    Activate,
    Rollback,
    Evaluate,
}

impl Resource {
    /// The resource `path` names, if it is one of this API's.
    pub fn of(path: &str) -> Option<Resource> {
        let rest = path.strip_prefix(PREFIX)?;
        if rest.is_empty() {
            return Some(Resource::Collection);
        }
        let segs: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(match segs.as_slice() {
            [_] => Resource::Policy,
            [_, "history"] => Resource::History,
            [_, "revisions", _] => Resource::Revision,
            [_, "activate"] => Resource::Activate,
            [_, "rollback"] => Resource::Rollback,
            [_, "evaluate"] => Resource::Evaluate,
            _ => return None,
        })
    }

    /// The operation of `method` on this resource (HEAD is GET).
    pub fn op(self, method: &Method) -> Option<Op> {
        let get = *method == Method::GET || *method == Method::HEAD;
        Some(match self {
            Resource::Collection if get => Op::List,
            Resource::Policy if get => Op::Get,
            Resource::Policy if *method == Method::PUT => Op::Put,
            Resource::Policy if *method == Method::DELETE => Op::Delete,
            Resource::History if get => Op::History,
            Resource::Revision if get => Op::Revision,
            Resource::Activate if *method == Method::POST => Op::Activate,
            Resource::Rollback if *method == Method::POST => Op::Rollback,
            Resource::Evaluate if *method == Method::POST => Op::Evaluate,
            _ => return None,
        })
    }

    /// The `Allow` header of a 405 on this resource.
    pub fn allow(self) -> &'static str {
        match self {
            Resource::Collection | Resource::History | Resource::Revision => "GET, HEAD",
            Resource::Policy => "GET, HEAD, PUT, DELETE",
            Resource::Activate | Resource::Rollback | Resource::Evaluate => "POST",
        }
    }

    /// The endpoint's name in metrics (bounded).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Collection => "policies",
            Resource::Policy => "policy",
            Resource::History => "policy_history",
            Resource::Revision => "policy_revision",
            Resource::Activate => "policy_activate",
            Resource::Rollback => "policy_rollback",
            Resource::Evaluate => "policy_evaluate",
        }
    }
}

/// Longest policy name.
pub const MAX_NAME: usize = 128;

/// A policy name: 1-128 characters of `[A-Za-z0-9._-]`, not starting with
/// `.` (so no `.` or `..`, and nothing that needs escaping in a URL).
pub fn valid_policy_name(s: &str) -> bool {
    (1..=MAX_NAME).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The request as the handlers need it.
pub struct Input {
    pub request: ValidateInput,
    pub path: String,
    pub query: Option<String>,
}

/// Answers one operation on a stored policy.
pub async fn handle(
    app: &App,
    op: Op,
    request_id: &str,
    input: Input,
    log: &mut ValidateLog,
) -> Result<Response<Body>, ApiError> {
    let rule = match op {
        Op::Put => BodyRule::PolicyText,
        Op::Activate | Op::Evaluate => BodyRule::Json,
        _ => BodyRule::Ignored,
    };
    let req = &input.request;
    let admitted = validate::admit(app, req, rule, log)?;
    let segs: Vec<&str> = input
        .path
        .strip_prefix(PREFIX)
        .unwrap_or("")
        .split('/')
        .skip(1)
        .collect();
    let name = match segs.first() {
        Some(n) if valid_policy_name(n) => (*n).to_string(),
        Some(_) => return Err(ApiError::InvalidPolicyName),
        None => String::new(),
    };
    let reg = &app.registry;
    let tenant = tenant_of(&admitted).to_string();
    match op {
        Op::List => list(reg, &tenant).await,
        Op::Get => get(reg, &tenant, &name).await,
        Op::History => history(reg, &tenant, &name).await,
        Op::Revision => revision(reg, &tenant, &name, segs.get(2).copied().unwrap_or("")).await,
        Op::Put => put(app, &admitted, request_id, &name, input, log).await,
        Op::Activate => {
            let if_match = required_if_match(&input.request.headers)?;
            let body = read_json_body(&admitted, input.request).await?;
            let req: ActivateRequest = validate::parse_strict(&body)?;
            let change = reg
                .activate(&actor(&admitted), &name, req.revision, Some(if_match))
                .await
                .map_err(|e| store_error(e, &name))?;
            Ok(moved(&name, &change))
        }
        Op::Rollback => {
            let if_match = required_if_match(&input.request.headers)?;
            let change = reg
                .rollback(&actor(&admitted), &name, Some(if_match))
                .await
                .map_err(|e| store_error(e, &name))?;
            Ok(moved(&name, &change))
        }
        Op::Delete => {
            let if_match = required_if_match(&input.request.headers)?;
            let change = reg
                .delete(&actor(&admitted), &name, Some(if_match))
                .await
                .map_err(|e| store_error(e, &name))?;
            let body = json!({ "name": name, "deleted": true, "previousRevision": change.from });
            Ok(json(StatusCode::OK, &body))
        }
        Op::Evaluate => evaluate(app, &admitted, request_id, &name, input, log).await,
    }
}

/// The tenant whose policies a request sees.
fn tenant_of(a: &Admitted) -> &str {
    a.tenant.as_deref().unwrap_or(ANONYMOUS_TENANT)
}

/// Who the history says made a change: never the token itself.
fn actor(a: &Admitted) -> Actor {
    Actor {
        tenant: tenant_of(a).to_string(),
        credential: a
            .token_name
            .clone()
            .unwrap_or_else(|| ANONYMOUS_ACTOR.to_string()),
    }
}

/// A store error as the API says it. An unreachable store was logged
/// (with its reason) by the registry; clients only hear that it is away.
fn store_error(e: StoreError, name: &str) -> ApiError {
    match e {
        StoreError::PolicyNotFound => ApiError::PolicyNotFound(name.to_string()),
        StoreError::RevisionNotFound(n) => ApiError::RevisionNotFound(name.to_string(), n),
        StoreError::Conflict { active } => ApiError::PreconditionFailed(format!(
            "If-Match does not name the active revision of `{name}`, which is {}; read it again (its ETag) and retry",
            match active {
                Some(n) => format!("\"{n}\""),
                None => "\"0\" (none active)".to_string(),
            }
        )),
        StoreError::NothingToRollBack => ApiError::NothingToRollBack,
        StoreError::Quota { kind, limit } => match kind {
            QuotaKind::Policies => ApiError::PolicyQuotaExceeded(limit),
            QuotaKind::Revisions => ApiError::RevisionQuotaExceeded(limit),
            QuotaKind::Bytes => ApiError::StorageQuotaExceeded(limit),
        },
        StoreError::Unavailable(_) => ApiError::StoreUnavailable,
    }
}

/// `If-Match: "N"` (also `N` or `W/"N"`): the revision the caller expects
/// to be active (`"0"`: none). `None` when absent.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::InvalidRequest(
            "If-Match must name one revision, as the ETag gives it (e.g. If-Match: \"3\")".into(),
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse().map(Some).map_err(|_| bad())
}

/// `If-Match` for a change that must not silently overwrite another's.
fn required_if_match(headers: &HeaderMap) -> Result<u64, ApiError> {
    if_match(headers)?.ok_or(ApiError::PreconditionRequired)
}

/// `?activate=true|false` (default true); no other parameter.
fn activate_param(query: Option<&str>) -> Result<bool, ApiError> {
    let mut activate = true;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("activate", "true") => activate = true,
            ("activate", "false") => activate = false,
            ("activate", _) => {
                return Err(ApiError::InvalidRequest(
                    "query parameter `activate`: expected true or false".into(),
                ))
            }
            _ => {
                return Err(ApiError::InvalidRequest(format!(
                    "unknown query parameter `{}`",
                    k.chars().take(40).collect::<String>()
                )))
            }
        }
    }
    Ok(activate)
}

fn body_timeout(a: &Admitted) -> Duration {
    Duration::from_millis(a.settings.config.http.body_timeout_ms)
}

async fn read_json_body(a: &Admitted, req: ValidateInput) -> Result<Bytes, ApiError> {
    validate::read_body(req.body, a.eff.max_body, body_timeout(a)).await
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    json_bytes(status, serde_json::to_vec(v).unwrap_or_default())
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `ETag: "N"` of the active revision (`"0"`: none), what `If-Match` sends back.
fn set_etag(r: &mut Response<Body>, active: Option<u64>) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", active.unwrap_or(0))) {
        r.headers_mut().insert(ETAG, v);
    }
}

/// The answer to an activate or a rollback.
fn moved(name: &str, change: &Change) -> Response<Body> {
    let body = json!({
        "name": name,
        "activeRevision": change.to,
        "previousRevision": change.from,
    });
    let mut r = json(StatusCode::OK, &body);
    set_etag(&mut r, change.to);
    r
}

fn revision_json(r: &RevisionInfo) -> serde_json::Value {
    json!({
        "revision": r.number,
        "policyId": r.policy_id,
        "bytes": r.bytes,
        "createdAt": super::rfc3339_ms(r.created_at_ms),
        "createdBy": r.created_by,
    })
}

async fn list(reg: &Registry, tenant: &str) -> Result<Response<Body>, ApiError> {
    let all = reg.list(tenant).await.map_err(|e| store_error(e, ""))?;
    let policies: Vec<_> = all
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "activeRevision": p.active,
                "latestRevision": p.latest,
                "revisions": p.revisions,
                "updatedAt": super::rfc3339_ms(p.updated_at_ms),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "policies": policies })))
}

async fn get(reg: &Registry, tenant: &str, name: &str) -> Result<Response<Body>, ApiError> {
    let d = reg
        .get(tenant, name)
        .await
        .map_err(|e| store_error(e, name))?;
    let served = reg.served(tenant, name).map(|s| s.revision);
    let body = json!({
        "name": d.summary.name,
        "activeRevision": d.summary.active,
        "servedRevision": served,
        "latestRevision": d.summary.latest,
        "revisions": d.revisions.iter().map(revision_json).collect::<Vec<_>>(),
    });
    let mut r = json(StatusCode::OK, &body);
    set_etag(&mut r, d.summary.active);
    Ok(r)
}

async fn history(reg: &Registry, tenant: &str, name: &str) -> Result<Response<Body>, ApiError> {
    let changes = reg
        .history(tenant, name)
        .await
        .map_err(|e| store_error(e, name))?;
    let changes: Vec<_> = changes
        .iter()
        .map(|c| {
            json!({
                "seq": c.seq,
                "at": super::rfc3339_ms(c.at_ms),
                "tenant": c.tenant,
                "actor": c.actor,
                "action": c.kind.as_str(),
                "fromRevision": c.from,
                "toRevision": c.to,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "changes": changes })))
}

/// A revision number in a path: a positive integer.
fn revision_number(s: &str) -> Result<u64, ApiError> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ApiError::InvalidRequest(
            "revision numbers are positive integers (1, 2, 3…)".into(),
        )),
    }
}

async fn revision(
    reg: &Registry,
    tenant: &str,
    name: &str,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    let n = revision_number(number)?;
    let (info, text) = reg
        .revision(tenant, name, n)
        .await
        .map_err(|e| store_error(e, name))?;
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&info.policy_id) {
        r.headers_mut().insert("omni-policy-id", v);
    }
    Ok(r)
}

/// `PUT /api/v1/policies/{name}`: check the text in a worker under the
/// caller's limits, then store it (a new revision, or the existing one
/// with the same text), activating it unless `?activate=false`.
async fn put(
    app: &App,
    admitted: &Admitted,
    request_id: &str,
    name: &str,
    input: Input,
    log: &mut ValidateLog,
) -> Result<Response<Body>, ApiError> {
    let activate = activate_param(input.query.as_deref())?;
    let if_match = if_match(&input.request.headers)?;
    // Do not spend a worker on a text that cannot be stored now.
    if !app.registry.reachable().await {
        return Err(ApiError::StoreUnavailable);
    }
    let max = validate::policy_body_max(&admitted.eff);
    let body = validate::read_body(input.request.body, max, body_timeout(admitted))
        .await
        .map_err(|e| match e {
            ApiError::BodyTooLarge(_) => ApiError::PolicyTooLarge(max),
            e => e,
        })?;
    let text: Arc<str> = std::str::from_utf8(&body)
        .map_err(|_| ApiError::InvalidRequest("the policy text must be UTF-8".into()))?
        .into();
    let policy_id = omni::policy::policy_id(text.as_bytes());
    log.policy_id = Some(policy_id.clone());
    // The full check, sandboxed: a check-only job, whose compiled policy
    // the worker keeps for the first evaluation.
    let work = validate::work(
        admitted,
        request_id,
        policy_id,
        text.clone(),
        validate::check_spec(admitted),
    );
    let deadline = work.deadline;
    let reply = app
        .pool
        .submit(work)
        .await
        .map_err(validate::submit_error)?;
    if let Some(e) = ApiError::from_job(&reply, deadline) {
        return Err(e);
    }
    let JobResult::Done(outcome) = reply.result else {
        return Err(ApiError::Internal);
    };
    log.cache_hit = Some(outcome.cache_hit);
    let (errors, warnings) = split_diagnostics(&outcome.diagnostics_json)?;
    if outcome.has_errors || !errors.is_empty() {
        return Err(ApiError::PolicyInvalid {
            diagnostics_json: outcome.diagnostics_json.clone(),
        });
    }
    let quotas = admitted.settings.config.store_quotas(tenant_of(admitted));
    let stored = app
        .registry
        .put(&actor(admitted), name, text, activate, if_match, &quotas)
        .await
        .map_err(|e| store_error(e, name))?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "name": name,
        "revision": stored.revision.number,
        "policyId": stored.revision.policy_id,
        "activeRevision": stored.active,
        "created": stored.created,
        "warnings": warnings,
    });
    let mut r = json(status, &body);
    set_etag(&mut r, stored.active);
    if stored.created {
        let at = format!("{PREFIX}/{name}/revisions/{}", stored.revision.number);
        if let Ok(v) = HeaderValue::from_str(&at) {
            r.headers_mut().insert(LOCATION, v);
        }
    }
    Ok(r)
}

/// `POST /api/v1/policies/{name}/evaluate`: `/api/validate` on the stored
/// text of the active revision (or of `revision`), answered with
/// `/api/validate`'s body plus `policy: {name, revision}`.
async fn evaluate(
    app: &App,
    admitted: &Admitted,
    request_id: &str,
    name: &str,
    input: Input,
    log: &mut ValidateLog,
) -> Result<Response<Body>, ApiError> {
    let received = input.request.received;
    let received_wall = input.request.received_wall;
    let body = read_json_body(admitted, input.request).await?;
    let req: EvaluateRequest = validate::parse_strict(&body)?;
    let tenant = tenant_of(admitted);
    let served = match (app.registry.served(tenant, name), req.revision) {
        (Some(s), None) => s,
        (None, None) => return Err(ApiError::NoActiveRevision(name.to_string())),
        (Some(s), Some(n)) if s.revision == n => s,
        // Another revision than the one served: read from the store.
        (_, Some(n)) => {
            let (info, text) = app
                .registry
                .revision(tenant, name, n)
                .await
                .map_err(|e| store_error(e, name))?;
            Arc::new(Served {
                revision: info.number,
                policy_id: info.policy_id,
                text: text.into(),
            })
        }
    };
    let run = validate::run_spec(
        admitted,
        req.context,
        req.now.as_deref(),
        req.options,
        received_wall,
    )?;
    log.policy_id = Some(served.policy_id.clone());
    log.stored = Some((name.to_string(), served.revision));
    let work = validate::work(
        admitted,
        request_id,
        served.policy_id.clone(),
        served.text.clone(),
        run,
    );
    let deadline = work.deadline;
    let reply = app
        .pool
        .submit(work)
        .await
        .map_err(validate::submit_error)?;
    let mut out = validate::respond(
        app,
        request_id,
        &served.policy_id,
        reply,
        deadline,
        received,
        log,
    )?;
    // `/api/validate`'s object, plus the stored policy it evaluated.
    if out.pop() != Some(b'}') {
        return Err(ApiError::Internal);
    }
    out.extend_from_slice(b",\"policy\":");
    serde_json::to_writer(
        &mut out,
        &json!({ "name": name, "revision": served.revision }),
    )
    .map_err(|_| ApiError::Internal)?;
    out.push(b'}');
    Ok(json_bytes(StatusCode::OK, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_resources_and_methods_to_operations() {
        let p = |s: &str| Resource::of(s);
        assert_eq!(p("/api/v1/policies"), Some(Resource::Collection));
        assert_eq!(p("/api/v1/policies/a"), Some(Resource::Policy));
        assert_eq!(p("/api/v1/policies/a/history"), Some(Resource::History));
        assert_eq!(
            p("/api/v1/policies/a/revisions/3"),
            Some(Resource::Revision)
        );
        assert_eq!(p("/api/v1/policies/a/activate"), Some(Resource::Activate));
        assert_eq!(p("/api/v1/policies/a/rollback"), Some(Resource::Rollback));
        assert_eq!(p("/api/v1/policies/a/evaluate"), Some(Resource::Evaluate));
        for none in [
            "/api/v1/policie",
            "/api/v1/policiesx",
            "/api/v1/policies/",
            "/api/v1/policies//history",
            "/api/v1/policies/a/",
            "/api/v1/policies/a/revisions",
            "/api/v1/policies/a/revisions/1/x",
            "/api/v1/policies/a/other",
        ] {
            assert_eq!(p(none), None, "{none}");
        }
        assert_eq!(Resource::Policy.op(&Method::PUT), Some(Op::Put));
        assert_eq!(Resource::Policy.op(&Method::HEAD), Some(Op::Get));
        assert_eq!(Resource::Policy.op(&Method::POST), None);
        assert_eq!(Resource::Evaluate.op(&Method::GET), None);
    }

    #[test]
    fn names_headers_and_parameters() {
        for ok in ["a", "door.main", "A_b-9", &"x".repeat(128)] {
            assert!(valid_policy_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a%2Fb",
            "é",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(!valid_policy_name(bad), "{bad}");
        }
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(IF_MATCH, HeaderValue::from_str(v).unwrap());
            if_match(&m)
        };
        assert_eq!(h("\"3\"").unwrap(), Some(3));
        assert_eq!(h("W/\"0\"").unwrap(), Some(0));
        assert_eq!(h("7").unwrap(), Some(7));
        for bad in ["*", "\"a\"", "\"1\", \"2\"", "\"\"", "-1"] {
            assert_eq!(h(bad).unwrap_err().code(), "invalid_request", "{bad}");
        }
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            required_if_match(&HeaderMap::new()).unwrap_err().code(),
            "precondition_required"
        );
        assert!(activate_param(None).unwrap());
        assert!(!activate_param(Some("activate=false")).unwrap());
        assert!(activate_param(Some("activate=maybe")).is_err());
        assert!(activate_param(Some("x=1")).is_err());
        assert_eq!(revision_number("12").unwrap(), 12);
        for bad in ["0", "+1", "-1", "x", ""] {
            assert!(revision_number(bad).is_err(), "{bad}");
        }
    }
}
