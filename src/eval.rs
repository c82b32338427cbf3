//! The evaluator (LANGUAGE.md §3–8): runs a `CompiledPolicy` against a
//! context and `now`, with Kleene three-valued logic, units, loops, the
//! stdlib and the deterministic limits. Costs are charged before the work
//! they pay for; hitting a limit is an error, never a partial decision.

use crate::ast::*;
use crate::decision::*;
use crate::error_code::ErrorCode;
use crate::options::{EvalLimits, EvalOptions};
use crate::policy::CompiledPolicy;
use crate::span::Span;
use crate::stdlib::{self, as_number, as_time, equals, FuncId};
use crate::units::{approx_eq, Dimension, UnitId};
use crate::value::{format_number, Context, Timestamp, Value};
use std::cmp::Ordering;
use std::sync::Arc;

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

type R<T> = Result<T, EvalError>;

/// Three-valued truth: `None` is unknown.
type Tri = Option<bool>;

/// Evaluates a compiled policy. `now` is echoed in the decision.
pub fn evaluate(
    policy: &CompiledPolicy,
    ctx: &Context,
    now: Timestamp,
    opts: &EvalOptions,
) -> Result<Decision, EvalError> {
    let mut ev = Evaluator {
        p: policy,
        ctx,
        now,
        limits: opts.limits,
        fuel: opts.limits.fuel,
        locals: vec![Value::Missing; policy.max_slots as usize],
        causes: Vec::new(),
        warnings: Vec::new(),
        defaults_used: Vec::new(),
        actions: Vec::new(),
        action_hashes: Vec::new(),
        arg_scratch: Vec::new(),
        reports: Vec::with_capacity(policy.rule_count),
        bindings: Vec::new(),
        fired_total: 0,
        rules_evaluated: 0,
        tracing: opts.trace,
        trace_stack: Vec::new(),
        trace: Vec::new(),
        trace_nodes: 0,
        trace_truncated: false,
    };
    let mut reports = Vec::with_capacity(policy.rule_count);
    walk_rules(&policy.rules, &mut |r, _| {
        reports.push(RuleReport {
            id: r.id.clone(),
            line: r.span.line,
            kind: r.kind.name(),
            outcome: Outcome::NotFired,
            evaluations: 0,
            fired: 0,
            iterations: matches!(r.kind, RuleKind::For { .. }).then_some(0),
            active: matches!(r.kind, RuleKind::While { .. }).then_some(false),
        })
    });
    ev.reports = reports;
    for r in &policy.rules {
        ev.rule(r)?;
    }
    Ok(Decision {
        policy_id: policy.policy_id.clone(),
        now: Now(now),
        actions: ev.actions,
        rules: ev.reports,
        warnings: ev.warnings,
        defaults: ev.defaults_used,
        stats: Stats {
            steps: opts.limits.fuel - ev.fuel,
            rules_evaluated: ev.rules_evaluated,
        },
        metadata: policy.metadata.clone(),
        trace: opts.trace.then_some(ev.trace),
        trace_truncated: ev.trace_truncated,
    })
}

/// A reason a value is unknown, reported only if it decides a rule.
struct Cause {
    code: &'static str,
    message: String,
}

const MAX_TRACE_NODES: usize = 20_000;

struct Evaluator<'p> {
    p: &'p CompiledPolicy,
    ctx: &'p Context,
    now: Timestamp,
    limits: EvalLimits,
    fuel: u64,
    locals: Vec<Value>,
    causes: Vec<Cause>,
    warnings: Vec<RuntimeWarning>,
    defaults_used: Vec<Arc<str>>,
    actions: Vec<FiredAction>,
    /// The de-duplication hash of each fired action, by index.
    action_hashes: Vec<u64>,
    arg_scratch: Vec<Value>,
    reports: Vec<RuleReport>,
    /// Loop variables in scope: name, the iterated expression's text, and the
    /// step. The names are borrowed from the policy; a [`Binding`] (which
    /// owns them) is only made when an action fires.
    bindings: Vec<Frame<'p>>,
    /// Sum of the counts of all fired actions.
    fired_total: u64,
    rules_evaluated: u64,
    tracing: bool,
    trace_stack: Vec<TraceNode>,
    trace: Vec<TraceEntry>,
    trace_nodes: usize,
    trace_truncated: bool,
}

/// A loop variable in scope (see [`Evaluator::bindings`]).
struct Frame<'p> {
    var: &'p Arc<str>,
    label: &'p Arc<str>,
    step: Step,
}

impl Frame<'_> {
    fn to_binding(&self) -> Binding {
        Binding {
            var: self.var.clone(),
            label: self.label.clone(),
            step: self.step.clone(),
        }
    }

    fn is(&self, b: &Binding) -> bool {
        *self.var == b.var && *self.label == b.label && self.step == b.step
    }
}

fn rank(o: Outcome) -> u8 {
    match o {
        Outcome::NotFired => 0,
        Outcome::Unknown => 1,
        Outcome::ElseFired => 2,
        Outcome::Fired => 3,
    }
}

impl<'p> Evaluator<'p> {
    #[inline]
    fn charge(&mut self, n: u64) -> R<()> {
        if self.fuel < n {
            self.fuel = 0;
            return Err(EvalError::BudgetExceeded(self.limits.fuel));
        }
        self.fuel -= n;
        Ok(())
    }

