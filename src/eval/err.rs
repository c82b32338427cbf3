//! Why an evaluation stops without a decision: the errors `evaluate` returns
//! and their codes (the service reports them as they are).

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
    pub fn code(&self) -> &'static str {
        match self {
            EvalError::BudgetExceeded(_) | EvalError::TooManyIterations(_) => "budget_exceeded",
            EvalError::ValueTooLarge(..) => "value_too_large",
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
