//! The decision of `docs/language.md#the-decision` as serde types. Field order is fixed and
//! every collection is a `Vec` in evaluation order, so the JSON of a decision
//! is byte-identical across runs and platforms for the same inputs.

use crate::policy::Metadata;
use crate::value::Value;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::sync::Arc;

/// One step of a loop binding: an index into a list or a key of an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Index(usize),
    Key(Arc<str>),
}

/// A loop variable bound to an element of the iterated expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub var: Arc<str>,
    /// The iterated expression as written (`drones`, `s.racks`).
    pub label: Arc<str>,
    pub step: Step,
}

impl Binding {
    /// The element's path: `drones[3]`, `zones.north`, `m["a b"]`.
    pub fn path(&self) -> String {
        let mut s = String::with_capacity(self.label.len() + 8);
        s.push_str(&self.label);
        match &self.step {
            Step::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
            Step::Key(k) if is_ident(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Key(k) => {
                s.push('[');
                s.push_str(&format!("{k:?}"));
                s.push(']');
            }
        }
        s
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Loop variable bindings of a firing, serialized as `{"drone": "drones[3]"}`.
/// Paths are built only when the decision is serialized.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bindings(pub Vec<Binding>);

impl Serialize for Bindings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for b in &self.0 {
            m.serialize_entry(&*b.var, &b.path())?;
        }
        m.end()
    }
}

/// The evaluation's `now`, serialized as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Now(pub crate::value::Timestamp);

impl Serialize for Now {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::timefmt::format_rfc3339(self.0))
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
    pub now: Now,
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