    fn text(&self, span: Span) -> &'p str {
        self.p.source.get(span.range()).unwrap_or("")
    }

    fn cause(&mut self, code: &'static str, message: String) {
        if self.causes.len() < 64 {
            self.causes.push(Cause { code, message });
        }
    }

    fn warn(&mut self, rule: &Rule, code: &'static str, message: String) {
        if self
            .warnings
            .iter()
            .any(|w| w.code == code && w.message == message)
        {
            return;
        }
        self.warnings.push(RuntimeWarning {
            code,
            message,
            rule: rule.id.clone(),
            line: rule.span.line,
        });
    }

    /// Publishes the pending causes (the rule's result was unknown).
    fn flush_causes(&mut self, rule: &Rule) {
        let causes = std::mem::take(&mut self.causes);
        for c in causes {
            self.warn(rule, c.code, c.message);
        }
    }

    fn record(&mut self, rule: &Rule, outcome: Outcome) {
        let rep = &mut self.reports[rule.index as usize];
        rep.evaluations += 1;
        if outcome == Outcome::Fired {
            rep.fired += 1;
        }
        if rank(outcome) > rank(rep.outcome) {
            rep.outcome = outcome;
        }
    }

    // ----- rules -----------------------------------------------------------

    fn rule(&mut self, r: &'p Rule) -> R<()> {
        self.charge(1)?;
        self.rules_evaluated += 1;
        self.causes.clear();
        let outcome = match &r.kind {
            RuleKind::If {
                cond,
                then_actions,
                else_actions,
                ..
            } => {
                let c = self.condition(r, cond)?;
                match c {
                    Some(true) => self.fire(r, then_actions, Outcome::Fired)?,
                    Some(false) if !else_actions.is_empty() => {
                        self.fire(r, else_actions, Outcome::ElseFired)?
                    }
                    Some(false) => Outcome::NotFired,
                    None => {
                        self.flush_causes(r);
                        Outcome::Unknown
                    }
                }
            }
            RuleKind::For {
                var,
                slot,
                label,
                iterable,
                body,
                ..
            } => self.for_loop(r, var, *slot, label, iterable, body)?,
            RuleKind::While { cond, body } => {
                let c = self.condition(r, cond)?;
                match c {
                    Some(true) => {
                        if let Some(a) = self.reports[r.index as usize].active.as_mut() {
                            *a = true;
                        }
                        let before = self.actions_fired();
                        for b in body {
                            self.rule(b)?;
                        }
                        if self.actions_fired() > before {
                            Outcome::Fired
                        } else {
                            Outcome::NotFired
                        }
                    }
                    Some(false) => Outcome::NotFired,
                    None => {
                        self.flush_causes(r);
                        Outcome::Unknown
                    }
                }
            }
        };
        self.record(r, outcome);
        Ok(())
    }

    fn actions_fired(&self) -> u64 {
        self.fired_total
    }

    fn current_bindings(&self) -> Bindings {
        Bindings(self.bindings.iter().map(Frame::to_binding).collect())
    }

    fn condition(&mut self, r: &Rule, cond: &Expr) -> R<Tri> {
        if self.tracing {
            self.trace_stack.clear();
            self.trace_stack.push(placeholder());
        }
        let t = self.eval_tri(cond)?;
        if self.tracing {
            let mut root = self.trace_stack.pop().unwrap_or_else(placeholder);
            if let Some(node) = root.children.pop() {
                self.trace.push(TraceEntry {
                    rule: r.id.clone(),
                    line: r.span.line,
                    bindings: self.current_bindings(),
                    condition: node,
                });
            }
        }
        Ok(t)
    }

    fn fire(&mut self, r: &Rule, actions: &[Action], outcome: Outcome) -> R<Outcome> {
        // Evaluate every argument first: if any is unknown, nothing fires.
        let mut scratch = std::mem::take(&mut self.arg_scratch);
        scratch.clear();
        // Causes from the condition did not decide anything: drop them.
        self.causes.clear();
        for a in actions {
            for e in &a.args {
                let v = self.eval(e)?;
                if contains_missing(&v) {
                    if self.causes.is_empty() {
                        let msg = format!(
                            "the argument `{}` of `{}` is unknown",
                            self.text(e.span),
                            a.name
                        );
                        self.cause("unknown_argument", msg);
                    }
                    self.flush_causes(r);
                    self.arg_scratch = scratch;
                    return Ok(Outcome::Unknown);
                }
                scratch.push(v);
            }
        }
        let mut next = 0;
        for a in actions {
            self.charge(1)?;
            self.fired_total += 1;
            let args = &scratch[next..next + a.args.len()];
            next += a.args.len();
            let key = action_hash(&a.name, args, &self.bindings);
            let existing = self
                .action_hashes
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, h)| {
                    if *h != key {
                        return None;
                    }
                    let f = &self.actions[i];
                    let same_bindings = f.bindings.0.len() == self.bindings.len()
                        && self
                            .bindings
                            .iter()
                            .zip(&f.bindings.0)
                            .all(|(x, b)| x.is(b));
                    (f.name == a.name && f.args == args && same_bindings).then_some(i)
                });
            match existing {
                Some(i) => self.actions[i].count += 1,
                None => {
                    self.action_hashes.push(key);
                    let fired = FiredAction {
                        name: a.name.clone(),
                        args: args.to_vec(),
                        rule: r.id.clone(),
                        line: r.span.line,
                        bindings: self.current_bindings(),
                        count: 1,
                    };
                    self.actions.push(fired);
                }
            }
        }
        self.arg_scratch = scratch;
        Ok(outcome)
    }

    fn for_loop(
        &mut self,
        r: &'p Rule,
        var: &'p Arc<str>,
        slot: u32,
        label: &'p Arc<str>,
        iterable: &'p Expr,
        body: &'p [Rule],
    ) -> R<Outcome> {
        let v = self.eval(iterable)?;
        let n = match &v {
            Value::List(items) => items.len(),
            Value::Obj(o) => o.len(),
            Value::Missing => {
                if self.causes.is_empty() {
                    self.cause("missing", format!("`{label}` is missing"));
                }
                let msg = self
                    .causes
                    .first()
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                self.causes.clear();
                self.warn(r, "not_a_list", format!("{msg}: the loop ran 0 times"));
                return Ok(Outcome::Unknown);
            }
            other => {
                let msg = format!(
                    "`{label}` is {}, not a list: the loop ran 0 times",
                    other.type_name()
                );
                self.warn(r, "not_a_list", msg);
                return Ok(Outcome::Unknown);
            }
        };
        self.check_iterations(n)?;
        if let Some(it) = self.reports[r.index as usize].iterations.as_mut() {
            *it += n as u64;
        }
        let before = self.actions_fired();
        for i in 0..n {
            let (item, step) = match &v {
                Value::List(items) => (items[i].clone(), Step::Index(i)),
                Value::Obj(o) => match o.entry(i) {
                    Some((k, x)) => (x.clone(), Step::Key(k.clone())),
                    None => break,
                },
                _ => break,
            };
            self.locals[slot as usize] = item;
            self.bindings.push(Frame { var, label, step });
            for b in body {
                self.rule(b)?;
            }
            self.bindings.pop();
        }
        self.locals[slot as usize] = Value::Missing;
        Ok(if self.actions_fired() > before {
            Outcome::Fired
        } else {
            Outcome::NotFired
        })
    }

    fn check_iterations(&mut self, n: usize) -> R<()> {
        if n as u64 > self.limits.max_loop_iterations {
            return Err(EvalError::TooManyIterations(
                self.limits.max_loop_iterations,
            ));
        }
        self.charge(n as u64)
    }

    // ----- expressions -------------------------------------------------------

    /// Evaluates a condition straight to three-valued truth. Same results
    /// and step costs as `truth(eval(e))`, without building `Value::Bool`s.
    fn eval_tri(&mut self, e: &Expr) -> R<Tri> {
        if self.tracing {
            let v = self.eval(e)?;
            return Ok(self.truth(&v, e));
        }
        match &e.kind {
            ExprKind::Binary(BinOp::And, l, r) => {
                self.charge(1)?;
                let lt = self.eval_tri(l)?;
                if lt == Some(false) {
                    return Ok(Some(false));
                }
                let rt = self.eval_tri(r)?;
                Ok(match (lt, rt) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                })
            }
            ExprKind::Binary(BinOp::Or, l, r) => {
                self.charge(1)?;
                let lt = self.eval_tri(l)?;
                if lt == Some(true) {
                    return Ok(Some(true));
                }
                let rt = self.eval_tri(r)?;
                Ok(match (lt, rt) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                })
            }
            ExprKind::Not(inner) => {
                self.charge(1)?;
                Ok(self.eval_tri(inner)?.map(|b| !b))
            }
            ExprKind::Binary(op, l, r) if op.is_comparison() => {
                self.charge(1)?;
                if let Some(t) = self.compare_path_literal(*op, l, r)? {
                    return Ok(t);
                }
                let lv = self.eval(l)?;
                let rv = self.eval(r)?;
                Ok(self.compare(*op, &lv, &rv, l, r))
            }
            _ => {
                let v = self.eval(e)?;
                Ok(self.truth(&v, e))
            }
        }
    }

    #[inline(always)]
    fn eval(&mut self, e: &Expr) -> R<Value> {
        if !self.tracing {
            return self.eval_inner(e);
        }
        let depth = self.trace_stack.len();
        self.trace_stack.push(placeholder());
        let v = self.eval_inner(e);
        // Keep the stack balanced even when the evaluation stopped.
        let mut node = self.trace_stack.pop().unwrap_or_else(placeholder);
        self.trace_stack.truncate(depth);
        let v = v?;
        if self.trace_nodes < MAX_TRACE_NODES {
            self.trace_nodes += 1;
            node.expr = self.text(e.span).to_string();
            node.unknown = v.is_missing();
            node.value = v.clone();
            if let Some(parent) = self.trace_stack.last_mut() {
                parent.children.push(node);
            }
        } else {
            self.trace_truncated = true;
        }
        Ok(v)
    }

    fn eval_inner(&mut self, e: &Expr) -> R<Value> {
        self.charge(1)?;
        match &e.kind {
            ExprKind::Literal(l) => Ok(match l {
                Literal::Number(n) => Value::Num(*n),
                Literal::Quantity(n, u) => Value::Qty(*n, *u),
                Literal::Str(s) => Value::Str(s.clone()),
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Null => Value::Null,
            }),
            ExprKind::Name { name, resolved } => Ok(match resolved {
                NameRef::Local(slot) => self
                    .locals
                    .get(*slot as usize)
                    .cloned()
                    .unwrap_or(Value::Missing),
                _ => self.global(name),
            }),
            ExprKind::Root => Ok(Value::Obj(self.ctx.root.clone())),
            ExprKind::List(items) => {
                self.check_list_len(items.len())?;
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i)?);
                }
                Ok(Value::List(Arc::new(out)))
            }
            ExprKind::Member(base, key) => {
                if !self.tracing {
                    if let Some(v) = self.fast_path(e)? {
                        return Ok(v);
                    }
                }
                let b = self.eval(base)?;
                Ok(match &b {
                    Value::Obj(o) => match o.get(key) {
                        Some(v) => v.clone(),
                        None => {
                            let msg = format!("`{}` is missing", self.text(e.span));
                            self.cause("missing", msg);
                            Value::Missing
                        }
                    },
                    Value::Missing => Value::Missing,
                    other => {
                        let msg = format!(
                            "`{}` is {}, which has no field `{key}`",
                            self.text(base.span),
                            other.type_name()
                        );
                        self.cause("type_mismatch", msg);
                        Value::Missing
                    }
                })
            }
            ExprKind::Index(base, idx) => {
                let b = self.eval(base)?;
                let i = self.eval(idx)?;
                Ok(self.index(e, &b, &i))
            }
            ExprKind::Call { func, args, .. } => match func {
                Some(f) => self.call(*f, args, e),
                None => Ok(Value::Missing),
            },
            ExprKind::Not(inner) => {
                let v = self.eval(inner)?;
                Ok(tri_value(self.truth(&v, inner).map(|b| !b)))
            }
            ExprKind::Neg(inner) => {
                let v = self.eval(inner)?;
                Ok(match numeric_operand(&v) {
                    Some((n, None)) if !matches!(v, Value::Str(_)) => Value::Num(-n),
                    Some((n, Some(u))) if u.dim() != Dimension::Temperature => Value::Qty(-n, u),
                    _ if v.is_missing() => Value::Missing,
                    _ => {
                        let msg = format!(
                            "cannot negate `{}` ({})",
                            self.text(inner.span),
                            v.type_name()
                        );
                        self.cause("type_mismatch", msg);
                        Value::Missing
                    }
                })
            }
            ExprKind::Binary(op, l, r) => match op {
                BinOp::And => {
                    let lv = self.eval(l)?;
                    let lt = self.truth(&lv, l);
                    if lt == Some(false) {
                        return Ok(Value::Bool(false));
                    }
                    let rv = self.eval(r)?;
                    let rt = self.truth(&rv, r);
                    Ok(tri_value(match (lt, rt) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    }))
                }
                BinOp::Or => {
                    let lv = self.eval(l)?;
                    let lt = self.truth(&lv, l);
                    if lt == Some(true) {
                        return Ok(Value::Bool(true));
                    }
                    let rv = self.eval(r)?;
                    let rt = self.truth(&rv, r);
                    Ok(tri_value(match (lt, rt) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    }))
                }
                _ if op.is_comparison() => {
                    if !self.tracing {
                        if let Some(t) = self.compare_path_literal(*op, l, r)? {
                            return Ok(tri_value(t));
                        }
                    }
                    let lv = self.eval(l)?;
                    let rv = self.eval(r)?;
                    Ok(tri_value(self.compare(*op, &lv, &rv, l, r)))
                }
                _ => {
                    let lv = self.eval(l)?;
                    let rv = self.eval(r)?;
                    self.arith(*op, lv, rv, l, r)
                }
            },
            ExprKind::In {
                negated,
                item,
                collection,
            } => {
                if !self.tracing {
                    if let Some(t) = self.literal_in_path(item, collection)? {
                        return Ok(tri_value(if *negated { t.map(|b| !b) } else { t }));
                    }
                }
                let iv = self.eval(item)?;
                let cv = self.eval(collection)?;
                let t = self.contains(&cv, &iv, item, collection)?;
                Ok(tri_value(if *negated { t.map(|b| !b) } else { t }))
            }
            ExprKind::Match { scrutinee, arms } => {
                let v = self.eval(scrutinee)?;
                if v.is_missing() {
                    return Ok(Value::Missing);
                }
                for arm in arms {
                    self.charge(1)?;
                    let hit = arm.wildcard
                        || arm
                            .patterns
                            .iter()
                            .any(|p| equals(&v, &literal_value(p)) == Some(true));
                    if hit {
                        return self.eval(&arm.body);
                    }
                }
                let msg = format!(
                    "no arm of the match on `{}` fits its value",
                    self.text(scrutinee.span)
                );
                self.cause("no_match", msg);
                Ok(Value::Missing)
            }
            ExprKind::Lambda(_) | ExprKind::Error => Ok(Value::Missing),
        }
    }

    /// Looks up `a.b[0].c` by reference and clones only the leaf. `None` when
    /// the path has a part the fast path does not handle (then the general
    /// evaluation runs, with the same results and costs).
    fn fast_path(&mut self, e: &Expr) -> R<Option<Value>> {
        let mut nodes = 0u64;
        let (result, fail) = match self.walk(e, &mut nodes) {
            Walk::Found(v) => (Some(v.clone()), None),
            Walk::Missing(at) => (Some(Value::Missing), Some((at, None))),
            Walk::NotObject(base, key, ty) => (Some(Value::Missing), Some((base, Some((key, ty))))),
            Walk::MissingBase => (Some(Value::Missing), None),
            Walk::Unsupported => (None, None),
        };
        if result.is_none() {
            return Ok(None);
        }
        // The caller already paid for `e` itself.
        self.charge(nodes - 1)?;
        match fail {
            Some((at, None)) => {
                let msg = format!("`{}` is missing", self.text(at.span));
                self.cause("missing", msg);
            }
            Some((base, Some((key, ty)))) => {
                let msg = format!(
                    "`{}` is {ty}, which has no field `{key}`",
                    self.text(base.span)
                );
                self.cause("type_mismatch", msg);
            }
            None => {}
        }
        Ok(result)
    }

    fn walk<'s, 'e>(&'s self, e: &'e Expr, nodes: &mut u64) -> Walk<'s, 'e> {
        *nodes += 1;
        match &e.kind {
            ExprKind::Name {
                resolved: NameRef::Local(slot),
                ..
            } => match self.locals.get(*slot as usize) {
                Some(Value::Missing) => Walk::MissingBase,
                Some(v) => Walk::Found(v),
                None => Walk::Unsupported,
            },
            ExprKind::Name {
                name,
                resolved: NameRef::Global,
            } => match self.ctx.get(name) {
                Some(v) => Walk::Found(v),
                // Defaults and missing names take the general path (it records them).
                None => Walk::Unsupported,
            },
            ExprKind::Member(base, key) => {
                let found = if let ExprKind::Root = base.kind {
                    *nodes += 1;
                    self.ctx.root.get(key)
                } else {
                    match self.walk(base, nodes) {
                        Walk::Found(Value::Obj(o)) => o.get(key),
                        Walk::Found(other) => return Walk::NotObject(base, key, other.type_name()),
                        other => return other,
                    }
                };
                match found {
                    Some(v) => Walk::Found(v),
                    None => Walk::Missing(e),
                }
            }
            _ => Walk::Unsupported,
        }
    }

    /// `path OP literal` compared by reference (no clone). `None` when the
    /// general path must run (missing values, mismatches: it records causes).
    fn compare_path_literal(&mut self, op: BinOp, l: &Expr, r: &Expr) -> R<Option<Tri>> {
        let ExprKind::Literal(lit) = &r.kind else {
            return Ok(None);
        };
        let mut nodes = 1;
        let result = match self.walk(l, &mut nodes) {
            Walk::Found(v) => match (v, lit) {
                // A quantity-string literal may meet a quantity string: general path.
                (Value::Str(_), Literal::Str(b))
                    if crate::units::parse_quantity_str(b).is_some() =>
                {
                    None
                }
                (Value::Str(a), Literal::Str(b)) => Some(match op {
                    BinOp::Eq => a == b,
                    BinOp::Ne => a != b,
                    _ => {
                        let o = a.as_bytes().cmp(b.as_bytes());
                        ordering_holds(op, o)
                    }
                }),
                (
                    Value::Num(_) | Value::Qty(..) | Value::Bool(_),
                    Literal::Number(_) | Literal::Quantity(..) | Literal::Bool(_),
                ) => {
                    let rv = literal_value(lit);
                    if matches!(op, BinOp::Eq | BinOp::Ne) {
                        equals(v, &rv).map(|b| if op == BinOp::Eq { b } else { !b })
                    } else {
                        order_values(v, &rv).map(|o| ordering_holds(op, o))
                    }
                }
                _ => None,
            },
            _ => None,
        };
        match result {
            Some(t) => {
                self.charge(nodes)?;
                Ok(Some(Some(t)))
            }
            None => Ok(None),
        }
    }

    /// `"literal" IN path` over a list of strings, by reference.
    fn literal_in_path(&mut self, item: &Expr, collection: &Expr) -> R<Option<Tri>> {
        let ExprKind::Literal(Literal::Str(needle)) = &item.kind else {
            return Ok(None);
        };
        if crate::units::parse_quantity_str(needle).is_some() {
            return Ok(None);
        }
        let mut nodes = 1;
        let result = match self.walk(collection, &mut nodes) {
            Walk::Found(Value::List(xs)) => {
                let mut found = false;
                let mut all_strings = true;
                for x in xs.iter() {
                    match x {
                        Value::Str(s) if s == needle => {
                            found = true;
                            break;
                        }
                        Value::Str(_) => {}
                        _ => all_strings = false,
                    }
                }
                (found || all_strings).then_some((found, xs.len()))
            }
            _ => None,
        };
        match result {
            Some((found, n)) => {
                self.charge(nodes + n as u64)?;
                Ok(Some(Some(found)))
            }
            None => Ok(None),
        }
    }

    fn global(&mut self, name: &Arc<str>) -> Value {
        if let Some(v) = self.ctx.get(name) {
            return v.clone();
        }
        if let Some(v) = self.p.default_value(name) {
            if !self.defaults_used.iter().any(|d| d == name) {
                self.defaults_used.push(name.clone());
            }
            return v.clone();
        }
        self.cause("missing", format!("`{name}` is missing from the context"));
        Value::Missing
    }

    fn index(&mut self, e: &Expr, b: &Value, i: &Value) -> Value {
        match (b, i) {
            (Value::Missing, _) | (_, Value::Missing) => Value::Missing,
            (Value::List(items), Value::Num(n)) => {
                if n.fract() == 0.0 && *n >= 0.0 && (*n as usize) < items.len() {
                    items[*n as usize].clone()
                } else {
                    let msg = format!(
                        "`{}` is missing (no element {})",
                        self.text(e.span),
                        format_number(*n)
                    );
                    self.cause("missing", msg);
                    Value::Missing
                }
            }
            (Value::Obj(o), Value::Str(k)) => match o.get(k) {
                Some(v) => v.clone(),
                None => {
                    let msg = format!("`{}` is missing", self.text(e.span));
                    self.cause("missing", msg);
                    Value::Missing
                }
            },
            _ => {
                let msg = format!(
                    "`{}` cannot be indexed by {}",
                    self.text(e.span),
                    i.type_name()
                );
                self.cause("type_mismatch", msg);
                Value::Missing
            }
        }
    }

    /// Truth of a condition value: bool, non-zero number, else unknown.
    fn truth(&mut self, v: &Value, e: &Expr) -> Tri {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Num(n) => Some(*n != 0.0),
            Value::Missing => None,
            other => {
                let msg = format!(
                    "`{}` is {}, not true or false",
                    self.text(e.span),
                    other.type_name()
                );
                self.cause("type_mismatch", msg);
                None
            }
        }
    }

    fn mismatch(&mut self, what: &str, l: &Value, r: &Value, le: &Expr, re: &Expr) {
        let code = match (numeric_operand(l), numeric_operand(r)) {
            (Some((_, Some(a))), Some((_, Some(b)))) if a.dim() != b.dim() => "dimension_mismatch",
            _ => "type_mismatch",
        };
        let msg = format!(
            "cannot {what} `{}` ({}) and `{}` ({})",
            self.text(le.span),
            l.type_name(),
            self.text(re.span),
            r.type_name()
        );
        self.cause(code, msg);
    }

    fn compare(&mut self, op: BinOp, l: &Value, r: &Value, le: &Expr, re: &Expr) -> Tri {
        if l.is_missing() || r.is_missing() {
            return None;
        }
        if matches!(op, BinOp::Eq | BinOp::Ne) {
            let eq = equals(l, r);
            if eq.is_none() {
                self.mismatch("compare", l, r, le, re);
            }
            return eq.map(|b| if op == BinOp::Eq { b } else { !b });
        }
        let ord = self.order(l, r);
        let Some(ord) = ord else {
            self.mismatch("compare", l, r, le, re);
            return None;
        };
        Some(match op {
            BinOp::Lt => ord == Ordering::Less,
            BinOp::Le => ord != Ordering::Greater,
            BinOp::Gt => ord == Ordering::Greater,
            _ => ord != Ordering::Less,
        })
    }

    fn order(&self, l: &Value, r: &Value) -> Option<Ordering> {
        order_values(l, r)
    }
}

