//! The evaluator's result type. [`EvalError`] itself lives in
//! [`crate::limits`]: the evaluator and the stdlib both raise it.

pub use crate::limits::{EvalError, ValueKind};

pub(super) type R<T> = Result<T, EvalError>;
