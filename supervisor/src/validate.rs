//! `POST /api/validate`, one way through: admit (draining → auth → rate
//! limit → media type → size limits → in-flight cap) → body under its limit
//! → build the work (strict parse → per-field limits → options) → submit to
//! the pool (owner's back-off → quarantine → capacity → the owner's queue →
//! worker) → respond. The context is never parsed here: it travels to the worker as
//! raw bytes, where the sandbox is.

use crate::api::{
    validate_body, ApiError, CertProblem, TimingsJson, ValidateOptions, ValidateRequest,
};
use crate::app::{App, Effective, Settings};
use crate::auth::{AuthResult, CertRefusal, Principal};
use crate::config::AuthMode;
use crate::http::ConnInfo;
use crate::limits::{client_ip, retry_after_secs, InflightGuard};
use crate::pool::{JobReply, JobResult, SubmitError, Work};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use omni::options::Profile;
use omni_worker::protocol::RequestOptions;
use serde_json::value::RawValue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the request log line reports (no policy text, no context values).
#[derive(Debug, Default)]
pub struct ValidateLog {
    pub tenant: Option<String>,
    /// The credential that authenticated the tenant (`Principal::credential`).
    pub credential: Option<String>,
    pub policy_id: Option<String>,
    pub cache_hit: Option<bool>,
    pub timings: Option<(u64, u64, u64, u64)>,
    /// Evaluate-by-name: the stored policy's name and the revision evaluated.
    pub stored: Option<(String, u64)>,
}

pub struct ValidateInput {
    pub headers: HeaderMap,
    pub body: Incoming,
    pub peer: SocketAddr,
    pub conn: Arc<ConnInfo>,
    pub received: Instant,
    pub received_wall: SystemTime,
}

/// Extra bytes read and thrown away after a body goes over its limit, so
/// the client can read the 413 instead of a connection reset.
const DRAIN_EXTRA: usize = 1 << 20;

pub async fn handle(
    app: &App,
    request_id: &str,
    req: ValidateInput,
    log: &mut ValidateLog,
) -> Result<Vec<u8>, ApiError> {
    let admitted = admit(app, &req, BodyRule::Json, log)?;
    let body_timeout = Duration::from_millis(admitted.settings.config.http.body_timeout_ms);
    let body = read_body(req.body, admitted.eff.max_body, body_timeout).await?;
    let work = build_work(&admitted, request_id, &body, req.received_wall)?;
    log.policy_id = Some(work.policy_id.clone());
    let (policy_id, deadline) = (work.policy_id.clone(), work.deadline);
    let reply = app.pool.submit(work).await.map_err(submit_error)?;
    respond(
        app,
        request_id,
        &policy_id,
        reply,
        deadline,
        req.received,
        log,
    )
}

/// A request let in: who asks, under which limits, holding an in-flight
/// slot until it is answered.
pub(crate) struct Admitted {
    pub settings: Arc<Settings>,
    pub tenant: Option<String>,
    /// The name of the caller's token (auth on), for the change history.
    pub token_name: Option<String>,
    /// Who the request is charged to: `t:TENANT`, or `a:ADDRESS` for an
    /// anonymous client (the rate limit, the fair share, the failure
    /// budget and quarantine all key on it).
    pub owner: String,
    pub eff: Effective,
    _slot: InflightGuard,
}

/// What a request's body must be, checked on its headers before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyRule {
    /// JSON (`Content-Type: application/json`) of at most `limits.max_body_bytes`.
    Json,
    /// A policy text: any media type, at most the caller's policy size limit.
    PolicyText,
    /// None is read (whatever is sent is ignored).
    Ignored,
}

