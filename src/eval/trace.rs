//! The traced path: with `trace` on, every evaluated node is recorded with
//! its source text and value (up to [`MAX_TRACE_NODES`]), one tree per rule
//! condition. The fast paths are off while tracing, so the trace sees every
//! node; costs are the same either way.

use super::{Evaluator, R};
use crate::ast::*;
use crate::decision::*;
use crate::value::Value;

/// At most this many nodes are recorded; then `trace_truncated` is set.
pub(super) const MAX_TRACE_NODES: usize = 20_000;

/// The trace being recorded (only when `on`).
pub(super) struct Tracer {
    pub(super) on: bool,
    /// The nodes being built, innermost last.
    stack: Vec<TraceNode>,
    pub(super) entries: Vec<TraceEntry>,
    nodes: usize,
    pub(super) truncated: bool,
}

impl Tracer {
    pub(super) fn new(on: bool) -> Tracer {
        Tracer {
            on,
            stack: Vec::new(),
            entries: Vec::new(),
            nodes: 0,
            truncated: false,
        }
    }
}

impl Evaluator<'_> {
    /// Starts the tree of a rule's condition.
    pub(super) fn trace_begin(&mut self) {
        self.tracer.stack.clear();
        self.tracer.stack.push(placeholder());
    }

    /// Files the tree of a rule's condition, with the loop bindings.
    pub(super) fn trace_end(&mut self, r: &Rule) {
        let mut root = self.tracer.stack.pop().unwrap_or_else(placeholder);
        if let Some(node) = root.children.pop() {
            self.tracer.entries.push(TraceEntry {
                rule: r.id.clone(),
                line: r.span.line,
                bindings: self.current_bindings(),
                condition: node,
            });
        }
    }

    /// Evaluates an expression: straight through when not tracing, else
    /// recording its node under its parent's.
    #[inline(always)]
    pub(super) fn eval(&mut self, e: &Expr) -> R<Value> {
        if !self.tracer.on {
            return self.eval_inner(e);
        }
        let depth = self.tracer.stack.len();
        self.tracer.stack.push(placeholder());
        let v = self.eval_inner(e);
        // Keep the stack balanced even when the evaluation stopped.
        let mut node = self.tracer.stack.pop().unwrap_or_else(placeholder);
        self.tracer.stack.truncate(depth);
        let v = v?;
        if self.tracer.nodes < MAX_TRACE_NODES {
            self.tracer.nodes += 1;
            node.expr = self.text(e.span).to_string();
            node.unknown = v.is_missing();
            node.value = v.clone();
            if let Some(parent) = self.tracer.stack.last_mut() {
                parent.children.push(node);
            }
        } else {
            self.tracer.truncated = true;
        }
        Ok(v)
    }
}

fn placeholder() -> TraceNode {
    TraceNode {
        expr: String::new(),
        value: Value::Missing,
        unknown: false,
        children: Vec::new(),
    }
}