fn ordering_holds(op: BinOp, ord: Ordering) -> bool {
    match op {
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Le => ord != Ordering::Greater,
        BinOp::Gt => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    }
}

/// Ordering of two values, if they are comparable.
fn order_values(l: &Value, r: &Value) -> Option<Ordering> {
    {
        use Value::*;
        match (l, r) {
            (Str(a), Str(b)) => {
                match (
                    crate::units::parse_quantity_str(a),
                    crate::units::parse_quantity_str(b),
                ) {
                    // Two quantity strings order as quantities.
                    (Some((x, u)), Some((y, w))) => {
                        if u.dim() != w.dim() {
                            return None;
                        }
                        let (x, y) = (u.unit().to_base(x), w.unit().to_base(y));
                        if approx_eq(x, y) {
                            Some(Ordering::Equal)
                        } else {
                            x.partial_cmp(&y)
                        }
                    }
                    _ => Some(a.as_bytes().cmp(b.as_bytes())),
                }
            }
            (Time(a), Time(b)) => Some(a.cmp(b)),
            (Time(a), Str(s)) => crate::timefmt::parse_rfc3339(s).map(|b| a.cmp(&b)),
            (Str(s), Time(b)) => crate::timefmt::parse_rfc3339(s).map(|a| a.cmp(b)),
            (Num(a), Num(b)) => a.partial_cmp(b),
            _ => {
                let (a, ua) = numeric_operand(l)?;
                let (b, ub) = numeric_operand(r)?;
                let (x, y) = match (ua, ub) {
                    (None, None) => (a, b),
                    (Some(u), None) => (u.unit().to_base(a), u.unit().to_base(b)),
                    (None, Some(u)) => (u.unit().to_base(a), u.unit().to_base(b)),
                    (Some(u), Some(w)) => {
                        if u.dim() != w.dim() {
                            return None;
                        }
                        (u.unit().to_base(a), w.unit().to_base(b))
                    }
                };
                if approx_eq(x, y) && (ua.is_some() || ub.is_some()) {
                    Some(Ordering::Equal)
                } else {
                    x.partial_cmp(&y)
                }
            }
        }
    }
}