/// Everything decided before the body is read, for every endpoint that
/// does work for a caller: draining → auth → rate → media type → declared
/// length → in-flight cap.
pub(crate) fn admit(
    app: &App,
    req: &ValidateInput,
    body: BodyRule,
    log: &mut ValidateLog,
) -> Result<Admitted, ApiError> {
    if app.draining() {
        return Err(ApiError::Draining);
    }
    let settings = app.settings();
    let cfg = &settings.config;
    let principal = authenticate(&settings, req, log)?;
    let (tenant, token_name) = match principal {
        Some(p) => (Some(p.tenant), Some(p.credential)),
        None => (None, None),
    };
    let eff = settings.effective(tenant.as_deref());
    let (headers, peer) = (&req.headers, req.peer);
    let owner = owner_key(&settings, tenant.as_deref(), headers, peer);
    rate_limit(app, &settings, &eff, &owner)?;
    if body == BodyRule::Json && !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    match body {
        BodyRule::Json if declared.is_some_and(|n| n > eff.max_body as u64) => {
            return Err(ApiError::BodyTooLarge(eff.max_body));
        }
        BodyRule::PolicyText if declared.is_some_and(|n| n > policy_body_max(&eff) as u64) => {
            return Err(ApiError::PolicyTooLarge(policy_body_max(&eff)));
        }
        _ => {}
    }
    let slot = app
        .inflight
        .try_acquire(
            cfg.pool.max_inflight,
            tenant.as_deref().map(|t| (t, eff.max_inflight)),
        )
        .ok_or(ApiError::Overloaded)?;
    Ok(Admitted {
        settings,
        tenant,
        token_name,
        owner,
        eff,
        _slot: slot,
    })
}

/// The largest policy text a caller may send as a body: its policy size
/// limit, and never more than its body limit.
pub(crate) fn policy_body_max(eff: &Effective) -> usize {
    eff.language.policy_bytes.min(eff.max_body)
}

/// Who is asking, when auth is on: the tenant of the bearer token or of
/// the client certificate, as `auth.mode` says. In mode `both` a request
/// that sends an `Authorization` header is judged by its token alone.
fn authenticate(
    settings: &Settings,
    req: &ValidateInput,
    log: &mut ValidateLog,
) -> Result<Option<Principal>, ApiError> {
    let cfg = &settings.config;
    if !cfg.auth.enabled {
        return Ok(None);
    }
    let mode = cfg.auth.mode;
    let header = req.headers.get(AUTHORIZATION);
    let by_token = mode == AuthMode::Token || (mode == AuthMode::Both && header.is_some());
    let principal = if by_token {
        match settings.tokens.check(header.map(|v| v.as_bytes())) {
            AuthResult::Tenant(p) => p,
            AuthResult::Missing | AuthResult::Unknown => return Err(ApiError::Unauthorized),
        }
    } else {
        certificate_principal(settings, req, mode)?
    };
    log.tenant = Some(principal.tenant.clone());
    log.credential = Some(principal.credential.clone());
    if cfg
        .tenants
        .get(&principal.tenant)
        .is_some_and(|s| !s.enabled)
    {
        return Err(if by_token {
            ApiError::Forbidden
        } else {
            ApiError::Certificate(CertProblem::TenantDisabled)
        });
    }
    Ok(Some(principal))
}

/// The tenant of the connection's client certificate. A connection accepted
/// before a reload has its certificate checked again against the reloaded
/// CA bundle and CRL before it is believed.
fn certificate_principal(
    settings: &Settings,
    req: &ValidateInput,
    mode: AuthMode,
) -> Result<Principal, ApiError> {
    let Some(cert) = &req.conn.client_cert else {
        return Err(ApiError::Certificate(if mode == AuthMode::Both {
            CertProblem::MissingEither
        } else {
            CertProblem::Missing
        }));
    };
    if !settings.tls.as_ref().is_some_and(|m| cert.still_valid(m)) {
        return Err(ApiError::Certificate(CertProblem::NoLongerValid));
    }
    settings.cert_ids.principal(&cert.names).map_err(|r| {
        ApiError::Certificate(match r {
            CertRefusal::NoTenant => CertProblem::NoTenant,
            CertRefusal::Ambiguous => CertProblem::Ambiguous,
        })
    })
}

