//! Every deterministic limit of one check and evaluation, as one value
//! ([`Limits`]), and the one way a tenant lowers it ([`Limits::lowered_by`]).
//!
//! The service builds a `Limits` from its configuration, lowers it for the
//! request's tenant, and sends it whole to the worker, which enforces exactly
//! what it is sent. The `omni` CLI builds one from its flags. Nothing else
//! keeps its own copy of a limit: to add one, add a field here (with its
//! default), a key in the service's `[limits]` section and a row in
//! `docs/language.md#limits`.
//!
//! See `docs/language.md#limits` for what each limit means and the error code
//! a request gets when it hits one. An evaluation that hits one stops with
//! [`EvalError`], which lives here (not in the evaluator) because the
//! evaluator and the stdlib both raise it.

use crate::error_code::ErrorCode;
use serde::{Deserialize, Serialize};

/// The largest policy text accepted by default, in bytes.
pub const DEFAULT_MAX_POLICY_BYTES: usize = 100 * 1024;

/// How deeply rules may nest (checked while parsing: past them a policy
/// gets E0106, never a stack overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NestingLimits {
    /// Nested expressions (parentheses, operators, calls, lambdas, chains).
    pub expr_depth: usize,
    /// Nested `FOR`/`WHILE`/`IF` blocks.
    pub block_depth: usize,
}

impl Default for NestingLimits {
    fn default() -> Self {
        NestingLimits {
            expr_depth: 128,
            block_depth: 32,
        }
    }
}

/// Limits on the regular expressions of one policy, checked when it is
/// compiled (past them a pattern gets E0308): together they bound the time
/// a check spends on patterns, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegexLimits {
    /// Patterns (`matches` calls) in the policy, repeated ones included.
    pub max_patterns: usize,
    /// Bytes of all its patterns together.
    pub max_pattern_bytes: usize,
    /// Compile work of its distinct patterns, in units of ~0.3 µs (see
    /// `docs/security.md#regex-budgets`).
    pub compile_budget: u64,
}

impl Default for RegexLimits {
    fn default() -> Self {
        RegexLimits {
            max_patterns: 256,
            max_pattern_bytes: 16 * 1024,
            compile_budget: 250_000,
        }
    }
}

/// Limits on a context document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextLimits {
    /// Bytes of the JSON text.
    pub max_bytes: usize,
    /// Levels of nested objects and arrays.
    pub max_depth: usize,
    /// Keys and elements, counted over the whole document.
    pub max_items: usize,
}

impl Default for ContextLimits {
    fn default() -> Self {
        ContextLimits {
            max_bytes: 100 * 1024,
            max_depth: 64,
            max_items: 100_000,
        }
    }
}

/// The evaluation limits: charged before the work they pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct EvalLimits {
    /// Evaluation steps: each node visit and each element produced.
    pub fuel: u64,
    /// Iterations of one FOR loop.
    pub max_loop_iterations: u64,
    /// Bytes of one produced string.
    pub max_string_bytes: usize,
    /// Elements of one produced list.
    pub max_list_len: usize,
}

impl Default for EvalLimits {
    fn default() -> Self {
        EvalLimits {
            fuel: 1_000_000,
            max_loop_iterations: 100_000,
            max_string_bytes: 1 << 20,
            max_list_len: 100_000,
        }
    }
}

/// Every limit of one request: the policy text, the context, nesting, the
/// policy's regular expressions and evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of the policy text.
    pub policy_bytes: usize,
    pub context: ContextLimits,
    pub nesting: NestingLimits,
    pub regex: RegexLimits,
    pub eval: EvalLimits,
}

/// The limits a tenant (or any narrower scope) sets for itself; each only
/// ever lowers the corresponding limit of [`Limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub policy_bytes: Option<usize>,
    pub context_bytes: Option<usize>,
    pub fuel: Option<u64>,
    pub max_loop_iterations: Option<u64>,
}

impl Limits {
    /// The language's defaults, including the policy-size limit.
    pub fn standard() -> Limits {
        Limits {
            policy_bytes: DEFAULT_MAX_POLICY_BYTES,
            ..Limits::default()
        }
    }

    /// These limits with `o` applied: an override can lower a limit, never
    /// raise it.
    pub fn lowered_by(&self, o: &LimitOverrides) -> Limits {
        fn low<T: Ord + Copy>(global: T, own: Option<T>) -> T {
            own.map_or(global, |v| v.min(global))
        }
        let mut l = *self;
        l.policy_bytes = low(l.policy_bytes, o.policy_bytes);
        l.context.max_bytes = low(l.context.max_bytes, o.context_bytes);
        l.eval.fuel = low(l.eval.fuel, o.fuel);
        l.eval.max_loop_iterations = low(l.eval.max_loop_iterations, o.max_loop_iterations);
        l
    }
}

// ----- hitting a limit ------------------------------------------------------

/// Why an evaluation stopped without a decision.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("the evaluation ran out of its step budget ({0} steps)")]
    BudgetExceeded(u64),
    #[error("a FOR loop would run more than {0} iterations")]
    TooManyIterations(u64),
    #[error("a produced {0} would exceed the size limit of {1}")]
    ValueTooLarge(ValueKind, u64),
}

impl EvalError {
    /// The error code a caller receives.
    pub fn code(&self) -> ErrorCode {
        match self {
            EvalError::BudgetExceeded(_) | EvalError::TooManyIterations(_) => {
                ErrorCode::BudgetExceeded
            }
            EvalError::ValueTooLarge(..) => ErrorCode::ValueTooLarge,
        }
    }
}

/// What kind of value went over its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    String,
    List,
}

impl std::fmt::Display for ValueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueKind::String => "string (bytes)",
            ValueKind::List => "list (elements)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_only_lower() {
        let base = Limits::standard();
        let o = LimitOverrides {
            policy_bytes: Some(10),
            context_bytes: Some(usize::MAX),
            fuel: Some(5),
            max_loop_iterations: None,
        };
        let l = base.lowered_by(&o);
        assert_eq!(l.policy_bytes, 10);
        assert_eq!(l.context.max_bytes, base.context.max_bytes);
        assert_eq!(l.eval.fuel, 5);
        assert_eq!(l.eval.max_loop_iterations, base.eval.max_loop_iterations);
        assert_eq!(l.nesting, base.nesting);
        assert_eq!(l.regex, base.regex);
        assert_eq!(base.lowered_by(&LimitOverrides::default()), base);
    }
}