impl<'p> Evaluator<'p> {
    fn arith(&mut self, op: BinOp, l: Value, r: Value, le: &Expr, re: &Expr) -> R<Value> {
        use Value::*;
        if l.is_missing() || r.is_missing() {
            return Ok(Missing);
        }
        let verb = match op {
            BinOp::Add => "add",
            BinOp::Sub => "subtract",
            BinOp::Mul => "multiply",
            _ => "divide",
        };
        // String concatenation, charged against the value budget.
        if let (BinOp::Add, Str(a), Str(b)) = (op, &l, &r) {
            let len = a.len() + b.len();
            if len > self.limits.max_string_bytes {
                return Err(EvalError::ValueTooLarge(
                    ValueKind::String,
                    self.limits.max_string_bytes as u64,
                ));
            }
            self.charge(len as u64 / 64)?;
            let mut s = String::with_capacity(len);
            s.push_str(a);
            s.push_str(b);
            return Ok(Value::Str(Arc::from(s)));
        }
        // Timestamps.
        if let Some(v) = self.time_arith(op, &l, &r) {
            return Ok(v.unwrap_or_else(|| {
                self.mismatch(verb, &l, &r, le, re);
                Missing
            }));
        }
        let (Some((a, ua)), Some((b, ub))) = (numeric_operand(&l), numeric_operand(&r)) else {
            self.mismatch(verb, &l, &r, le, re);
            return Ok(Missing);
        };
        if stdlib::is_temperature(ua) || stdlib::is_temperature(ub) {
            let msg = format!(
                "temperatures cannot be used with `{}` (`{}`)",
                op.symbol(),
                self.text(le.span.to(re.span))
            );
            self.cause("type_mismatch", msg);
            return Ok(Missing);
        }
        let result = match (op, ua, ub) {
            (_, None, None) => {
                if op == BinOp::Div && b == 0.0 {
                    return Ok(self.div_zero(re));
                }
                Num(apply(op, a, b))
            }
            (BinOp::Add | BinOp::Sub, Some(u), None) => Qty(apply(op, a, b), u),
            (BinOp::Add | BinOp::Sub, None, Some(u)) => Qty(apply(op, a, b), u),
            (BinOp::Add | BinOp::Sub, Some(u), Some(w)) => {
                if u.dim() != w.dim() {
                    self.mismatch(verb, &l, &r, le, re);
                    return Ok(Missing);
                }
                let b_in_u = u.unit().from_base(w.unit().to_base(b));
                Qty(apply(op, a, b_in_u), u)
            }
            (BinOp::Mul, Some(u), None) | (BinOp::Mul, None, Some(u)) => Qty(a * b, u),
            // A ratio is dimensionless: it scales a quantity (`x * 110%`).
            (BinOp::Mul, Some(u), Some(w)) if w.dim() == Dimension::Ratio => {
                Qty(a * w.unit().to_base(b), u)
            }
            (BinOp::Mul, Some(w), Some(u)) if w.dim() == Dimension::Ratio => {
                Qty(b * w.unit().to_base(a), u)
            }
            (BinOp::Div, Some(u), Some(w))
                if w.dim() == Dimension::Ratio && u.dim() != Dimension::Ratio =>
            {
                let d = w.unit().to_base(b);
                if d == 0.0 {
                    return Ok(self.div_zero(re));
                }
                Qty(a / d, u)
            }
            (BinOp::Div, Some(u), None) => {
                if b == 0.0 {
                    return Ok(self.div_zero(re));
                }
                Qty(a / b, u)
            }
            (BinOp::Div, Some(u), Some(w)) if u.dim() == w.dim() => {
                let d = w.unit().to_base(b);
                if d == 0.0 {
                    return Ok(self.div_zero(re));
                }
                Num(u.unit().to_base(a) / d)
            }
            _ => {
                self.mismatch(verb, &l, &r, le, re);
                return Ok(Missing);
            }
        };
        Ok(match result {
            Num(n) | Qty(n, _) if !n.is_finite() => {
                let msg = format!(
                    "`{}` is not a finite number",
                    self.text(le.span.to(re.span))
                );
                self.cause("invalid_number", msg);
                Missing
            }
            v => v,
        })
    }