/// Who a request is charged to: its tenant when authenticated, else its
/// client address (behind a trusted proxy, the address the proxy names).
fn owner_key(
    settings: &Settings,
    tenant: Option<&str>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> String {
    match tenant {
        Some(t) => format!("t:{t}"),
        None => {
            let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
            format!("a:{}", client_ip(peer, xff, &settings.trusted_proxies))
        }
    }
}

/// Rate: per owner (tenant when authenticated, else client address).
fn rate_limit(
    app: &App,
    settings: &Settings,
    eff: &Effective,
    owner: &str,
) -> Result<(), ApiError> {
    let cfg = &settings.config;
    if !cfg.rate_limit.enabled {
        return Ok(());
    }
    if let Err(wait) = app
        .limiter
        .check(owner, eff.rate, eff.burst, cfg.rate_limit.max_clients)
    {
        app.metrics.rate_limited();
        return Err(ApiError::RateLimited(retry_after_secs(wait)));
    }
    Ok(())
}

/// The body, strictly parsed and held to the per-field limits, as the work
/// a worker does.
fn build_work(
    admitted: &Admitted,
    request_id: &str,
    body: &[u8],
    received_wall: SystemTime,
) -> Result<Work, ApiError> {
    let parsed = parse_request(body)?;
    let max = admitted.eff.language.policy_bytes;
    if parsed.code.len() > max {
        return Err(ApiError::PolicyTooLarge(max));
    }
    let run = run_spec(
        admitted,
        parsed.context,
        parsed.now.as_deref(),
        parsed.options,
        received_wall,
    )?;
    let policy_id = omni::policy::policy_id(parsed.code.as_bytes());
    Ok(work(
        admitted,
        request_id,
        policy_id,
        parsed.code.into(),
        run,
    ))
}

/// How one evaluation runs, whatever the policy: its context, its `now`,
/// the options the worker gets and the deadline.
pub(crate) struct RunSpec {
    pub context: Option<Vec<u8>>,
    pub now_unix_nanos: i64,
    pub options: RequestOptions,
    pub deadline: Duration,
}

/// The request's `context`, `now` and `options`, held to the caller's limits.
pub(crate) fn run_spec(
    admitted: &Admitted,
    context: Option<&RawValue>,
    now: Option<&str>,
    options: Option<ValidateOptions>,
    received_wall: SystemTime,
) -> Result<RunSpec, ApiError> {
    let Admitted { settings, eff, .. } = admitted;
    let context = raw_context(context, eff.language.context.max_bytes)?;
    let now_unix_nanos = match now {
        Some(s) => parse_now(s)?,
        None => unix_nanos(received_wall),
    };
    let opts = options.unwrap_or_default();
    let deadline = match opts.timeout_ms {
        Some(0) => {
            return Err(ApiError::InvalidRequest(
                "field `options.timeoutMs`: must be at least 1".into(),
            ))
        }
        Some(ms) => Duration::from_millis(ms).min(eff.timeout),
        None => eff.timeout,
    };
    let strict = opts.strict.unwrap_or(settings.config.limits.strict);
    let options = request_options(settings, eff, strict, opts.trace.unwrap_or(false));
    Ok(RunSpec {
        context,
        now_unix_nanos,
        options,
        deadline,
    })
}

/// A check of a policy text with nothing evaluated (no context): under the
/// caller's limits and default profile, so the compiled policy the worker
/// keeps is the one a later default evaluation looks up.
pub(crate) fn check_spec(admitted: &Admitted) -> RunSpec {
    let Admitted { settings, eff, .. } = admitted;
    RunSpec {
        context: None,
        now_unix_nanos: 0,
        options: request_options(settings, eff, settings.config.limits.strict, false),
        deadline: eff.timeout,
    }
}

/// The work of one request: `text` is the policy whose id is `policy_id`
/// (shared, never copied: a worker holding it compiled gets the id only).
pub(crate) fn work(
    admitted: &Admitted,
    request_id: &str,
    policy_id: String,
    text: Arc<str>,
    run: RunSpec,
) -> Work {
    let cache_key = cache_key(&policy_id, admitted.tenant.as_deref(), &run.options);
    Work {
        request_id: request_id.to_string(),
        tenant: admitted.tenant.clone(),
        owner: admitted.owner.clone(),
        policy_id,
        cache_key,
        text,
        context: run.context,
        now_unix_nanos: run.now_unix_nanos,
        options: run.options,
        deadline: run.deadline,
    }
}

/// The field `now`: an RFC 3339 timestamp, as Unix nanoseconds.
fn parse_now(s: &str) -> Result<i64, ApiError> {
    let t = omni::timefmt::parse_rfc3339(s).ok_or_else(|| {
        ApiError::InvalidRequest(
            "field `now`: expected an RFC 3339 timestamp such as 2026-01-01T00:00:00Z".into(),
        )
    })?;
    Ok(t.0)
}

/// Why the pool did not answer with a result, as the API says it.
pub(crate) fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Quarantined(left) => ApiError::PolicyQuarantined(left.as_secs().max(1)),
        SubmitError::TenantBackoff(left) => ApiError::TenantBackoff(left.as_secs().max(1)),
        SubmitError::NotReady => ApiError::NotReady,
        SubmitError::Full | SubmitError::TimedOut => ApiError::Overloaded,
        SubmitError::Stopped => ApiError::Draining,
        SubmitError::Lost => ApiError::Internal,
    }
}

