//! The decision of LANGUAGE.md §8 as serde types. Field order is fixed and
//! every collection is a `Vec` in evaluation order, so the JSON of a decision
//! is byte-identical across runs and platforms for the same inputs.

use crate::policy::Metadata;
use crate::value::Value;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::sync::Arc;

/// Loop variable bindings of a firing: `{"drone": "drones[3]"}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bindings(pub Vec<(Arc<str>, String)>);

impl Serialize for Bindings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(&**k, v)?;
        }
        m.end()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiredAction {
    pub name: Arc<str>,
    pub args: Vec<Value>,
    pub rule: Arc<str>,
    pub line: u32,
    pub bindings: Bindings,
    pub count: u32,
}

impl FiredAction {
    /// `Name(arg, …)` as in `drone_ops.expected-actions.json`.
    pub fn display(&self) -> String {
        if self.args.is_empty() {
            return self.name.to_string();
        }
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| match a {
                Value::Str(s) => s.to_string(),
                other => other.to_string(),
            })
            .collect();
        format!("{}({})", self.name, args.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Fired,
    NotFired,
    Unknown,
    ElseFired,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleReport {
    pub id: Arc<str>,
    pub line: u32,
    pub kind: &'static str,
    pub outcome: Outcome,
    /// How many times the rule was evaluated (more than once inside loops).
    pub evaluations: u32,
    /// How many of those evaluations fired their THEN actions.
    pub fired: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeWarning {
    pub code: &'static str,
    pub message: String,
    pub rule: Arc<str>,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub steps: u64,
    pub rules_evaluated: u64,
}

/// One sub-expression and its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceNode {
    pub expr: String,
    #[serde(skip_serializing_if = "Value::is_missing")]
    pub value: Value,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TraceNode>,
}

/// The condition of one rule evaluation, sub-expression by sub-expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceEntry {
    pub rule: Arc<str>,
    pub line: u32,
    pub bindings: Bindings,
    pub condition: TraceNode,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub policy_id: Arc<str>,
    pub now: String,
    pub actions: Vec<FiredAction>,
    pub rules: Vec<RuleReport>,
    pub warnings: Vec<RuntimeWarning>,
    pub defaults: Vec<Arc<str>>,
    pub stats: Stats,
    pub metadata: Arc<Metadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<TraceEntry>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub trace_truncated: bool,
}

impl Decision {
    /// Canonical JSON (pretty, two-space indent, trailing newline).
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    /// Fired actions as `Name(arg)` strings, counts expanded.
    pub fn action_strings(&self) -> Vec<String> {
        self.actions.iter().map(FiredAction::display).collect()
    }
}
