//! Every error code a caller can receive, from the evaluator, the worker or
//! the service, as one enum.
//!
//! The evaluator and the context reader return these codes; they cross the
//! worker protocol as this type; the service maps each to exactly one HTTP
//! status (`supervisor/src/api.rs`, `status_of`), lists them in its OpenAPI
//! document from [`ErrorCode::ALL`], and `docs/api.md#errors` documents each
//! (a test checks both). To add a code: a variant here, its line in `ALL` and
//! `as_str`, its status in the service's mapping, and its row in the docs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares the enum, [`ErrorCode::ALL`] and [`ErrorCode::as_str`] from one
/// list, so a code cannot be added to one and forgotten in another.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A machine-readable error code (`snake_case` on the wire and in JSON).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order the documentation lists them.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as callers see it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

error_codes! {
    /// The request body is not JSON.
    InvalidJson = "invalid_json",
    /// A field is missing, unknown or of the wrong type.
    InvalidRequest = "invalid_request",
    /// The context is not a JSON object, or not valid JSON.
    InvalidContext = "invalid_context",
    /// Auth is on and the bearer token is missing or unknown.
    Unauthorized = "unauthorized",
    /// The token's tenant is disabled.
    Forbidden = "forbidden",
    /// The body is not `application/json`.
    UnsupportedMediaType = "unsupported_media_type",
    NotFound = "not_found",
    MethodNotAllowed = "method_not_allowed",
    /// A stored policy's name is not 1-128 characters of `[A-Za-z0-9._-]`
    /// (or starts with `.`).
    InvalidPolicyName = "invalid_policy_name",
    /// No stored policy of this name for the caller's tenant (another
    /// tenant's policy is not found either), or it has no active revision.
    PolicyNotFound = "policy_not_found",
    /// The stored policy has no revision of this number.
    RevisionNotFound = "revision_not_found",
    /// A policy text sent to be stored has errors; nothing was stored.
    PolicyInvalid = "policy_invalid",
    /// The tenant has as many stored policies as its quota allows.
    PolicyQuotaExceeded = "policy_quota_exceeded",
    /// The policy has as many revisions as the quota allows.
    RevisionQuotaExceeded = "revision_quota_exceeded",
    /// The tenant's stored revision texts would go over its byte quota.
    StorageQuotaExceeded = "storage_quota_exceeded",
    /// A rollback with no earlier active revision in the history.
    NothingToRollBack = "nothing_to_roll_back",
    /// `If-Match` names a revision that is not the active one.
    PreconditionFailed = "precondition_failed",
    /// The change needs `If-Match` with the active revision.
    PreconditionRequired = "precondition_required",
    /// The policy store cannot be reached; stored policies already loaded
    /// are still evaluated.
    StoreUnavailable = "store_unavailable",
    BodyTooLarge = "body_too_large",
    PolicyTooLarge = "policy_too_large",
    ContextTooLarge = "context_too_large",
    ContextTooDeep = "context_too_deep",
    /// The evaluation ran past its deadline (its worker was replaced).
    Timeout = "timeout",
    /// Fuel or a loop's iterations ran out.
    BudgetExceeded = "budget_exceeded",
    /// The worker ran out of memory (and was replaced).
    MemoryLimit = "memory_limit",
    /// A produced string, list or decision went over its size limit.
    ValueTooLarge = "value_too_large",
    /// The policy stopped workers repeatedly and is refused for a while.
    PolicyQuarantined = "policy_quarantined",
    RateLimited = "rate_limited",
    /// The caller's requests killed too many workers recently (its failure
    /// budget); its requests are refused for a while.
    TenantBackoff = "tenant_backoff",
    /// The queue is full.
    Overloaded = "overloaded",
    /// No worker is available yet.
    NotReady = "not_ready",
    /// The service is shutting down.
    Draining = "draining",
    /// The worker stopped unexpectedly during the evaluation.
    WorkerCrashed = "worker_crashed",
    Internal = "internal",
}

impl ErrorCode {
    /// The code of `s`, if it is one.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets callers and tests compare a code with its spelling.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<ErrorCode> for &str {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_codes_are_listed_once_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} listed twice");
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }
}
