//! The OpenAPI 3.0 document served at `GET /api/openapi.json`. It is kept
//! true by the integration tests, which check every status code and
//! required property they receive against it.

use crate::api::status_of;
use omni::ErrorCode;
use serde_json::{json, Value};

/// The codes only the stored-policy API answers with (`/api/v1/policies…`).
const STORED_POLICY_CODES: &[ErrorCode] = &[
    ErrorCode::InvalidPolicyName,
    ErrorCode::PolicyNotFound,
    ErrorCode::RevisionNotFound,
    ErrorCode::PolicyInvalid,
    ErrorCode::PolicyQuotaExceeded,
    ErrorCode::RevisionQuotaExceeded,
    ErrorCode::StorageQuotaExceeded,
    ErrorCode::NothingToRollBack,
    ErrorCode::PreconditionFailed,
    ErrorCode::PreconditionRequired,
    ErrorCode::StoreUnavailable,
];

/// The codes `/api/validate` answers with `status`, from the one mapping.
fn codes_of(status: u16) -> Vec<&'static str> {
    ErrorCode::ALL
        .iter()
        .filter(|c| status_of(**c).as_u16() == status && !STORED_POLICY_CODES.contains(c))
        .map(|c| c.as_str())
        .collect()
}

/// The error response of `status`, listing its codes and a `Retry-After`
/// where any of them sends one.
fn status_response(description: &str, status: u16) -> Value {
    let retry_after = matches!(status, 422 | 429 | 503);
    error_response(description, &codes_of(status), retry_after)
}