    fn div_zero(&mut self, re: &Expr) -> Value {
        let msg = format!("division by zero (`{}` is 0)", self.text(re.span));
        self.cause("division_by_zero", msg);
        Value::Missing
    }

    /// `Some(None)`: a time operation that does not type; `None`: not a time operation.
    fn time_arith(&self, op: BinOp, l: &Value, r: &Value) -> Option<Option<Value>> {
        let is_duration = |v: &Value| matches!(numeric_operand(v), Some((_, Some(u))) if u.dim() == Dimension::Duration);
        // An RFC 3339 string next to a duration is read as a timestamp.
        let as_ts = |v: &Value, other: &Value| match v {
            Value::Str(s) if is_duration(other) => {
                crate::timefmt::parse_rfc3339(s).map(Value::Time)
            }
            _ => None,
        };
        if let Some(t) = as_ts(l, r) {
            return self.time_arith(op, &t, r);
        }
        if op == BinOp::Add {
            if let Some(t) = as_ts(r, l) {
                return self.time_arith(op, l, &t);
            }
        }
        let lt = matches!(l, Value::Time(_));
        let rt = matches!(r, Value::Time(_));
        if !lt && !rt {
            return None;
        }
        let dur = |v: &Value| match numeric_operand(v) {
            Some((n, Some(u))) if u.dim() == Dimension::Duration => Some(u.unit().to_base(n)),
            _ => None,
        };
        let add = |t: Timestamp, secs: f64, sign: f64| -> Option<Value> {
            let ns = (secs * sign * 1e9).round();
            if !ns.is_finite() || ns.abs() > 9.2e18 {
                return None;
            }
            t.0.checked_add(ns as i64)
                .map(|x| Value::Time(Timestamp(x)))
        };
        Some(match (op, l, r) {
            (BinOp::Add, Value::Time(t), d) | (BinOp::Add, d, Value::Time(t)) => {
                dur(d).and_then(|s| add(*t, s, 1.0))
            }
            (BinOp::Sub, Value::Time(t), Value::Time(u)) => {
                Some(stdlib::seconds((t.0 as f64 - u.0 as f64) / 1e9))
            }
            (BinOp::Sub, Value::Time(t), other) => match dur(other) {
                Some(s) => add(*t, s, -1.0),
                None => as_time(other).map(|u| stdlib::seconds((t.0 as f64 - u.0 as f64) / 1e9)),
            },
            (BinOp::Sub, other, Value::Time(u)) => {
                as_time(other).map(|t| stdlib::seconds((t.0 as f64 - u.0 as f64) / 1e9))
            }
            _ => None,
        })
    }

