//! Options that shape checking and evaluation: the profile, feature flags
//! (LANGUAGE.md §9) and the deterministic limits (§8).

use crate::parser::NestingLimits;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Conformance problems are errors (default).
    #[default]
    Strict,
    /// Conformance problems are warnings; the policy still evaluates.
    Lenient,
}

/// Stdlib modules that can be allowed or denied per deployment.
pub const MODULES: &[&str] = &["math", "str", "list", "time", "json"];

/// Language features an operator may turn off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Features {
    pub lambdas: bool,
    #[serde(rename = "match")]
    pub match_expr: bool,
    pub regex: bool,
    pub time: bool,
    #[serde(rename = "else")]
    pub else_branch: bool,
    /// The stdlib modules that may be called.
    pub modules: Vec<String>,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            lambdas: true,
            match_expr: true,
            regex: true,
            time: true,
            else_branch: true,
            modules: MODULES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Features {
    pub fn module_allowed(&self, m: &str) -> bool {
        self.modules.iter().any(|x| x == m)
    }
}

/// Everything `compile` needs besides the text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckOptions {
    pub profile: Profile,
    pub features: Features,
    pub max_expr_depth: Option<usize>,
    pub max_block_depth: Option<usize>,
}

impl CheckOptions {
    pub fn lenient() -> CheckOptions {
        CheckOptions {
            profile: Profile::Lenient,
            ..CheckOptions::default()
        }
    }
    pub fn nesting(&self) -> NestingLimits {
        let d = NestingLimits::default();
        NestingLimits {
            expr_depth: self.max_expr_depth.unwrap_or(d.expr_depth),
            block_depth: self.max_block_depth.unwrap_or(d.block_depth),
        }
    }
}

/// The evaluation limits of LANGUAGE.md §8.
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalOptions {
    pub limits: EvalLimits,
    /// Record each condition's value sub-expression by sub-expression.
    pub trace: bool,
}

/// The largest policy accepted by default (LANGUAGE.md §8).
pub const DEFAULT_MAX_POLICY_BYTES: usize = 100 * 1024;