fn error_response(description: &str, codes: &[&str], retry_after: bool) -> Value {
    let mut r = json!({
        "description": description,
        "headers": { "X-Request-Id": { "$ref": "#/components/headers/XRequestId" } },
        "content": { "application/json": { "schema": {
            "allOf": [ { "$ref": "#/components/schemas/Error" } ],
            "description": format!("error.code is one of: {}", codes.join(", ")),
        } } }
    });
    if retry_after {
        r["headers"]["Retry-After"] = json!({ "$ref": "#/components/headers/RetryAfter" });
    }
    r
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "headers": { "X-Request-Id": { "$ref": "#/components/headers/XRequestId" } },
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn prom_get(summary: &str) -> Value {
    json!({ "get": {
        "summary": summary,
        "operationId": if summary.contains("alias") { "metricsPromAlias" } else { "metricsProm" },
        "tags": ["operations"],
        "security": [],
        "responses": {
            "200": {
                "description": "Prometheus text exposition (format 0.0.4)",
                "headers": { "X-Request-Id": { "$ref": "#/components/headers/XRequestId" } },
                "content": { "text/plain": { "schema": { "type": "string" } } }
            },
            "default": error_response("Unexpected error", &["internal"], false)
        }
    } })
}

fn health_get(summary: &str, operation_id: &str) -> Value {
    json!({ "get": {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["operations"],
        "security": [],
        "responses": {
            "200": json_response("The process is alive", "Health"),
            "default": error_response("Unexpected error", &["internal"], false)
        }
    } })
}

fn readiness_get(summary: &str, operation_id: &str) -> Value {
    json!({ "get": {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["operations"],
        "security": [],
        "responses": {
            "200": json_response("Ready; or degraded (the policy store does not answer: stored policies already loaded are still evaluated, writes are refused), which `reasons` says", "Readiness"),
            "503": json_response("Not ready (starting, crash loop, or draining)", "Readiness"),
            "default": error_response("Unexpected error", &["internal"], false)
        }
    } })
}

/// A file of the playground (`playground = true`; 404 when it is off).
fn playground_get(summary: &str, operation_id: &str, media: &str, schema: Value) -> Value {
    json!({ "get": {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["playground"],
        "security": [],
        "responses": {
            "200": {
                "description": "The file, with Content-Security-Policy and X-Content-Type-Options: nosniff",
                "headers": {
                    "X-Request-Id": { "$ref": "#/components/headers/XRequestId" },
                    "Content-Security-Policy": { "description": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; ...", "schema": { "type": "string" } }
                },
                "content": { media: { "schema": schema } }
            },
            "404": error_response("The playground is disabled (playground = false)", &["not_found"], false),
            "default": error_response("Unexpected error", &["internal"], false)
        }
    } })
}

/// The document.
pub fn document() -> Value {
    let mut doc = base_document();
    for (path, item) in stored_policy_paths() {
        doc["paths"][path] = item;
    }
    for (name, schema) in stored_policy_schemas() {
        doc["components"]["schemas"][name] = schema;
    }
    doc["components"]["parameters"]["PolicyName"] = json!({
        "name": "name", "in": "path", "required": true,
        "description": "The policy's name: 1-128 characters of [A-Za-z0-9._-], not starting with `.`",
        "schema": { "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$" }
    });
    doc["components"]["headers"]["ETag"] = json!({
        "description": "The active revision, quoted (\"0\": none active): send it back in If-Match",
        "schema": { "type": "string" }
    });
    doc
}

/// `If-Match`: the revision the caller read as active.
fn if_match_param(required: bool) -> Value {
    json!({
        "name": "If-Match", "in": "header", "required": required,
        "description": if required {
            "The active revision as the ETag gave it (\"0\": none active); the change is refused (412) if another is active now, and without the header (428)"
        } else {
            "Optional: store only if this revision (as the ETag gave it; \"0\": none) is the active one (412 otherwise)"
        },
        "schema": { "type": "string", "pattern": "^(W/)?\"[0-9]{1,19}\"$" }
    })
}

/// An error response listing exactly `codes` (all of one status).
fn codes_response(description: &str, codes: &[ErrorCode]) -> Value {
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let retry_after = codes.iter().any(|c| {
        matches!(
            c,
            ErrorCode::RateLimited
                | ErrorCode::TenantBackoff
                | ErrorCode::PolicyQuarantined
                | ErrorCode::Overloaded
                | ErrorCode::NotReady
                | ErrorCode::Draining
                | ErrorCode::StoreUnavailable
        )
    });
    error_response(description, &names, retry_after)
}

/// One stored-policy operation. `errors` are the codes it can answer with
/// besides admission's (401, 403, 429, 503), grouped by status from the
/// one mapping.
fn policy_op(
    summary: &str,
    operation_id: &str,
    parameters: Value,
    request_body: Option<Value>,
    ok: &[(&str, Value)],
    errors: &[ErrorCode],
) -> Value {
    use ErrorCode as E;
    let mut all: Vec<ErrorCode> = vec![
        E::Unauthorized,
        E::Forbidden,
        E::RateLimited,
        E::Overloaded,
        E::Draining,
        E::StoreUnavailable,
    ];
    all.extend_from_slice(errors);
    let mut responses = serde_json::Map::new();
    for (status, r) in ok {
        responses.insert(status.to_string(), r.clone());
    }
    let mut statuses: Vec<u16> = all.iter().map(|c| status_of(*c).as_u16()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let codes: Vec<ErrorCode> = all
            .iter()
            .copied()
            .filter(|c| status_of(*c).as_u16() == status)
            .collect();
        let mut r = codes_response(&status_description(status), &codes);
        if status == 422 && codes.contains(&E::PolicyInvalid) {
            r["content"]["application/json"]["schema"]["allOf"] =
                json!([{ "$ref": "#/components/schemas/PolicyInvalid" }]);
        }
        responses.insert(status.to_string(), r);
    }
    responses.insert(
        "default".into(),
        error_response(
            "Unexpected error",
            &["not_found", "method_not_allowed", "internal"],
            false,
        ),
    );
    let mut op = json!({
        "summary": summary,
        "operationId": operation_id,
        "tags": ["stored-policies"],
        "security": [ {}, { "bearer": [] } ],
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(b) = request_body {
        op["requestBody"] = b;
    }
    op
}

fn status_description(status: u16) -> String {
    match status {
        400 => "Malformed name, header, parameter or body",
        401 => "Auth enabled and the bearer token is missing or unknown",
        403 => "The token's tenant is not allowed",
        404 => "No such policy or revision for this tenant (another tenant's policy is not found either)",
        409 => "Over a quota, or nothing to roll back to",
        412 => "If-Match does not name the active revision",
        413 => "Over a size limit",
        415 => "The body is not JSON",
        422 => "The policy has errors, or its check or evaluation hit a limit",
        428 => "If-Match is required",
        429 => "Over the caller's rate, or over its failure budget (`tenant_backoff`)",
        500 => "The worker crashed or an internal error occurred",
        503 => "The policy store is unavailable, the queue is full, or the server is shutting down",
        _ => "Error",
    }
    .to_string()
}

fn json_ok(description: &str, schema: &str, headers: &[&str]) -> Value {
    let mut r = json_response(description, schema);
    for h in headers {
        r["headers"][*h] = match *h {
            "ETag" => json!({ "$ref": "#/components/headers/ETag" }),
            _ => {
                json!({ "description": "Where the stored revision's text is", "schema": { "type": "string" } })
            }
        };
    }
    r
}

/// The paths of `/api/v1/policies…`.
fn stored_policy_paths() -> Vec<(&'static str, Value)> {
    use ErrorCode as E;
    let name = json!({ "$ref": "#/components/parameters/PolicyName" });
    let rid = json!({ "$ref": "#/components/parameters/XRequestId" });
    let json_body = |schema: &str| {
        json!({
            "required": true,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        })
    };
    let mut evaluate_errors: Vec<ErrorCode> = ErrorCode::ALL
        .iter()
        .copied()
        .filter(|c| {
            !STORED_POLICY_CODES.contains(c) && !matches!(c, E::NotFound | E::MethodNotAllowed)
        })
        .collect();
    evaluate_errors.extend([E::InvalidPolicyName, E::PolicyNotFound, E::RevisionNotFound]);
    vec![
        (
            "/api/v1/policies",
            json!({ "get": policy_op(
            "The tenant's stored policies (not deleted), by name",
            "listPolicies",
            json!([rid]),
            None,
            &[("200", json_ok("The policies", "PolicyList", &[]))],
            &[],
        ) }),
        ),
        (
            "/api/v1/policies/{name}",
            json!({
                "get": policy_op(
                    "A stored policy: its active revision, the revision this replica serves, and every revision",
                    "getPolicy",
                    json!([name, rid]),
                    None,
                    &[("200", json_ok("The policy", "PolicyDetail", &["ETag"]))],
                    &[E::InvalidPolicyName, E::PolicyNotFound],
                ),
                "put": policy_op(
                    "Check a policy text in full and store it as a new revision (or find the revision with the same text), activating it unless activate=false",
                    "putPolicy",
                    json!([name, rid, if_match_param(false), {
                        "name": "activate", "in": "query", "required": false,
                        "description": "Make the stored revision the active one (default true)",
                        "schema": { "type": "boolean", "default": true }
                    }]),
                    Some(json!({
                        "required": true,
                        "description": "The policy text (UTF-8; any media type)",
                        "content": { "text/plain": { "schema": { "type": "string" } } }
                    })),
                    &[
                        ("201", json_ok("A new revision was stored", "PolicyStored", &["ETag", "Location"])),
                        ("200", json_ok("A revision with the same text exists (created: false)", "PolicyStored", &["ETag"])),
                    ],
                    &[
                        E::InvalidPolicyName, E::InvalidRequest,
                        E::PolicyQuotaExceeded, E::RevisionQuotaExceeded, E::StorageQuotaExceeded,
                        E::PreconditionFailed, E::PolicyTooLarge,
                        E::PolicyInvalid, E::Timeout, E::MemoryLimit, E::PolicyQuarantined,
                        E::TenantBackoff, E::WorkerCrashed, E::Internal, E::NotReady,
                    ],
                ),
                "delete": policy_op(
                    "Delete a policy (soft: its revisions and history stay; storing the name again revives it)",
                    "deletePolicy",
                    json!([name, rid, if_match_param(true)]),
                    None,
                    &[("200", json_ok("Deleted", "PolicyDeleted", &[]))],
                    &[E::InvalidPolicyName, E::InvalidRequest, E::PolicyNotFound, E::PreconditionFailed, E::PreconditionRequired],
                ),
            }),
        ),
        (
            "/api/v1/policies/{name}/history",
            json!({ "get": policy_op(
            "The policy's change history: who changed what, when, from which revision to which",
            "getPolicyHistory",
            json!([name, rid]),
            None,
            &[("200", json_ok("The changes, oldest first", "PolicyHistory", &[]))],
            &[E::InvalidPolicyName, E::PolicyNotFound],
        ) }),
        ),
        (
            "/api/v1/policies/{name}/revisions/{revision}",
            json!({ "get": policy_op(
            "A revision's text",
            "getPolicyRevision",
            json!([name, {
                "name": "revision", "in": "path", "required": true,
                "description": "The revision number (1, 2, 3…)",
                "schema": { "type": "integer", "minimum": 1, "maximum": u64::MAX }
            }, rid]),
            None,
            &[("200", json!({
                "description": "The policy text, as stored",
                "headers": {
                    "X-Request-Id": { "$ref": "#/components/headers/XRequestId" },
                    "Omni-Policy-Id": { "description": "sha256:<hex> of the text", "schema": { "type": "string" } }
                },
                "content": { "text/plain": { "schema": { "type": "string" } } }
            }))],
            &[E::InvalidPolicyName, E::InvalidRequest, E::PolicyNotFound, E::RevisionNotFound],
        ) }),
        ),
        (
            "/api/v1/policies/{name}/activate",
            json!({ "post": policy_op(
            "Make a revision the active one",
            "activatePolicy",
            json!([name, rid, if_match_param(true)]),
            Some(json_body("ActivateRequest")),
            &[("200", json_ok("Activated", "PolicyMoved", &["ETag"]))],
            &[
                E::InvalidPolicyName, E::InvalidJson, E::InvalidRequest, E::PolicyNotFound,
                E::RevisionNotFound, E::PreconditionFailed, E::PreconditionRequired,
                E::BodyTooLarge, E::UnsupportedMediaType,
            ],
        ) }),
        ),
        (
            "/api/v1/policies/{name}/rollback",
            json!({ "post": policy_op(
            "Make the revision that was active before the current one active again",
            "rollbackPolicy",
            json!([name, rid, if_match_param(true)]),
            None,
            &[("200", json_ok("Rolled back", "PolicyMoved", &["ETag"]))],
            &[
                E::InvalidPolicyName, E::InvalidRequest, E::PolicyNotFound, E::NothingToRollBack,
                E::PreconditionFailed, E::PreconditionRequired,
            ],
        ) }),
        ),
        (
            "/api/v1/policies/{name}/evaluate",
            json!({ "post": policy_op(
            "Evaluate the stored policy (its active revision, or `revision`) with a context: /api/validate's answer plus the policy's name and revision",
            "evaluatePolicy",
            json!([name, rid]),
            Some(json_body("EvaluateRequest")),
            &[("200", json_ok("Evaluated", "EvaluateResponse", &[]))],
            &evaluate_errors,
        ) }),
        ),
    ]
}

/// The schemas of `/api/v1/policies…`.
fn stored_policy_schemas() -> Vec<(&'static str, Value)> {
    let rev = json!({ "type": "integer", "minimum": 1 });
    let opt_rev = json!({ "type": "integer", "minimum": 1, "nullable": true });
    vec![
        (
            "PolicySummary",
            json!({
                "type": "object",
                "required": ["name", "activeRevision", "latestRevision", "revisions", "updatedAt"],
                "properties": {
                    "name": { "type": "string" },
                    "activeRevision": opt_rev,
                    "latestRevision": rev,
                    "revisions": { "type": "integer", "description": "How many revisions are stored" },
                    "updatedAt": { "type": "string", "format": "date-time" }
                }
            }),
        ),
        (
            "PolicyList",
            json!({
                "type": "object",
                "required": ["policies"],
                "properties": { "policies": { "type": "array", "items": { "$ref": "#/components/schemas/PolicySummary" } } }
            }),
        ),
        (
            "PolicyRevision",
            json!({
                "type": "object",
                "required": ["revision", "policyId", "bytes", "createdAt", "createdBy"],
                "properties": {
                    "revision": rev,
                    "policyId": { "type": "string", "pattern": "^sha256:[0-9a-f]{64}$" },
                    "bytes": { "type": "integer" },
                    "createdAt": { "type": "string", "format": "date-time" },
                    "createdBy": { "type": "string", "description": "The name of the token that stored it (anonymous with auth off)" }
                }
            }),
        ),
        (
            "PolicyDetail",
            json!({
                "type": "object",
                "required": ["name", "activeRevision", "servedRevision", "latestRevision", "revisions"],
                "properties": {
                    "name": { "type": "string" },
                    "activeRevision": opt_rev,
                    "servedRevision": { "type": "integer", "minimum": 1, "nullable": true, "description": "The revision this replica evaluates now (it follows the active one within about a second)" },
                    "latestRevision": rev,
                    "revisions": { "type": "array", "items": { "$ref": "#/components/schemas/PolicyRevision" } }
                }
            }),
        ),
        (
            "PolicyStored",
            json!({
                "type": "object",
                "required": ["name", "revision", "policyId", "activeRevision", "created", "warnings"],
                "properties": {
                    "name": { "type": "string" },
                    "revision": rev,
                    "policyId": { "type": "string", "pattern": "^sha256:[0-9a-f]{64}$" },
                    "activeRevision": opt_rev,
                    "created": { "type": "boolean", "description": "false: a revision with the same text already existed" },
                    "warnings": { "type": "array", "items": { "$ref": "#/components/schemas/Diagnostic" } }
                }
            }),
        ),
        (
            "PolicyInvalid",
            json!({
                "allOf": [ { "$ref": "#/components/schemas/Error" } ],
                "type": "object",
                "properties": {
                    "diagnostics": {
                        "type": "array",
                        "description": "With policy_invalid: the check's diagnostics (all severities)",
                        "items": { "$ref": "#/components/schemas/Diagnostic" }
                    }
                }
            }),
        ),
        (
            "PolicyHistory",
            json!({
                "type": "object",
                "required": ["changes"],
                "properties": { "changes": { "type": "array", "items": {
                    "type": "object",
                    "required": ["seq", "at", "tenant", "actor", "action", "fromRevision", "toRevision"],
                    "properties": {
                        "seq": { "type": "integer" },
                        "at": { "type": "string", "format": "date-time" },
                        "tenant": { "type": "string" },
                        "actor": { "type": "string", "description": "The token's name (never the token); anonymous with auth off" },
                        "action": { "type": "string", "enum": ["store", "activate", "rollback", "delete"] },
                        "fromRevision": opt_rev,
                        "toRevision": opt_rev
                    }
                } } }
            }),
        ),
        (
            "PolicyMoved",
            json!({
                "type": "object",
                "required": ["name", "activeRevision", "previousRevision"],
                "properties": {
                    "name": { "type": "string" },
                    "activeRevision": opt_rev,
                    "previousRevision": opt_rev
                }
            }),
        ),
        (
            "PolicyDeleted",
            json!({
                "type": "object",
                "required": ["name", "deleted", "previousRevision"],
                "properties": {
                    "name": { "type": "string" },
                    "deleted": { "type": "boolean", "enum": [true] },
                    "previousRevision": opt_rev
                }
            }),
        ),
        (
            "ActivateRequest",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["revision"],
                "properties": { "revision": { "type": "integer", "minimum": 1, "maximum": u64::MAX } }
            }),
        ),
        (
            "EvaluateRequest",
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "context": { "$ref": "#/components/schemas/ValidateRequest/properties/context" },
                    "now": { "$ref": "#/components/schemas/ValidateRequest/properties/now" },
                    "revision": { "type": "integer", "minimum": 1, "maximum": u64::MAX, "nullable": true, "description": "A revision other than the active one" },
                    "options": { "$ref": "#/components/schemas/ValidateRequest/properties/options" }
                }
            }),
        ),
        (
            "EvaluateResponse",
            json!({
                "allOf": [ { "$ref": "#/components/schemas/ValidateResponse" } ],
                "type": "object",
                "required": ["policy"],
                "properties": {
                    "policy": {
                        "type": "object",
                        "required": ["name", "revision"],
                        "properties": { "name": { "type": "string" }, "revision": rev }
                    }
                }
            }),
        ),
    ]
}