    /// `item IN collection`.
    fn contains(&mut self, c: &Value, item: &Value, ie: &Expr, ce: &Expr) -> R<Tri> {
        if c.is_missing() || item.is_missing() {
            return Ok(None);
        }
        match c {
            Value::List(xs) => {
                self.charge(xs.len() as u64)?;
                let mut unknown = false;
                for x in xs.iter() {
                    match equals(item, x) {
                        Some(true) => return Ok(Some(true)),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown {
                    let msg = format!(
                        "`{}` cannot be compared with some elements of `{}`",
                        self.text(ie.span),
                        self.text(ce.span)
                    );
                    self.cause("type_mismatch", msg);
                    return Ok(None);
                }
                Ok(Some(false))
            }
            Value::Str(s) => match item {
                Value::Str(x) => {
                    self.charge(s.len() as u64 / 64)?;
                    Ok(Some(s.contains(&**x)))
                }
                other => {
                    let msg = format!(
                        "`IN` on the string `{}` needs a string, but `{}` is {}",
                        self.text(ce.span),
                        self.text(ie.span),
                        other.type_name()
                    );
                    self.cause("type_mismatch", msg);
                    Ok(None)
                }
            },
            Value::Obj(o) => match item {
                Value::Str(k) => Ok(Some(o.get(k).is_some())),
                other => {
                    let msg = format!(
                        "`IN` on the object `{}` tests for a key, but `{}` is {}",
                        self.text(ce.span),
                        self.text(ie.span),
                        other.type_name()
                    );
                    self.cause("type_mismatch", msg);
                    Ok(None)
                }
            },
            other => {
                let msg = format!(
                    "`{}` is {}: `IN` needs a list, a string or an object",
                    self.text(ce.span),
                    other.type_name()
                );
                self.cause("type_mismatch", msg);
                Ok(None)
            }
        }
    }

    fn check_list_len(&mut self, n: usize) -> R<()> {
        if n > self.limits.max_list_len {
            return Err(EvalError::ValueTooLarge(
                ValueKind::List,
                self.limits.max_list_len as u64,
            ));
        }
        self.charge(n as u64)
    }

    fn check_str_len(&mut self, n: usize) -> R<()> {
        if n > self.limits.max_string_bytes {
            return Err(EvalError::ValueTooLarge(
                ValueKind::String,
                self.limits.max_string_bytes as u64,
            ));
        }
        self.charge(n as u64 / 64)
    }

    // ----- functions -------------------------------------------------------------

    fn bad_arg(&mut self, f: &str, e: &Expr, v: &Value, wanted: &str) -> Value {
        if !v.is_missing() {
            let msg = format!(
                "`{f}` needs {wanted}, but `{}` is {}",
                self.text(e.span),
                v.type_name()
            );
            self.cause("type_mismatch", msg);
        }
        Value::Missing
    }

    fn call(&mut self, f: FuncId, args: &[Expr], call: &Expr) -> R<Value> {
        use FuncId::*;
        let name = stdlib::def(f).name;
        // Higher-order functions evaluate their lambda per element.
        if let Some((idx, _)) = stdlib::def(f).lambda {
            if let Some(Expr {
                kind: ExprKind::Lambda(lam),
                ..
            }) = args.get(idx)
            {
                return self.higher_order(f, args, lam);
            }
        }
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(self.eval(a)?);
        }
        let v0 = vals.first().cloned().unwrap_or(Value::Missing);
        let a0 = args.first().unwrap_or(call);
        Ok(match f {
            Abs | Floor | Ceil | Sqrt => match as_number(&v0) {
                Some((n, u)) => {
                    if f == Sqrt && u.is_some() {
                        return Ok(self.bad_arg(name, a0, &v0, "a plain number"));
                    }
                    let r = match f {
                        Abs => n.abs(),
                        Floor => n.floor(),
                        Ceil => n.ceil(),
                        _ => n.sqrt(),
                    };
                    if r.is_nan() {
                        let msg = format!("`{}` of a negative number is not defined", name);
                        self.cause("invalid_number", msg);
                        Value::Missing
                    } else {
                        num_in(r, u)
                    }
                }
                None => self.bad_arg(name, a0, &v0, "a number"),
            },
            Round => {
                let digits = match vals.get(1) {
                    Some(Value::Num(d)) => d.clamp(0.0, 15.0) as i32,
                    Some(other) => {
                        let o = other.clone();
                        return Ok(self.bad_arg(name, &args[1], &o, "a whole number of digits"));
                    }
                    None => 0,
                };
                match as_number(&v0) {
                    Some((n, u)) => {
                        let m = 10f64.powi(digits);
                        num_in((n * m).round() / m, u)
                    }
                    None => self.bad_arg(name, a0, &v0, "a number"),
                }
            }
            Pow => match (as_number(&v0), vals.get(1).and_then(as_number)) {
                (Some((a, None)), Some((b, None))) => {
                    let r = a.powf(b);
                    if r.is_finite() {
                        Value::Num(r)
                    } else {
                        self.cause("invalid_number", "`pow` gave a number out of range".into());
                        Value::Missing
                    }
                }
                _ => {
                    let bad = if as_number(&v0).is_some_and(|x| x.1.is_none()) {
                        1
                    } else {
                        0
                    };
                    let v = vals.get(bad).cloned().unwrap_or(Value::Missing);
                    self.bad_arg(name, &args[bad.min(args.len() - 1)], &v, "plain numbers")
                }
            },
            Clamp => {
                let parts = vals.clone();
                match stdlib::common_unit(&parts) {
                    Ok(unit) => {
                        let xs: Option<Vec<f64>> =
                            parts.iter().map(|v| stdlib::in_unit(v, unit)).collect();
                        match xs {
                            Some(x) if x.len() == 3 => num_in(x[0].max(x[1]).min(x[2]), unit),
                            _ => Value::Missing,
                        }
                    }
                    Err(()) => {
                        if vals.iter().any(Value::is_missing) {
                            Value::Missing
                        } else {
                            self.cause(
                                "type_mismatch",
                                "`clamp` needs numbers of one dimension".into(),
                            );
                            Value::Missing
                        }
                    }
                }
            }
            Min | Max | Sum | Avg => self.aggregate(f, vals, args)?,
            Len => match &v0 {
                Value::Str(s) => Value::Num(s.chars().count() as f64),
                Value::List(l) => Value::Num(l.len() as f64),
                Value::Obj(o) => Value::Num(o.len() as f64),
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a string, a list or an object")
                }
            },
            Lower | Upper | Trim => match &v0 {
                Value::Str(s) => {
                    self.check_str_len(s.len())?;
                    let r = match f {
                        Lower => s.to_lowercase(),
                        Upper => s.to_uppercase(),
                        _ => s.trim().to_string(),
                    };
                    self.check_str_len(r.len())?;
                    Value::Str(Arc::from(r))
                }
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a string")
                }
            },
            Contains => {
                let x = vals.get(1).cloned().unwrap_or(Value::Missing);
                let t = self.contains(&v0, &x, args.get(1).unwrap_or(call), a0)?;
                tri_value(t)
            }
            StartsWith | EndsWith => match (&v0, vals.get(1)) {
                (Value::Str(s), Some(Value::Str(p))) => Value::Bool(if f == StartsWith {
                    s.starts_with(&**p)
                } else {
                    s.ends_with(&**p)
                }),
                (Value::Str(_), Some(other)) => {
                    let o = other.clone();
                    self.bad_arg(name, &args[1], &o, "a string")
                }
                (other, _) => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a string")
                }
            },
            Split => match (&v0, vals.get(1)) {
                (Value::Str(s), Some(Value::Str(sep))) => {
                    let parts: Vec<String> = if sep.is_empty() {
                        s.chars().map(|c| c.to_string()).collect()
                    } else {
                        s.split(&**sep).map(str::to_string).collect()
                    };
                    self.check_list_len(parts.len())?;
                    stdlib::list_of_strs(parts)
                }
                (Value::Str(_), Some(other)) => {
                    let o = other.clone();
                    self.bad_arg(name, &args[1], &o, "a separator string")
                }
                (other, _) => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a string")
                }
            },
            Matches => match &v0 {
                Value::Str(s) => {
                    self.charge(s.len() as u64 / 32 + 1)?;
                    match self.p.regex_at(call.span.start) {
                        Some(re) => Value::Bool(re.is_match(s)),
                        None => Value::Missing,
                    }
                }
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a string")
                }
            },
            Count => match &v0 {
                Value::List(l) => Value::Num(l.len() as f64),
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a list")
                }
            },
            First | Last => match &v0 {
                Value::List(l) => {
                    let item = if f == First { l.first() } else { l.last() };
                    match item {
                        Some(v) => v.clone(),
                        None => {
                            let msg = format!("`{}` is an empty list", self.text(a0.span));
                            self.cause("missing", msg);
                            Value::Missing
                        }
                    }
                }
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a list")
                }
            },
            Distinct => match &v0 {
                Value::List(l) => {
                    let n = l.len() as u64;
                    self.charge(n.saturating_mul(n) / 16 + n)?;
                    let mut out: Vec<Value> = Vec::new();
                    for x in l.iter() {
                        if !out.iter().any(|y| equals(x, y) == Some(true)) {
                            out.push(x.clone());
                        }
                    }
                    Value::List(Arc::new(out))
                }
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a list")
                }
            },
            Sort => match &v0 {
                Value::List(l) => {
                    let n = l.len() as u64;
                    self.charge(n * (64 - n.leading_zeros() as u64 + 1))?;
                    let mut out: Vec<Value> = l.as_ref().clone();
                    let mut comparable = true;
                    out.sort_by(|a, b| {
                        self.order(a, b).unwrap_or_else(|| {
                            comparable = false;
                            Ordering::Equal
                        })
                    });
                    if comparable {
                        Value::List(Arc::new(out))
                    } else {
                        let msg = format!(
                            "`{}` holds values that cannot be ordered together",
                            self.text(a0.span)
                        );
                        self.cause("type_mismatch", msg);
                        Value::Missing
                    }
                }
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "a list")
                }
            },
            Now => Value::Time(self.now),
            Time => match &v0 {
                Value::Str(s) => match crate::timefmt::parse_rfc3339(s) {
                    Some(t) => Value::Time(t),
                    None => {
                        let msg = format!("`{}` is not an RFC 3339 timestamp", self.text(a0.span));
                        self.cause("invalid_time", msg);
                        Value::Missing
                    }
                },
                Value::Time(t) => Value::Time(*t),
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "an RFC 3339 string")
                }
            },
            Since => match as_time(&v0) {
                Some(t) => stdlib::seconds((self.now.0 as f64 - t.0 as f64) / 1e9),
                None => self.bad_arg(name, a0, &v0, "a timestamp"),
            },
            Between => {
                let v1 = vals.get(1).cloned().unwrap_or(Value::Missing);
                match (as_time(&v0), as_time(&v1)) {
                    (Some(a), Some(b)) => stdlib::seconds((b.0 as f64 - a.0 as f64) / 1e9),
                    (None, _) => self.bad_arg(name, a0, &v0, "a timestamp"),
                    (_, None) => self.bad_arg(name, &args[1], &v1, "a timestamp"),
                }
            }
            DatePart => {
                let v1 = vals.get(1).cloned().unwrap_or(Value::Missing);
                match (as_time(&v0), &v1) {
                    (Some(t), Value::Str(part)) => match crate::timefmt::date_part(t, part) {
                        Some(n) => Value::Num(n),
                        None => {
                            let msg = format!("`{part}` is not a date part");
                            self.cause("invalid_argument", msg);
                            Value::Missing
                        }
                    },
                    (None, _) => self.bad_arg(name, a0, &v0, "a timestamp"),
                    (_, other) => {
                        let o = other.clone();
                        self.bad_arg(name, &args[1], &o, "a date part name")
                    }
                }
            }
            NowUnixMillis => Value::Num((self.now.0 / 1_000_000) as f64),
            DurationBetweenMs => {
                let v1 = vals.get(1).cloned().unwrap_or(Value::Missing);
                let ms = |v: &Value| match v {
                    Value::Num(n) => Some(*n),
                    other => as_time(other).map(|t| (t.0 / 1_000_000) as f64),
                };
                match (ms(&v0), ms(&v1)) {
                    (Some(a), Some(b)) => Value::Num(b - a),
                    (None, _) => self.bad_arg(name, a0, &v0, "a timestamp or milliseconds"),
                    (_, None) => self.bad_arg(name, &args[1], &v1, "a timestamp or milliseconds"),
                }
            }
            Has => match (&v0, vals.get(1)) {
                (Value::Obj(o), Some(Value::Str(k))) => Value::Bool(o.get(k).is_some()),
                (Value::Obj(_), Some(other)) => {
                    let o = other.clone();
                    self.bad_arg(name, &args[1], &o, "a key string")
                }
                (other, _) => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "an object")
                }
            },
            Keys => match &v0 {
                Value::Obj(o) => {
                    self.check_list_len(o.len())?;
                    Value::List(Arc::new(o.keys().map(|k| Value::Str(k.clone())).collect()))
                }
                other => {
                    let o = other.clone();
                    self.bad_arg(name, a0, &o, "an object")
                }
            },
            Get => match vals.get(1) {
                Some(Value::Str(path)) => {
                    if v0.is_missing() {
                        return Ok(Value::Missing);
                    }
                    self.charge(path.len() as u64 / 8 + 1)?;
                    match stdlib::get_path(&v0, path) {
                        Some(v) => v,
                        None => {
                            let msg = format!("`{}` has no `{path}`", self.text(a0.span));
                            self.cause("missing", msg);
                            Value::Missing
                        }
                    }
                }
                Some(other) => {
                    let o = other.clone();
                    self.bad_arg(name, &args[1], &o, "a path string")
                }
                None => Value::Missing,
            },
            Any | All | Map | Filter | Reduce => Value::Missing,
        })
    }

    fn aggregate(&mut self, f: FuncId, vals: Vec<Value>, args: &[Expr]) -> R<Value> {
        let items: Vec<Value> = if vals.len() == 1 {
            match &vals[0] {
                Value::List(l) => l.as_ref().clone(),
                Value::Missing => return Ok(Value::Missing),
                other => vec![other.clone()],
            }
        } else {
            vals
        };
        self.charge(items.len() as u64)?;
        if items.iter().any(Value::is_missing) {
            let msg = format!("`{}` has an unknown element", self.text(args[0].span));
            self.cause("missing", msg);
            return Ok(Value::Missing);
        }
        let name = stdlib::def(f).name;
        let unit = match stdlib::common_unit(&items) {
            Ok(u) => u,
            Err(()) => {
                let msg = format!("`{name}` needs numbers of one dimension");
                self.cause("type_mismatch", msg);
                return Ok(Value::Missing);
            }
        };
        let xs: Vec<f64> = items
            .iter()
            .filter_map(|v| stdlib::in_unit(v, unit))
            .collect();
        if xs.is_empty() {
            if f == FuncId::Sum {
                return Ok(Value::Num(0.0));
            }
            let msg = format!("`{name}` of an empty list");
            self.cause("missing", msg);
            return Ok(Value::Missing);
        }
        // An average of temperatures is meaningful; a sum is not.
        if f == FuncId::Sum && stdlib::is_temperature(unit) {
            self.cause("type_mismatch", "temperatures cannot be summed".into());
            return Ok(Value::Missing);
        }
        let r = match f {
            FuncId::Min => xs.iter().copied().fold(f64::INFINITY, f64::min),
            FuncId::Max => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            FuncId::Sum => xs.iter().sum(),
            _ => xs.iter().sum::<f64>() / xs.len() as f64,
        };
        Ok(num_in(r, unit))
    }

    fn higher_order(&mut self, f: FuncId, args: &[Expr], lam: &Lambda) -> R<Value> {
        let xs = self.eval(&args[0])?;
        let items = match &xs {
            Value::List(l) => l.clone(),
            Value::Missing => return Ok(Value::Missing),
            other => {
                let o = other.clone();
                return Ok(self.bad_arg(stdlib::def(f).name, &args[0], &o, "a list"));
            }
        };
        self.check_list_len(items.len())?;
        let slot = lam.first_slot as usize;
        if slot + lam.params.len() > self.locals.len() {
            return Ok(Value::Missing);
        }
        match f {
            FuncId::Reduce => {
                let mut acc = self.eval(&args[2])?;
                for x in items.iter() {
                    self.locals[slot] = acc;
                    self.locals[slot + 1] = x.clone();
                    acc = self.eval(&lam.body)?;
                }
                self.locals[slot] = Value::Missing;
                self.locals[slot + 1] = Value::Missing;
                Ok(acc)
            }
            FuncId::Map => {
                let mut out = Vec::with_capacity(items.len());
                for x in items.iter() {
                    self.locals[slot] = x.clone();
                    out.push(self.eval(&lam.body)?);
                }
                self.locals[slot] = Value::Missing;
                Ok(Value::List(Arc::new(out)))
            }
            _ => {
                let mut kept = Vec::new();
                let (mut trues, mut unknown) = (0usize, false);
                for x in items.iter() {
                    self.locals[slot] = x.clone();
                    let v = self.eval(&lam.body)?;
                    match self.truth(&v, &lam.body) {
                        Some(true) => {
                            trues += 1;
                            if f == FuncId::Filter {
                                kept.push(x.clone());
                            }
                            if f == FuncId::Any {
                                break;
                            }
                        }
                        Some(false) => {
                            if f == FuncId::All {
                                self.locals[slot] = Value::Missing;
                                return Ok(Value::Bool(false));
                            }
                        }
                        None => unknown = true,
                    }
                }
                self.locals[slot] = Value::Missing;
                Ok(match f {
                    FuncId::Any => tri_value(if trues > 0 {
                        Some(true)
                    } else if unknown {
                        None
                    } else {
                        Some(false)
                    }),
                    FuncId::All => tri_value(if unknown { None } else { Some(true) }),
                    FuncId::Count => Value::Num(trues as f64),
                    _ => Value::List(Arc::new(kept)),
                })
            }
        }
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

/// An argument is unknown when it, or anything inside it, is unknown.
fn contains_missing(v: &Value) -> bool {
    match v {
        Value::Missing => true,
        Value::List(items) => items.iter().any(contains_missing),
        Value::Obj(o) => o.iter().any(|(_, x)| contains_missing(x)),
        _ => false,
    }
}

fn tri_value(t: Tri) -> Value {
    match t {
        Some(b) => Value::Bool(b),
        None => Value::Missing,
    }
}

fn apply(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        _ => a / b,
    }
}

