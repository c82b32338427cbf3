//! Omni: a policy language with units and three-valued logic.
//!
//! The pipeline runs one way: text → `document` (sections) → `lexer` and
//! [`parser`] (rules) → `checker` (a [`CompiledPolicy`] or diagnostics) →
//! `eval` (a [`Decision`] for a context and `now`). Contexts are read by
//! [`json`]. The `omni` command line is the binary in `src/bin/omni/`.
//!
//! ```
//! use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions};
//! let src = "INTENT: demo\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\n\
//!            RULE:\n- IF Battery < 20% THEN ReturnToHome\nCONSTRAINT:\n- Technical: none\n\
//!            IMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: example\n";
//! let compiled = compile(src, &CheckOptions::default());
//! let policy = compiled.policy.expect("no errors");
//! let ctx = Context::from_json(br#"{"Battery": 15}"#, &ContextLimits::default()).unwrap();
//! let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
//! let decision = evaluate(&policy, &ctx, now, &EvalOptions::default()).unwrap();
//! assert_eq!(decision.action_strings(), ["ReturnToHome"]);
//! ```

pub mod ast;
pub(crate) mod checker;
pub mod decision;
pub mod diagnostics;
pub(crate) mod document;
pub mod error_code;
pub(crate) mod eval;
pub mod fmt;
pub mod json;
pub(crate) mod lexer;
pub mod limits;
pub mod options;
pub mod parser;
pub mod policy;
pub mod policy_test;
pub mod span;
pub mod stdlib;
pub mod timefmt;
pub mod types;
pub mod units;
pub mod value;

pub use checker::{compile, Compiled};
pub use decision::Decision;
pub use diagnostics::{Code, Diagnostic, DiagnosticJson, Severity};
pub use error_code::ErrorCode;
pub use eval::{evaluate, EvalError, ValueKind};
pub use json::{Context, ContextError};
pub use limits::{
    ContextLimits, EvalLimits, LimitOverrides, Limits, NestingLimits, RegexLimits,
    DEFAULT_MAX_POLICY_BYTES,
};
pub use options::{CheckOptions, EvalOptions, Features, Profile};
pub use policy::CompiledPolicy;
pub use timefmt::Timestamp;
pub use value::Value;

/// The engine name and version reported by tools and the service.
pub fn engine() -> String {
    format!("omni {}", env!("CARGO_PKG_VERSION"))
}