/// The document without the stored-policy API.
fn base_document() -> Value {
    let validate_errors = json!({
        "200": json_response("The policy was processed (it may still have errors)", "ValidateResponse"),
        "400": status_response("Body, field or context malformed", 400),
        "401": status_response("Auth enabled and no valid credential: the bearer token is missing or unknown, or (auth.mode mtls/both) no client certificate, or one the reloaded CA bundle or CRL no longer accepts", 401),
        "403": status_response("The tenant is not allowed, or a verified client certificate names no tenant (or more than one)", 403),
        "413": status_response("Over a size limit", 413),
        "415": status_response("The body is not JSON", 415),
        "422": status_response("The evaluation hit a limit", 422),
        "429": status_response("Over the caller's rate, or over its failure budget (`tenant_backoff`)", 429),
        "500": status_response("The worker crashed or an internal error occurred", 500),
        "503": status_response("Queue full, no workers, or shutting down", 503),
        "default": error_response("Unexpected error", &["not_found", "method_not_allowed", "internal"], false),
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "omnid",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Omni policy validation and evaluation service.",
            "license": { "name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0" }
        },
        // Relative: the server that served this document (its address is
        // whatever `listen` says, 127.0.0.1:8080 by default).
        "servers": [ { "url": "/", "description": "The omnid that served this document" } ],
        "tags": [
            { "name": "policies", "description": "Validation and evaluation" },
            { "name": "stored-policies", "description": "Named, versioned policies per tenant: store, activate, roll back, evaluate by name" },
            { "name": "operations", "description": "Health, readiness, metrics" },
            { "name": "playground", "description": "The browser playground (off in production)" }
        ],
        "paths": {
            "/api/validate": { "post": {
                "summary": "Check a policy and, when it has no errors and a context is given, evaluate it",
                "operationId": "validate",
                "tags": ["policies"],
                "security": [ {}, { "bearer": [] } ],
                "parameters": [ { "$ref": "#/components/parameters/XRequestId" } ],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ValidateRequest" } } }
                },
                "responses": validate_errors
            } },
            "/api/health": health_get("Liveness", "health"),
            "/healthz": health_get("Liveness (alias; also served by the probe listener, probe_listen)", "healthz"),
            "/api/readiness": readiness_get("Readiness: at least one worker can take work and the server is not draining", "readiness"),
            "/readyz": readiness_get("Readiness (alias; also served by the probe listener, probe_listen)", "readyz"),
            "/api/metrics": { "get": {
                "summary": "Counters as JSON",
                "operationId": "metrics",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": json_response("Counters", "Metrics"),
                    "default": error_response("Unexpected error", &["internal"], false)
                }
            } },
            "/api/metrics-prom": prom_get("Prometheus metrics"),
            "/metrics": prom_get("Prometheus metrics (alias)"),
            "/api/openapi.json": { "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document",
                        "headers": { "X-Request-Id": { "$ref": "#/components/headers/XRequestId" } },
                        "content": { "application/json": { "schema": { "type": "object" } } }
                    },
                    "default": error_response("Unexpected error", &["internal"], false)
                }
            } },
            "/": playground_get("The playground page", "playground", "text/html", json!({ "type": "string" })),
            "/playground/app.js": playground_get("The playground's script", "playgroundScript", "text/javascript", json!({ "type": "string" })),
            "/playground/style.css": playground_get("The playground's stylesheet", "playgroundStyle", "text/css", json!({ "type": "string" })),
            "/playground/examples.json": playground_get(
                "The example policies the playground offers",
                "playgroundExamples",
                "application/json",
                json!({ "type": "array", "items": { "$ref": "#/components/schemas/PlaygroundExample" } })
            )
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "A tenant's token (when auth is enabled with auth.mode token or both). With auth.mode mtls or both a TLS client certificate identifies the tenant instead (OpenAPI 3.0 has no scheme for it)." }
            },
            "parameters": {
                "XRequestId": {
                    "name": "X-Request-Id", "in": "header", "required": false,
                    "description": "Echoed when it is 1-64 characters of [A-Za-z0-9._-] (^[A-Za-z0-9._-]{1,64}$); any other value is accepted and replaced by a new id, never refused, so the schema puts no bound on it",
                    "schema": { "type": "string" }
                }
            },
            "headers": {
                "XRequestId": { "description": "The request id (also requestId in the body)", "schema": { "type": "string" } },
                "RetryAfter": { "description": "Seconds to wait before retrying", "schema": { "type": "integer", "minimum": 1 } }
            },
            "schemas": {
                "ValidateRequest": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["code"],
                    "properties": {
                        "code": { "type": "string", "description": "The policy text" },
                        "context": {
                            "description": "A JSON object, or a string holding one (legacy). Absent or null: check only, no evaluation. A string that does not start an object (after white space), or is not valid JSON, is 400 invalid_context.",
                            "oneOf": [
                                { "type": "object", "nullable": true, "additionalProperties": true },
                                { "type": "string", "pattern": "^\\s*\\{", "description": "The JSON text of an object" }
                            ]
                        },
                        "now": {
                            "type": "string", "format": "date-time", "nullable": true,
                            // The evaluator's clock is i64 nanoseconds since 1970:
                            // years 1678-2261 fit whatever the offset.
                            "pattern": "^(167[89]|16[89][0-9]|1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[01])-",
                            "description": "The evaluation's now (RFC 3339, years 1678-2261); absent or null: time of receipt"
                        },
                        "options": {
                            "type": "object",
                            "nullable": true,
                            "additionalProperties": false,
                            "description": "Absent, null and {} are the same; so are an absent and a null member",
                            "properties": {
                                "strict": { "type": "boolean", "nullable": true, "description": "Strict profile (default from configuration)" },
                                "trace": { "type": "boolean", "nullable": true },
                                "timeoutMs": { "type": "integer", "nullable": true, "minimum": 1, "maximum": u64::MAX, "description": "Lowers the deadline; never raises it" }
                            }
                        }
                    }
                },
                "Diagnostic": {
                    "type": "object",
                    "required": ["code", "severity", "message", "line", "column"],
                    "properties": {
                        "code": { "type": "string" },
                        "severity": { "type": "string", "enum": ["error", "warning", "info"] },
                        "message": { "type": "string" },
                        "line": { "type": "integer" },
                        "column": { "type": "integer" },
                        "endLine": { "type": "integer" },
                        "endColumn": { "type": "integer" },
                        "hint": { "type": "string", "nullable": true }
                    }
                },
                "Rule": {
                    "type": "object",
                    "required": ["id", "line", "condition", "action"],
                    "properties": {
                        "id": { "type": "string" },
                        "line": { "type": "integer" },
                        "condition": { "type": "string" },
                        "action": { "type": "string" }
                    }
                },
                "Timings": {
                    "type": "object",
                    "required": ["queueUs", "parseUs", "checkUs", "evalUs", "totalUs"],
                    "properties": {
                        "queueUs": { "type": "integer" },
                        "parseUs": { "type": "integer", "description": "Policy parse and context parse" },
                        "checkUs": { "type": "integer" },
                        "evalUs": { "type": "integer" },
                        "totalUs": { "type": "integer" }
                    }
                },
                "ValidateResponse": {
                    "type": "object",
                    "required": ["requestId", "ok", "policyId", "errors", "warnings", "rules", "actions", "decision", "timings", "engine"],
                    "properties": {
                        "requestId": { "type": "string" },
                        "ok": { "type": "boolean" },
                        "policyId": { "type": "string", "pattern": "^sha256:[0-9a-f]{64}$" },
                        "errors": { "type": "array", "items": { "$ref": "#/components/schemas/Diagnostic" } },
                        "warnings": { "type": "array", "items": { "$ref": "#/components/schemas/Diagnostic" } },
                        "rules": { "type": "array", "items": { "$ref": "#/components/schemas/Rule" } },
                        "actions": { "type": "array", "items": { "type": "string" } },
                        "decision": {
                            "type": "object", "nullable": true, "additionalProperties": true,
                            "description": "The decision (docs/language.md, section The decision); null when not evaluated",
                            "required": ["policyId", "now", "actions", "rules", "warnings", "defaults", "stats"],
                            "properties": {
                                "policyId": { "type": "string" },
                                "now": { "type": "string" },
                                "actions": { "type": "array", "items": { "type": "object" } },
                                "rules": { "type": "array", "items": { "type": "object" } },
                                "warnings": { "type": "array", "items": {} },
                                "defaults": { "type": "array", "items": {} },
                                "stats": { "type": "object" }
                            }
                        },
                        "timings": { "$ref": "#/components/schemas/Timings" },
                        "engine": { "type": "string" }
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["requestId", "error"],
                    "properties": {
                        "requestId": { "type": "string" },
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string", "enum": ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>() },
                                "message": { "type": "string" }
                            }
                        }
                    }
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "uptimeSec"],
                    "properties": {
                        "status": { "type": "string", "enum": ["ok"] },
                        "uptimeSec": { "type": "integer" },
                        "requestId": { "type": "string" }
                    }
                },
                "Readiness": {
                    "type": "object",
                    "required": ["status", "workers", "inflight", "maxInflight", "queueDepth", "buildVersion"],
                    "properties": {
                        "status": { "type": "string", "enum": ["ready", "degraded", "not_ready", "crash_loop", "draining"] },
                        "reasons": { "type": "array", "items": { "type": "string", "enum": ["store_unavailable"] }, "description": "Why the status is degraded" },
                        "store": {
                            "type": "object",
                            "description": "The policy store as this replica sees it",
                            "required": ["backend", "available", "servedPolicies"],
                            "properties": {
                                "backend": { "type": "string", "enum": ["sqlite", "postgres"] },
                                "available": { "type": "boolean" },
                                "lastOkAt": { "type": "string", "format": "date-time", "nullable": true },
                                "unavailableSince": { "type": "string", "format": "date-time", "nullable": true },
                                "servedPolicies": { "type": "integer", "description": "Stored policies this replica evaluates" }
                            }
                        },
                        "workers": {
                            "type": "object",
                            "required": ["total", "idle", "busy", "starting"],
                            "properties": {
                                "total": { "type": "integer" },
                                "idle": { "type": "integer" },
                                "busy": { "type": "integer" },
                                "starting": { "type": "integer" },
                                "down": { "type": "integer" }
                            }
                        },
                        "inflight": { "type": "integer" },
                        "maxInflight": { "type": "integer" },
                        "queueDepth": { "type": "integer" },
                        "buildVersion": { "type": "string" },
                        "requestId": { "type": "string" }
                    }
                },
                "Metrics": {
                    "type": "object",
                    "required": ["uptimeSec", "requests", "workerRestarts", "workers", "inflight", "queueDepth", "rateLimited", "rejected", "cache", "phases", "validateLatency"],
                    "additionalProperties": true,
                    "properties": {
                        "uptimeSec": { "type": "integer" },
                        "buildVersion": { "type": "string" },
                        "requests": { "type": "object", "description": "endpoint → status → count", "additionalProperties": { "type": "object", "additionalProperties": { "type": "integer" } } },
                        "validateLatency": { "$ref": "#/components/schemas/SumCount" },
                        "phases": { "type": "object", "additionalProperties": { "$ref": "#/components/schemas/SumCount" } },
                        "workerRestarts": { "type": "object", "additionalProperties": { "type": "integer" } },
                        "workers": { "type": "object", "additionalProperties": { "type": "integer" } },
                        "inflight": { "type": "integer" },
                        "queueDepth": { "type": "integer" },
                        "quarantinedPolicies": { "type": "integer" },
                        "rateLimited": { "type": "integer" },
                        "rejected": { "type": "object", "additionalProperties": { "type": "integer" } },
                        "cache": { "type": "object", "properties": { "hits": { "type": "integer" }, "misses": { "type": "integer" } } },
                        "tlsHandshakeFailures": { "type": "object", "description": "reason → connections to a TLS listener that ended before HTTP", "additionalProperties": { "type": "integer" } },
                        "requestId": { "type": "string" }
                    }
                },
                "PlaygroundExample": {
                    "type": "object",
                    "required": ["name", "title", "code", "context", "now", "strict"],
                    "properties": {
                        "name": { "type": "string" },
                        "title": { "type": "string" },
                        "code": { "type": "string", "description": "The policy text" },
                        "context": { "type": "string", "description": "The context, as JSON text" },
                        "now": { "type": "string", "format": "date-time" },
                        "strict": { "type": "boolean" }
                    }
                },
                "SumCount": {
                    "type": "object",
                    "required": ["count", "sumUs"],
                    "properties": { "count": { "type": "integer" }, "sumUs": { "type": "integer" } }
                }
            }
        }
    })
}