/// The pool's answer as the response body, with the phase metrics and the
/// log line's timings.
pub(crate) fn respond(
    app: &App,
    request_id: &str,
    policy_id: &str,
    reply: JobReply,
    deadline: Duration,
    received: Instant,
    log: &mut ValidateLog,
) -> Result<Vec<u8>, ApiError> {
    let queue_us = reply.queue_time.as_micros() as u64;
    app.metrics.phase("queue", reply.queue_time);
    if let Some(err) = ApiError::from_job(&reply, deadline) {
        log.timings = Some((queue_us, 0, 0, 0));
        return Err(err);
    }
    let JobResult::Done(outcome) = reply.result else {
        return Err(ApiError::Internal);
    };
    let t = outcome.timings;
    let parse_us = t.parse_us + t.context_us;
    log.cache_hit = Some(outcome.cache_hit);
    log.timings = Some((queue_us, parse_us, t.check_us, t.eval_us));
    app.metrics.phase("parse", Duration::from_micros(parse_us));
    app.metrics
        .phase("check", Duration::from_micros(t.check_us));
    app.metrics.phase("eval", Duration::from_micros(t.eval_us));
    let timings = TimingsJson {
        queue_us,
        parse_us,
        check_us: t.check_us,
        eval_us: t.eval_us,
        total_us: received.elapsed().as_micros() as u64,
    };
    validate_body(request_id, policy_id, &outcome, timings, &app.engine)
}

/// The request body, strictly. A valid body is parsed once; only a body
/// that fails is parsed again with the path tracking that names the
/// field in the error (the tracking costs on every request otherwise).
fn parse_request(body: &[u8]) -> Result<ValidateRequest<'_>, ApiError> {
    parse_strict(body)
}

/// A JSON request body of type `T`, strictly (see [`parse_request`]).
pub(crate) fn parse_strict<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if let Ok(parsed) = serde_json::from_slice::<T>(body) {
        return Ok(parsed);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(ApiError::from_json)?;
    de.end()
        .map_err(|_| ApiError::InvalidJson("trailing characters after the JSON value".into()))?;
    Ok(parsed)
}

fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// `application/json`, with or without parameters.
fn is_json(h: &HeaderMap) -> bool {
    let Some(ct) = h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
}

