//! Why an evaluation stops without a decision: the errors `evaluate` returns
//! and their codes (the service reports them as they are).

use crate::error_code::ErrorCode;

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

pub(super) type R<T> = Result<T, EvalError>;
