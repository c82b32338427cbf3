//! The evaluator (docs/language.md): runs a `CompiledPolicy` against a
//! context and `now`, with Kleene three-valued logic, units, loops, the
//! stdlib and the deterministic limits. Costs are charged before the work
//! they pay for; hitting a limit is an error, never a partial decision.
//!
//! This file holds `evaluate` and the rules (IF, FOR, WHILE, firing actions);
//! `expr.rs` the expressions, `fast_path.rs` the by-reference path lookups,
//! `trace.rs` the traced path, `err.rs` the errors. The stdlib functions are
//! in `crate::stdlib`, which calls back in through `stdlib::CallContext`.

mod canon;
mod err;
mod expr;
mod fast_path;
mod schema;
mod trace;

pub use err::{EvalError, ValueKind};

use crate::ast::*;
use crate::decision::*;
use crate::options::{EvalLimits, EvalOptions};
use crate::policy::CompiledPolicy;
use crate::span::Span;
use crate::value::{Context, Timestamp, Value};
use err::R;
use std::sync::Arc;
use trace::Tracer;

/// Three-valued truth: `None` is unknown.
type Tri = Option<bool>;

/// Evaluates a compiled policy. `now` is echoed in the decision.
pub fn evaluate(
    policy: &CompiledPolicy,
    ctx: &Context,
    now: Timestamp,
    opts: &EvalOptions,
) -> Result<Decision, EvalError> {
    // Typed declarations: only a policy that declares something pays for them.
    let checked;
    let mut warnings = Vec::new();
    let ctx = if policy.schema.is_empty() {
        ctx
    } else {
        let (fixed, w) = schema::check_context(&policy.schema, ctx, &policy.defaults);
        warnings = w;
        match fixed {
            Some(c) => {
                checked = c;
                &checked
            }
            None => ctx,
        }
    };
    let mut ev = Evaluator {
        p: policy,
        ctx,
        now,
        budget: Budget {
            limits: opts.limits,
            fuel: opts.limits.fuel,
        },
        scope: Scope {
            locals: vec![Value::Missing; policy.max_slots as usize],
            bindings: Vec::new(),
        },
        out: DecisionBuilder {
            causes: Vec::new(),
            warnings,
            canonical: std::collections::HashMap::new(),
            defaults_used: Vec::new(),
            actions: Vec::new(),
            action_hashes: Vec::new(),
            reports: Vec::with_capacity(policy.rule_count),
            fired_total: 0,
            rules_evaluated: 0,
        },
        arg_scratch: Vec::new(),
        tracer: Tracer::new(opts.trace),
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
    ev.out.reports = reports;
    for r in &policy.rules {
        ev.rule(r)?;
    }
    let out = ev.out;
    Ok(Decision {
        policy_id: policy.policy_id.clone(),
        now: Now(now),
        actions: out.actions,
        rules: out.reports,
        warnings: out.warnings,
        defaults: out.defaults_used,
        stats: Stats {
            steps: opts.limits.fuel - ev.budget.fuel,
            rules_evaluated: out.rules_evaluated,
        },
        metadata: policy.metadata.clone(),
        trace: opts.trace.then_some(ev.tracer.entries),
        trace_truncated: ev.tracer.truncated,
    })
}

/// A reason a value is unknown, reported only if it decides a rule.
struct Cause {
    code: &'static str,
    message: String,
}

struct Evaluator<'p> {
    p: &'p CompiledPolicy,
    ctx: &'p Context,
    now: Timestamp,
    budget: Budget,
    scope: Scope<'p>,
    out: DecisionBuilder,
    arg_scratch: Vec<Value>,
    tracer: Tracer,
}

/// The step budget (fuel) and the limits on loops and produced values.
struct Budget {
    limits: EvalLimits,
    fuel: u64,
}

impl Budget {
    #[inline]
    fn charge(&mut self, n: u64) -> R<()> {
        if self.fuel < n {
            self.fuel = 0;
            return Err(EvalError::BudgetExceeded(self.limits.fuel));
        }
        self.fuel -= n;
        Ok(())
    }

    fn check_iterations(&mut self, n: usize) -> R<()> {
        if n as u64 > self.limits.max_loop_iterations {
            return Err(EvalError::TooManyIterations(
                self.limits.max_loop_iterations,
            ));
        }
        self.charge(n as u64)
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
}

/// What is in scope: local slots (FOR variables, lambda parameters) and the
/// loop bindings.
struct Scope<'p> {
    locals: Vec<Value>,
    /// Loop variables in scope: name, the iterated expression's text, and the
    /// step. The names are borrowed from the policy; a [`Binding`] (which
    /// owns them) is only made when an action fires.
    bindings: Vec<Frame<'p>>,
}