fn num_in(n: f64, unit: Option<UnitId>) -> Value {
    match unit {
        Some(u) => Value::Qty(n, u),
        None => Value::Num(n),
    }
}

/// A number, a quantity, or a string that is exactly a quantity (`"250cm"`).
fn numeric_operand(v: &Value) -> Option<(f64, Option<UnitId>)> {
    match v {
        Value::Num(n) => Some((*n, None)),
        Value::Qty(n, u) => Some((*n, Some(*u))),
        Value::Str(s) => crate::units::parse_quantity_str(s).map(|(n, u)| (n, Some(u))),
        _ => None,
    }
}

fn literal_value(l: &Literal) -> Value {
    match l {
        Literal::Number(n) => Value::Num(*n),
        Literal::Quantity(n, u) => Value::Qty(*n, *u),
        Literal::Str(s) => Value::Str(s.clone()),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
    }
}

/// The result of a by-reference path lookup.
enum Walk<'s, 'p> {
    Found(&'s Value),
    /// This member expression names a key the object does not have.
    Missing(&'p Expr),
    /// The base (first) is not an object (its type name is the third field).
    NotObject(&'p Expr, &'p Arc<str>, String),
    /// A part before was already missing (its cause is recorded elsewhere).
    MissingBase,
    Unsupported,
}

/// A hash of what makes two firings the same action (name, args, bindings);
/// candidates with equal hashes are compared exactly.
fn action_hash(name: &str, args: &[Value], bindings: &[Frame]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    name.hash(&mut h);
    for a in args {
        hash_value(a, &mut h);
    }
    for b in bindings {
        b.var.hash(&mut h);
        b.label.hash(&mut h);
        match &b.step {
            Step::Index(i) => i.hash(&mut h),
            Step::Key(k) => k.hash(&mut h),
        }
    }
    h.finish()
}

fn hash_value(v: &Value, h: &mut rustc_hash::FxHasher) {
    use std::hash::Hash;
    match v {
        Value::Missing | Value::Null => 0u8.hash(h),
        Value::Bool(b) => b.hash(h),
        Value::Num(n) => n.to_bits().hash(h),
        Value::Qty(n, u) => {
            n.to_bits().hash(h);
            u.suffix().hash(h);
        }
        Value::Str(s) => s.hash(h),
        Value::Time(t) => t.0.hash(h),
        Value::List(l) => {
            l.len().hash(h);
            for x in l.iter() {
                hash_value(x, h);
            }
        }
        Value::Obj(o) => o.len().hash(h),
    }
}
