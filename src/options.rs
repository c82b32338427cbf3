//! Options that shape checking and evaluation: the profile and the feature
//! flags (`docs/language.md#strict-and-lenient-profiles`, `docs/language.md#feature-flags`). The limits live in
//! [`crate::limits`].

pub use crate::limits::{EvalLimits, NestingLimits, RegexLimits, DEFAULT_MAX_POLICY_BYTES};
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Everything `compile` needs besides the text: what a compiled policy
/// depends on, and so what a cache of compiled policies is keyed by
/// ([`CheckOptions::fingerprint`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckOptions {
    pub profile: Profile,
    pub features: Features,
    pub nesting: NestingLimits,
    /// The policy's patterns: part of the fingerprint, since a policy
    /// within one set of these limits may be refused under another.
    pub regex: RegexLimits,
}

impl CheckOptions {
    pub fn lenient() -> CheckOptions {
        CheckOptions {
            profile: Profile::Lenient,
            ..CheckOptions::default()
        }
    }

    pub fn nesting(&self) -> NestingLimits {
        self.nesting
    }

    /// A digest of everything compilation depends on besides the text: two
    /// option sets with the same fingerprint compile a text alike. The same
    /// in every process of one build (the hasher has fixed keys), which is
    /// all the supervisor and its workers need.
    pub fn fingerprint(&self) -> u64 {
        // `DefaultHasher::new` has fixed keys: stable within one build.
        let mut h = std::hash::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalOptions {
    pub limits: EvalLimits,
    /// Record each condition's value sub-expression by sub-expression.
    pub trace: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_limits_are_part_of_the_fingerprint() {
        let base = CheckOptions::default();
        let mut o = base.clone();
        o.regex.max_patterns -= 1;
        assert_ne!(base.fingerprint(), o.fingerprint());
        let mut o = base.clone();
        o.regex.compile_budget -= 1;
        assert_ne!(base.fingerprint(), o.fingerprint());
    }
}