/// What the decision is built from, as the rules run.
struct DecisionBuilder {
    /// Why values are unknown, pending until a rule's result is known.
    causes: Vec<Cause>,
    warnings: Vec<RuntimeWarning>,
    /// Messages as built (quoting source text) to their canonical form
    /// (`canon`), so a cause met again in a loop is not parsed again.
    canonical: std::collections::HashMap<String, String>,
    defaults_used: Vec<Arc<str>>,
    actions: Vec<FiredAction>,
    /// The de-duplication hash of each fired action, by index.
    action_hashes: Vec<u64>,
    reports: Vec<RuleReport>,
    /// Sum of the counts of all fired actions.
    fired_total: u64,
    rules_evaluated: u64,
}

/// A loop variable in scope (see [`Scope::bindings`]).
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
    fn text(&self, span: Span) -> &'p str {
        self.p.source.get(span.range()).unwrap_or("")
    }

    fn cause(&mut self, code: &'static str, message: String) {
        if self.out.causes.len() < 64 {
            self.out.causes.push(Cause { code, message });
        }
    }

    fn warn(&mut self, rule: &Rule, code: &'static str, message: String) {
        // One warning per cause: the message quotes the expressions in their
        // canonical form, so `(O.q)` and `O.q` (or a policy before and after
        // `omni fmt`) give one and the same warning.
        let message = match self.out.canonical.get(&message) {
            Some(c) => c.clone(),
            None => {
                let c = canon::canonical_message(&message);
                if self.out.canonical.len() < 1024 {
                    self.out.canonical.insert(message, c.clone());
                }
                c
            }
        };
        if self
            .out
            .warnings
            .iter()
            .any(|w| w.code == code && w.message == message)
        {
            return;
        }
        self.out.warnings.push(RuntimeWarning {
            code,
            message,
            rule: rule.id.clone(),
            line: rule.span.line,
        });
    }

    /// Publishes the pending causes (the rule's result was unknown).
    fn flush_causes(&mut self, rule: &Rule) {
        let causes = std::mem::take(&mut self.out.causes);
        for c in causes {
            self.warn(rule, c.code, c.message);
        }
    }

    fn record(&mut self, rule: &Rule, outcome: Outcome) {
        let rep = &mut self.out.reports[rule.index as usize];
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
        self.budget.charge(1)?;
        self.out.rules_evaluated += 1;
        self.out.causes.clear();
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
                        if let Some(a) = self.out.reports[r.index as usize].active.as_mut() {
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
        self.out.fired_total
    }

    fn current_bindings(&self) -> Bindings {
        Bindings(self.scope.bindings.iter().map(Frame::to_binding).collect())
    }

    fn condition(&mut self, r: &Rule, cond: &Expr) -> R<Tri> {
        if self.tracer.on {
            self.trace_begin();
        }
        let t = self.eval_tri(cond)?;
        if self.tracer.on {
            self.trace_end(r);
        }
        Ok(t)
    }

    fn fire(&mut self, r: &Rule, actions: &[Action], outcome: Outcome) -> R<Outcome> {
        // Evaluate every argument first: if any is unknown, nothing fires.
        let mut scratch = std::mem::take(&mut self.arg_scratch);
        scratch.clear();
        // Causes from the condition did not decide anything: drop them.
        self.out.causes.clear();
        for a in actions {
            for e in &a.args {
                let v = self.eval(e)?;
                if contains_missing(&v) {
                    if self.out.causes.is_empty() {
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
            self.budget.charge(1)?;
            self.out.fired_total += 1;
            let args = &scratch[next..next + a.args.len()];
            next += a.args.len();
            let key = action_hash(&a.name, args, &self.scope.bindings);
            let existing = self
                .out
                .action_hashes
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, h)| {
                    if *h != key {
                        return None;
                    }
                    let f = &self.out.actions[i];
                    let same_bindings = f.bindings.0.len() == self.scope.bindings.len()
                        && self
                            .scope
                            .bindings
                            .iter()
                            .zip(&f.bindings.0)
                            .all(|(x, b)| x.is(b));
                    (f.name == a.name && f.args == args && same_bindings).then_some(i)
                });
            match existing {
                Some(i) => self.out.actions[i].count += 1,
                None => {
                    self.out.action_hashes.push(key);
                    let fired = FiredAction {
                        name: a.name.clone(),
                        args: args.to_vec(),
                        rule: r.id.clone(),
                        line: r.span.line,
                        bindings: self.current_bindings(),
                        count: 1,
                    };
                    self.out.actions.push(fired);
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
                if self.out.causes.is_empty() {
                    self.cause("missing", format!("`{label}` is missing"));
                }
                let msg = self
                    .out
                    .causes
                    .first()
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                self.out.causes.clear();
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
        self.budget.check_iterations(n)?;
        if let Some(it) = self.out.reports[r.index as usize].iterations.as_mut() {
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
            self.scope.locals[slot as usize] = item;
            self.scope.bindings.push(Frame { var, label, step });
            for b in body {
                self.rule(b)?;
            }
            self.scope.bindings.pop();
        }
        self.scope.locals[slot as usize] = Value::Missing;
        Ok(if self.actions_fired() > before {
            Outcome::Fired
        } else {
            Outcome::NotFired
        })
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
