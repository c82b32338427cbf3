//! The OpenAPI 3.0 document served at `GET /api/openapi.json`. It is kept
//! true by the integration tests, which check every status code and
//! required property they receive against it.

use crate::api::status_of;
use omni::ErrorCode;
use serde_json::{json, Value};

/// The codes the service answers with `status`, from the one mapping.
fn codes_of(status: u16) -> Vec<&'static str> {
    ErrorCode::ALL
        .iter()
        .filter(|c| status_of(**c).as_u16() == status)
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
            "200": json_response("Ready", "Readiness"),
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
                        "status": { "type": "string", "enum": ["ready", "not_ready", "crash_loop", "draining"] },
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
