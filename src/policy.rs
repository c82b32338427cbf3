//! `CompiledPolicy`: the checked tree ready to evaluate, its id and metadata.
//! Workers cache this type by `policy_id`, so it owns everything it needs.

use crate::ast::Rule;
use crate::span::{LineIndex, Span};
use crate::value::Value;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// One `- Kind: text` item of CONSTRAINT, IMPACT, TRACE, REVIEW or ACTOR.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Actors {
    pub primary: Option<String>,
    pub secondary: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Scope {
    pub domain: Option<String>,
    pub location: Option<String>,
    pub phase: Option<String>,
}

/// What an auditor needs to see with every decision.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Metadata {
    pub intent: String,
    pub actors: Actors,
    pub scope: Scope,
    pub assumptions: Vec<String>,
    pub constraints: Vec<Item>,
    pub impacts: Vec<Item>,
    pub traces: Vec<Item>,
    pub review: Vec<Item>,
}

/// A policy CONTEXT default: `- Key: Value`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDefault {
    pub name: Arc<str>,
    pub value: Value,
    pub span: Span,
    /// The value was an Omni literal (not raw text).
    pub literal: bool,
}

/// A checked policy: rules with names and functions resolved, unit literals
/// converted, regexes compiled.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// `sha256:` and the hex digest of the exact policy bytes.
    pub policy_id: Arc<str>,
    pub source: Arc<str>,
    pub line_index: LineIndex,
    pub metadata: Arc<Metadata>,
    pub defaults: Vec<PolicyDefault>,
    /// The typed context declarations (`SCHEMA`); empty when the policy
    /// declares nothing, and then evaluation does no work for them.
    pub schema: crate::types::Schema,
    pub rules: Vec<Rule>,
    /// Regexes of `matches(s, "…")`, by the byte offset of the call.
    pub regexes: Vec<(u32, Arc<crate::stdlib::CompiledRegex>)>,
    /// Local slots needed (loop variables and lambda parameters in scope at once).
    pub max_slots: u32,
    /// Number of rules, nested ones included.
    pub rule_count: usize,
}

impl CompiledPolicy {
    /// The text of a span of the policy.
    pub fn text(&self, span: Span) -> &str {
        self.source.get(span.range()).unwrap_or("")
    }

    /// A rough size in memory, for caches bounded by bytes.
    pub fn approx_bytes(&self) -> usize {
        self.source.len() * 12 + 4096
    }

    pub fn default_value(&self, name: &str) -> Option<&Value> {
        self.defaults
            .iter()
            .find(|d| &*d.name == name)
            .map(|d| &d.value)
    }

    pub fn regex_at(&self, offset: u32) -> Option<&crate::stdlib::CompiledRegex> {
        self.regexes
            .iter()
            .find(|(o, _)| *o == offset)
            .map(|(_, r)| &**r)
    }
}

/// `sha256:<hex>` of the exact bytes.
pub fn policy_id(source: &[u8]) -> String {
    let digest = Sha256::digest(source);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A rule in the earlier service's response shape: condition and action text.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RuleSummary {
    pub id: String,
    pub line: u32,
    pub condition: String,
    pub action: String,
}

impl CompiledPolicy {
    /// One entry per rule (nested ones included), in source order.
    pub fn rule_summaries(&self) -> Vec<RuleSummary> {
        use crate::ast::{walk_rules, RuleKind};
        let mut out = Vec::with_capacity(self.rule_count);
        walk_rules(&self.rules, &mut |r, _| {
            let (condition, action) = match &r.kind {
                RuleKind::If {
                    cond,
                    then_actions,
                    else_actions,
                    ..
                } => {
                    let text = |acts: &[crate::ast::Action]| {
                        acts.iter()
                            .map(|a| self.text(a.span).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let mut action = text(then_actions);
                    if !else_actions.is_empty() {
                        action = format!("{action} ELSE {}", text(else_actions));
                    }
                    (self.text(cond.span).to_string(), action)
                }
                RuleKind::For { var, iterable, .. } => (
                    format!("FOR {var} IN {}", self.text(iterable.span)),
                    String::new(),
                ),
                RuleKind::While { cond, .. } => {
                    (format!("WHILE {}", self.text(cond.span)), String::new())
                }
            };
            out.push(RuleSummary {
                id: r.id.to_string(),
                line: r.span.line,
                condition,
                action,
            });
        });
        out
    }
}