/// Reads the body under `max` bytes and the body timeout.
pub(crate) async fn read_body(
    body: Incoming,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let read = async move {
        let mut body = body;
        // A body that arrives in one piece is used as it is, without a copy.
        let mut first: Option<Bytes> = None;
        let mut buf: Vec<u8> = Vec::new();
        let mut over = false;
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                ApiError::InvalidRequest("the request body could not be read".into())
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if over || seen > max {
                over = true;
                if seen > max + DRAIN_EXTRA {
                    break;
                }
                continue;
            }
            if first.is_none() && buf.is_empty() {
                first = Some(data);
                continue;
            }
            if let Some(f) = first.take() {
                buf.extend_from_slice(&f);
            }
            buf.extend_from_slice(&data);
        }
        if over {
            return Err(ApiError::BodyTooLarge(max));
        }
        Ok(match first {
            Some(f) => f,
            None => Bytes::from(buf),
        })
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::InvalidRequest(
            "the request body was not received in time".into(),
        )),
    }
}

/// The context's raw JSON bytes: an object as sent, or the string form
/// unescaped once. Only the first byte is checked here; the worker parses.
fn raw_context(raw: Option<&RawValue>, max: usize) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get().trim_start();
    let bytes = match text.as_bytes().first() {
        Some(b'{') => text.as_bytes().to_vec(),
        Some(b'n') if text.trim_end() == "null" => return Ok(None),
        Some(b'"') => {
            if text.len() > max.saturating_mul(6).saturating_add(2) {
                // Even fully escaped it could not fit.
                return Err(ApiError::ContextTooLarge(max));
            }
            let s: String = serde_json::from_str(text)
                .map_err(|_| ApiError::InvalidContext("the context string is not valid".into()))?;
            if !s.trim_start().starts_with('{') {
                return Err(ApiError::InvalidContext(
                    "the context must be a JSON object (or a string holding one)".into(),
                ));
            }
            s.into_bytes()
        }
        _ => {
            return Err(ApiError::InvalidContext(
                "the context must be a JSON object (or a string holding one)".into(),
            ))
        }
    };
    if bytes.len() > max {
        return Err(ApiError::ContextTooLarge(max));
    }
    Ok(Some(bytes))
}

fn request_options(s: &Settings, eff: &Effective, strict: bool, trace: bool) -> RequestOptions {
    let profile = if strict {
        Profile::Strict
    } else {
        Profile::Lenient
    };
    RequestOptions::new(profile, s.config.features.clone(), eff.language, trace)
}

/// The key a worker caches the compiled policy under: the policy, what its
/// compilation depends on (the check options' fingerprint, which the worker
/// checks again), and the tenant, so tenants never share a cache entry.
fn cache_key(policy_id: &str, tenant: Option<&str>, o: &RequestOptions) -> String {
    let fingerprint = o.check.fingerprint();
    match tenant {
        Some(t) => format!("{policy_id}~{fingerprint:016x}@{t}"),
        None => format!("{policy_id}~{fingerprint:016x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn context_forms() {
        let r = raw(r#"{"a": 1}"#);
        assert_eq!(raw_context(Some(&r), 100).unwrap().unwrap(), br#"{"a": 1}"#);
        let r = raw(r#""{\"a\": 1}""#);
        assert_eq!(raw_context(Some(&r), 100).unwrap().unwrap(), br#"{"a": 1}"#);
        let r = raw("null");
        assert!(raw_context(Some(&r), 100).unwrap().is_none());
        let r = raw("[1]");
        assert_eq!(
            raw_context(Some(&r), 100).unwrap_err().code(),
            "invalid_context"
        );
        let r = raw(r#""[1]""#);
        assert_eq!(
            raw_context(Some(&r), 100).unwrap_err().code(),
            "invalid_context"
        );
        let r = raw(r#"{"a": "0123456789"}"#);
        assert_eq!(
            raw_context(Some(&r), 10).unwrap_err().code(),
            "context_too_large"
        );
    }
}
